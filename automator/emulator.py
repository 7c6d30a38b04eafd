"""The base of every connector's emulator: an ASGI app with state, the system's limits, fault knobs and webhooks.

An emulator answers with the real contract's envelopes and status codes, so the real connector code runs
against it unchanged: over real HTTP on 127.0.0.1 in tests and benchmarks (`serve`), mounted inside the daemon
under `/_sandbox/<connector>` with `automator run --sandbox`, or in-process through `httpx.ASGITransport`.

Every emulator also serves a control API under `/_emulator/`:
    GET  /_emulator/state            the emulated system's data (for tests and demos)
    GET  /_emulator/requests         the requests received, in order
    GET  /_emulator/webhooks         the webhooks sent back, with the answer each got
    POST /_emulator/faults           {"storm": {"status": 429, "count": 5, "retry_after": 2}, "fail": {"status":
                                     500, "count": 1}, "delay": 0.5, "drop": 1, "limits": false, ...}
    POST /_emulator/reset            forget faults and recorded traffic
Subclasses add their own control routes for changes "made by a manager" (which send webhooks).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qsl
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, ClassVar

import httpx

Handler = Callable[..., Awaitable["Reply"]]



async def read_body(receive: Callable[[], Awaitable[Mapping[str, Any]]]) -> bytes:
    """The whole body of an ASGI HTTP request, however many messages it came in."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body

@dataclass
class Call:
    """One request as the emulator received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.time)

    def json(self) -> Any:
        """The body as JSON (None when empty)."""
        return json.loads(self.body) if self.body else None

    def form(self) -> list[tuple[str, str]]:
        """The body as form pairs, in order (`a[b][0]=1` keys are kept as written)."""
        return parse_qsl(self.body.decode("utf-8", "replace"), keep_blank_values=True)

    def to_json(self) -> dict[str, Any]:
        """Plain data for the control API."""
        return {"method": self.method, "path": self.path, "query": self.query,
                "body": self.body.decode("utf-8", "replace"), "at": self.at}


@dataclass
class Reply:
    """An answer: status, body (bytes, or data sent as JSON) and headers."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json; charset=utf-8"

    def encoded(self) -> bytes:
        """The body on the wire."""
        if self.body is None or self.status == 204:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body, ensure_ascii=False).encode()


class Dropped(Exception):
    """Raised inside the app to close the connection without an answer (a dropped connection)."""


@dataclass
class Faults:
    """What goes wrong on purpose. Counts go down as requests use them up."""

    storm: dict[str, Any] | None = None  # {"status": 429|503, "count": N, "retry_after": s, "body": ...}
    fail: dict[str, Any] | None = None  # {"status": 500, "count": N}
    delay: float = 0.0  # seconds before each answer
    drop: int = 0  # connections to drop before answering
    limits: bool = True  # enforce the system's rate limits
    extra: dict[str, Any] = field(default_factory=dict)  # emulator-specific knobs (e.g. a Bitrix24 batch failure)

    def update(self, data: Mapping[str, Any]) -> None:
        """Set the knobs given; others stay."""
        for key, value in data.items():
            if key not in ("storm", "fail", "delay", "drop", "limits", "extra"):
                raise ValueError(f"unknown fault {key!r}")
            setattr(self, key, value)


def route(method: str, pattern: str) -> Callable[[Handler], Handler]:
    """Mark an emulator method as the handler of `method` requests whose path matches `pattern` (a regex,
    matched whole; named groups become keyword arguments)."""
    def mark(handler: Handler) -> Handler:
        handler.__emulator_routes__ = [*getattr(handler, "__emulator_routes__", []),  # type: ignore[attr-defined]
                                       (method.upper(), re.compile(pattern))]
        return handler
    return mark


class Emulator:
    """A faithful stand-in for one outside system.

    Subclasses set `system`, write handlers with `@route`, keep their data in attributes, implement
    `state()`, `limit(call)` (the system's own rate-limit answer, or None) and `storm_reply(status,
    retry_after)` (the system's own envelope for an overload answer). `webhook(...)` sends a change back to
    the daemon the way the real system does: once, no retry, whatever the answer.
    """

    system: ClassVar[str] = ""

    def __init__(self, *, hook_url: str | None = None, limits: bool = True,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.hook_url = hook_url
        self.faults = Faults(limits=limits)
        self.calls: list[Call] = []
        self.webhooks: list[dict[str, Any]] = []
        self._hook_transport = transport
        self._tasks: set[asyncio.Task[None]] = set()
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        for klass in type(self).__mro__:
            for attr, value in vars(klass).items():
                for method, pattern in getattr(value, "__emulator_routes__", []):
                    self._routes.append((method, pattern, getattr(self, attr)))

    # ---- what subclasses provide -----------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """The emulated data, as plain JSON."""
        return {}

    def limit(self, call: Call) -> Reply | None:
        """The system's rate-limit answer for this call, or None when it is within the limit."""
        return None

    def storm_reply(self, status: int, retry_after: float | None) -> Reply:
        """The system's own answer when it is overloaded (used by the `storm` fault)."""
        headers = {"Retry-After": str(int(retry_after))} if retry_after is not None else {}
        return Reply(status, {"error": "overloaded"}, headers)

    def error_reply(self, status: int) -> Reply:
        """The system's own answer for a server error (used by the `fail` fault)."""
        return Reply(status, {"error": "internal error"})

    def not_found(self, call: Call) -> Reply:
        """The system's answer for an unknown address."""
        return Reply(404, {"error": "not found"})

    # ---- the ASGI app ----------------------------------------------------------------------------
    async def __call__(self, scope: Mapping[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
                       send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        path = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):] or "/"
        call = Call(method=scope["method"], path=path,
                    query=dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)),
                    headers={k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])},
                    body=body)
        try:
            reply = await self.handle(call)
        except Dropped:
            # uvicorn's `send` is a method of the request cycle, which holds the socket: close it unanswered.
            transport = getattr(getattr(send, "__self__", None), "transport", None)
            if transport is None:  # in-process (httpx.ASGITransport): what the client would see
                raise httpx.RemoteProtocolError("the emulator dropped the connection") from None
            transport.close()
            return
        await send({"type": "http.response.start", "status": reply.status,
                    "headers": [(b"content-type", reply.content_type.encode()),
                                *((k.lower().encode(), str(v).encode()) for k, v in reply.headers.items())]})
        await send({"type": "http.response.body", "body": reply.encoded()})

    async def handle(self, call: Call) -> Reply:
        """Answer one request: control API, faults, rate limit, then the route's handler."""
        if call.path.startswith("/_emulator/"):
            return await self._control(call)
        self.calls.append(call)
        faults = self.faults
        if faults.delay:
            await asyncio.sleep(faults.delay)
        if faults.drop > 0:
            faults.drop -= 1
            raise Dropped("dropped on purpose")
        for name, make in (("storm", lambda f: self.storm_reply(int(f.get("status", 429)), f.get("retry_after"))),
                           ("fail", lambda f: self.error_reply(int(f.get("status", 500))))):
            fault = getattr(faults, name)
            if fault and fault.get("count", 0) > 0:
                fault["count"] -= 1
                return make(fault)
        if faults.limits:
            limited = self.limit(call)
            if limited is not None:
                return limited
        for method, pattern, handler in self._routes:
            if method != call.method and not (method == "ANY"):
                continue
            match = pattern.fullmatch(call.path)
            if match:
                return await handler(call, **match.groupdict())
        return self.not_found(call)

    async def _control(self, call: Call) -> Reply:
        what = call.path[len("/_emulator/"):]
        if what == "state":
            return Reply(200, self.state())
        if what == "requests":
            return Reply(200, [c.to_json() for c in self.calls])
        if what == "webhooks":
            return Reply(200, self.webhooks)
        if what == "faults" and call.method == "POST":
            try:
                self.faults.update(call.json() or {})
            except (ValueError, TypeError) as exc:
                return Reply(400, {"error": str(exc)})
            return Reply(200, {"ok": True})
        if what == "reset" and call.method == "POST":
            self.faults = Faults(limits=self.faults.limits)
            self.calls.clear()
            self.webhooks.clear()
            return Reply(200, {"ok": True})
        return await self.control(call, what)

    async def control(self, call: Call, what: str) -> Reply:
        """Emulator-specific control routes (`/_emulator/<what>`); subclasses extend it."""
        return Reply(404, {"error": f"no control route {what!r}"})

    # ---- webhooks back to the daemon --------------------------------------------------------------
    def deliver_through(self, transport: httpx.AsyncBaseTransport) -> None:
        """Send the webhooks through `transport` (`automator test --sandbox`: into the simulation, in-process)."""
        self._hook_transport = transport

    def webhook(self, body: bytes | dict[str, Any], *, content_type: str = "application/json",
                headers: Mapping[str, str] | None = None) -> None:
        """Send one webhook to `hook_url` in the background: once, never retried, as the real system does."""
        if not self.hook_url:
            return
        data = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
        record: dict[str, Any] = {"body": data.decode("utf-8", "replace"), "status": None}
        self.webhooks.append(record)
        task = asyncio.get_running_loop().create_task(self._post(record, data, content_type, dict(headers or {})))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post(self, record: dict[str, Any], data: bytes, content_type: str, headers: dict[str, str]) -> None:
        assert self.hook_url
        try:
            async with httpx.AsyncClient(transport=self._hook_transport, trust_env=False, timeout=10) as client:
                answer = await client.post(self.hook_url, content=data,
                                           headers={"Content-Type": content_type, **headers})
            record["status"] = answer.status_code
        except httpx.HTTPError as exc:  # lost, as a real system's webhook to a daemon that is down is lost
            record["status"] = f"{type(exc).__name__}: {exc}"

    async def settle(self) -> None:
        """Wait until every webhook sent so far has had its answer (tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


class Served:
    """An app served by uvicorn on 127.0.0.1 in a thread of its own, for tests and benchmarks."""

    def __init__(self, app: Any, port: int = 0) -> None:
        import socket

        import uvicorn

        # IPPROTO_TCP spelled out: asyncio turns Nagle off (TCP_NODELAY) only on sockets whose proto says TCP, and
        # an accepted socket inherits proto 0 from `socket.socket()`: every answer then waited ~40 ms for the
        # client's delayed ACK between its headers and its body.
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.socket.bind(("127.0.0.1", port))
        self.port = self.socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off", http="h11")
        self.server = uvicorn.Server(config)
        self.server.capture_signals = _no_signals  # type: ignore[method-assign]
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve(sockets=[self.socket])),
                                       daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the emulator did not start")
            time.sleep(0.01)

    def close(self) -> None:
        """Stop serving and wait for the thread."""
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def __enter__(self) -> Served:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve(app: Any, port: int = 0) -> Served:
    """Serve an emulator (any ASGI app) on 127.0.0.1; use as a context manager or call `.close()`."""
    return Served(app, port)


@contextlib.contextmanager
def _no_signals() -> Iterator[None]:
    yield
