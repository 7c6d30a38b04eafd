"""A third-party connector that reports what advertising cost: an ad cabinet's daily statistics per campaign, read
page by page over HTTP, as `SpendRow`s of one channel of the project's map (`automator spend pull`)."""
from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from automator import SpendRow, WebConnector
from automator.errors import Rejected, Retryable

PAGE = 2  # statistics rows a page: small, so that a pull of a few days reads several pages


class AdSpend(WebConnector):
    """`type: adspend`: `base_url` of the cabinet's API, `token: ${env:ADS_TOKEN}`, `channel` (the project's channel
    every campaign of this cabinet belongs to, such as vk)."""

    type = "adspend"
    config_schema = {
        "type": "object",
        "required": ["type", "base_url", "token", "channel"],
        "additionalProperties": False,
        "properties": {"type": {"const": "adspend"}, "base_url": {"type": "string"},
                       "token": {"type": "string", "pattern": r"^\$\{env:[A-Za-z_][A-Za-z0-9_]*\}$"},
                       "channel": {"type": "string"}},
    }

    def default_headers(self) -> dict[str, str]:
        """The cabinet's bearer token."""
        return {"Authorization": f"Bearer {self.config['token']}"}

    async def spend(self, since: date, until: date) -> AsyncIterator[SpendRow]:
        """GET /api/v1/statistics/day?date_from&date_to&offset&limit, every page: one row a day and campaign."""
        offset = 0
        while True:
            page = await self._page(since, until, offset)
            for item in page["items"]:
                yield SpendRow(date.fromisoformat(item["date"]), str(self.config["channel"]),
                               str(item.get("campaign") or ""), _kopecks(item["spent"]),
                               str(item.get("currency") or "RUB"))
            offset += len(page["items"])
            if not page["items"] or offset >= int(page["total"]):
                return

    async def _page(self, since: date, until: date, offset: int) -> dict[str, Any]:
        response = await self.request("GET", "/api/v1/statistics/day", "read spend", params={
            "date_from": since.isoformat(), "date_to": until.isoformat(), "offset": offset, "limit": PAGE})
        if response.status_code == 401:
            raise Rejected("the ad cabinet refused the token (401)")
        if response.status_code == 429 or response.status_code >= 500:
            raise Retryable(f"the ad cabinet answered {response.status_code}")
        if response.status_code != 200:
            raise Rejected(f"the ad cabinet answered {response.status_code}: {response.text[:200]}")
        return dict(response.json())


def _kopecks(text: Any) -> int:
    """The cabinet's decimal text ("1500.50") as kopecks, exactly."""
    try:
        amount = Decimal(str(text))
    except InvalidOperation as exc:
        raise Rejected(f"the ad cabinet sent an amount that is not a number: {text!r}") from exc
    return int((amount * 100).to_integral_value())
