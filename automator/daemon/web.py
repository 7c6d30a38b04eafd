"""The ASGI app: POST /hooks/<connector>, GET /healthz, GET /metrics; a webhook is acked only once journaled."""
from __future__ import annotations

import contextlib
import hashlib
import inspect
import logging
import time
import traceback
from dataclasses import replace
from urllib.parse import parse_qsl
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson

from automator.clock import Clock
from automator.connector import Inbound
from automator.daemon.admission import Admission, Item
from automator.daemon.health import Health
from automator.daemon.metrics import Metrics
from automator.daemon.running import Running
from automator.daemon.storable import UNSTORABLE, storable, storable_event
from automator.errors import InboundRejected
from automator.model import Event

log = logging.getLogger(__name__)
Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]


_JSON = (b"content-type", b"application/json")
_QUERIES_KEPT = 64  # query strings whose parsed form is kept: a sender puts the same `?token=` on every request


async def _answer(send: Send, status: int, body: Any, content_type: str = "application/json") -> None:
    data = body if isinstance(body, bytes) else orjson.dumps(body, default=str)
    kind = _JSON if content_type == "application/json" else (b"content-type", content_type.encode())
    await send({"type": "http.response.start", "status": status,
                "headers": [kind, (b"content-length", b"%d" % len(data))]})
    await send({"type": "http.response.body", "body": data})


class TooLarge(Exception):
    """The body went past the limit while it was being read."""


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionError("the client went away")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise TooLarge
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


class WebApp:
    """The daemon's HTTP face. A plain ASGI callable: three endpoints do not need a framework's routing.

    It journals through `admission`, answers /healthz and /metrics from `health`, finds connectors in `running`
    and serves the sandbox's `emulators` (none outside --sandbox).
    """

    def __init__(self, admission: Admission, health: Health, running: Running, *, metrics: Metrics, clock: Clock,
                 max_body: int, emulators: Mapping[str, Any]) -> None:
        self.admission = admission
        self.health = health
        self.running = running
        self.metrics = metrics
        self.clock = clock
        self.max_body = max_body
        self.emulators = emulators
        self._queries: dict[bytes, dict[str, str]] = {}  # a query string -> its parameters (see _query)
        self._counted: dict[str, tuple[Any, Any]] = {}  # a connector's name -> its accepted and duplicate counters

    async def __call__(self, scope: Mapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        method: str = scope["method"]
        try:
            await self._route(scope, receive, send, path, method)
        except Exception:  # the store failed, or a bug: the sender may try again; the operator sees it counted
            where = "/".join(path.split("/", 3)[:3])  # no more of the path: a secret may follow the connector's name
            log.exception("%s %s failed: answered 500", method, where)
            with contextlib.suppress(RuntimeError):  # the answer had begun: uvicorn closes the connection instead
                await self._answer(send, 500, {"error": "internal error; the request was not accepted"})

    async def _route(self, scope: Mapping[str, Any], receive: Receive, send: Send, path: str, method: str) -> None:
        if path.startswith("/hooks/"):
            if method != "POST":
                await self._reject(send, path[7:].partition("/")[0], InboundRejected(405, "use POST", "method"))
                return
            # /hooks/<connector>[/<more>]: systems that sign nothing may carry a secret in the path after the name.
            await self.hook(scope, receive, send, path[7:].partition("/")[0])
        elif path == "/healthz" and method in ("GET", "HEAD"):
            healthy = not self.health.stopping.is_set()
            await self._answer(send, 200 if healthy else 503, self.health.healthz())
        elif path.startswith("/_sandbox/") and self.emulators:
            name = path[len("/_sandbox/"):].partition("/")[0]
            emulator = self.emulators.get(name)
            if emulator is None:
                await _answer(send, 404, {"error": f"no emulator for {name!r}"})
                return
            await emulator({**scope, "root_path": f"/_sandbox/{name}"}, receive, send)
        elif path == "/metrics" and method == "GET":
            body, content_type = await self.health.render_metrics()
            await _answer(send, 200, body, content_type)
        else:
            await _answer(send, 404, {"error": "not found"})

    async def hook(self, scope: Mapping[str, Any], receive: Receive, send: Send, name: str) -> None:
        """Parse, journal, then answer: 2xx means the events are committed and will be processed."""
        started = time.perf_counter()
        connector = self.running.connectors.get(name)
        if connector is None or self.admission.stopping.is_set():
            reason = InboundRejected(404, f"no connector named {name!r}", "unknown_connector") if connector is None \
                else InboundRejected(503, "shutting down", "stopping")
            await self._reject(send, name, reason)
            return
        if connector.webhook_refusal is not None:  # no endpoint is open: unauthenticated means refused
            await self._reject(send, name, InboundRejected(401, connector.webhook_refusal, "auth"))
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        limit = self.max_body
        try:
            if int(headers.get("content-length") or 0) > limit:
                raise TooLarge
            body = await _read_body(receive, limit)
        except TooLarge:
            await self._reject(send, name, InboundRejected(413, f"the body is over {limit} bytes", "too_large"))
            return
        except ConnectionError:  # nobody is left to answer; counted, so that slow or vanishing senders are seen
            await self._reject(send, name, InboundRejected(
                400, "the body did not arrive whole: the sender went away or was too slow (daemon.body_timeout)",
                "incomplete"))
            return
        except ValueError:
            await self._reject(send, name, InboundRejected(400, "unreadable request", "malformed"))
            return
        request = Inbound(connector=name, method=scope["method"], path=scope["path"],
                          query=self._query(scope.get("query_string", b"")), headers=headers, body=body,
                          received_at=self.clock.now())
        try:
            parsed = connector.parse(request)
            events: list[Event] = parsed if isinstance(parsed, list) or not inspect.isawaitable(parsed) \
                else await parsed
        except InboundRejected as exc:
            await self._reject(send, name, exc)
            return
        except Exception as exc:  # a connector bug must not answer 500 forever to a system that gave up retrying
            # The traceback as text, so that a secret its messages quote (a URL with a key) can be taken out.
            log.error("connector %s could not parse a webhook\n%s", name, connector.redact(traceback.format_exc()),
                      extra={"connector": name})
            await self._reject(send, name, InboundRejected(400, f"cannot read the request: {type(exc).__name__}"))
            return
        # The body's digest deduplicates only the events that carry no delivery id (most carry one).
        digest = None if all(e.delivery_id for e in events) else hashlib.sha256(body).hexdigest()
        items = [(replace(e, source=name) if e.source != name else e,
                  None if e.delivery_id else f"{digest}:{i}") for i, e in enumerate(events)]
        fresh: list[bool] | None
        try:
            fresh = await self.admission.append(items)
        except UNSTORABLE:
            fresh = await self._append_storable(send, name, items)
            if fresh is None:
                return
        accepted = sum(fresh)
        counted = self._counted.get(name)
        if counted is None:  # labels() looks the child up under a lock each time: once per connector is enough
            counted = self._counted[name] = (self.metrics.events_accepted.labels(name),
                                             self.metrics.events_duplicate.labels(name))
        counted[0].inc(accepted)
        if accepted < len(fresh):
            counted[1].inc(len(fresh) - accepted)
        await _answer(send, 200, {"accepted": accepted, "duplicates": len(fresh) - accepted})
        self.metrics.ack_seconds.observe(time.perf_counter() - started)

    def _query(self, raw: bytes) -> dict[str, str]:
        """The query string's parameters (a copy: a connector may keep or change what it is given)."""
        query = self._queries.get(raw)
        if query is None:
            query = dict(parse_qsl(raw.decode("latin-1")))
            if len(self._queries) >= _QUERIES_KEPT:  # anyone can send any query: what is kept stays bounded
                self._queries.clear()
            self._queries[raw] = query
        return dict(query)

    async def _append_storable(self, send: Send, name: str, items: list[Item]) -> list[bool] | None:
        """The request's events could not be stored as they came (the others of their group were): again with
        what JSON cannot carry replaced (see automator.daemon.storable); None once refused with a 400."""
        try:
            fresh = await self.admission.append([(storable_event(e), digest) for e, digest in items])
        except UNSTORABLE as exc:
            reason = storable(f"the events cannot be stored: {exc}")  # the error may quote the very character
            await self._reject(send, name, InboundRejected(400, reason, "unstorable"))
            return None
        log.warning("webhook carried text JSON cannot hold: lone surrogates stored as U+FFFD, NaN and Infinity as "
                    "null", extra={"connector": name})
        return fresh

    async def _reject(self, send: Send, name: str, exc: InboundRejected) -> None:
        connector = self.running.connectors.get(name)
        # A reason may quote what the request carried, or a system's answer: no secret of the connector is
        # echoed, whichever connector wrote it.
        reason = connector.redact(exc.reason) if connector is not None else exc.reason
        log.warning("webhook refused: %s %s", exc.status, reason,
                    extra={"connector": name, "status": exc.status, "reason": exc.word})
        # A label from the URL only when it names a connector: anyone can send /hooks/<anything>.
        label = name if connector is not None else "unknown"
        self.metrics.events_rejected.labels(label, exc.word).inc()
        await self._answer(send, exc.status, {"error": reason})

    async def _answer(self, send: Send, status: int, body: Any, content_type: str = "application/json") -> None:
        await _answer(send, status, body, content_type)
        if status >= 500:
            self.metrics.server_errors.labels(str(status)).inc()
