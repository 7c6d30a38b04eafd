"""automator.http against a real loopback server: no redirects, no env proxies, a total deadline, keep-alive."""
from __future__ import annotations

import asyncio
import gzip
import json
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from automator import http
from automator.http import DeadlineExceeded, default_engine, new_client, new_transport, send

TRICKLE_BYTES = 20  # a byte every TRICKLE_EVERY_S: the slow body lasts 4 s at most, whoever stops listening
TRICKLE_EVERY_S = 0.2
UNREACHABLE_PROXY = "http://127.0.0.1:9"  # loopback "discard" port: nothing listens, the connect is refused

ENGINES = list(http.ENGINES)  # every exchange below is made on each engine an operator may choose


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the CRMs' servers do
    disable_nagle_algorithm = True  # headers and body go in two writes: without it each answer waits 40 ms
    server: Server

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.accepted += 1

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, status: int, body: bytes = b"", **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def _route(self) -> None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = self._chunked_body()
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.server.lock:
            self.server.seen.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                                     body))
        if self.path == "/redirect":
            self._answer(302, Location="/ok")
        elif self.path == "/trickle":
            self.send_response(200)
            self.send_header("Content-Length", str(TRICKLE_BYTES))
            self.end_headers()
            self.wfile.flush()
            try:
                for _ in range(TRICKLE_BYTES):
                    time.sleep(TRICKLE_EVERY_S)  # the behaviour under test: a server that answers slowly
                    self.wfile.write(b"x")
                    self.wfile.flush()
            except OSError:  # the client gave up: that is the point
                self.close_connection = True
        elif self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for chunk in (b'{"framing": ', b'"chunked"', b"}"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        elif self.path == "/until-close":  # no length: the body ends when the server closes the connection
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b'{"framing": "until close"}')
            self.close_connection = True
        elif self.path == "/gzip":
            packed = gzip.compress(b'{"framing": "gzip"}')
            self._answer(200, packed, Content_Encoding="gzip", Content_Type="application/json")
        elif self.path == "/slow":
            time.sleep(0.1)  # the behaviour: answers that take a while, so that requests overlap and need sockets
            self._answer(200, b'{"ok":true}', Content_Type="application/json")
        elif self.path == "/no-content":
            self.send_response(204)
            self.end_headers()
        elif self.path == "/echo":
            self._answer(200, json.dumps({"got": body.decode()}).encode(), Content_Type="application/json")
        elif self.path == "/set-cookie":
            self._answer(200, b"{}", Set_Cookie="session=s1; Path=/")
        elif self.path == "/close-after":
            # Looks reusable (no "Connection: close"), then the server drops it, as an idle keep-alive expires.
            self._answer(200, b'{"ok":true}', Content_Type="application/json")
            self.close_connection = True
            with self.server.lock:
                self.server.dropping.add(self.request)
        else:
            self._answer(200, b'{"ok":true}', Content_Type="application/json")

    def do_HEAD(self) -> None:  # a length, and no body after it
        self.send_response(200)
        self.send_header("Content-Length", "123")
        self.end_headers()

    def _chunked_body(self) -> bytes:
        data = b""
        while (size := int(self.rfile.readline().strip(), 16)):
            data += self.rfile.read(size)
            self.rfile.readline()
        self.rfile.readline()
        return data

    do_GET = do_POST = _route


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.lock = threading.Lock()
        self.accepted = 0
        self.seen: list[tuple[str, str, dict[str, str], bytes]] = []
        self.dropping: set[socket.socket] = set()
        self.dropped = threading.Event()  # set once a /close-after connection is closed on the server's side

    def shutdown_request(self, request: Any) -> None:
        super().shutdown_request(request)  # the socket is closed: its FIN is on its way to the client
        with self.lock:
            if request in self.dropping:
                self.dropping.discard(request)
                self.dropped.set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    srv = Server()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(5)


def _length(request: bytes) -> int:
    for line in request.partition(b"\r\n\r\n")[0].split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def _misbehave(listener: socket.socket, how: str) -> None:
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:  # the fixture closed the listener
            return
        with conn:
            conn.settimeout(2)
            # Read the whole request: closing with unread bytes would send a reset instead of a hang-up.
            request = b""
            while b"\r\n\r\n" not in request or len(request.partition(b"\r\n\r\n")[2]) < _length(request):
                if not (data := conn.recv(65536)):
                    break
                request += data
            if how == "partial":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\nabc")
            elif how == "reset":  # linger 0: close sends RST instead of FIN
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif how == "garbage":
                conn.sendall(b"SSH-2.0-OpenSSH\r\n\r\n")


@pytest.fixture(scope="module")
def misbehaving() -> Iterator[dict[str, str]]:
    """Servers that fail in one way each, by name; "refused" is a port nothing listens on."""
    urls, listeners = {}, []
    for how in ("hang-up", "partial", "reset", "garbage"):
        listener = socket.create_server(("127.0.0.1", 0))
        threading.Thread(target=_misbehave, args=(listener, how), daemon=True).start()
        listeners.append(listener)
        urls[how] = f"http://127.0.0.1:{listener.getsockname()[1]}/"
    with socket.create_server(("127.0.0.1", 0)) as free:
        urls["refused"] = f"http://127.0.0.1:{free.getsockname()[1]}/"
    try:
        yield urls
    finally:
        for listener in listeners:
            listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept(); close alone may not
            listener.close()


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 10))  # no test may hang the suite


def client_on(engine: str, server: Server, **kwargs: Any) -> httpx.AsyncClient:
    return new_client(base_url=server.url, transport=new_transport(engine, **kwargs))


@pytest.mark.parametrize("engine", ENGINES)
def test_a_redirect_comes_back_as_it_is(engine: str, server: Server) -> None:
    async def go() -> httpx.Response:
        async with client_on(engine, server) as client:
            return await send(client, "POST", "/redirect", json={"a": 1}, deadline=5)

    before = len(server.seen)
    response = run(go())
    assert response.status_code == 302
    assert response.headers["location"] == "/ok"
    assert [path for _, path, _, _ in server.seen[before:]] == ["/redirect"]


@pytest.mark.parametrize("engine", ENGINES)
def test_proxy_variables_are_ignored(engine: str, server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(name, UNREACHABLE_PROXY)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)

    async def go() -> httpx.Response:
        # The control: a client that trusts the environment does go to the dead proxy.
        async with httpx.AsyncClient(trust_env=True) as trusting:
            with pytest.raises((httpx.ConnectError, httpx.ProxyError)):
                await trusting.get(server.url + "/ok")
        async with client_on(engine, server) as client:
            return await send(client, "GET", "/ok", deadline=5)

    assert run(go()).json() == {"ok": True}


@pytest.mark.parametrize("engine", ENGINES)
def test_the_deadline_bounds_a_body_that_trickles(engine: str, server: Server) -> None:
    async def go() -> tuple[DeadlineExceeded, float, httpx.Response]:
        # One connection: the abandoned request must give its slot back, or the next one would wait for ever.
        async with client_on(engine, server, max_connections=1) as client:
            start = time.perf_counter()
            with pytest.raises(DeadlineExceeded) as caught:
                await send(client, "GET", "/trickle", deadline=0.5)
            elapsed = time.perf_counter() - start
            after = await send(client, "GET", "/ok", deadline=2)
        return caught.value, elapsed, after

    error, elapsed, after = run(go())
    assert 0.45 <= elapsed < 1.5
    assert isinstance(error, httpx.TimeoutException)  # callers that handle timeouts handle this one
    assert error.request.url.path == "/trickle"
    assert "0.5 s" in str(error)
    assert after.status_code == 200


@pytest.mark.parametrize("engine", ENGINES)
def test_a_per_read_timeout_is_httpx_own_not_the_deadline(engine: str, server: Server) -> None:
    async def go() -> None:
        async with client_on(engine, server) as client:
            with pytest.raises(httpx.TimeoutException) as caught:
                await send(client, "GET", "/trickle", timeout=0.05, deadline=3)
            assert not isinstance(caught.value, DeadlineExceeded)

    run(go())


@pytest.mark.parametrize("engine", ENGINES)
def test_keep_alive_reuses_one_connection(engine: str, server: Server) -> None:
    async def go() -> list[Any]:
        async with client_on(engine, server) as client:
            return [(await send(client, "POST", "/ok", json={"n": n}, deadline=5)).json() for n in range(25)]

    before = server.accepted
    assert run(go()) == [{"ok": True}] * 25
    assert server.accepted - before == 1


@pytest.mark.parametrize("engine", ENGINES)
def test_a_connection_the_server_dropped_is_not_reused(engine: str, server: Server) -> None:
    async def go() -> list[int]:
        async with client_on(engine, server) as client:
            server.dropped.clear()
            first = await send(client, "POST", "/close-after", json={}, deadline=5)
            # The server's close reaches us, as an idle keep-alive expiry would: the server has closed the socket
            # (on loopback its FIN is then in ours), and the loop gets a turn to notice it before the next send.
            assert await asyncio.to_thread(server.dropped.wait, 5), "the server did not close the connection"
            await asyncio.sleep(0)
            before = server.accepted
            second = await send(client, "POST", "/ok", json={}, deadline=5)
            return [first.status_code, second.status_code, server.accepted - before]

    assert run(go()) == [200, 200, 1]  # the second request on a new connection


@pytest.mark.parametrize("engine", ENGINES)
def test_httpx_alone_keeps_the_cookies(engine: str, server: Server) -> None:
    async def go() -> list[str | None]:
        # A host name, not an address: a cookie jar of the engine's own would keep cookies from a name only.
        base_url = server.url.replace("127.0.0.1", "localhost")
        async with new_client(base_url=base_url, transport=new_transport(engine)) as client:
            await send(client, "GET", "/set-cookie", deadline=5)
            await send(client, "GET", "/ok", deadline=5)
            client.cookies.clear()
            await send(client, "GET", "/ok", deadline=5)
        return [headers.get("cookie") for _, _, headers, _ in server.seen[-2:]]

    assert run(go()) == ["session=s1", None]


@pytest.mark.parametrize("engine", ENGINES)
def test_every_framing_of_a_body_is_read_whole(engine: str, server: Server) -> None:
    async def go() -> list[Any]:
        async with client_on(engine, server) as client:
            return [(await send(client, "GET", path, deadline=5)).json()
                    for path in ("/chunked", "/until-close", "/gzip", "/ok")]

    assert run(go()) == [{"framing": "chunked"}, {"framing": "until close"}, {"framing": "gzip"}, {"ok": True}]


@pytest.mark.parametrize("engine", ENGINES)
def test_the_pool_holds_at_most_max_connections(engine: str, server: Server) -> None:
    async def go() -> list[int]:
        async with client_on(engine, server, max_connections=2) as client:
            answers = await asyncio.gather(*(send(client, "GET", "/slow", deadline=5) for _ in range(6)))
            return [a.status_code for a in answers]

    before = server.accepted
    assert run(go()) == [200] * 6
    assert server.accepted - before <= 2


@pytest.mark.parametrize("engine", ENGINES)
def test_answers_without_a_body_and_a_streamed_request_body(engine: str, server: Server) -> None:
    async def chunks() -> Any:
        for part in (b"one ", b"two ", b"three"):
            yield part

    async def go() -> list[Any]:
        async with client_on(engine, server) as client:
            head = await send(client, "HEAD", "/ok", deadline=5)
            empty = await send(client, "GET", "/no-content", deadline=5)
            streamed = await send(client, "POST", "/echo", content=chunks(), deadline=5)
            after = await send(client, "GET", "/ok", deadline=5)  # the connection is still in step
            return [(head.status_code, head.content, head.headers["content-length"]), (empty.status_code, empty.content),
                    streamed.json(), after.json()]

    assert run(go()) == [(200, b"", "123"), (204, b""), {"got": "one two three"}, {"ok": True}]


def test_a_client_with_event_hooks_goes_through_httpx_whole(server: Server) -> None:
    seen: list[str] = []

    async def hook(request: httpx.Request) -> None:
        seen.append(request.url.path)

    async def go() -> int:
        async with new_client(base_url=server.url) as client:
            client.event_hooks["request"] = [hook]
            return (await send(client, "GET", "/ok", deadline=5)).status_code

    assert run(go()) == 200 and seen == ["/ok"]


# httpcore's classes: the outbox tells "never connected" (ConnectError) from "may have been received".
FAILURES = {"refused": httpx.ConnectError, "hang-up": httpx.RemoteProtocolError,
            "partial": httpx.RemoteProtocolError, "reset": httpx.ReadError, "garbage": httpx.RemoteProtocolError}


@pytest.mark.parametrize("engine", ENGINES)
def test_every_engine_raises_httpx_own_class_for_each_failure(engine: str, misbehaving: dict[str, str]) -> None:
    async def go() -> dict[str, type[BaseException]]:
        raised: dict[str, type[BaseException]] = {}
        async with new_client(transport=new_transport(engine)) as client:
            for how, url in misbehaving.items():
                try:
                    await send(client, "POST", url, json={}, deadline=3)
                except Exception as exc:
                    raised[how] = type(exc)
        return raised

    raised = run(go())
    assert {how: raised.get(how) for how in FAILURES} == FAILURES


def test_requests_carry_the_json_body_and_the_client_headers(server: Server) -> None:
    async def go() -> None:
        async with new_client(base_url=server.url, headers={"X-Api-Key": "k1"}) as client:
            await send(client, "POST", "/ok", json={"deal": 7}, params={"x": "1"}, deadline=5)

    before = len(server.seen)
    run(go())
    [(method, path, headers, body)] = server.seen[before:]
    assert (method, path, json.loads(body)) == ("POST", "/ok?x=1", {"deal": 7})
    assert headers["x-api-key"] == "k1" and headers["content-type"] == "application/json"


def test_an_injected_mock_transport_answers_instead_of_the_network() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"id": 42})

    async def go() -> httpx.Response:
        async with new_client(base_url="https://crm.invalid/rest", transport=httpx.MockTransport(handler),
                              headers={"Authorization": "Bearer t"}) as client:
            return await send(client, "POST", "/crm.deal.add", json={"title": "x"}, deadline=1)

    response = run(go())
    assert response.status_code == 201 and response.json() == {"id": 42}
    [request] = seen
    assert str(request.url) == "https://crm.invalid/rest/crm.deal.add"
    assert request.headers["authorization"] == "Bearer t" and json.loads(request.content) == {"title": "x"}


def test_the_deadline_also_bounds_an_injected_transport() -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)  # the behaviour: a transport that takes longer than the deadline
        return httpx.Response(200)

    async def go() -> None:
        async with new_client(transport=httpx.MockTransport(slow)) as client:
            with pytest.raises(DeadlineExceeded):
                await send(client, "GET", "https://crm.invalid/", deadline=0.05)

    run(go())


def test_the_client_does_not_follow_redirects_or_trust_the_environment() -> None:
    client = new_client()
    assert client.follow_redirects is False and client.trust_env is False
    assert client.timeout == httpx.Timeout(10.0)


def test_the_default_engine_is_ours_and_falls_back_to_httpx_without_httptools(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from automator.http1 import Http1Transport

    monkeypatch.delenv(http.ENGINE_VARIABLE, raising=False)
    assert default_engine() == "httptools"  # a dependency: always there
    assert isinstance(new_client()._transport, Http1Transport)
    # A platform without httptools' wheel still gets a client, on httpx's own transport.
    monkeypatch.setitem(sys.modules, "httptools", None)  # makes `import httptools` raise ImportError
    assert isinstance(new_transport("httptools"), httpx.AsyncHTTPTransport)
    assert isinstance(new_client()._transport, httpx.AsyncHTTPTransport)


@pytest.mark.parametrize("written, engine", [("httpx", "httpx"), (" HTTPX ", "httpx"), ("httptools", "httptools"),
                                             ("", "httptools")])
def test_the_operator_chooses_the_engine_with_one_variable(monkeypatch: pytest.MonkeyPatch, written: str,
                                                            engine: str) -> None:
    from automator.http1 import Http1Transport

    monkeypatch.setenv(http.ENGINE_VARIABLE, written)
    assert default_engine() == engine
    made = new_client()._transport
    assert isinstance(made, Http1Transport if engine == "httptools" else httpx.AsyncHTTPTransport)
    assert type(new_transport()) is type(made)


def test_an_engine_variable_naming_no_engine_is_refused_with_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(http.ENGINE_VARIABLE, "aiohttp")
    with pytest.raises(ValueError, match="AUTOMATOR_HTTP_ENGINE='aiohttp' names no HTTP engine; one of httptools, httpx"):
        default_engine()


def test_an_unknown_engine_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown HTTP engine"):
        new_transport("curl")


def test_the_httptools_engine_speaks_tls_and_checks_the_certificate() -> None:
    """Production calls are https: the certificate is verified against the trusted roots, and an answer arrives
    through TLS as through plain TCP."""
    import ssl

    trustme = pytest.importorskip("trustme")
    from automator.http1 import Http1Transport

    authority = trustme.CA()
    certificate = authority.issue_cert("localhost", "127.0.0.1")
    srv = Server()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate.configure_cert(server_context)
    srv.socket = server_context.wrap_socket(srv.socket, server_side=True)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    url = f"https://localhost:{srv.server_address[1]}"
    trusting = ssl.create_default_context()
    authority.configure_trust(trusting)

    async def go() -> tuple[Any, type[BaseException] | None]:
        async with new_client(base_url=url, transport=Http1Transport(ssl_context=trusting)) as client:
            answer = (await send(client, "POST", "/ok", json={"a": 1}, deadline=5)).json()
        failure = None
        async with new_client(base_url=url, transport=Http1Transport()) as client:  # the usual roots only
            try:
                await send(client, "GET", "/ok", deadline=5)
            except httpx.HTTPError as exc:
                failure = type(exc)
        return answer, failure

    try:
        assert run(go()) == ({"ok": True}, httpx.ConnectError)
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(5)


def test_the_daemon_refuses_to_start_on_an_engine_variable_naming_no_engine(tmp_path: Any) -> None:
    import os
    import subprocess

    env = {**os.environ, http.ENGINE_VARIABLE: "curl"}
    done = subprocess.run([sys.executable, "-m", "automator", "run", "--config", str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "AUTOMATOR_HTTP_ENGINE='curl' names no HTTP engine; one of httptools, httpx (nothing was started)" \
        in done.stderr
