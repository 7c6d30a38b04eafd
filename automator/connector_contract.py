"""The contract every connector keeps, as one pytest suite each connector package runs against its own emulator.

A connector package's tests opt in with a subclass that names its type and fills in what only it knows (a signed
sample webhook, malformed ones, params each of its actions succeeds with, a change its `poll` must find):

    from automator.connector_contract import ConnectorContract

    class TestContract(ConnectorContract):
        type = "guestbook"
        def webhook(self, box, secret): ...

The suite then checks, through the connector's public interface and over real HTTP on 127.0.0.1:
    auth     a webhook without or with a wrong secret is refused (401/403); a signed one is read; a connector
             without its secret set accepts none; secret settings are written as `${env:NAME}`
    parse    a signed webhook yields events of types its catalogue declares; a malformed body is refused with a
             4xx InboundRejected and a reason, never another exception
    perform  every declared action succeeds with its sample params and returns an ActionResult; an unknown one
             is refused
    errors   the system's 5xx and overload answers are Retryable (overload with its wait), a 4xx is Rejected, an
             answer past the deadline or a dropped connection Uncertain, a refused connection Retryable
    poll     (connectors that poll) the cursor advances and a change is delivered once
    spend    (connectors that report ad spend) the rows of a period are SpendRows of its days, in kopecks

It ships in the package, beside the `Sandbox` it runs a connector in and the served stand-ins it needs (`Swap`,
`Hooks`), so a third-party connector's tests need automator and pytest, not automator's source tree. This is the
only module of automator that imports pytest, and nothing in automator imports it.
"""
from __future__ import annotations

import asyncio
import contextlib
import inspect
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any, ClassVar
from urllib.parse import parse_qsl

import pytest
from jsonschema import Draft202012Validator

from automator.connector import ENV_REFERENCE, ActionResult, Connector, Inbound, SpendRow, WebConnector, discover
from automator.emulator import Emulator, read_body, serve
from automator.errors import InboundRejected, Rejected, Retryable, Uncertain
from automator.model import Event, Pipeline
from automator.report_delivery import placeholder_report


class Swap:
    """One served ASGI app for a whole test module; each test puts its own emulator behind it."""

    def __init__(self) -> None:
        self.app: Any = None
        self.loop: asyncio.AbstractEventLoop | None = None  # the serving thread's, where the app sends webhooks

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.loop = asyncio.get_running_loop()
        await self.app(scope, receive, send)

    def settled(self, seconds: float = 3) -> None:
        """Wait (at most `seconds`) until every webhook the emulator behind has sent has had its answer: its own
        `settle`, run on the loop that sends them."""
        if self.loop is not None and isinstance(self.app, Emulator):
            asyncio.run_coroutine_threadsafe(self.app.settle(), self.loop).result(timeout=seconds)


class Hooks:
    """The daemon's side of webhooks: records each request (to `path`, when given: a previous test's emulator may
    still be sending elsewhere) as the Inbound the daemon would build from it."""

    def __init__(self, connector: str, path: str | None = None) -> None:
        self.connector, self.path = connector, path
        self.got: list[Inbound] = []
        self.arrived = threading.Condition()  # notified by the server's thread as each webhook is recorded

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        if self.path is None or scope["path"] == self.path:
            inbound = Inbound(connector=self.connector, method=scope["method"], path=scope["path"],
                              query=dict(parse_qsl(scope["query_string"].decode())),
                              headers={k.decode().lower(): v.decode() for k, v in scope["headers"]}, body=body,
                              received_at=datetime.now(timezone.utc))
            with self.arrived:
                self.got.append(inbound)
                self.arrived.notify_all()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b'{"accepted": 1}'})

    def wait(self, count: int) -> list[Inbound]:
        """The first `count` webhooks (in the order they arrived), waiting at most 3 s for them."""
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.got) >= count, timeout=3)
        assert len(self.got) >= count, f"{len(self.got)} webhook(s) arrived, expected {count}"
        return self.got[:count]


NOW = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)
# `ConnectorContract.type` (the type's name) hides the builtin inside the class body: its annotations use this.
ConnectorClass = type[Connector]


async def parsed(connector: Connector, inbound: Inbound) -> list[Event]:
    """The events `parse` reads from one webhook, whether the connector's parse is a coroutine or not."""
    found = connector.parse(inbound)
    return list(await found if inspect.isawaitable(found) else found)


async def performed(connector: Connector, action: str, params: Mapping[str, Any], key: str) -> Any:
    """What performing one action returned, whether the connector's actions are coroutines or not."""
    done = connector.perform(action, params, key)
    return await done if inspect.isawaitable(done) else done


@dataclass
class Sandbox:
    """A connector against its emulator, as `automator run --sandbox` builds it, with the webhooks it sends."""

    connector: Connector
    emulator: Any
    url: str
    hooks: Hooks
    events: list[Event] = field(default_factory=list)

    async def perform(self, action: str, params: Mapping[str, Any]) -> Any:
        """Perform an action as the outbox would, keep the events it reports and return what it returned."""
        result = await performed(self.connector, action, params, f"effect-{len(self.events)}")
        self.events.extend(result.events)
        return result

    async def parse(self, inbound: Inbound) -> None:
        """Read a webhook as the daemon does and keep its events."""
        self.events.extend(await parsed(self.connector, inbound))

    async def created(self, action: str, params: Mapping[str, Any]) -> str:
        """Perform an action that creates a record (a deal to move) and return the id its last event names."""
        result = await self.perform(action, params)
        entity = result.events[-1].entity
        assert entity is not None, f"{action} reported no record"
        return entity.id

    async def read_webhooks(self, count: int) -> None:
        """Read the first `count` webhooks the emulator sent with the connector's `parse`."""
        for inbound in await asyncio.to_thread(self.hooks.wait, count):
            await self.parse(inbound)


Sandboxes = Callable[..., Sandbox]
# What a connector type's `sandbox` classmethod returns, for a type that has none: (name, settings, *, base_url,
# hook_url) → (settings aimed at the emulator, the emulator).
Aim = Callable[..., "tuple[dict[str, Any], Any] | None"]


@contextlib.contextmanager
def sandboxes() -> Iterator[Sandboxes]:
    """sandbox(type, settings, pipelines) → the connector on its emulator, served over real HTTP, as its `sandbox`
    classmethod sets it up (`types` names the classes when they are not the installed ones; `aim` replaces
    `sandbox` for a type without one). Both servers stop when the block ends."""
    api, hook_app = Swap(), Swap()
    with serve(api) as api_served, serve(hook_app) as hook_served:
        def make(type_: str, settings: Mapping[str, Any], pipelines: Mapping[str, Pipeline] | None = None, *,
                 types: Mapping[str, type[Connector]] | None = None, aim: Aim | None = None) -> Sandbox:
            cls = (types or discover())[type_]
            hooks = Hooks("it", "/hooks/it")
            hook_app.app = hooks
            made = (aim or cls.sandbox)("it", settings, base_url=api_served.url, hook_url=f"{hook_served.url}/hooks/it")
            assert made is not None, f"{type_} has no sandbox: give `aim` (settings and an emulator) instead"
            options, emulator = made
            api.app = emulator
            connector = cls.create("it", {"type": type_, **options}, db=None, now=lambda: NOW)
            connector.pipelines = dict(pipelines or {})
            connector.compose = placeholder_report  # the daemon gives its child process; here, a report not computed
            return Sandbox(connector, emulator, api_served.url, hooks)
        yield make


def _run(work: Callable[[], Any]) -> Any:
    return asyncio.run(work())


class ConnectorContract:
    """The contract suite: subclass it as `Test…` in a connector's test module and fill in the hooks below.

    Hooks a subclass gives: `type`, `webhook` (when the type receives webhooks), `malformed`, `samples`, for
    a polling type `change`, and for one that reports ad spend `spend_sample`. The defaults build the connector with its own `sandbox` from `settings` and
    `pipelines`; a type without one (no remote system) overrides `build`.
    """

    type: ClassVar[str] = ""
    settings: ClassVar[Mapping[str, Any]] = {}  # what `automator.yaml` would say, before `sandbox` fills it in
    pipelines: ClassVar[Mapping[str, Pipeline]] = {}
    # Settings written in automator.yaml (with `${env:…}` secrets) that its config_schema accepts; None: `settings`.
    written: ClassVar[Mapping[str, Any] | None] = None
    # Settings that are secrets: a literal value is refused by config_schema. Default: its `webhook_auth`.
    secret_settings: ClassVar[tuple[str, ...] | None] = None
    storm_status: ClassVar[int] = 429  # how the system says "too many requests" (the emulator's storm reply)
    types: ClassVar[Mapping[str, ConnectorClass] | None] = None  # None: the installed entry points

    @pytest.fixture
    def sandbox(self) -> Iterator[Sandboxes]:
        """The suite's `sandboxes()`, as a fixture of every test in the subclass."""
        with sandboxes() as make:
            yield make

    # ---- hooks ----------------------------------------------------------------------------------------------

    def build(self, sandbox: Sandboxes) -> Sandbox:
        """The connector against its emulator."""
        return sandbox(self.type, self.settings, self.pipelines, types=self.types)

    def webhook(self, box: Sandbox, secret: str | None) -> Inbound:
        """A documented webhook of the system, authenticated with `secret` (None: carrying none)."""
        raise NotImplementedError(f"{type(self).__name__} receives webhooks: give a sample in `webhook`")

    def malformed(self, box: Sandbox) -> list[Inbound]:
        """Webhooks carrying the right secret whose body cannot be read."""
        raise NotImplementedError(f"{type(self).__name__} receives webhooks: give bad bodies in `malformed`")

    async def samples(self, box: Sandbox) -> dict[str, Mapping[str, Any]]:
        """For each declared action, params it succeeds with on this (fresh) emulator."""
        raise NotImplementedError(f"{type(self).__name__}: give params for each action in `samples`")

    def refused(self, settings: Mapping[str, Any]) -> dict[str, Any] | None:
        """Settings whose calls the system answers with a 4xx refusal (a wrong credential); None: the emulator's
        `fail` fault answering 400 stands for one."""
        return None

    def unreachable(self, settings: Mapping[str, Any], url: str) -> dict[str, Any]:
        """`settings` with the system's address replaced by `url` (where nothing listens)."""
        return {**settings, "base_url": url}

    def retarget(self, params: Mapping[str, Any], url: str) -> Mapping[str, Any]:
        """An action's params aimed at `url` instead of the emulator (only for actions whose params name it)."""
        return params

    async def change(self, box: Sandbox) -> None:
        """Make a change in the emulated system, as a manager would, that `poll` must find."""
        raise NotImplementedError(f"{type(self).__name__} polls: make a change in `change`")

    async def spend_sample(self, box: Sandbox) -> tuple[date, date, int]:
        """Put ad spend in the emulated system (an ad cabinet's statistics) and give the period to ask for and
        how many day-channel-campaign rows it holds (spend outside the period too, so that the bounds are seen)."""
        raise NotImplementedError(f"{type(self).__name__} reports ad spend: give some in `spend_sample`")

    # ---- helpers --------------------------------------------------------------------------------------------

    def cls(self) -> ConnectorClass:
        """The connector type under test."""
        return (self.types or discover())[self.type]

    def secret(self, box: Sandbox) -> str:
        """The webhook secret the sandbox set."""
        return str(box.connector.config[self.cls().webhook_auth[0]])

    def remote(self, box: Sandbox) -> Any:
        """The emulator, skipping a test about a remote system for a type that has none."""
        if box.emulator is None:
            pytest.skip(f"{self.type} talks to no remote system")
        return box.emulator

    async def first_action(self, box: Sandbox) -> tuple[str, Mapping[str, Any]]:
        """One declared action and its params, for the error checks."""
        samples = await self.samples(box)
        name = sorted(samples)[0]
        return name, samples[name]

    # ---- registration and settings ----------------------------------------------------------------------------

    def test_it_is_registered_under_its_type_name(self) -> None:
        cls = self.cls()
        assert cls.type == self.type and issubclass(cls, Connector)
        assert cls.actions, f"{self.type} declares no action"

    def test_secret_settings_are_taken_only_from_the_environment(self) -> None:
        cls = self.cls()
        validator = Draft202012Validator(cls.config_schema)
        written = {"type": self.type, **(self.settings if self.written is None else self.written)}
        assert list(validator.iter_errors(written)) == [], "the `written` settings must be valid"
        for setting in self.secret_settings if self.secret_settings is not None else cls.webhook_auth:
            assert ENV_REFERENCE.fullmatch(str(written.get(setting, ""))), f"`written` must set {setting} as ${{env:…}}"
            assert list(validator.iter_errors({**written, setting: "a-literal-secret"})), \
                f"{self.type} accepts {setting} written out in the file"

    # ---- auth and parse -------------------------------------------------------------------------------------

    def test_a_signed_webhook_yields_events_its_catalogue_declares(self, sandbox: Sandboxes) -> None:
        box = self.build(sandbox)
        cls = self.cls()
        if not cls.receives_webhooks():
            with pytest.raises(InboundRejected) as refused:
                _run(lambda: parsed(box.connector, Inbound("it", "POST", "/hooks/it", {}, {}, b"{}", NOW)))
            assert refused.value.status == 404
            return
        events = _run(lambda: parsed(box.connector, self.webhook(box, self.secret(box))))
        assert events, "a signed sample webhook yields no event"
        declared = cls.produces("it", box.connector.config).events
        assert [e.type for e in events if e.type not in declared] == []
        assert all(e.source == "it" for e in events)

    def test_an_unsigned_or_forged_webhook_is_refused(self, sandbox: Sandboxes) -> None:
        box = self.build(sandbox)
        if not self.cls().receives_webhooks():
            pytest.skip(f"{self.type} receives no webhooks")
        for secret in (None, "", f"x{self.secret(box)}", self.secret(box)[:-1]):
            with pytest.raises(InboundRejected) as refused:
                _run(lambda: parsed(box.connector, self.webhook(box, secret)))
            assert refused.value.status in (401, 403), (secret, refused.value.status)

    def test_without_its_secret_set_it_accepts_no_webhook(self) -> None:
        cls = self.cls()
        if not cls.receives_webhooks():
            assert cls.refuses_webhooks("it", {}) is None
            return
        assert cls.webhook_auth, f"{self.type} reads webhooks but names no setting that authenticates them"
        written = {"type": self.type, **(self.settings if self.written is None else self.written)}
        assert cls.refuses_webhooks("it", written) is None
        for setting in cls.webhook_auth:
            assert setting in (cls.refuses_webhooks("it", {**written, setting: ""}) or "")

    def test_a_malformed_webhook_is_refused_with_a_reason(self, sandbox: Sandboxes) -> None:
        box = self.build(sandbox)
        if not self.cls().receives_webhooks():
            pytest.skip(f"{self.type} receives no webhooks")
        bad = self.malformed(box)
        assert bad
        for inbound in bad:
            with pytest.raises(InboundRejected) as refused:
                _run(lambda: parsed(box.connector, inbound))
            assert 400 <= refused.value.status < 500 and refused.value.reason, inbound.body
        # Refused alone: the connector still reads the next good one.
        assert _run(lambda: parsed(box.connector, self.webhook(box, self.secret(box))))

    # ---- perform ---------------------------------------------------------------------------------------------

    def test_every_declared_action_performs_with_its_sample(self, sandbox: Sandboxes) -> None:
        box = self.build(sandbox)

        async def go() -> None:
            samples = await self.samples(box)
            assert set(samples) == set(self.cls().actions), "give a sample for every declared action"
            for name, params in sorted(samples.items()):
                result = await box.perform(name, params)
                assert isinstance(result, ActionResult), name
            await box.connector.aclose()
        _run(go)

    def test_a_type_that_reports_spend_gives_the_rows_of_the_period_asked(self, sandbox: Sandboxes) -> None:
        if not self.cls().can_report_spend():
            pytest.skip(f"{self.type} reports no ad spend")
        box = self.build(sandbox)

        async def go() -> list[SpendRow]:
            since, until, count = await self.spend_sample(box)
            rows = [row async for row in box.connector.spend(since, until)]
            await box.connector.aclose()
            assert len(rows) == count, f"{count} rows of spend from {since} to {until}, not {len(rows)}"
            return rows
        for row in _run(go):
            assert isinstance(row, SpendRow) and isinstance(row.day, date) and isinstance(row.amount_minor, int)
            assert row.channel and row.amount_minor >= 0 and len(row.currency) == 3, row

    def test_an_unknown_action_is_refused(self, sandbox: Sandboxes) -> None:
        box = self.build(sandbox)
        with pytest.raises((KeyError, Rejected)):
            _run(lambda: performed(box.connector, "contract.no_such_action", {}, "effect-x"))

    # ---- errors ----------------------------------------------------------------------------------------------

    def _fails(self, box: Sandbox, faults: Mapping[str, Any] | None = None,
               settings: Mapping[str, Any] | None = None, url: str | None = None) -> BaseException:
        """What performing the first sample action raised with `faults` set on the emulator, by the sandbox's
        connector or, given `settings`, by one made with them (and its params aimed at `url`, when given)."""
        emulator = self.remote(box)
        cut = box.connector
        if settings is not None:
            cut = type(cut).create("it", settings, db=None, now=lambda: NOW)
            cut.pipelines = box.connector.pipelines
            cut.compose = box.connector.compose

        async def go() -> BaseException:
            name, params = await self.first_action(box)
            params = params if url is None else self.retarget(params, url)
            emulator.faults.update(faults or {})
            try:
                await performed(cut, name, params, "effect-failing")
            except Exception as exc:  # the test asserts what it is
                return exc
            finally:
                await cut.aclose()
                await box.connector.aclose()
            raise AssertionError(f"{name} succeeded despite {dict(faults or {})} {settings or ''}")
        return _run(go)

    @pytest.mark.parametrize("status", [500, 502])
    def test_a_server_error_is_retryable(self, sandbox: Sandboxes, status: int) -> None:
        error = self._fails(self.build(sandbox), {"fail": {"status": status, "count": 100}})
        assert isinstance(error, Retryable), repr(error)

    def test_an_overload_answer_is_retryable_after_its_wait(self, sandbox: Sandboxes) -> None:
        error = self._fails(self.build(sandbox),
                            {"storm": {"status": self.storm_status, "count": 100, "retry_after": 7}})
        assert isinstance(error, Retryable) and error.retry_after is not None and error.retry_after >= 7, repr(error)

    def test_a_client_error_is_rejected(self, sandbox: Sandboxes) -> None:
        box = self.build(sandbox)
        refusing = self.refused(box.connector.config)
        if refusing is None:
            error = self._fails(box, {"fail": {"status": 400, "count": 100}})
        else:
            error = self._fails(box, settings=refusing)
        assert isinstance(error, Rejected), repr(error)

    def test_no_answer_in_time_or_a_dropped_connection_is_uncertain(self, sandbox: Sandboxes) -> None:
        box = self.build(sandbox)
        if isinstance(box.connector, WebConnector):
            box.connector.deadline = 0.2
        assert isinstance(self._fails(box, {"delay": 1.0}), Uncertain)
        assert isinstance(self._fails(self.build(sandbox), {"delay": 0.0, "drop": 100}), Uncertain)

    def test_a_refused_connection_is_retryable(self, sandbox: Sandboxes) -> None:
        box = self.build(sandbox)
        with socket.socket() as probe:  # a port nothing listens on
            probe.bind(("127.0.0.1", 0))
            closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
        cut = self.unreachable(box.connector.config, closed)
        assert isinstance(self._fails(box, settings=cut, url=closed), Retryable)

    # ---- poll ------------------------------------------------------------------------------------------------

    def test_poll_advances_its_cursor_and_delivers_a_change_once(self, sandbox: Sandboxes) -> None:
        box = self.build(sandbox)
        if self.cls().poll_every is None:
            assert _run(lambda: box.connector.poll(None)) == ([], None)
            return

        async def go() -> None:
            nothing, cursor = await box.connector.poll(None)
            assert cursor is not None
            await self.change(box)
            found, after = await box.connector.poll(cursor)
            assert found and after is not None and after != cursor
            assert all(e.delivery_id for e in found), "polled events carry the webhooks' delivery ids"
            declared = self.cls().produces("it", box.connector.config).events
            assert [e.type for e in found if e.type not in declared] == []
            again, _ = await box.connector.poll(after)
            seen = {e.delivery_id for e in [*nothing, *found]}
            assert [e for e in again if e.delivery_id in seen] == []
            await box.connector.aclose()
        _run(go)
