"""What the connector tests share: one served address whose app each test swaps, and the daemon's side of webhooks."""
from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl

from automator.connector import Inbound
from automator.emulator import read_body


class Swap:
    """One served ASGI app for a whole test module; each test puts its own emulator behind it."""

    def __init__(self) -> None:
        self.app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


class Hooks:
    """The daemon's side of webhooks: records each request (to `path`, when given: a previous test's emulator may
    still be sending elsewhere) as the Inbound the daemon would build from it."""

    def __init__(self, connector: str, path: str | None = None) -> None:
        self.connector, self.path = connector, path
        self.got: list[Inbound] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        if self.path is None or scope["path"] == self.path:
            self.got.append(Inbound(connector=self.connector, method=scope["method"], path=scope["path"],
                                    query=dict(parse_qsl(scope["query_string"].decode())),
                                    headers={k.decode().lower(): v.decode() for k, v in scope["headers"]}, body=body,
                                    received_at=datetime.now(timezone.utc)))
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b'{"accepted": 1}'})

    def wait(self, count: int) -> list[Inbound]:
        """The first `count` webhooks (in the order they arrived), waiting at most 3 s for them."""
        deadline = time.monotonic() + 3
        while len(self.got) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(self.got) >= count, f"{len(self.got)} webhook(s) arrived, expected {count}"
        return self.got[:count]
