"""The daemon's ASGI app in-process: a real Daemon whose store threads and group commit are started by hand (as
serve() does), driven by httpx through ASGITransport. A webhook is acked 200 only once its events are journaled;
every refusal journals nothing and counts in events_rejected by reason."""
from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from automator.clock import FakeClock
from automator.config.load import builtin_connectors, load_project
from automator.config.project import Project
from automator.connector import Connector, Inbound
from automator.daemon.options import daemon_options
from automator.daemon.process import Daemon
from automator.model import EntityRef, Event
from test_storethread import hold_the_write_lock

NOW = datetime(2026, 3, 2, 7, 0, tzinfo=timezone.utc)
TOKEN = "s3cret-token"
CONFIG = """\
timezone: Europe/Moscow
connectors:
  crm: {type: local, secret: "${env:WEB_TEST_CRM_SECRET}"}
  open: {type: local}
  portal: {type: bitrix24, webhook_url: "${env:WEB_TEST_B24_URL}", application_token: "${env:WEB_TEST_B24_TOKEN}"}
  unsigned: {type: unsigned}
  leaky: {type: leaky, secret: "${env:WEB_TEST_LEAKY_SECRET}", api_key: "${env:WEB_TEST_LEAKY_KEY}"}
daemon: {max_body: 2048}
"""
LEAKY_SECRET = "leaky-secret-4242"
LEAKY_KEY = "leaky-api-key-7777"
B24_TOKEN = "b24-application-token-0123456789"
B24_URL = "https://clinic.bitrix24.ru/rest/1/b24-inbound-key-9876/"
RULES = """
rules:
  - id: nps
    when: {event: nps.received}
    do:
      - notify: {to: admin, text: "nps"}
"""


class Broken(Connector):
    type = "broken"
    webhook_auth = ("secret",)

    def parse(self, request: Inbound) -> list[Event]:
        return [1 / 0]  # type: ignore[list-item]


class Unstorable(Connector):
    """Reads what its request names: an event holding a lone surrogate (as Python's json reads `"\\ud800"`),
    or one whose id no SQLite column holds (an integer past 64 bits, a connector's bug)."""

    type = "unstorable"
    webhook_auth = ("secret",)  # settings that authenticate (the test sends none: it is about storing)

    def parse(self, request: Inbound) -> list[Event]:
        if request.query.get("what") == "huge":
            return [Event(id=2 ** 70, type="nps.received", at=NOW)]  # type: ignore[arg-type]
        return [Event(id="lone-1", type="nps.received", at=NOW, entity=EntityRef("client", "7\ud800"),
                      data={"comment": "ok \ud83d", "score": float("nan"), "list": ["\udc00"]})]


class Unsigned(Connector):
    """A third-party type that reads webhooks but names no setting that authenticates them."""

    type = "unsigned"

    def parse(self, request: Inbound) -> list[Event]:
        raise AssertionError("never reached: the daemon refuses first")


class Leaky(Connector):
    """A type whose refusals and crashes quote its own secret, as a careless parser would."""

    type = "leaky"
    webhook_auth = ("secret",)

    def parse(self, request: Inbound) -> list[Event]:
        from automator.errors import InboundRejected

        if request.query.get("crash"):
            raise RuntimeError(f"could not call https://api.example/{self.config['api_key']}/x")
        raise InboundRejected(400, f"bad body for secret {self.config['secret']} and key {self.config['api_key']} "
                                   f"(or {request.body.decode()})")


TYPES = {**builtin_connectors(), "unsigned": Unsigned, "leaky": Leaky}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    root = tmp_path_factory.mktemp("web-project")
    (root / "automator.yaml").write_text(CONFIG)
    (root / "rules").mkdir()
    (root / "rules" / "nps.yaml").write_text(RULES)
    loaded, problems = load_project(root, connector_types=TYPES)
    assert loaded is not None, problems
    return loaded


@pytest.fixture
def daemon(project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Daemon:
    monkeypatch.setenv("WEB_TEST_CRM_SECRET", TOKEN)
    monkeypatch.setenv("WEB_TEST_B24_URL", B24_URL)
    monkeypatch.setenv("WEB_TEST_B24_TOKEN", B24_TOKEN)
    monkeypatch.setenv("WEB_TEST_LEAKY_SECRET", LEAKY_SECRET)
    monkeypatch.setenv("WEB_TEST_LEAKY_KEY", LEAKY_KEY)
    options = daemon_options(project.root, project.config, db_path=tmp_path / "web.db", synchronous="NORMAL",
                             reload=False)
    d = Daemon(project, options, clock=FakeClock(NOW), connector_types=TYPES)
    assert d.options.max_body == 2048  # from `daemon: {max_body}` of automator.yaml
    return d


Scenario = Callable[[httpx.AsyncClient, Daemon], Awaitable[None]]


def serve(daemon: Daemon, scenario: Scenario, *, raise_app_exceptions: bool = True, group: bool = False) -> None:
    """What Daemon.serve() sets up for the web app (its parts, their store threads, group commit, connectors),
    then the scenario against the app, then the same teardown. `group`: the journal's writer groups calls, as it
    does with an engine process."""
    async def main() -> None:
        daemon.open(group=group)
        appender = asyncio.create_task(daemon.admission.run())
        try:
            daemon.running.connectors = await daemon.connectors_of(daemon.project)
            transport = httpx.ASGITransport(app=daemon.web_app(), raise_app_exceptions=raise_app_exceptions)
            async with httpx.AsyncClient(transport=transport, base_url="http://daemon") as client:
                async with asyncio.timeout(10):
                    await scenario(client, daemon)
        finally:
            daemon.admission.close()
            await appender
            daemon.close()

    asyncio.run(main())


def journal(daemon: Daemon) -> list[dict[str, Any]]:
    store = daemon.journal.store
    return daemon.journal.executor.submit(
        lambda: [store.journal_event(r["id"]) for r in store.db.query("select id from journal order by seq")]
    ).result()


def rejected(daemon: Daemon, connector: str | None, reason: str) -> float:
    """events_rejected for a reason (and a connector, or summed over all connectors)."""
    total = 0.0
    for metric in daemon.metrics.registry.collect():
        for sample in metric.samples:
            if sample.name == "automator_events_rejected_total" and sample.labels["reason"] == reason and \
                    (connector is None or sample.labels["connector"] == connector):
                total += sample.value
    return total


def counter(daemon: Daemon, name: str, connector: str) -> float:
    return daemon.metrics.registry.get_sample_value(f"automator_{name}_total", {"connector": connector}) or 0.0


EVENT = {"event": "nps.received", "entity": {"kind": "client", "id": 7}, "data": {"score": 9}, "delivery_id": "d-1"}


def post(client: httpx.AsyncClient, body: Any, *, connector: str = "crm", token: str | None = TOKEN,
         raw: bytes | None = None, **kw: Any) -> Awaitable[httpx.Response]:
    headers = {"X-Automator-Token": token} if token is not None else {}
    content = raw if raw is not None else json.dumps(body).encode()
    return client.post(f"/hooks/{connector}", content=content, headers={**headers, **kw.pop("headers", {})}, **kw)


# ---- accepted --------------------------------------------------------------------------------------------------

def test_a_daemon_built_without_options_runs_as_automator_run_with_no_flags(project: Project) -> None:
    options = Daemon(project).options
    assert options == daemon_options(project.root, project.config)
    assert (options.max_body, options.db_path, options.processes) == (2048, project.root / "automator.db", 2)


def test_a_webhook_is_journaled_then_acked(daemon: Daemon) -> None:
    async def scenario(client: httpx.AsyncClient, d: Daemon) -> None:
        response = await post(client, EVENT)
        assert (response.status_code, response.json()) == (200, {"accepted": 1, "duplicates": 0})
        # By the time the 200 is read, the event is committed (another connection sees it).
        (entry,) = journal(d)
        assert entry["status"] == "pending" and entry["source"] == "crm" and entry["delivery_id"] == "d-1"
        assert entry["type"] == "nps.received" and entry["key"] == "client:7"
        assert entry["body"]["data"] == {"score": 9} and entry["received_at"].startswith("2026-03-02T07:00:00")
        assert counter(d, "events_accepted", "crm") == 1
        assert d.wake_worker.is_set()  # the worker is woken for it
        count, _sum = (d.metrics.registry.get_sample_value(f"automator_ack_seconds_{s}") for s in ("count", "sum"))
        assert count == 1

    serve(daemon, scenario)


def test_the_answer_waits_for_the_append(daemon: Daemon) -> None:
    async def scenario(client: httpx.AsyncClient, d: Daemon) -> None:
        release = asyncio.Event()
        real = d.admission.append

        async def slow(items: list[tuple[Event, str | None]]) -> list[bool]:
            await release.wait()
            return await real(items)

        d.admission.append = slow  # type: ignore[method-assign]
        request = asyncio.create_task(post(client, EVENT))
        for _ in range(50):
            await asyncio.sleep(0)
        assert not request.done()  # no ack while the events are not committed
        assert journal(d) == []
        release.set()
        response = await request
        assert response.status_code == 200 and len(journal(d)) == 1

    serve(daemon, scenario)


def test_a_failed_append_is_never_acked(daemon: Daemon) -> None:
    async def scenario(client: httpx.AsyncClient, d: Daemon) -> None:
        async def broken(items: list[tuple[Event, str | None]]) -> list[bool]:
            raise OSError("disk full")

        d.admission.append = broken  # type: ignore[method-assign]
        response = await post(client, EVENT)
        assert response.status_code == 500  # the sender retries later
        assert journal(d) == [] and counter(d, "events_accepted", "crm") == 0

    serve(daemon, scenario, raise_app_exceptions=False)


@pytest.mark.parametrize("group", [False, True])
def test_a_request_that_cannot_be_stored_fails_alone_and_its_group_is_committed(
        daemon: Daemon, group: bool, wait_until: Callable[..., Awaitable[None]]) -> None:
    async def scenario(client: httpx.AsyncClient, d: Daemon) -> None:
        d.connectors["odd"] = Unstorable("odd", {"secret": "s"})
        # Seen from outside: the requests handed to the group commit, and the groups handed to the writer.
        submitted: list[Any] = []
        written: list[Any] = []
        submit, call = d.admission.appender.submit, d.journal.call

        async def counted_submit(items: Any) -> Any:
            submitted.append(items)
            return await submit(items)

        async def counted_call(fn: Any, *args: Any, **kw: Any) -> Any:
            written.append(fn)
            return await call(fn, *args, **kw)

        d.admission.appender.submit = counted_submit  # type: ignore[method-assign]
        d.journal.call = counted_call  # type: ignore[method-assign]
        gate, held = threading.Event(), threading.Event()
        other = hold_the_write_lock(d.options.db_path, gate, held)
        first = asyncio.create_task(post(client, {**EVENT, "delivery_id": "first"}))
        await wait_until(lambda: written, 10, "its group to wait for the write lock")
        rest = [asyncio.create_task(post(client, {**EVENT, "delivery_id": f"d-{n}"})) for n in range(3)]
        rest += [asyncio.create_task(post(client, EVENT, connector="odd", params={"what": what}))
                 for what in ("huge", "lone")]
        await wait_until(lambda: len(submitted) == 6, 10, "the next requests to queue up behind it")
        assert not first.done() and not any(r.done() for r in rest) and len(written) == 1
        gate.set()
        await asyncio.to_thread(other.join)
        answers = [await first, *[await r for r in rest]]
        assert [a.status_code for a in answers] == [200, 200, 200, 200, 400, 200]
        assert answers[4].json()["error"].startswith("the events cannot be stored: Python int too large")
        entries = {e["id"]: e for e in journal(d)}
        assert len(entries) == 5 and "lone-1" in entries
        lone = entries["lone-1"]["body"]
        assert lone["entity"] == {"kind": "client", "id": "7\ufffd"}
        assert lone["data"] == {"comment": "ok \ufffd", "score": None, "list": ["\ufffd"]}
        assert rejected(d, "odd", "unstorable") == 1 and counter(d, "events_accepted", "odd") == 1
        assert d.metrics.registry.get_sample_value("automator_http_server_errors_total", {"status": "500"}) is None

    serve(daemon, scenario, group=group)


def test_a_failed_append_is_counted_as_a_server_error(daemon: Daemon) -> None:
    async def scenario(client: httpx.AsyncClient, d: Daemon) -> None:
        async def broken(items: list[tuple[Event, str | None]]) -> list[bool]:
            raise OSError("disk full")

        d.admission.append = broken  # type: ignore[method-assign]
        assert (await post(client, EVENT)).status_code == 500
        d.stopping.set()
        assert (await client.get("/healthz")).status_code == 503
        sample = d.metrics.registry.get_sample_value
        assert (sample("automator_http_server_errors_total", {"status": "500"}),
                sample("automator_http_server_errors_total", {"status": "503"})) == (1, 1)

    serve(daemon, scenario)


def test_a_batch_and_the_query_token(daemon: Daemon) -> None:
    async def scenario(client: httpx.AsyncClient, d: Daemon) -> None:
        batch = {"events": [{**EVENT, "delivery_id": f"b-{i}"} for i in range(3)]}
        response = await client.post(f"/hooks/crm?token={TOKEN}", content=json.dumps(batch).encode())
        assert (response.status_code, response.json()) == (200, {"accepted": 3, "duplicates": 0})
        assert [e["delivery_id"] for e in journal(d)] == ["b-0", "b-1", "b-2"]

    serve(daemon, scenario)


def test_duplicates_are_acked_and_dropped(daemon: Daemon) -> None:
    async def scenario(client: httpx.AsyncClient, d: Daemon) -> None:
        assert (await post(client, EVENT)).json() == {"accepted": 1, "duplicates": 0}
        again = await post(client, EVENT)
        assert (again.status_code, again.json()) == (200, {"accepted": 0, "duplicates": 1})
        # Without a delivery id, the same body twice is a duplicate by its digest.
        bare = {k: v for k, v in EVENT.items() if k != "delivery_id"}
        assert (await post(client, bare)).json() == {"accepted": 1, "duplicates": 0}
        assert (await post(client, bare)).json() == {"accepted": 0, "duplicates": 1}
        assert len(journal(d)) == 2
        assert counter(d, "events_accepted", "crm") == 2 and counter(d, "events_duplicate", "crm") == 2

    serve(daemon, scenario)


def test_concurrent_requests_are_all_journaled(daemon: Daemon) -> None:
    async def scenario(client: httpx.AsyncClient, d: Daemon) -> None:
        responses = await asyncio.gather(*(post(client, {**EVENT, "delivery_id": f"c-{i}"}) for i in range(20)))
        assert all(r.status_code == 200 and r.json()["accepted"] == 1 for r in responses)
        assert sorted(e["delivery_id"] for e in journal(d)) == sorted(f"c-{i}" for i in range(20))

    serve(daemon, scenario)


# ---- refused ---------------------------------------------------------------------------------------------------

def test_wrong_or_missing_token_is_401(daemon: Daemon) -> None:
    async def scenario(client: httpx.AsyncClient, d: Daemon) -> None:
        for token in ("wrong", None, TOKEN[:-1], TOKEN + "x", ""):
            response = await post(client, EVENT, token=token)
            assert (response.status_code, response.json()) == (401, {"error": "missing or wrong token"}), token
        assert (await client.post("/hooks/crm?token=nope", content=json.dumps(EVENT).encode())).status_code == 401
        assert journal(d) == []
        assert rejected(d, "crm", "auth") == 6

    serve(daemon, scenario)


@pytest.mark.parametrize("raw, reason", [
    (b"{not json", "the body is not JSON"),
    (b"", "event 1: expected an object"),
    (b"[]", "expected 1 to 1000 events"),
    (b'{"event": "no-dot"}', "event 1: 'event' must be a type such as booking.updated"),
    (b'[{"event": "a.b"}, 5]', "event 2: expected an object"),
    (b'\xff\xfe\x00', "the body is not JSON"),
])
def test_malformed_bodies_are_400(daemon: Daemon, raw: bytes, reason: str) -> None:
    async def scenario(client: httpx.AsyncClient, d: Daemon) -> None:
        response = await post(client, None, raw=raw)
        assert response.status_code == 400 and response.json()["error"].startswith(reason), response.text
        assert journal(d) == [] and rejected(d, "crm", "malformed") == 1

    serve(daemon, scenario)


def test_a_connector_that_crashes_while_parsing_is_a_400(daemon: Daemon) -> None:
    async def scenario(client: httpx.AsyncClient, d: Daemon) -> None:
        d.connectors["broken"] = Broken("broken", {"secret": TOKEN})
        response = await post(client, EVENT, connector="broken")
        assert (response.status_code, response.json()) == (400, {"error": "cannot read the request: ZeroDivisionError"})
        assert journal(d) == [] and rejected(d, "broken", "malformed") == 1

    serve(daemon, scenario)


def test_an_unknown_connector_is_404(daemon: Daemon) -> None:
    async def scenario(client: httpx.AsyncClient, d: Daemon) -> None:
        response = await post(client, EVENT, connector="nowhere")
        assert (response.status_code, response.json()) == (404, {"error": "no connector named 'nowhere'"})
        assert journal(d) == [] and rejected(d, None, "unknown_connector") == 1
        # Any other path is a plain 404, not counted as a refused webhook.
        assert (await client.get("/nothing-here")).json() == {"error": "not found"}
        assert rejected(d, None, "unknown_connector") == 1

    serve(daemon, scenario)


def test_other_methods_are_405(daemon: Daemon) -> None:
    async def scenario(client: httpx.AsyncClient, d: Daemon) -> None:
        for method in ("GET", "PUT", "DELETE"):
            response = await client.request(method, "/hooks/crm")
            assert (response.status_code, response.json()) == (405, {"error": "use POST"})
        assert journal(d) == [] and rejected(d, "crm", "method") == 3

    serve(daemon, scenario)


def test_a_body_over_the_limit_is_413(daemon: Daemon) -> None:
    async def scenario(client: httpx.AsyncClient, d: Daemon) -> None:
        big = {**EVENT, "data": {"pad": "x" * 3000}}
        response = await post(client, big)
        assert (response.status_code, response.json()) == (413, {"error": "the body is over 2048 bytes"})
        # Exactly at the limit is fine (it is then read and parsed).
        edge = {**EVENT, "data": {"pad": ""}}
        size = len(json.dumps(edge).encode())
        edge["data"]["pad"] = "x" * (2048 - size)
        assert len(json.dumps(edge).encode()) == 2048
        assert (await post(client, edge)).status_code == 200
        assert len(journal(d)) == 1 and rejected(d, "crm", "too_large") == 1

    serve(daemon, scenario)


def test_a_streamed_body_is_cut_off_at_the_limit_without_content_length(daemon: Daemon) -> None:
    async def scenario(client: httpx.AsyncClient, d: Daemon) -> None:
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(10):
                yield b" " * 500  # 5000 bytes of whitespace-padded JSON, sent chunked

        response = await client.post("/hooks/crm", content=chunks(), headers={"X-Automator-Token": TOKEN})
        assert response.status_code == 413
        # A lying Content-Length does not help either: what is read counts.
        app = d.web_app()
        messages = [{"type": "http.request", "body": b" " * 1500, "more_body": True},
                    {"type": "http.request", "body": b" " * 1500, "more_body": False}]
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return messages.pop(0)

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/hooks/crm", "query_string": b"",
                 "headers": [(b"content-length", b"10"), (b"x-automator-token", TOKEN.encode())]}
        await app(scope, receive, send)
        assert sent[0]["status"] == 413
        assert journal(d) == [] and rejected(d, "crm", "too_large") == 2

    serve(daemon, scenario)


def test_a_bad_content_length_is_400(daemon: Daemon) -> None:
    async def scenario(client: httpx.AsyncClient, d: Daemon) -> None:
        app = d.web_app()
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"{}", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/hooks/crm", "query_string": b"",
                 "headers": [(b"content-length", b"lots")]}
        await app(scope, receive, send)
        assert sent[0]["status"] == 400 and json.loads(sent[1]["body"]) == {"error": "unreadable request"}
        assert rejected(d, "crm", "malformed") == 1

    serve(daemon, scenario)


def test_a_stopping_daemon_refuses_with_503(daemon: Daemon) -> None:
    async def scenario(client: httpx.AsyncClient, d: Daemon) -> None:
        d.stopping.set()
        response = await post(client, EVENT)
        assert (response.status_code, response.json()) == (503, {"error": "shutting down"})
        assert journal(d) == [] and rejected(d, "crm", "stopping") == 1
        health = await client.get("/healthz")
        assert health.status_code == 503 and health.json()["status"] == "stopping"

    serve(daemon, scenario)


def test_a_connector_without_secret_accepts_no_webhook(daemon: Daemon, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario(client: httpx.AsyncClient, d: Daemon) -> None:
        for token in (None, "anything", ""):
            response = await post(client, EVENT, connector="open", token=token)
            assert (response.status_code, response.json()) == (
                401, {"error": "connector 'open' (local) has no `secret` set: it accepts no webhooks"})
        assert journal(d) == [] and rejected(d, "open", "auth") == 3
        # It still performs actions.
        result = await d.engine.call(lambda _s: d.connectors["open"].perform(
            "notify", {"to": "admin", "text": "hi"}, "k-open-1"))
        assert result.data["id"]

    serve(daemon, scenario)
    assert "webhook refused: 401 connector 'open' (local) has no `secret` set" in caplog.text


def test_a_type_that_declares_no_webhook_authentication_accepts_none(daemon: Daemon) -> None:
    async def scenario(client: httpx.AsyncClient, d: Daemon) -> None:
        response = await post(client, EVENT, connector="unsigned")
        assert response.status_code == 401 and "declares no way to authenticate" in response.json()["error"]
        assert journal(d) == [] and rejected(d, "unsigned", "auth") == 1

    serve(daemon, scenario)


def test_no_refusal_echoes_a_secret_of_the_connector(daemon: Daemon, caplog: pytest.LogCaptureFixture) -> None:
    # Its webhook secret, and any value it took from the environment (an API key), whatever the reason quotes.
    async def scenario(client: httpx.AsyncClient, d: Daemon) -> None:
        response = await post(client, EVENT, connector="leaky", raw=f"x={LEAKY_SECRET}".encode())
        assert (response.status_code, response.json()) == (
            400, {"error": "bad body for secret *** and key *** (or x=***)"})
        response = await client.post("/hooks/leaky?crash=1", content=b"{}")
        assert response.status_code == 400 and LEAKY_KEY not in response.text

    serve(daemon, scenario)
    assert "bad body for secret *** and key ***" in caplog.text and "https://api.example/***/x" in caplog.text
    assert LEAKY_SECRET not in caplog.text and LEAKY_KEY not in caplog.text


def test_bitrix24_never_echoes_its_application_token(daemon: Daemon, caplog: pytest.LogCaptureFixture) -> None:
    # A body Bitrix24 would never send, carrying the right token: as JSON, and double-encoded by a proxy.
    bodies = [json.dumps({"auth": {"application_token": B24_TOKEN}, "event": "ONCRMDEALADD"}).encode(),
              f"auth%5Bapplication_token%5D%3D{B24_TOKEN}".encode(),
              f"event=ONCRMDEALADD&auth[application_token]={B24_TOKEN}&data[FIELDS][ID]={B24_TOKEN}".encode()]

    async def scenario(client: httpx.AsyncClient, d: Daemon) -> None:
        for body in bodies:
            response = await client.post("/hooks/portal", content=body,
                                         headers={"Content-Type": "application/x-www-form-urlencoded"})
            assert response.status_code == 400, response.text
            assert B24_TOKEN not in response.text and "b24-inbound-key-9876" not in response.text
        assert journal(d) == [] and rejected(d, "portal", "malformed") == 3

    serve(daemon, scenario)
    assert "webhook refused: 400" in caplog.text
    assert B24_TOKEN not in caplog.text


# ---- health and metrics ------------------------------------------------------------------------------------------

def test_healthz_and_metrics(daemon: Daemon) -> None:
    async def scenario(client: httpx.AsyncClient, d: Daemon) -> None:
        health = await client.get("/healthz")
        assert health.status_code == 200
        assert health.json() == {"status": "ok", "rules": 1, "version": d.project.version, "load_errors": 0}
        await post(client, EVENT)
        await post(client, EVENT, token="bad")
        metrics = await client.get("/metrics")
        assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
        text = metrics.text
        assert 'automator_events_accepted_total{connector="crm"} 1.0' in text
        assert 'automator_events_rejected_total{connector="crm",reason="auth"} 1.0' in text
        assert "automator_journal_pending 1.0" in text and "automator_rules_loaded 1.0" in text
        assert (await client.post("/metrics")).status_code == 404

    serve(daemon, scenario)
