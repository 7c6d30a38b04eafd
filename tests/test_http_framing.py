"""automator/http1.py's framing checked against h11, a well-kept HTTP/1.1 parser, by hypothesis: whatever the
transport writes to a real loopback socket parses, as a server reads it, as exactly the one request that was
meant (method, target, headers, body, nothing left over), or the request is refused before any byte is sent;
and it is refused exactly when it could not be written as meant."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import h11
import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from automator.http1 import Http1Transport
from automator.http_safety import UnsafeRequest

TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
HOSTILE = "\r\n\x00 \t:\x01\x7f"

# Methods: plain ones, other tokens, and text that would end the request line early.
methods = st.one_of(
    st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "PROPFIND"]),
    st.text(alphabet=TOKEN_CHARS, min_size=1, max_size=8),
    st.text(alphabet=TOKEN_CHARS + HOSTILE + "/", min_size=1, max_size=12),
    st.just("GET /smuggled-admin HTTP/1.1\r\nHost: x\r\n\r\nGET"),
)
# Paths as a rule might render them (httpx percent-encodes or refuses what a target cannot hold).
paths = st.one_of(st.text(alphabet="abc/?=&%#é", max_size=16), st.text(alphabet="abc/?=&" + HOSTILE, max_size=8)
                  ).map(lambda text: "/" + text)
names = st.one_of(
    st.sampled_from([b"X-Trace", b"Authorization", b"content-length", b"Content-Length", b"transfer-encoding",
                     b"Host", b"x-a"]),
    st.binary(max_size=10),
    st.text(alphabet=TOKEN_CHARS + HOSTILE, min_size=1, max_size=10).map(str.encode),
)
# What a well-behaved rule renders: tokens for names, visible text, spaces, tabs and obs-text for values.
clean_names = st.one_of(st.sampled_from([b"X-Trace", b"Authorization", b"x-a"]),
                        st.text(alphabet=TOKEN_CHARS, min_size=1, max_size=10).map(str.encode))
clean_values = st.binary(max_size=16).map(lambda value: bytes(b for b in value if b >= 0x20 and b != 0x7f or b == 9))
values = st.one_of(
    st.text(alphabet="ab 1\t,;=/", max_size=16).map(str.encode),
    st.text(alphabet="ab 1\t,;=" + HOSTILE, max_size=16).map(str.encode),
    st.binary(max_size=16),  # obs-text (0x80-0xff) included: HTTP allows it in a value
    st.just(b"a\r\nContent-Length: 0\r\n\r\nGET /smuggled-admin HTTP/1.1\r\nHost: x\r\n\r\n"),
)
# Past 64 KiB the transport writes the body apart from the head: one such body, CR, LF and all, generated once.
bodies = st.one_of(st.binary(max_size=64), st.just(b""), st.just(bytes(range(256)) * 274))


@dataclass
class Meant:
    method: str
    path: str
    headers: list[tuple[bytes, bytes]]
    body: bytes


@st.composite
def requests(draw: st.DrawFn) -> Meant:
    body = draw(bodies)
    hostile = draw(st.booleans())
    headers = draw(st.lists(st.tuples(names, values) if hostile else st.tuples(clean_names, clean_values), max_size=4))
    if draw(st.booleans()):  # a Content-Length of the caller's, sometimes right
        headers.append((b"Content-Length", draw(st.sampled_from([b"%d" % len(body), b" %d " % len(body), b"0"]))))
    return Meant(draw(methods) if hostile else draw(st.sampled_from(["GET", "POST", "PUT"])), draw(paths), headers,
                 body)


CONTROLS = frozenset(range(0x20)) - {0x09} | {0x7f}


def writable(request: httpx.Request, body: bytes) -> bool:
    """The oracle: h11 accepts the head (values without the whitespace around them, which is no part of a
    value), no value holds a control character other than HTAB (RFC 9110 5.5, which llhttp keeps; h11 lets
    0x01-0x08 and the like through), and the framing is the transport's: one Host, no Transfer-Encoding for a
    known body, any Content-Length equal to the body's."""
    raw = request.headers.raw
    if any(CONTROLS.intersection(value) for _, value in raw):
        return False
    try:
        h11.Request(method=request.method.encode(), target=request.url.raw_path,
                    headers=[(name, value.strip(b" \t")) for name, value in raw])
    except (h11.LocalProtocolError, UnicodeEncodeError):
        return False
    names = [name.lower() for name, _ in raw]
    lengths = [value.strip(b" \t") for name, value in raw if name.lower() == b"content-length"]
    return (names.count(b"host") == 1 and b"transfer-encoding" not in names
            and all(length == b"%d" % len(body) for length in lengths) and len(lengths) <= 1)


@dataclass
class Received:
    """What the loopback server got: how many connections it accepted, and the bytes of each one closed."""

    connections: int = 0
    wires: list[bytes] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)  # set when a connection's bytes are in `wires`

    async def nothing_before(self, port: int) -> bool:
        """True when no connection reached the server before one we make now: connections are accepted in the
        order they came, so once ours has been accepted and closed, any earlier one was accepted too."""
        self.closed.clear()
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()
        await writer.wait_closed()
        async with asyncio.timeout(5):
            await self.closed.wait()
        return self.connections == 1 and self.wires == [b""]


async def _serve(received: Received) -> asyncio.Server:
    """A loopback server that answers 200 to the first whole request h11 reads on a connection and keeps every
    byte of the connection until the client closes it."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.connections += 1
        conn = h11.Connection(h11.SERVER)
        data = bytearray()
        answered = False
        while chunk := await reader.read(1 << 16):
            data += chunk
            if answered:
                continue
            conn.receive_data(chunk)
            try:
                while (event := conn.next_event()) not in (h11.NEED_DATA, h11.PAUSED):
                    answered = answered or isinstance(event, h11.EndOfMessage)
            except h11.RemoteProtocolError:
                answered = True
                writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                break
            if answered:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        received.wires.append(bytes(data))
        received.closed.set()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def parse_one(wire: bytes) -> tuple[h11.Request, bytes, bytes]:
    """The one request on `wire` as h11 reads it as a server: the request, its body, and what is left after it."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(wire)
    conn.receive_data(b"")
    request = conn.next_event()
    assert isinstance(request, h11.Request), request
    body = b""
    while isinstance(event := conn.next_event(), h11.Data):
        body += event.data
    assert isinstance(event, h11.EndOfMessage), event
    left, _closed = conn.trailing_data
    return request, body, left


async def _exchange(meant: Meant) -> str:
    """Send `meant` through Http1Transport to a loopback server and check what arrived; what happened to it."""
    received = Received()
    server = await _serve(received)
    port = server.sockets[0].getsockname()[1]
    try:
        request = httpx.Request(meant.method, f"http://127.0.0.1:{port}{meant.path}", headers=meant.headers,
                                content=meant.body, extensions={"timeout": {"read": 5, "connect": 5, "pool": 5}})
    except (httpx.InvalidURL, UnicodeError):
        return "refused by httpx"  # while building it: nothing can have been sent
    transport = Http1Transport()
    try:
        response = await transport.handle_async_request(request)
    except UnsafeRequest:
        assert not writable(request, meant.body), f"refused, but h11 reads it as meant: {request.headers.raw}"
        assert await received.nothing_before(port), "refused, yet a connection was made"
        return "refused by http1"
    finally:
        await transport.aclose()
    assert writable(request, meant.body), f"sent, but not writable as meant: {request.method!r} {request.headers.raw}"
    assert response.status_code == 200
    async with asyncio.timeout(5):
        await received.closed.wait()  # the transport's close ended the connection: its bytes are all in
    server.close()
    (wire,) = received.wires
    parsed, body, left = parse_one(wire)
    assert parsed.method == request.method.encode() and parsed.target == request.url.raw_path
    assert list(parsed.headers.raw_items()) == [(name, value.strip(b" \t")) for name, value in request.headers.raw]
    assert body == meant.body and left == b""
    return "sent"


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests())
def test_what_http1_writes_parses_as_exactly_the_request_meant(meant: Meant) -> None:
    event(asyncio.run(_exchange(meant)))  # --hypothesis-show-statistics: how many were sent, how many refused


@pytest.mark.parametrize("meant", [
    Meant("POST", "/ok", [(b"X-Trace", b"a\r\nContent-Length: 0\r\n\r\nGET /smuggled-admin HTTP/1.1\r\nHost: x\r\n\r\n")],
          b'{"a": 1}'),
    Meant("GET /smuggled-admin HTTP/1.1\r\nHost: x\r\n\r\nGET", "/ok", [], b""),
    Meant("POST", "/ok", [(b"Content-Length", b"0")], b"GET /smuggled-admin HTTP/1.1\r\nHost: x\r\n\r\n"),
    Meant("POST", "/ok", [(b"Transfer-Encoding", b"chunked")], b"0\r\n\r\nGET /smuggled-admin HTTP/1.1\r\n\r\n"),
])
def test_the_smuggling_examples_are_refused(meant: Meant) -> None:
    # The property test's own oracle is checked on known cases, so that it cannot pass by accepting everything.
    request = httpx.Request(meant.method, "http://127.0.0.1:9/ok", headers=meant.headers, content=meant.body)
    assert not writable(request, meant.body)
    with pytest.raises(UnsafeRequest):
        asyncio.run(Http1Transport().handle_async_request(request))


def test_a_plain_request_is_written_as_meant() -> None:
    meant = Meant("PATCH", "/deals/5?x=1", [(b"X-Trace", b"a\tb \xff"), (b"Authorization", b"Bearer t")], b"{}")
    assert asyncio.run(_exchange(meant)) == "sent"
