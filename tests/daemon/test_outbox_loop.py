"""The daemon's outbox: classify() of failed tries, and the Outbox loop end to end on a real store thread with
fake connectors and a FakeClock (Retry-After honoured without sleeping, rate limits kept)."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from automator.clock import FakeClock
from automator.connector import ActionResult, Connector, action
from automator.daemon.metrics import Metrics
from automator.daemon.outbox import Outbox, classify
from automator.daemon.retry import RetryPolicy
from automator.daemon.storethread import StoreThread
from automator.errors import Rejected, Retryable, Uncertain
from automator.model import Decision, Effect, EntityRef, Event
from automator.store.base import Claimed
from automator.store.sqlite import SqliteStore
from automator_connectors.local import LocalConnector

NOW = datetime(2026, 3, 2, 7, 0, tzinfo=timezone.utc)


def effect(key: str, *, connector: str = "api", delivery: str = "at_least_once", action_: str = "task.create",
           depth: int = 0) -> Effect:
    return Effect(key=key, run_id=f"run-{key}", rule_id="rule-a", action=action_, connector=connector,
                  params={"assignee": "admin", "title": key}, delivery=delivery, at=NOW,
                  entity=EntityRef("deal", "5"), depth=depth)


# ---- classify ----------------------------------------------------------------------------------------------------

POLICY = RetryPolicy(attempts=5, base=2.0, cap=900.0)


def test_rejected_is_dead_at_once() -> None:
    outcome = classify(Rejected("HTTP 404 'no such deal'"), Claimed(effect("e"), 1), POLICY, NOW)
    assert outcome.status == "dead" and outcome.error == "rejected: Rejected: HTTP 404 'no such deal'"


def test_retryable_waits_at_least_retry_after() -> None:
    outcome = classify(Retryable("HTTP 503", retry_after=120), Claimed(effect("e"), 1), POLICY, NOW)
    assert outcome.status == "retry" and outcome.error == "Retryable: HTTP 503"
    assert outcome.next_try_at == NOW + timedelta(seconds=120)  # the backoff (1-2 s) is shorter: Retry-After wins


def test_retryable_without_retry_after_backs_off_exponentially() -> None:
    for attempt, computed in ((1, 2.0), (2, 4.0), (4, 16.0)):
        outcome = classify(Retryable("timeout"), Claimed(effect("e"), attempt), POLICY, NOW)
        assert outcome.status == "retry"
        assert NOW + timedelta(seconds=computed / 2) <= outcome.next_try_at <= NOW + timedelta(seconds=computed)


def test_a_retryable_at_most_once_effect_is_retried_it_was_not_sent() -> None:
    outcome = classify(Retryable("connection refused"), Claimed(effect("e", delivery="at_most_once"), 1), POLICY, NOW)
    assert outcome.status == "retry"


def test_exhausted_attempts_are_dead() -> None:
    outcome = classify(Retryable("HTTP 503", retry_after=5), Claimed(effect("e"), 5), POLICY, NOW)
    assert outcome.status == "dead" and outcome.error == "gave up after 5 attempts: Retryable: HTTP 503"
    outcome = classify(Uncertain("reset"), Claimed(effect("e"), 5), POLICY, NOW)
    assert outcome.status == "dead"
    assert classify(Retryable("x"), Claimed(effect("e"), 4), POLICY, NOW).status == "retry"


@pytest.mark.parametrize("error", [Uncertain("read timeout"), ValueError("a connector bug")])
def test_uncertain_by_delivery_policy(error: Exception) -> None:
    at_most = classify(error, Claimed(effect("e", delivery="at_most_once"), 1), POLICY, NOW)
    assert at_most.status == "uncertain" and at_most.next_try_at is None
    assert "at_most_once: not repeated, it may have been performed" in at_most.error
    at_least = classify(error, Claimed(effect("e", delivery="at_least_once"), 1), POLICY, NOW)
    assert at_least.status == "retry" and at_least.next_try_at is not None
    # A connector that deduplicates by the effect key can safely be asked again.
    dedup = classify(error, Claimed(effect("e", delivery="at_most_once"), 1), POLICY, NOW, repeatable=True)
    assert dedup.status == "retry"


def test_an_error_without_a_message_is_named() -> None:
    assert classify(TimeoutError(), Claimed(effect("e"), 1), POLICY, NOW).error == "TimeoutError"


# ---- the Outbox loop ---------------------------------------------------------------------------------------------

class Scripted(Connector):
    """Each call takes the next step of `script`: an exception to raise, or data to answer with."""

    type = "scripted"

    def __init__(self, name: str, script: list[Any], *, stop_after: int, stopping: asyncio.Event) -> None:
        super().__init__(name, {})
        self.script = list(script)
        self.calls: list[tuple[str, str, float]] = []
        self.stop_after = stop_after
        self.stopping = stopping

    async def _step(self, action_name: str, params: Mapping[str, Any], key: str) -> ActionResult:
        self.calls.append((action_name, key, time.monotonic()))
        if len(self.calls) >= self.stop_after:
            self.stopping.set()
        step = self.script.pop(0) if self.script else {}
        if isinstance(step, BaseException):
            raise step
        if step == "hang":
            await asyncio.Event().wait()
        events = (Event(id=f"{key}>task.created", type="task.created", at=NOW, entity=EntityRef("task", "1"),
                        data={"title": params["title"]}, source=self.name),)
        return ActionResult(dict(step), events)

    @action("task.create")
    async def task_create(self, params: Mapping[str, Any], key: str) -> ActionResult:
        return await self._step("task.create", params, key)

    @action("sms.send")
    async def sms_send(self, params: Mapping[str, Any], key: str) -> ActionResult:
        return await self._step("sms.send", params, key)


class Limited(Scripted):
    type = "limited"
    rate_limit = (5.0, 1)


class World:
    def __init__(self, tmp_path: Path) -> None:
        self.engine = StoreThread(tmp_path / "outbox.db", "engine", synchronous="NORMAL")
        self.clock = FakeClock(NOW)
        self.metrics = Metrics()
        self.connectors: dict[str, Connector] = {}
        self.woken = 0

    @property
    def store(self) -> SqliteStore:
        return self.engine.store

    def insert(self, *effects: Effect) -> None:
        self.engine.executor.submit(self.store.apply, Decision(event=Event(id="t", type="x.y", at=NOW),
                                                               entity_before=None, entity_after=None,
                                                               effects=effects)).result()

    def row(self, key: str) -> dict:
        return self.engine.executor.submit(
            lambda: next(self.store.db.query("select * from effects where key = ?", [key]))).result()

    def journal(self) -> list[dict]:
        return self.engine.executor.submit(
            lambda: [self.store.journal_event(r["id"]) for r in self.store.db.query("select id from journal")]
        ).result()

    def metric(self, name: str, **labels: str) -> float | None:
        return self.metrics.registry.get_sample_value(f"automator_{name}_total", labels)

    def run(self, stopping: asyncio.Event, *, deadline: float = 30.0, policy: RetryPolicy | None = None,
            max_in_flight: int = 128) -> None:
        """One life of the outbox loop, until a connector sets `stopping`; all tries settled when it returns."""
        def wake() -> None:
            self.woken += 1

        outbox = Outbox(self.engine, lambda: self.connectors, worker="w", clock=self.clock, metrics=self.metrics,
                        policy=policy or RetryPolicy(), deadline=deadline, on_events=wake,
                        max_in_flight=max_in_flight)

        async def main() -> None:
            async with asyncio.timeout(10):  # a safety net: a broken loop fails the test instead of hanging it
                await outbox.run(stopping)

        asyncio.run(main())

    def close(self) -> None:
        self.engine.close()


@pytest.fixture
def world(tmp_path: Path) -> World:
    w = World(tmp_path)
    yield w
    w.close()


def test_retry_after_is_honoured_then_the_effect_is_done(world: World) -> None:
    first = asyncio.Event()
    api = Scripted("api", [Retryable("HTTP 503", retry_after=120), {"id": "42"}], stop_after=1, stopping=first)
    world.connectors = {"api": api}
    world.insert(effect("e1", depth=1))

    world.run(first)
    r = world.row("e1")
    assert (r["status"], r["attempts"], r["error"]) == ("retry", 1, "Retryable: HTTP 503")
    assert datetime.fromisoformat(r["next_try_at"]) >= NOW + timedelta(seconds=120)
    assert r["claimed_by"] is None
    assert world.metric("effects", connector="api", action="task.create", status="retry") == 1
    assert world.journal() == [] and world.woken == 0

    # 119 s later it is not due yet: the next life of the loop does not touch it.
    world.clock.advance(timedelta(seconds=119))
    assert world.engine.executor.submit(world.store.claim_effects, "probe", world.clock.now(), 10,
                                        timedelta(minutes=5)).result() == []
    world.clock.advance(timedelta(seconds=1))
    second = asyncio.Event()
    api.stopping, api.stop_after = second, 2
    world.run(second)
    r = world.row("e1")
    assert (r["status"], r["attempts"], r["result"], r["error"]) == ("done", 2, '{"id":"42"}', None)
    assert [c[1] for c in api.calls] == ["e1", "e1"]
    assert world.metric("effect_retries", connector="api") == 1
    assert world.metric("effects", connector="api", action="task.create", status="done") == 1
    (journaled,) = world.journal()
    assert journaled["id"] == "e1>task.created" and journaled["status"] == "pending"
    assert (journaled["body"]["depth"], journaled["body"]["caused_by"], journaled["body"]["echo_of"]) == \
        (2, "e1", "rule-a")
    assert world.woken == 1  # the worker is told that new events wait


def test_rejected_goes_dead_success_is_done_in_the_same_batch(world: World) -> None:
    stopping = asyncio.Event()
    api = Scripted("api", [Rejected("HTTP 404"), {"ok": True}], stop_after=2, stopping=stopping)
    world.connectors = {"api": api}
    world.insert(effect("bad"), effect("good"))
    world.run(stopping)
    bad, good = world.row("bad"), world.row("good")
    assert (bad["status"], bad["error"], bad["attempts"]) == ("dead", "rejected: Rejected: HTTP 404", 1)
    assert good["status"] == "done"
    assert [j["id"] for j in world.journal()] == ["good>task.created"]
    assert world.metric("effects", connector="api", action="task.create", status="dead") == 1


def test_an_effect_error_never_keeps_a_secret_of_its_connector(world: World) -> None:
    # A system's error may quote the request: a Bitrix24 inbound webhook URL holds its key. The stored error (shown
    # by `automator dead` and `explain`, and logged) has it taken out.
    stopping = asyncio.Event()
    url = "https://clinic.bitrix24.ru/rest/1/s3cr3tc0de42/"
    api = Scripted("api", [Rejected(f"HTTP 404 for url '{url}crm.deal.add'")], stop_after=1, stopping=stopping)
    api.secrets = frozenset({url, "s3cr3tc0de42"})  # as the daemon sets them from the resolved environment
    world.connectors = {"api": api}
    world.insert(effect("leaky"))
    world.run(stopping)
    row = world.row("leaky")
    assert row["status"] == "dead" and "s3cr3tc0de42" not in row["error"]
    assert row["error"] == "rejected: Rejected: HTTP 404 for url '***crm.deal.add'"
    assert "s3cr3tc0de42" not in (row["tries"] or "")


def test_uncertain_parks_at_most_once_and_retries_at_least_once(world: World) -> None:
    stopping = asyncio.Event()
    api = Scripted("api", [Uncertain("connection reset"), Uncertain("connection reset")], stop_after=2,
                   stopping=stopping)
    world.connectors = {"api": api}
    world.insert(effect("sms", delivery="at_most_once", action_="sms.send"), effect("task"))
    world.run(stopping)
    assert world.row("sms")["status"] == "uncertain"
    assert world.row("task")["status"] == "retry"


def test_an_effect_for_an_unknown_connector_is_dead(world: World) -> None:
    stopping = asyncio.Event()
    api = Scripted("api", [{}], stop_after=1, stopping=stopping)
    world.connectors = {"api": api}
    world.insert(effect("lost", connector="gone"), effect("ok"))
    world.run(stopping)
    assert (world.row("lost")["status"], world.row("lost")["error"]) == \
        ("dead", "no connector named 'gone' is configured")
    assert world.row("ok")["status"] == "done"


def test_a_call_past_the_deadline_is_uncertain(world: World) -> None:
    stopping = asyncio.Event()
    api = Scripted("api", ["hang", "hang"], stop_after=2, stopping=stopping)
    world.connectors = {"api": api}
    world.insert(effect("sms", delivery="at_most_once", action_="sms.send"), effect("task"))
    world.run(stopping, deadline=0.02)
    sms, task = world.row("sms"), world.row("task")
    assert sms["status"] == "uncertain" and "no answer within 0.02 s" in sms["error"]
    assert task["status"] == "retry" and "no answer within 0.02 s" in task["error"]


def test_an_in_store_connector_runs_on_the_store_thread(world: World) -> None:
    stopping = asyncio.Event()
    world.connectors = {"crm": LocalConnector("crm", {}, db=world.store.db, now=world.clock.now)}
    world.insert(effect("t1", connector="crm"))
    outbox = Outbox(world.engine, lambda: world.connectors, worker="w", clock=world.clock, metrics=world.metrics,
                    on_events=stopping.set)

    async def main() -> None:
        async with asyncio.timeout(10):
            await outbox.run(stopping)

    asyncio.run(main())
    assert world.row("t1")["status"] == "done"
    (journaled,) = world.journal()
    assert journaled["type"] == "task.created" and journaled["body"]["echo_of"] == "rule-a"
    assert world.engine.executor.submit(lambda: world.store.db["local_tasks"].count).result() == 1


def test_a_rate_limited_connector_keeps_to_its_rate(world: World) -> None:
    stopping = asyncio.Event()
    api = Limited("api", [], stop_after=6, stopping=stopping)
    world.connectors = {"api": api}
    world.insert(*(effect(f"e{i}") for i in range(6)))
    started = time.monotonic()
    world.run(stopping)
    elapsed = time.monotonic() - started
    # 5 per second with a burst of 1: the first at once, then one every 0.2 s (the k-th call no sooner than
    # k × 0.2 s after the start, however the event loop schedules them).
    assert elapsed >= 0.99
    stamps = sorted(c[2] for c in api.calls)
    assert len(stamps) == 6
    assert all(stamp - started >= 0.2 * k - 1e-6 for k, stamp in enumerate(stamps)), \
        [round(stamp - started, 3) for stamp in stamps]
    assert all(world.row(f"e{i}")["status"] == "done" for i in range(6))
    assert sorted(c[1] for c in api.calls) == [f"e{i}" for i in range(6)]


def test_a_full_outbox_takes_the_next_effects_as_soon_as_calls_end(
        world: World, wait_until: Callable[..., Awaitable[None]]) -> None:
    """Every slot taken, the tries settled with none to claim: the calls ending must wake the loop (a lost wake-up
    once left a backlog pending for ever)."""
    stopping = asyncio.Event()
    api = Scripted("api", [], stop_after=10_000, stopping=stopping)
    world.connectors = {"api": api}
    keys = [f"e{n}" for n in range(12)]
    world.insert(*(effect(key) for key in keys))

    async def main() -> None:
        outbox = Outbox(world.engine, lambda: world.connectors, worker="w", clock=world.clock, metrics=world.metrics,
                        max_in_flight=2)
        runner = asyncio.create_task(outbox.run(stopping))
        await wait_until(lambda: all(world.row(key)["status"] == "done" for key in keys), 10, "every effect done")
        stopping.set()
        await runner

    asyncio.run(main())
    assert len(api.calls) == 12


def test_every_call_is_marked_started_in_a_committed_transaction_before_it_begins(world: World,
                                                                                 tmp_path: Path) -> None:
    """Issue 10 item 11: what recovery reads. A connector whose requests do not go through automator.http is
    marked started just before its call: effects read together and waiting for their tokens are not."""
    import sqlite3

    stopping = asyncio.Event()
    seen: dict[str, Any] = {}

    class Watched(Limited):
        async def _step(self, action_name: str, params: Mapping[str, Any], key: str) -> ActionResult:
            reader = sqlite3.connect(tmp_path / "outbox.db")  # another connection sees committed rows only
            seen[key] = reader.execute("select started_at from effects where key = ?", [key]).fetchone()[0]
            seen.setdefault("still waiting at the first call", reader.execute(
                "select count(*) from effects where status = 'pending' and started_at is null").fetchone()[0])
            reader.close()
            return await super()._step(action_name, params, key)

    world.connectors = {"api": Watched("api", [], stop_after=3, stopping=stopping)}
    world.insert(*(effect(f"e{i}", delivery="at_most_once", action_="sms.send") for i in range(3)))
    world.run(stopping)
    assert all(seen[f"e{i}"] is not None for i in range(3)), seen
    # Read together; the others, waiting for their tokens, are not taken on disk yet: a crash leaves them pending.
    assert seen["still waiting at the first call"] == 2
    assert all(world.row(f"e{i}")["status"] == "done" for i in range(3))


def test_an_http_call_is_marked_started_when_its_request_is_written_not_when_claimed(world: World,
                                                                                     tmp_path: Path) -> None:
    """Issue 10 item 11: an effect is in doubt only once its request may have reached the system. Over real HTTP
    the mark is committed after the connector began its work and before the request is written: the server sees
    it on disk when the request arrives; until then (a lookup, a wait for a connection) the effect is unstarted."""
    import http.server
    import sqlite3
    import threading

    from automator.connector import WebConnector

    def started(key: str) -> Any:
        reader = sqlite3.connect(tmp_path / "outbox.db")  # another connection sees committed rows only
        try:
            return reader.execute("select started_at from effects where key = ?", [key]).fetchone()[0]
        finally:
            reader.close()

    seen: dict[str, Any] = {}

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            key = self.rfile.read(int(self.headers["Content-Length"])).decode()
            seen[f"{key} at the server"] = started(key)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stopping = asyncio.Event()

    class Api(WebConnector):
        type = "api"

        @action("sms.send")
        async def sms_send(self, params: Mapping[str, Any], key: str) -> ActionResult:
            seen[f"{key} before its request"] = started(key)
            await self.request("POST", "/send", "api send", content=key.encode())
            if len(seen) == 4:
                stopping.set()
            return ActionResult({})

    try:
        world.connectors = {"api": Api("api", {"base_url": f"http://127.0.0.1:{server.server_address[1]}"})}
        world.insert(effect("a", delivery="at_most_once", action_="sms.send"),
                     effect("b", delivery="at_most_once", action_="sms.send"))
        world.run(stopping)
    finally:
        server.shutdown()
        server.server_close()
    assert seen["a before its request"] is None and seen["b before its request"] is None, seen
    assert seen["a at the server"] is not None and seen["b at the server"] is not None, seen
    assert world.row("a")["status"] == world.row("b")["status"] == "done"


def test_a_try_after_a_timed_out_create_looks_for_what_it_made_first(world: World) -> None:
    """Issue 10 item 12: the call timed out (it may have been performed); the next try asks `recover`, and what
    it finds is the effect's result: the create is not sent again."""
    first = asyncio.Event()

    class Recovering(Scripted):
        looked: list[str] = []

        async def recover(self, action_name: str, params: Mapping[str, Any], key: str) -> ActionResult | None:
            self.looked.append(key)
            self.stopping.set()
            return ActionResult({"id": "found-7"}, (Event(id=f"{key}>task.created", type="task.created", at=NOW,
                                                          entity=EntityRef("task", "7"), source=self.name),))

    api = Recovering("api", [Uncertain("read timeout")], stop_after=1, stopping=first)
    world.connectors = {"api": api}
    world.insert(effect("e1"))
    world.run(first)
    assert (world.row("e1")["status"], world.row("e1")["interrupted"]) == ("retry", 1)
    assert api.looked == []  # the first try was a first try

    world.clock.advance(timedelta(hours=1))
    api.stopping = second = asyncio.Event()
    world.run(second)
    r = world.row("e1")
    assert (r["status"], r["attempts"], r["result"]) == ("done", 2, '{"id":"found-7"}')
    assert api.looked == ["e1"] and len(api.calls) == 1  # found, not performed again
    assert [e["id"] for e in world.journal()] == ["e1>task.created"]


class Recorded(StoreThread):
    """A store thread that records what the outbox writes through it: (function, settles, calls marked)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, "engine", synchronous="NORMAL")
        self.writes: list[tuple[str, int, int]] = []

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        name = getattr(fn, "__name__", "")
        if name == "write_settles":
            self.writes.append((name, len(args[0]), 0))
        elif name == "_start":
            self.writes.append((name, len(args[1]), len(args[0])))
        else:
            self.writes.append((name, 0, 0))
        return await super().call(fn, *args, **kwargs)


@pytest.mark.parametrize("grouped", [False, True])
def test_a_lone_effect_costs_its_start_mark_and_its_settle_and_then_the_outbox_asks_nothing(
        tmp_path: Path, wait_until: Callable[..., Awaitable[None]], grouped: bool) -> None:
    """Issue 14: no claim transaction (due effects are read; each is taken on disk by its start mark), no empty
    claim after a claim, no look for the next due effect after every turn: an idle outbox sleeps until woken. With
    a grouped writer (the daemon's first process) the read is not even a call to the store's thread."""
    world = World(tmp_path)
    world.engine.close()
    world.engine = recorded = Recorded(tmp_path / "outbox.db")
    recorded.group = grouped
    stopping = asyncio.Event()
    world.connectors = {"api": Scripted("api", [], stop_after=10_000, stopping=stopping)}
    world.insert(effect("e1"))

    async def main() -> None:
        outbox = Outbox(recorded, lambda: world.connectors, worker="w", clock=world.clock, metrics=world.metrics)
        runner = asyncio.create_task(outbox.run(stopping))
        await wait_until(lambda: world.row("e1")["status"] == "done", 10, "the effect done")
        await asyncio.sleep(0.05)  # room for any turn that would follow (none should)
        stopping.set()
        await runner

    try:
        asyncio.run(main())
        row = world.row("e1")
        assert (row["attempts"], row["claimed_by"]) == (1, None) and row["started_at"] is not None
    finally:
        recorded.close()
    read = [] if grouped else [("due_effects", 0, 0)]
    assert recorded.writes == [*read, ("_start", 0, 1), ("write_settles", 1, 0)]


def test_a_settle_rides_on_the_next_start_mark(tmp_path: Path) -> None:
    """The try of `a` ends just before `b`'s request is about to leave: a's settle is written in b's start mark's
    transaction, not in one of its own."""
    from automator.call_start import call_starting

    world = World(tmp_path)
    world.engine.close()
    world.engine = recorded = Recorded(tmp_path / "outbox.db")
    stopping = asyncio.Event()
    a_ended = asyncio.Event()

    class Sender(Connector):
        type = "sender"
        starts_on_send = True

        @action("sms.send")
        async def sms_send(self, params: Mapping[str, Any], key: str) -> ActionResult:
            if key == "b":
                await a_ended.wait()
            await call_starting()
            if key == "a":
                a_ended.set()  # b goes on once a's task has handed its outcome to the outbox
            else:
                stopping.set()
            return ActionResult({})

    world.connectors = {"api": Sender("api", {})}
    world.insert(effect("a", delivery="at_most_once", action_="sms.send"),
                 effect("b", delivery="at_most_once", action_="sms.send"))
    try:
        world.run(stopping)
        assert world.row("a")["status"] == world.row("b")["status"] == "done"
    finally:
        recorded.close()
    assert recorded.writes == [("due_effects", 0, 0), ("_start", 0, 1), ("_start", 1, 1), ("write_settles", 1, 0)]


class Sender(Connector):
    """Marks its call begun as automator.http does (`starts_on_send`); `before` runs first, with the key."""

    type = "sender"
    starts_on_send = True

    def __init__(self, name: str, before: Callable[[str], None], stopping: asyncio.Event) -> None:
        super().__init__(name, {})
        self.before, self.stopping = before, stopping
        self.sent: list[str] = []

    @action("sms.send")
    async def sms_send(self, params: Mapping[str, Any], key: str) -> ActionResult:
        try:
            self.before(key)
            from automator.call_start import call_starting

            await call_starting()
            self.sent.append(key)
            return ActionResult({})
        finally:
            self.stopping.set()


def test_an_effect_taken_by_another_outbox_meanwhile_is_neither_sent_nor_settled(world: World) -> None:
    """Read as due, then taken by another outbox before its call began (a reload gave its connector to the other
    process): the start mark finds it taken; the call is not made and the other's claim is left as it is."""
    stopping = asyncio.Event()

    def taken_meanwhile(key: str) -> None:
        world.engine.executor.submit(world.store.claim_effects, "other", NOW, 10, timedelta(minutes=5)).result()

    sender = Sender("api", taken_meanwhile, stopping)
    world.connectors = {"api": sender}
    world.insert(effect("e1", delivery="at_most_once", action_="sms.send"))
    world.run(stopping)
    row = world.row("e1")
    assert sender.sent == []
    assert (row["status"], row["claimed_by"], row["attempts"], row["started_at"]) == ("running", "other", 1, None)


@pytest.mark.parametrize("error, status, stored", [
    (Rejected("not a URL"), "dead", "rejected: Rejected: not a URL"),
    # A deadline spent waiting for a connection: nothing was sent, so even an at_most_once effect is tried again.
    (Uncertain("DeadlineExceeded: took longer than 10 s"), "retry",
     "Retryable: before the call began: Uncertain: DeadlineExceeded: took longer than 10 s"),
])
def test_a_try_that_ends_before_its_call_began_is_settled_counted_and_never_in_doubt(
        world: World, error: Exception, status: str, stored: str) -> None:
    """A try that ends before its call's mark (written before the call's first byte) never took its effect on
    disk: its settle does, counting the attempt; it cannot have been performed, so it is not parked as uncertain."""
    stopping = asyncio.Event()

    def fail(key: str) -> None:
        raise error

    world.connectors = {"api": Sender("api", fail, stopping)}
    world.insert(effect("e1", delivery="at_most_once", action_="sms.send"))
    world.run(stopping)
    row = world.row("e1")
    assert (row["status"], row["attempts"], row["claimed_by"], row["started_at"], row["interrupted"]) == \
        (status, 1, None, None, 0)
    assert row["error"] == stored
