"""The `httptools` engine of automator.http: an httpx transport speaking HTTP/1.1 over asyncio protocols.

Why it exists: the outbound call is the daemon's largest cost per event (bench/daemon_profile.py). httpcore and
httpx's own transport puts a second HTTP model under httpx's (httpcore's pool scans and h11's event objects),
and that is most of its CPU per request. This engine writes httpx's Request as it is and reads the answer straight into an httpx Response; the
framing (status line, headers, Content-Length, chunked, keep-alive) is parsed by httptools, the C parser
(llhttp) uvicorn serves with, and TLS is asyncio's. What is left to us is small: a pool of keep-alive
connections per origin, httpx's timeouts, and httpcore's exception classes for each failure (the outbox decides
on the class: a refused connect is retried, a connection dropped mid-answer may have been performed).

Every head is checked before a connection is taken (automator/http_safety.py: no CR, LF or NUL from a
header, method or target can end the request early and start another; the framing is ours), and with an
address check the socket goes to an address that passed it, not to whatever the name resolves to later.

Like httpx's own transport: no proxies, redirects or retries. Unlike it: no HTTP/2, and the answer's body is read
whole before the Response is returned (`client.stream()` gets it at once); connector answers are small JSON.
"""
from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from functools import partial
import httptools
import httpx

from automator.call_start import CALL_START
from automator.http_safety import AddressCheck, check_head, resolve_checked

__all__ = ["Http1Transport"]

MAX_HEAD = 64 * 1024  # bytes of an answer's status line and headers before we give up on it
_NO_BODY_STATUS = frozenset({204, 304})
Origin = tuple[bytes, str, int]


class _Connection(asyncio.Protocol):
    """One keep-alive connection: one exchange at a time, parsed by httptools as the bytes come in."""

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._loop = asyncio.get_running_loop()
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._read_timeout: float | None = None
        self._reset()

    def _reset(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.head_bytes = 0
        self.headers_done = self.done = False
        self.framed = False  # Content-Length or chunked: the body does not end with the connection
        self.keep_alive = False
        self.head_request = False

    # --- asyncio.Protocol -------------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:  # bytes nobody asked for (an idle connection): it cannot be trusted again
            self.close()
            return
        self._rearm()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(httpx.RemoteProtocolError("the server switched protocols"))
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"malformed answer: {exc}"))
        except httpx.HTTPError as exc:
            self._fail(exc)

    def eof_received(self) -> bool | None:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._disarm()
        if self._waiter is None or self._waiter.done():
            return
        if exc is not None:
            self._fail(httpx.ReadError(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__))
        elif self.headers_done and not self.framed:
            self.done = True  # a body without a length ends when the server closes: that is its end
            self._waiter.set_result(None)
        elif self.headers_done:
            self._fail(httpx.RemoteProtocolError("the server closed the connection before the whole body came"))
        else:
            self._fail(httpx.RemoteProtocolError("the server closed the connection without answering"))

    # --- httptools callbacks ----------------------------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_bytes += len(name) + len(value) + 4
        if self.head_bytes > MAX_HEAD:
            raise httpx.RemoteProtocolError(f"the answer's headers are over {MAX_HEAD} bytes")
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        if self.status < 200:
            self.headers = []  # 1xx: an interim answer; the real one follows on the same connection
            return
        self.headers_done = True
        self.keep_alive = self._parser.should_keep_alive()
        names = {name.lower() for name, _ in self.headers}
        self.framed = (b"content-length" in names or b"transfer-encoding" in names
                       or self.status in _NO_BODY_STATUS)
        if self.head_request or self.status in _NO_BODY_STATUS:
            self.framed = True
            self._complete()

    def on_body(self, body: bytes) -> None:
        if not self.done:
            self.body.append(body)

    def on_message_complete(self) -> None:
        if self.status >= 200:
            self._complete()

    def _complete(self) -> None:
        if not self.done and self._waiter is not None and not self._waiter.done():
            self.done = True
            self._disarm()
            self._waiter.set_result(None)

    # --- one exchange -----------------------------------------------------------------------------------------
    async def exchange(self, request: httpx.Request, head: bytes, body: bytes, read_timeout: float | None) -> None:
        """Write the request (`head`, checked by the transport, then `body`) and wait until its answer is read
        whole (or fail with httpx's class)."""
        self.expect(request, read_timeout)
        self.write(head, body)
        await self.answer()

    def expect(self, request: httpx.Request, read_timeout: float | None) -> None:
        """Get ready for the answer to `request`, before it is written."""
        assert self.transport is not None
        self._reset()
        self.head_request = request.method == "HEAD"
        self._waiter = self._loop.create_future()
        self._read_timeout = read_timeout

    def write(self, head: bytes, body: bytes) -> None:
        """Write the request; its answer's read timeout starts."""
        if self.closed or self.transport is None:
            return  # lost meanwhile: `answer` raises what ended it
        self.transport.write(head + body if len(body) < 65536 else head)
        if len(body) >= 65536:
            self.transport.write(body)
        self._rearm()

    async def answer(self) -> None:
        """Wait until the answer is read whole (or fail with httpx's class)."""
        assert self._waiter is not None
        try:
            await self._waiter
        finally:
            self._waiter = None
            self._disarm()

    def forget(self) -> None:
        """The request was never written: no answer is awaited (the connection is closed by the caller)."""
        if self._waiter is not None:
            self._waiter.cancel()
            self._waiter = None

    def reusable(self, now: float, expiry: float) -> bool:
        """Still open, kept alive by both sides, and not idle past `expiry` seconds."""
        return (not self.closed and self.keep_alive and self.transport is not None
                and not self.transport.is_closing() and now - self.idle_since < expiry)

    def close(self) -> None:
        """Close the socket (idempotent)."""
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _fail(self, error: Exception) -> None:
        self.close()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(error)

    def _rearm(self) -> None:
        # httpx's read timeout is per read: each chunk that arrives restarts it.
        if self._read_timeout is None or self._waiter is None:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_later(self._read_timeout, self._timed_out)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        self._fail(httpx.ReadTimeout(f"no data from the server for {self._read_timeout:g} s"))


class Http1Transport(httpx.AsyncBaseTransport):
    """HTTP/1.1 keep-alive transport for httpx (`automator.http.new_transport("httptools")`): at most
    `max_connections` sockets over all origins, idle ones closed after `keepalive_expiry` seconds. See the
    module's docstring."""

    # Every head is checked (automator.http_safety.check_head) on the bytes written, before a connection is
    # taken: automator.http.send leaves the check to it.
    checks_heads = True

    def __init__(self, *, max_connections: int = 100, keepalive_expiry: float = 5.0,
                 ssl_context: ssl.SSLContext | None = None, address_check: AddressCheck | None = None) -> None:
        self.max_connections = max_connections
        self.keepalive_expiry = keepalive_expiry
        self._ssl = ssl_context
        self._address_check = address_check
        self._idle: dict[Origin, list[_Connection]] = {}
        self._open = 0  # sockets in use or idle, and connects under way
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send one request and read its whole answer; httpcore's exception classes for every failure."""
        if self._closed:
            raise httpx.LocalProtocolError("the transport is closed")
        scheme = request.url.raw_scheme
        if scheme not in (b"http", b"https"):
            raise httpx.UnsupportedProtocol(f"the URL's scheme must be http or https, not {scheme.decode()!r}")
        if not request.url.host:
            raise httpx.UnsupportedProtocol("the URL has no host")
        origin: Origin = (scheme, request.url.host, request.url.port or (443 if scheme == b"https" else 80))
        timeouts: dict[str, float | None] = request.extensions.get("timeout") or {}
        body, chunked = await _body(request)
        # The bytes about to be written are checked, whoever calls (UnsafeRequest), before a connection is taken.
        head = check_head(request.method, request.url.raw_path, request.headers.raw, None if chunked else len(body))
        connection = await self._acquire(origin, timeouts)
        mark = CALL_START.get()
        try:
            if mark is None:
                await connection.exchange(request, head, body, timeouts.get("read"))
            else:
                # An effect's call: written by the mark that it has begun, the moment that mark is committed
                # (automator/call_start.py), so that no work of the loop comes between the two.
                connection.expect(request, timeouts.get("read"))
                await mark(partial(connection.write, head, body))
                await connection.answer()
        except BaseException:
            connection.forget()
            connection.close()
            self._release(connection)
            raise
        response = httpx.Response(connection.status, headers=connection.headers,
                                  stream=httpx.ByteStream(b"".join(connection.body)),
                                  extensions={"http_version": b"HTTP/1.1"}, request=request)
        connection.idle_since = time.monotonic()
        self._release(connection)
        return response

    async def _acquire(self, origin: Origin, timeouts: dict[str, float | None]) -> _Connection:
        now = time.monotonic()
        idle = self._idle.get(origin)
        while idle:
            connection = idle.pop()
            if connection.reusable(now, self.keepalive_expiry):
                return connection
            connection.close()
            self._open -= 1
        while self._open >= self.max_connections:
            if not self._evict_idle():
                waiter = asyncio.get_running_loop().create_future()
                self._waiters.append(waiter)
                try:
                    async with asyncio.timeout(timeouts.get("pool")):
                        await waiter
                except TimeoutError as exc:
                    raise httpx.PoolTimeout("no free connection in time") from exc
                finally:
                    if waiter in self._waiters:
                        self._waiters.remove(waiter)
                idle = self._idle.get(origin)
                if idle:  # handed back to the pool while we waited
                    return await self._acquire(origin, timeouts)
        self._open += 1
        try:
            return await self._connect(origin, timeouts.get("connect"))
        except BaseException:
            self._open -= 1
            self._wake()
            raise

    async def _connect(self, origin: Origin, timeout: float | None) -> _Connection:
        scheme, host, port = origin
        context: ssl.SSLContext | None = None
        if scheme == b"https":
            context = self._ssl = self._ssl or httpx.create_ssl_context(trust_env=False)
        connection = _Connection(origin)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                if self._address_check is None:
                    await loop.create_connection(lambda: connection, host, port, ssl=context,
                                                 server_hostname=host if context else None)
                else:  # to an address the check allowed, not to whatever the name resolves to next
                    addresses = await resolve_checked(host, port, self._address_check)
                    for index, address in enumerate(addresses):
                        try:
                            await loop.create_connection(lambda: connection, address, port, ssl=context,
                                                         server_hostname=host if context else None)
                            break
                        except OSError:
                            if index == len(addresses) - 1:
                                raise
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"could not connect to {host}:{port} in {timeout:g} s") from exc
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(f"{host}:{port}: {exc}") from exc
        return connection

    def _release(self, connection: _Connection) -> None:
        if connection.reusable(time.monotonic(), self.keepalive_expiry) and not self._closed:
            self._idle.setdefault(connection.origin, []).append(connection)
        else:
            connection.close()
            self._open -= 1
        self._wake()

    def _evict_idle(self) -> bool:
        """Close one idle connection (of any origin) to make room; False when none is idle."""
        for idle in self._idle.values():
            if idle:
                idle.pop(0).close()
                self._open -= 1
                return True
        return False

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def aclose(self) -> None:
        """Close every idle connection; the ones in use are closed when their exchange ends."""
        self._closed = True
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()


async def _body(request: httpx.Request) -> tuple[bytes, bool]:
    """The request's body as the bytes to send after its head, and whether they are chunk-framed (when httpx
    said chunked, for a stream of unknown length)."""
    try:
        return request.content, False
    except httpx.RequestNotRead:
        pass
    chunks = [bytes(chunk) async for chunk in request.stream]  # type: ignore[union-attr]
    if request.headers.get("transfer-encoding", "").lower() == "chunked":
        return b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks if c) + b"0\r\n\r\n", True
    return b"".join(chunks), False
