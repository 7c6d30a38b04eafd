"""What the connector tests share: one served address whose app each test swaps, the daemon's side of webhooks,
and one event loop per module on which each connector keeps its HTTP client."""
from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl

import httpx

from automator.connector import Connector, Inbound
from automator.emulator import Emulator, read_body


class Swap:
    """One served ASGI app for a whole test module; each test puts its own emulator behind it."""

    def __init__(self) -> None:
        self.app: Any = None
        self.loop: asyncio.AbstractEventLoop | None = None  # the serving thread's, where the app sends webhooks

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.loop = asyncio.get_running_loop()
        await self.app(scope, receive, send)

    def settled(self, seconds: float = 3) -> None:
        """Wait (at most `seconds`) until every webhook the emulator behind has sent has had its answer: its own
        `settle`, run on the loop that sends them."""
        if self.loop is not None and isinstance(self.app, Emulator):
            asyncio.run_coroutine_threadsafe(self.app.settle(), self.loop).result(timeout=seconds)


class Hooks:
    """The daemon's side of webhooks: records each request (to `path`, when given: a previous test's emulator may
    still be sending elsewhere) as the Inbound the daemon would build from it."""

    def __init__(self, connector: str, path: str | None = None) -> None:
        self.connector, self.path = connector, path
        self.got: list[Inbound] = []
        self.arrived = threading.Condition()  # notified by the server's thread as each webhook is recorded

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        if self.path is None or scope["path"] == self.path:
            inbound = Inbound(connector=self.connector, method=scope["method"], path=scope["path"],
                              query=dict(parse_qsl(scope["query_string"].decode())),
                              headers={k.decode().lower(): v.decode() for k, v in scope["headers"]}, body=body,
                              received_at=datetime.now(timezone.utc))
            with self.arrived:
                self.got.append(inbound)
                self.arrived.notify_all()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b'{"accepted": 1}'})

    def wait(self, count: int) -> list[Inbound]:
        """The first `count` webhooks (in the order they arrived), waiting at most 3 s for them."""
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.got) >= count, timeout=3)
        assert len(self.got) >= count, f"{len(self.got)} webhook(s) arrived, expected {count}"
        return self.got[:count]


class Loop:
    """One event loop for the module, and the connectors made on it (each makes its HTTP client once, as in
    the daemon); all closed at the end."""

    runner: asyncio.Runner | None = None
    made: dict[str, Connector] = {}
    web: httpx.Client | None = None  # for the test's own requests to the emulator
    opened: list[Connector] = []

    @classmethod
    def connector(cls, make: Callable[[dict[str, Any]], Connector], url: str, **extra: Any) -> Connector:
        """The module's connector for these settings, made once by `make(extra)`."""
        key = json.dumps([url, extra], sort_keys=True)
        if key not in cls.made:
            cls.made[key] = make(extra)
        return cls.made[key]

    @classmethod
    def run(cls, conn: Connector, make: Callable[[], Awaitable[Any]]) -> Any:
        """Run `make()` on the module's loop; `conn` is closed when the module ends."""
        if conn not in cls.opened:
            cls.opened.append(conn)
        assert cls.runner is not None
        return cls.runner.run(make())

    @classmethod
    def post(cls, url: str, **kwargs: Any) -> httpx.Response:
        """The test's own POST (to an emulator)."""
        assert cls.web is not None
        return cls.web.post(url, **kwargs)

    @classmethod
    def get(cls, url: str, **kwargs: Any) -> httpx.Response:
        """The test's own GET (to an emulator)."""
        assert cls.web is not None
        return cls.web.get(url, **kwargs)


def run(conn: Connector, make: Callable[[], Awaitable[Any]]) -> Any:
    """Run `make()` on the module's loop (the `loop` fixture); `conn` is closed when the module ends."""
    return Loop.run(conn, make)


def post(url: str, **kwargs: Any) -> httpx.Response:
    """The test's own POST (to an emulator), on the module's client."""
    return Loop.post(url, **kwargs)


def get(url: str, **kwargs: Any) -> httpx.Response:
    """The test's own GET (to an emulator), on the module's client."""
    return Loop.get(url, **kwargs)


def send(conn: Any, to: str, text: str, key: str = "effect-1") -> dict[str, Any]:
    """What an SMS connector's `sms.send` answered for one text."""
    return dict(run(conn, lambda: conn.sms_send({"to": to, "text": text}, key)).data)


def form_of(emu: Emulator, index: int = -1) -> dict[str, str]:
    """The form an emulator received in its `index`th request."""
    return dict(parse_qsl(emu.calls[index].body.decode()))
