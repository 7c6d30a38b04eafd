"""A minimal hand-written HTTP/1.1 transport for httpx, measured against the product's engines (not used by it)."""
from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

import httpx

from automator.http import KEEPALIVE_EXPIRY

# --- the lean engine ------------------------------------------------------------------------------------------
# httpcore and httpx-aiohttp each put a second HTTP model under httpx's (httpcore's pool scans, h11's event
# objects; aiohttp's request and response objects, converted to and from httpx's): bench/connector_calls.py measures
# what that costs per request. This one writes httpx's request as it is and reads the answer into httpx's
# Response directly: HTTP/1.1 over asyncio streams (TLS through `ssl`), keep-alive, Content-Length, chunked and
# until-close bodies, a pool of `max_connections` sockets, httpx's timeouts (connect, write, each read, pool)
# and httpcore's exception classes. No proxies, redirects or retries (like the others), no HTTP/2, and the
# answer's body is read whole before it is returned: `client.stream()` gets it all at once.

_LEAN_MAX_HEAD = 64 * 1024  # bytes of an answer's status line and headers
_LEAN_READ = 64 * 1024  # bytes asked of the socket at once
_LEAN_NO_BODY = frozenset({204, 304})


class _LeanConnection:
    __slots__ = ("idle_since", "origin", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, origin: tuple[str, str, int]
                 ) -> None:
        self.reader = reader
        self.writer = writer
        self.origin = origin
        self.idle_since = 0.0

    def reusable(self, now: float) -> bool:
        # Closed by the server while idle (its keep-alive ran out), or sent something nobody asked for: not reused.
        return (now - self.idle_since < KEEPALIVE_EXPIRY and not self.writer.is_closing()
                and not self.reader.at_eof() and not getattr(self.reader, "_buffer", b""))

    def close(self) -> None:
        try:
            self.writer.close()
        except Exception:  # pragma: no cover - a socket already broken
            pass


class LeanTransport(httpx.AsyncBaseTransport):
    """A keep-alive HTTP/1.1 transport on asyncio streams; `new_transport("lean")`. See the section comment."""

    def __init__(self, *, max_connections: int = 100, ssl_context: ssl.SSLContext | None = None) -> None:
        self.max_connections = max_connections
        self._ssl = ssl_context
        self._idle: dict[tuple[str, str, int], list[_LeanConnection]] = {}
        self._open = 0  # sockets in use or idle
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.scheme
        if scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"Request URL has an unsupported protocol '{scheme}://'.",
                                            request=request)
        if not url.host:
            raise httpx.UnsupportedProtocol("Request URL is missing a host.", request=request)
        timeouts = request.extensions.get("timeout") or {}
        head, body, chunked, close = _lean_head(request)
        conn = await self._acquire((scheme, url.host, url.port or (443 if scheme == "https" else 80)), request,
                                   timeouts)
        reusable = False
        try:
            await _lean_write(conn.writer, request, head, body, chunked, timeouts.get("write"))
            status, reason, headers, content, keep = await _lean_read(conn.reader, request, timeouts.get("read"))
            reusable = keep and not close
        finally:
            self._release(conn, reusable)
        return httpx.Response(status, headers=headers, stream=httpx.ByteStream(content),
                              extensions={"http_version": b"HTTP/1.1", "reason_phrase": reason})

    async def aclose(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
                self._open -= 1
        self._idle.clear()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    # ---- the pool -------------------------------------------------------------------------------------------
    async def _acquire(self, origin: tuple[str, str, int], request: httpx.Request, timeouts: Mapping[str, Any]
                       ) -> _LeanConnection:
        pool_timeout = timeouts.get("pool")
        until = None if pool_timeout is None else time.monotonic() + pool_timeout
        while True:
            if self._closed:
                raise RuntimeError("the HTTP transport is closed")
            conn = self._take_idle(origin)
            if conn is not None:
                return conn
            if self._open < self.max_connections or self._evict_other(origin):
                self._open += 1
                try:
                    return await self._connect(origin, request, timeouts.get("connect"))
                except BaseException:
                    self._open -= 1
                    self._wake()
                    raise
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout(None if until is None else max(0.0, until - time.monotonic())):
                    await waiter
            except TimeoutError:
                raise httpx.PoolTimeout("No connection of the pool became free in time.", request=request) from None
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # pass on the turn this waiter was given and will not take
                raise
            finally:
                if not waiter.done():
                    waiter.cancel()

    def _take_idle(self, origin: tuple[str, str, int]) -> _LeanConnection | None:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            conn = idle.pop()  # the most recently used: the least likely to have been closed by the server
            if conn.reusable(now):
                return conn
            conn.close()
            self._open -= 1
        return None

    def _evict_other(self, origin: tuple[str, str, int]) -> bool:
        """Close the longest idle connection to another host, to make room for one to this host."""
        oldest: _LeanConnection | None = None
        for key, idle in self._idle.items():
            if key != origin and idle and (oldest is None or idle[0].idle_since < oldest.idle_since):
                oldest = idle[0]
        if oldest is None:
            return False
        self._idle[oldest.origin].remove(oldest)
        oldest.close()
        self._open -= 1
        return True

    async def _connect(self, origin: tuple[str, str, int], request: httpx.Request, timeout: float | None
                       ) -> _LeanConnection:
        scheme, host, port = origin
        extra: dict[str, Any] = {}
        if scheme == "https":
            if self._ssl is None:
                # httpx's own defaults (certifi's roots), without SSL_CERT_FILE/SSL_CERT_DIR: see new_client.
                self._ssl = httpx.create_ssl_context(trust_env=False)
                self._ssl.set_alpn_protocols(["http/1.1"])
            sni = request.extensions.get("sni_hostname")
            extra = {"ssl": self._ssl, "server_hostname": sni.decode() if isinstance(sni, bytes) else sni or host}
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(host, port, limit=_LEAN_MAX_HEAD, **extra)
        except TimeoutError:
            raise httpx.ConnectTimeout(f"Connecting to {host}:{port} timed out.", request=request) from None
        except OSError as exc:  # refused, unreachable, no such name, a TLS handshake refused (ssl.SSLError)
            raise httpx.ConnectError(str(exc) or type(exc).__name__, request=request) from exc
        return _LeanConnection(reader, writer, origin)

    def _release(self, conn: _LeanConnection, reusable: bool) -> None:
        if reusable and not self._closed:
            conn.idle_since = time.monotonic()
            self._idle.setdefault(conn.origin, []).append(conn)
        else:
            conn.close()
            self._open -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


def _lean_head(request: httpx.Request) -> tuple[bytes, Any, bool, bool]:
    """The request line and headers on the wire, the body (bytes, or the stream to send as it comes), whether
    it goes chunked, and whether the request itself asks to close the connection."""
    raw = request.headers.raw
    lines = [b"%s %s HTTP/1.1\r\n" % (request.method.encode("ascii", "replace"), request.url.raw_path)]
    chunked = close = False
    for name, value in raw:
        lines.append(b"%s: %s\r\n" % (name, value))
        if len(name) in (10, 17):
            lowered = name.lower()
            if lowered == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif lowered == b"connection":
                close = b"close" in value.lower()
    lines.append(b"\r\n")
    head = b"".join(lines)
    # A CR or LF inside the method, the target or a header would start a line of its own: refused, as h11 does.
    if head.count(b"\n") != len(raw) + 2 or head.count(b"\r") != len(raw) + 2:
        raise httpx.LocalProtocolError("Illegal character in the request line or a header.", request=request)
    try:
        body: Any = request.content
    except httpx.RequestNotRead:
        body = request.stream
    return head, body, chunked, close


async def _lean_write(writer: asyncio.StreamWriter, request: httpx.Request, head: bytes, body: Any,
                      chunked: bool, timeout: float | None) -> None:
    try:
        if isinstance(body, bytes):
            writer.write(head + body if len(body) < _LEAN_READ else head)
            if len(body) >= _LEAN_READ:
                writer.write(body)
            if not writer.transport.get_write_buffer_size():
                return  # all in the socket already (the usual case): nothing to wait for
            async with asyncio.timeout(timeout):
                await writer.drain()
            return
        async with asyncio.timeout(timeout) as budget:
            writer.write(head)
            async for chunk in body:
                if chunked:
                    if chunk:
                        writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                else:
                    writer.write(chunk)
                await writer.drain()
                if timeout is not None:
                    budget.reschedule(asyncio.get_running_loop().time() + timeout)
            if chunked:
                writer.write(b"0\r\n\r\n")
            await writer.drain()
    except TimeoutError:
        raise httpx.WriteTimeout("Sending the request timed out.", request=request) from None
    except OSError as exc:
        raise httpx.WriteError(str(exc) or type(exc).__name__, request=request) from exc


async def _lean_read(reader: asyncio.StreamReader, request: httpx.Request, timeout: float | None
                     ) -> tuple[int, bytes, list[tuple[bytes, bytes]], bytes, bool]:
    """(status, reason, headers, body, whether the connection may carry another request); each read within
    `timeout` (httpx's read timeout restarts with every read, as httpcore's does)."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout) as budget:
            while True:  # 1xx answers (100 Continue, 103 Early Hints) come before the one that counts
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError as exc:
                    raise httpx.RemoteProtocolError(
                        "Server disconnected without sending a response." if not exc.partial else
                        "Server disconnected in the middle of the response headers.", request=request) from None
                except asyncio.LimitOverrunError:
                    raise httpx.RemoteProtocolError("The response headers are too long.", request=request) from None
                status, reason, headers, length, chunked, keep = _lean_parse_head(head, request)
                if status >= 200 or status == 101:
                    break
                if timeout is not None:
                    budget.reschedule(loop.time() + timeout)
            if request.method == "HEAD" or status in _LEAN_NO_BODY or status < 200:
                content = b""
            elif chunked:
                content = await _lean_chunked(reader, request, budget, timeout)
            elif length is not None:
                parts = []
                while length > 0:
                    if timeout is not None:
                        budget.reschedule(loop.time() + timeout)
                    data = await reader.read(min(length, _LEAN_READ))
                    if not data:
                        raise httpx.RemoteProtocolError(
                            f"peer closed connection without sending complete message body: received "
                            f"{sum(map(len, parts))} bytes, {length} more expected", request=request)
                    parts.append(data)
                    length -= len(data)
                content = parts[0] if len(parts) == 1 else b"".join(parts)
            else:  # neither: the body lasts until the server closes the connection
                parts = []
                while data := await reader.read(_LEAN_READ):
                    parts.append(data)
                    if timeout is not None:
                        budget.reschedule(loop.time() + timeout)
                content, keep = b"".join(parts), False
    except TimeoutError:
        raise httpx.ReadTimeout("Reading the response timed out.", request=request) from None
    except httpx.TransportError:
        raise
    except OSError as exc:  # ConnectionResetError and its kin, TLS errors
        raise httpx.ReadError(str(exc) or type(exc).__name__, request=request) from exc
    return status, reason, headers, content, keep and status != 101


def _lean_parse_head(head: bytes, request: httpx.Request
                     ) -> tuple[int, bytes, list[tuple[bytes, bytes]], int | None, bool, bool]:
    """(status, reason, headers, Content-Length or None, chunked, keep-alive) of an answer's head."""
    lines = head[:-4].split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    code, _, reason = rest.partition(b" ")
    if version not in (b"HTTP/1.1", b"HTTP/1.0") or len(code) != 3 or not code.isdigit():
        raise httpx.RemoteProtocolError(f"Not an HTTP/1.1 response: {lines[0][:40]!r}", request=request)
    headers: list[tuple[bytes, bytes]] = []
    length: int | None = None
    chunked = close = keep_alive = False
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name[-1:] in b" \t" or name[:1] in b" \t":
            raise httpx.RemoteProtocolError(f"Malformed response header: {line[:40]!r}", request=request)
        value = value.strip(b" \t")
        headers.append((name, value))
        if len(name) in (10, 14, 17):
            lowered = name.lower()
            if lowered == b"content-length":
                if not value.isdigit() or (length is not None and length != int(value)):
                    raise httpx.RemoteProtocolError(f"Bad Content-Length: {value[:20]!r}", request=request)
                length = int(value)
            elif lowered == b"transfer-encoding":
                chunked = value.lower().endswith(b"chunked")
            elif lowered == b"connection":
                tokens = value.lower()
                close = close or b"close" in tokens
                keep_alive = b"keep-alive" in tokens
    keep = not close and (version == b"HTTP/1.1" or keep_alive)
    return int(code), reason, headers, None if chunked else length, chunked, keep


async def _lean_chunked(reader: asyncio.StreamReader, request: httpx.Request, budget: asyncio.Timeout,
                        timeout: float | None) -> bytes:
    loop = asyncio.get_running_loop()
    parts = []
    try:
        while True:
            if timeout is not None:
                budget.reschedule(loop.time() + timeout)
            size_text = (await reader.readuntil(b"\r\n")).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise httpx.RemoteProtocolError(f"Bad chunk size: {size_text[:20]!r}", request=request) from None
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers: dropped
                    pass
                return b"".join(parts)
            while size > 0:
                data = await reader.read(min(size, _LEAN_READ))
                if not data:
                    raise asyncio.IncompleteReadError(b"", size)
                parts.append(data)
                size -= len(data)
                if timeout is not None:
                    budget.reschedule(loop.time() + timeout)
            if await reader.readexactly(2) != b"\r\n":
                raise httpx.RemoteProtocolError("A chunk does not end with CRLF.", request=request)
    except asyncio.IncompleteReadError:
        raise httpx.RemoteProtocolError("peer closed connection without sending complete message body: "
                                        "incomplete chunked read", request=request) from None
    except asyncio.LimitOverrunError:
        raise httpx.RemoteProtocolError("A chunk size line is too long.", request=request) from None
