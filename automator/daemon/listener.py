"""The daemon's listening side: its socket, bound before anything starts, and the limits a server facing the
internet keeps.

A port that is taken is said at once, in one line, and the daemon exits (a supervisor restarts it). A request
must bring its headers within `daemon.header_timeout` and its body within `daemon.body_timeout`, or it is let go
with 408: a sender trickling a byte a second holds no connection for long. Past `daemon.max_connections` open at
once, requests get 503 (uvicorn's `limit_concurrency`). An answer's head and body leave in one write.
"""
from __future__ import annotations

import asyncio
import errno
import logging
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import formatdate
from typing import TYPE_CHECKING, Any, ClassVar

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from automator.clock import parse_duration

if TYPE_CHECKING:
    from automator.daemon.metrics import Metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Limits:
    """How the daemon's HTTP side holds out against slow or too many senders (`daemon:` of automator.yaml)."""

    header_timeout: float = 10.0  # seconds from a connection's opening (or a request's first byte) to its last header
    body_timeout: float = 30.0  # seconds from a request's last header to the end of its body
    max_connections: int = 500  # open at once; each is a file descriptor, so keep it under `ulimit -n`
    backlog: int = 2048  # connections the system queues until the daemon accepts them

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> Limits:
        """The limits `daemon:` of automator.yaml sets (checked by its schema), the defaults for the others."""
        seconds: dict[str, Any] = {name: parse_duration(settings[name]).approx().total_seconds()
                                   for name in ("header_timeout", "body_timeout") if name in settings}
        counts: dict[str, Any] = {name: int(settings[name]) for name in ("max_connections", "backlog")
                                  if name in settings}
        return cls(**seconds, **counts)


class CannotListen(Exception):
    """The address cannot be listened on; the message says why in one line."""


def listen(host: str, port: int, backlog: int) -> socket.socket:
    """A socket listening on host:port (port 0: one the system picks); CannotListen if the port is taken or the
    address is not this machine's."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        # A restart need not wait for the last life's closed connections to time out (TIME_WAIT); a port another
        # process listens on stays refused.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise CannotListen(f"cannot listen on {host}:{port}: the port is taken (address already in use); "
                               f"another program, or another automator, serves there") from None
        raise CannotListen(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def guarded_protocol(limits: Limits, metrics: Metrics) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol held to `limits`, counting in `metrics` (for uvicorn.Config's `http`)."""
    return type("DaemonHttpProtocol", (GuardedProtocol,), {"limits": limits, "metrics": metrics})


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol with deadlines for a request's headers and body.

    A deadline runs only while a request is incomplete after a read (and from a connection's opening until its
    first request is whole): a request that arrives in one piece, the usual webhook, costs no timer.
    """

    limits: ClassVar[Limits]
    metrics: ClassVar[Metrics]
    _awaiting: str | None = None  # what the deadline waits for: "headers", "body" or nothing
    _deadline: asyncio.TimerHandle | None = None
    _in_headers = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = OneWrite(transport, self)  # type: ignore[assignment]
        self._watch("headers")  # a connection that never sends a byte is let go too

    def connection_lost(self, exc: Exception | None) -> None:
        self._watch(None)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        cycle = self.cycle
        if self.transport.is_closing():
            self._watch(None)
        elif self._in_headers or cycle is None:
            self._watch("headers")
        elif cycle.more_body:  # also after an early answer (413): a body still trickling in is bounded too
            self._watch("body")
        else:
            # Whole: the app has it. Bytes after a finished exchange that begin no request (blank lines) stopped
            # uvicorn's keep-alive timer: they get the headers' deadline instead.
            self._watch("headers" if cycle.response_complete else None)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers = True

    def on_headers_complete(self) -> None:
        self._in_headers = False
        limit = self.limit_concurrency
        if limit is not None and (len(self.connections) >= limit or len(self.tasks) >= limit):
            self.metrics.server_errors.labels("503").inc()  # uvicorn answers it (the same test), unseen by the app
        super().on_headers_complete()

    def _watch(self, awaiting: str | None) -> None:
        """Wait for `awaiting` with its deadline; one already running for the same phase keeps its start."""
        if awaiting == self._awaiting:
            return
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._awaiting = awaiting
        if awaiting is not None:
            timeout = self.limits.header_timeout if awaiting == "headers" else self.limits.body_timeout
            self._deadline = self.loop.call_later(timeout, self._too_slow)

    def _too_slow(self) -> None:
        phase, self._deadline, self._awaiting = self._awaiting, None, None
        if phase is None or self.transport.is_closing():
            return
        self.metrics.http_timeouts.labels(phase).inc()
        log.debug("a request's %s did not arrive in time: connection closed", phase, extra={"phase": phase})
        cycle = self.cycle
        # 408 only where no answer is being written: before the first request, between two, or while the app
        # still waits for this request's body. The app then hears of a disconnect.
        if cycle is None or (cycle.response_complete if phase == "headers" else not cycle.response_started):
            text = f"the request's {phase} did not arrive in time".encode()
            self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
                                 b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(text), text))
        self.transport.close()


class DatedState(ServerState):
    """uvicorn's state shared by its connections, whose default headers (Date, Server) are made when an answer
    needs them, once a second at most, not by a loop that wakes ten times a second to renew them."""

    def __init__(self, config: uvicorn.Config) -> None:
        self._config = config
        self._second = -1
        self._headers: list[tuple[bytes, bytes]] = []
        super().__init__()

    @property
    def default_headers(self) -> list[tuple[bytes, bytes]]:
        """The headers every answer starts with: the Date of this second and the configured ones."""
        second = int(time.time())
        if second != self._second:
            date = [(b"date", formatdate(second, usegmt=True).encode())] if self._config.date_header else []
            # encoded_headers exists once uvicorn has loaded the config (before it serves).
            self._second, self._headers = second, date + getattr(self._config, "encoded_headers", [])
        return self._headers

    @default_headers.setter
    def default_headers(self, value: list[tuple[bytes, bytes]]) -> None:
        pass  # uvicorn's own tick would set them: they are made above


class OneWrite:
    """A connection's transport as uvicorn's protocol sees it, but for this: the head of an answer whose body is
    still to come (a content length, not HEAD) is held until the body is written, and both go in one write.

    uvicorn writes an answer's head and its body apart: two sends, two TCP segments, for a webhook's small answer
    (the head's send was 5 % of the first process's Python time at 500 webhooks/s). A head is never held past the
    loop's turn: a body that does not follow at once (a streaming emulator) finds it sent.
    """

    __slots__ = ("_transport", "_protocol", "_held")

    def __init__(self, transport: asyncio.Transport, protocol: HttpToolsProtocol) -> None:
        self._transport = transport
        self._protocol = protocol
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        """Write `data`, after the head held if any; hold it if it is a head whose body is to come."""
        held = self._held
        if held is not None:
            self._held = None
            data = b"".join((held, data))
        cycle = self._protocol.cycle
        if cycle is not None and cycle.response_started and not cycle.response_complete and held is None \
                and cycle.chunked_encoding is False and cycle.expected_content_length > 0 \
                and cycle.scope["method"] != "HEAD":
            self._held = data
            self._protocol.loop.call_soon(self.flush)
            return
        self._transport.write(data)

    def flush(self) -> None:
        """Write the head held, if one still is."""
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def close(self) -> None:
        """Write what is held, then close (as the transport: what was written is sent first)."""
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
