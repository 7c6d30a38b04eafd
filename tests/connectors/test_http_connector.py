"""The `http` connector against a real tiny HTTP server on 127.0.0.1, on every HTTP engine: the allow-list and
the addresses a host name resolves to, schemes, the Idempotency-Key, status codes onto the error tree
(Retry-After in both forms), transport failures, headers that would split the request, and ${env:NAME} read in
the connector's settings only."""
from __future__ import annotations

import asyncio
import email.utils
import json
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from automator.clock import FakeClock
from automator.connector import ActionResult, check_status, retry_after
from automator.connector_contract import ConnectorContract, Sandbox, Sandboxes
from automator.errors import Rejected, Retryable, Uncertain
from automator.emulator import Call, Emulator, Reply, route
from automator.http import ENGINES, new_transport
from automator_connectors.http import HttpConnector


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Server:
    port: int
    seen: list[Seen] = field(default_factory=list)
    connections: int = 0  # accepted, whether or not a request came over them

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _answer(status: int, body: bytes = b"", headers: dict[str, str] | None = None,
            content_type: str = "application/json") -> bytes:
    reason = {200: "OK", 201: "Created", 302: "Found", 404: "Not Found", 429: "Too Many Requests",
              503: "Service Unavailable"}.get(status, "X")
    head = [f"HTTP/1.1 {status} {reason}", f"Content-Length: {len(body)}", f"Content-Type: {content_type}",
            "Connection: close", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def http_date(seconds: float) -> str:
    return email.utils.format_datetime(datetime.now(timezone.utc) + timedelta(seconds=seconds), usegmt=True)


ROUTES: dict[str, Callable[[], bytes | None]] = {
    "/ok": lambda: _answer(200, json.dumps({"ok": True, "id": 5}).encode()),
    "/created-text": lambda: _answer(201, b"created, thanks", content_type="text/plain"),
    "/busy": lambda: _answer(503, b"busy", {"Retry-After": "7"}),
    "/limited": lambda: _answer(429, b"slow down", {"Retry-After": http_date(120)}),
    "/missing": lambda: _answer(404, b'{"error": "no such deal"}'),
    "/moved": lambda: _answer(302, b"", {"Location": "http://elsewhere.example/"}),
    "/hang-up": lambda: None,  # read the request, then close without a word
}


async def _handle(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    server.connections += 1
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        server.seen.append(Seen(method, path, headers, body))
        answer = ROUTES.get(path.partition("?")[0], lambda: _answer(500, b"no route"))()
        if answer is not None:
            writer.write(answer)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def run(scenario: Callable[[Server], Awaitable[None]]) -> None:
    async def main() -> None:
        box: list[Server] = []
        srv = await asyncio.start_server(lambda r, w: _handle(box[0], r, w), "127.0.0.1", 0)
        box.append(Server(srv.sockets[0].getsockname()[1]))
        async with srv:
            async with asyncio.timeout(10):
                await scenario(box[0])

    asyncio.run(main())


@pytest.fixture(params=list(ENGINES))
def engine(request: pytest.FixtureRequest) -> str:
    return request.param


def connector(engine: str, allow: list[str], **config: Any) -> HttpConnector:
    return HttpConnector("api", {"type": "http", "allow": allow, **config}, engine=engine)


async def call(c: HttpConnector, url: str, key: str = "run-1/do/0", **params: Any) -> ActionResult:
    try:
        return await c.perform("http.request", {"url": url, **params}, key)
    finally:
        await c.aclose()


# ---- success -----------------------------------------------------------------------------------------------------

def test_2xx_is_a_result_and_the_idempotency_key_is_sent(engine: str) -> None:
    async def scenario(server: Server) -> None:
        result = await call(connector(engine, ["127.0.0.1"]), f"{server.base}/ok?x=1", "run-9/do/2",
                            method="put", json={"deal": 5, "name": "Анна"})
        assert result.data == {"status": 200, "body": {"ok": True, "id": 5}} and result.events == ()
        (seen,) = server.seen
        assert (seen.method, seen.path) == ("PUT", "/ok?x=1")
        assert seen.headers["idempotency-key"] == "run-9/do/2"
        assert json.loads(seen.body) == {"deal": 5, "name": "Анна"}
        assert seen.headers["content-type"] == "application/json"

    run(scenario)


def test_a_text_answer_is_kept_as_text(engine: str) -> None:
    async def scenario(server: Server) -> None:
        result = await call(connector(engine, ["127.0.0.1"]), f"{server.base}/created-text")
        assert result.data == {"status": 201, "body": "created, thanks"}
        assert server.seen[0].method == "POST" and server.seen[0].body == b""  # POST by default, no body

    run(scenario)


def test_header_params_are_sent_as_rendered_and_never_read_the_environment(engine: str,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # A rule's params carry webhook data: `${env:…}` there is text, or a sender could have any secret sent out.
    monkeypatch.setenv("HTTP_TEST_TOKEN", "t0ken")

    async def scenario(server: Server) -> None:
        await call(connector(engine, ["127.0.0.1"], headers={"X-Static": "yes"}), f"{server.base}/ok",
                   headers={"X-Trace": "${env:HTTP_TEST_TOKEN}", "X-Plain": "p"})
        seen = server.seen[0].headers
        assert (seen["x-trace"], seen["x-plain"], seen["x-static"]) == ("${env:HTTP_TEST_TOKEN}", "p", "yes")
        assert "t0ken" not in repr(server.seen)

    run(scenario)


def test_connector_headers_resolve_env_when_the_daemon_builds_it(make_project,  # type: ignore[no-untyped-def]
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from automator.config.load import load_project
    from automator.daemon.connectors import build_connectors

    config = ('timezone: Europe/Moscow\nconnectors:\n  crm: {type: local}\n  api: {type: http, allow: ["127.0.0.1"], '
              'headers: {Authorization: "Bearer ${env:HTTP_TEST_CONF_TOKEN}"}}\n')
    project, problems = load_project(make_project("rules: []\n", config=config))
    assert project is not None, problems
    monkeypatch.setenv("HTTP_TEST_CONF_TOKEN", "from-env")
    from automator.store.sqlite import SqliteStore

    built = build_connectors(project, SqliteStore().db, FakeClock(datetime(2026, 3, 2, tzinfo=timezone.utc)))
    api = built["api"]
    assert isinstance(api, HttpConnector) and api.default_headers() == {"Authorization": "Bearer from-env"}

    async def scenario(server: Server) -> None:
        await call(api, f"{server.base}/ok")
        assert server.seen[0].headers["authorization"] == "Bearer from-env"

    run(scenario)


# ---- headers that would split the request --------------------------------------------------------------------------

SMUGGLED = "a\r\nContent-Length: 0\r\n\r\nGET /smuggled-admin HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


@pytest.mark.parametrize("headers, reason", [
    ({"X-Trace": SMUGGLED}, "the value of header X-Trace holds CR"),
    ({"X-Trace": "a\nb"}, "the value of header X-Trace holds LF"),
    ({"X-Trace": "a\x00b"}, "the value of header X-Trace holds NUL"),
    ({"X-Trace\r\nX-Admin": "1"}, "is not an HTTP token"),
    ({"X-Trace: 1\r\nX-Admin": "1"}, "is not an HTTP token"),
    ({"Content-Length": "0"}, "Content-Length says b'0', the body has 7 bytes"),
    ({"Transfer-Encoding": "chunked"}, "Transfer-Encoding is the transport's to set"),
    ({"X-Name": "Анна"}, "not ASCII"),
])
def test_a_header_that_would_split_the_request_is_refused_before_anything_is_sent(
        engine: str, headers: dict[str, str], reason: str) -> None:
    async def scenario(server: Server) -> None:
        with pytest.raises(Rejected, match=reason) as caught:
            await call(connector(engine, ["127.0.0.1"]), f"{server.base}/ok", json={"a": 1}, headers=headers)
        assert not isinstance(caught.value, (Retryable, Uncertain))  # dead at once: no retry makes it valid
        assert "Анна" not in str(caught.value) and "smuggled" not in str(caught.value)  # values are not echoed
        assert server.connections == 0 and server.seen == []

    run(scenario)


def test_a_connector_header_setting_is_checked_as_well(engine: str) -> None:
    async def scenario(server: Server) -> None:
        with pytest.raises(Rejected, match="the value of header X-Static holds LF"):
            await call(connector(engine, ["127.0.0.1"], headers={"X-Static": "a\nb"}), f"{server.base}/ok")
        assert server.connections == 0

    run(scenario)


# ---- the addresses a host name resolves to ---------------------------------------------------------------------

@pytest.mark.parametrize("allow", [["*"], ["localhost"], ["localhost", "127.0.0.2"]])
def test_a_host_name_that_resolves_to_the_loopback_is_refused(engine: str, allow: list[str]) -> None:
    async def scenario(server: Server) -> None:
        with pytest.raises(Rejected, match=r"host 'localhost' resolves to (127\.0\.0\.1|::1), a loopback address") \
                as caught:
            await call(connector(engine, allow), f"http://localhost:{server.port}/ok")
        assert not isinstance(caught.value, (Retryable, Uncertain))
        assert "allow-list names it" in str(caught.value)
        assert server.connections == 0

    run(scenario)


@pytest.mark.parametrize("named", ["127.0.0.1", "127.0.0.1:{port}", "[::ffff:127.0.0.1]:{port}"])
def test_a_host_name_reaches_the_loopback_when_the_address_is_allowed_explicitly(engine: str, named: str) -> None:
    async def scenario(server: Server) -> None:
        result = await call(connector(engine, ["*", named.format(port=server.port)]),
                            f"http://localhost:{server.port}/ok")
        assert result.data["status"] == 200 and server.seen[0].headers["host"] == f"localhost:{server.port}"

    run(scenario)


def test_an_address_allowed_for_another_port_is_refused(engine: str) -> None:
    async def scenario(server: Server) -> None:
        with pytest.raises(Rejected, match="loopback"):
            await call(connector(engine, ["*", f"127.0.0.1:{server.port + 1}"]), f"http://localhost:{server.port}/ok")
        assert server.connections == 0

    run(scenario)


def test_the_address_check_sees_the_addresses_it_connects_to(monkeypatch: pytest.MonkeyPatch) -> None:
    # DNS rebinding: a name that is public for one look-up and 127.0.0.1 for the next. The check is made on the
    # look-up the connection is made from, so the second answer is what is checked (and refused).
    answers = iter(["93.184.216.34", "127.0.0.1"])
    looked_up: list[str] = []

    async def getaddrinfo(self: Any, host: str, port: int, **kwargs: Any) -> list[Any]:
        address = next(answers)
        looked_up.append(address)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", getaddrinfo)
    c = HttpConnector("api", {"type": "http", "allow": ["*"]}, engine="httptools")
    from httpx import URL

    assert c.allowed(URL("http://rebind.example/"))  # the name itself is on the allow-list

    async def scenario(server: Server) -> None:
        next(answers)  # someone (a pre-check) saw the public answer
        with pytest.raises(Rejected, match="resolves to 127.0.0.1, a loopback address"):
            await call(c, f"http://rebind.example:{server.port}/ok")
        assert looked_up == ["127.0.0.1"] and server.connections == 0

    run(scenario)


# ---- status codes ------------------------------------------------------------------------------------------------

def test_503_is_retryable_with_retry_after_in_seconds(engine: str) -> None:
    async def scenario(server: Server) -> None:
        with pytest.raises(Retryable) as caught:
            await call(connector(engine, ["127.0.0.1"]), f"{server.base}/busy")
        assert caught.value.retry_after == 7.0
        assert "HTTP 503" in str(caught.value) and "busy" in str(caught.value)

    run(scenario)


def test_429_is_retryable_with_retry_after_as_an_http_date(engine: str) -> None:
    async def scenario(server: Server) -> None:
        with pytest.raises(Retryable) as caught:
            await call(connector(engine, ["127.0.0.1"]), f"{server.base}/limited")
        assert caught.value.retry_after is not None and 117 <= caught.value.retry_after <= 120

    run(scenario)


def test_404_is_rejected(engine: str) -> None:
    async def scenario(server: Server) -> None:
        with pytest.raises(Rejected, match="HTTP 404") as caught:
            await call(connector(engine, ["127.0.0.1"]), f"{server.base}/missing")
        assert not isinstance(caught.value, Retryable)

    run(scenario)


def test_a_redirect_is_not_followed_and_is_refused(engine: str) -> None:
    async def scenario(server: Server) -> None:
        with pytest.raises(Rejected, match="HTTP 302"):
            await call(connector(engine, ["127.0.0.1"]), f"{server.base}/moved")
        assert [s.path for s in server.seen] == ["/moved"]

    run(scenario)


class Answer:
    def __init__(self, status: int, headers: dict[str, str]) -> None:
        self.status_code = status
        self.headers = {k.lower(): v for k, v in headers.items()}
        self.text = ""


@pytest.mark.parametrize("value, expected", [
    ("120", 120.0), ("0", 0.0), ("1.5", 1.5), ("-3", 0.0), ("soon", None), ("", None),
    (email.utils.format_datetime(datetime(2000, 1, 1, tzinfo=timezone.utc), usegmt=True), 0.0),
])
def test_retry_after_forms(value: str, expected: float | None) -> None:
    assert retry_after(Answer(503, {"Retry-After": value} if value else {})) == expected


def test_check_status_boundaries() -> None:
    for ok in (200, 204, 299):
        check_status(Answer(ok, {}), "x")
    for code in (400, 401, 403, 409, 422, 300, 304):
        with pytest.raises(Rejected):
            check_status(Answer(code, {}), "x")
    for code in (429, 500, 502, 599):
        with pytest.raises(Retryable):
            check_status(Answer(code, {}), "x")


# ---- transport failures ------------------------------------------------------------------------------------------

def test_a_refused_connection_is_retryable(engine: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there

    async def scenario(server: Server) -> None:
        with pytest.raises(Retryable, match="ConnectError") as caught:
            await call(connector(engine, ["127.0.0.1"]), f"http://127.0.0.1:{port}/ok")
        assert caught.value.retry_after is None

    run(scenario)


def test_a_server_hanging_up_after_the_request_is_uncertain(engine: str) -> None:
    async def scenario(server: Server) -> None:
        with pytest.raises(Uncertain):
            await call(connector(engine, ["127.0.0.1"]), f"{server.base}/hang-up")
        assert [s.path for s in server.seen] == ["/hang-up"]  # it did arrive: the call may have been performed

    run(scenario)


# ---- allow-list and schemes --------------------------------------------------------------------------------------

def plain(allow: list[str]) -> HttpConnector:
    """For what is refused before any connection: no transport is ever made."""
    return HttpConnector("api", {"type": "http", "allow": allow})


def refused(c: HttpConnector, url: str) -> str:
    async def go() -> str:
        with pytest.raises(Rejected) as caught:
            await call(c, url)
        return str(caught.value)

    return asyncio.run(go())


@pytest.mark.parametrize("url", [
    "https://evil.example/x", "https://api.example.com.evil.example/", "https://example.com/",
    "https://notexample.com/", "http://localhost/",
])
def test_hosts_off_the_allow_list_are_refused(url: str) -> None:
    assert "allow-list" in refused(plain(["api.example.com", "*.example.com"]), url)


def test_allow_list_patterns() -> None:
    c = plain(["api.example.com", "*.crm.example", "hooks.example:8443"])
    from httpx import URL

    assert c.allowed(URL("https://api.example.com/x")) and c.allowed(URL("https://API.Example.com/x"))
    assert c.allowed(URL("https://a.crm.example/")) and c.allowed(URL("https://a.b.crm.example/"))
    assert not c.allowed(URL("https://crm.example/"))
    assert c.allowed(URL("https://hooks.example:8443/")) and not c.allowed(URL("https://hooks.example/"))
    assert not c.allowed(URL("https://hooks.example:9443/"))


@pytest.mark.parametrize("allow", [["*"], ["127.0.0.*"], ["127.*"], ["*:*"]])
def test_an_ip_literal_is_refused_unless_written_exactly(allow: list[str]) -> None:
    from httpx import URL

    c = plain(allow)
    for url in ("http://127.0.0.1/", "http://127.0.0.1:8080/", "http://10.0.0.1/", "http://[::1]/",
                "http://169.254.169.254/latest/meta-data"):
        assert not c.allowed(URL(url)), url
    assert plain(["127.0.0.1"]).allowed(URL("http://127.0.0.1:8080/"))
    assert plain(["127.0.0.1:8080"]).allowed(URL("http://127.0.0.1:8080/"))
    assert not plain(["127.0.0.1:8080"]).allowed(URL("http://127.0.0.1:9090/"))
    assert plain(["::1"]).allowed(URL("http://[::1]/"))


@pytest.mark.parametrize("host", ["127.1", "2130706433", "0x7f000001", "0x7f.1"])
def test_other_spellings_of_an_ip_are_ips_too(host: str) -> None:
    # The resolver reads these as 127.0.0.1: a wildcard pattern must not let a rule reach the loopback with them.
    from httpx import URL

    assert not plain(["*"]).allowed(URL(f"http://{host}:8080/"))
    assert not plain(["*:8080"]).allowed(URL(f"http://{host}:8080/"))


def test_an_ip_spelling_never_reaches_the_server_through_a_wildcard(engine: str) -> None:
    async def scenario(server: Server) -> None:
        for host in ("127.1", "2130706433"):
            with pytest.raises(Rejected, match="allow-list"):
                await call(connector(engine, ["*"]), f"http://{host}:{server.port}/ok")
        assert server.seen == []

    run(scenario)


@pytest.mark.parametrize("url, scheme", [
    ("ftp://api.example.com/file", "ftp"), ("file:///etc/passwd", "file"), ("gopher://api.example.com/", "gopher"),
    ("api.example.com/x", ""),
])
def test_non_http_schemes_are_refused(url: str, scheme: str) -> None:
    assert f"only http and https URLs are allowed, not {scheme!r}" in refused(plain(["*"]), url)


def test_not_a_url_is_refused() -> None:
    assert "not a URL" in refused(plain(["*"]), "http://exa mple.com:port/")


@pytest.mark.parametrize("engine_name", list(ENGINES))
def test_every_engine_checks_the_address_of_an_ip_literal_too(engine_name: str) -> None:
    # The connector refuses such URLs by its allow-list first; the transport's own check must hold without it.
    from automator.http import new_client, send
    from automator.http_safety import AddressRefused

    async def scenario(server: Server) -> None:
        seen: list[tuple[str, int, str]] = []

        def refuse(host: str, port: int, address: str) -> str:
            seen.append((host, port, address))
            return f"{address} refused"

        async with new_client(transport=new_transport(engine_name, address_check=refuse)) as client:
            with pytest.raises(AddressRefused, match="127.0.0.1 refused"):
                await send(client, "GET", f"{server.base}/ok", deadline=5)
        assert seen == [("127.0.0.1", server.port, "127.0.0.1")] and server.connections == 0

    run(scenario)


class Echo(Emulator):
    """Any web service a rule calls: answers POST /hook with what it was sent."""

    system = "echo"

    @route("POST", r"/hook")
    async def hook(self, call: Call) -> Reply:
        """Echo the JSON body."""
        return Reply(200, {"got": call.json()})


def _aim(name: str, settings: Mapping[str, Any], *, base_url: str, hook_url: str) -> tuple[dict[str, Any], Echo]:
    return {**settings, "allow": [_origin(base_url)]}, Echo()


def _origin(url: str) -> str:
    return url.split("//", 1)[1].split("/", 1)[0]


class TestContract(ConnectorContract):
    type = "http"
    written = {"allow": ["api.example.com"], "headers": {"Authorization": "${env:API_TOKEN}"}}
    secret_settings = ()

    def build(self, sandbox: Sandboxes) -> Sandbox:
        return sandbox(self.type, {}, aim=_aim)

    def unreachable(self, settings: Mapping[str, Any], url: str) -> dict[str, Any]:
        return {**settings, "allow": [_origin(url)]}

    def retarget(self, params: Mapping[str, Any], url: str) -> Mapping[str, Any]:
        return {**params, "url": f"{url}/hook"}

    async def samples(self, box: Sandbox) -> dict[str, Mapping[str, Any]]:
        return {"http.request": {"method": "POST", "url": f"{box.url}/hook", "body": {"visit": 1}}}
