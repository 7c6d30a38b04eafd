"""The ad cabinet's statistics API as tests serve it over HTTP: daily spend per campaign, paged, behind a token."""
from __future__ import annotations

from typing import Any

from automator.emulator import Call, Emulator, Reply, route


class CabinetEmulator(Emulator):
    """`stats` holds {"date", "campaign", "spent", "currency"} rows; a manager's correction replaces one."""

    system = "adspend"

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token
        self.stats: list[dict[str, Any]] = []

    def state(self) -> dict[str, Any]:
        """The statistics rows."""
        return {"stats": list(self.stats)}

    @route("GET", r"/api/v1/statistics/day")
    async def day(self, call: Call) -> Reply:
        """The rows from date_from to date_to, ordered by day and campaign, `limit` of them from `offset`."""
        if call.headers.get("authorization") != f"Bearer {self.token}":
            return Reply(401, {"error": "invalid token"})
        q = call.query
        found = sorted((r for r in self.stats if q["date_from"] <= r["date"] <= q["date_to"]),
                       key=lambda r: (r["date"], r["campaign"]))
        offset, limit = int(q.get("offset", 0)), int(q.get("limit", 100))
        return Reply(200, {"items": found[offset:offset + limit], "total": len(found)})
