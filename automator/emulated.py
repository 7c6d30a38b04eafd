"""`automator test --sandbox`: the simulated world, with the real connectors talking to their emulators.

The clock stays simulated and the core decides as in `automator test`; what changes is who performs. Each
connector whose type has an emulator (`Connector.sandbox`) gets the settings `automator run --sandbox` gives it,
and its calls reach the emulator's ASGI app in-process (no port, no thread: a test stays fast and gives the same
answer every time). The emulator's webhooks come back into the simulation through the connector's own `parse`,
and are journaled as the daemon journals them, so an echo of our own change is recognised by the same code. `given:` entities are written into the emulators (`Connector.sandbox_given`), and
types without an emulator (`http`, `local`) are played by `local` as in `automator test`.
"""
from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

import httpx

from automator.actions import expected_echo
from automator.config.project import Project
from automator.connector import ActionResult, Connector, Inbound, WebConnector
from automator.errors import InboundRejected
from automator.identity import person_ref
from automator.model import Effect, Entity, EntityRef, Event
from automator.report_delivery import placeholder_report
from automator.history import GIVEN_KINDS
from automator.simulator import Performed, SimulationError, Simulator
from automator.store.base import Settlement
from automator.store.outbox import ECHO_WINDOW

HOST = "http://sandbox.test"  # where the emulators "live": never resolved, every request goes in-process
MAX_WEBHOOK_ROUNDS = 20  # parsing a webhook may call the system, whose answer may send more: bounded


class _Hooks:
    """The ASGI app the emulators send their webhooks to: each request is kept, to be parsed by its connector."""

    def __init__(self) -> None:
        self.received: list[Inbound] = []

    async def __call__(self, scope: Mapping[str, Any], receive: Callable[[], Awaitable[Mapping[str, Any]]],
                       send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        from urllib.parse import parse_qsl

        from automator.emulator import read_body

        body = await read_body(receive)
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        path = str(scope["path"])
        self.received.append(Inbound(connector=path.rstrip("/").rsplit("/", 1)[-1], method=str(scope["method"]),
                                     path=path, query=query, headers=headers, body=body))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b'{"accepted": 1}'})


class Emulated:
    """The project's connectors that have an emulator, each the real connector pointed at its emulator."""

    def __init__(self, project: Project, now: Callable[[], datetime]) -> None:
        from automator.config.load import builtin_connectors

        self.loop = asyncio.new_event_loop()
        self.hooks = _Hooks()
        self.emulators: dict[str, Any] = {}
        self.connectors: dict[str, Connector] = {}
        types = builtin_connectors()
        for name, conf in project.config.connectors.items():
            cls = types.get(conf.type)
            # A connector that is no web client (smtp) is played by local: its emulator is not even started.
            if cls is None or cls.in_store or not issubclass(cls, WebConnector):
                continue
            # The settings `automator run --sandbox` gives it (its secrets replaced: no environment is read).
            options = {k: v for k, v in conf.options.items() if k != "type"}
            emulated = cls.sandbox(name, options, base_url=f"{HOST}/_sandbox/{name}", hook_url=f"{HOST}/hooks/{name}")
            if emulated is None:
                continue
            settings, emulator = emulated
            connector = cls.create(name, settings, db=None, now=now)
            if not isinstance(connector, WebConnector):
                continue  # talks to its system some other way: played by local
            connector.pipelines = {n: p for n, p in project.pipelines.items() if p.connector == name}
            connector.compose = placeholder_report  # a test checks what is sent, not the report's figures
            # Rate limits are the real systems' per-second budgets; simulated days pass in milliseconds.
            emulator.faults.limits = False
            connector.use_transport(httpx.ASGITransport(app=emulator, root_path=f"/_sandbox/{name}"))
            emulator.deliver_through(httpx.ASGITransport(app=self.hooks))
            self.emulators[name], self.connectors[name] = emulator, connector

    def run(self, work: Any) -> Any:
        """The result of a connector call, awaited on this world's own event loop when it is a coroutine."""
        return self.loop.run_until_complete(work) if inspect.isawaitable(work) else work

    def seed(self, entities: Iterable[Entity]) -> None:
        """Write the `given:` entities into every emulator whose connector reads them."""
        given = list(entities)
        for name, connector in self.connectors.items():
            connector.sandbox_given(self.emulators[name], given)

    def perform(self, connector: Connector, effect: Effect) -> ActionResult:
        """Perform one effect through the real connector; raises what the connector raises."""
        result = self.run(connector.perform(effect.action, effect.params, effect.key))
        return result if isinstance(result, ActionResult) else ActionResult()

    def webhooks(self, now: datetime) -> list[Event]:
        """The events of every webhook the emulators have sent since the last call, read by their connectors."""
        events: list[Event] = []
        for _round in range(MAX_WEBHOOK_ROUNDS):
            for emulator in self.emulators.values():
                self.run(emulator.settle())
            if not self.hooks.received:
                return events
            received, self.hooks.received = self.hooks.received, []
            for request in received:
                name = request.connector
                try:
                    events.extend(self.run(self.connectors[name].parse(replace(request, received_at=now))))
                except InboundRejected as exc:
                    raise SimulationError(f"connector {name!r} refused its emulator's webhook: {exc}") from exc
        raise SimulationError(f"the emulators kept sending webhooks after {MAX_WEBHOOK_ROUNDS} rounds")

    def close(self) -> None:
        """Close the connectors' clients and the event loop."""
        for connector in self.connectors.values():
            self.run(connector.aclose())
        self.loop.close()


class SandboxSimulator(Simulator):
    """The simulator whose effects go through the real connectors and their emulators, echoes included."""

    def __init__(self, project: Project, now: datetime) -> None:
        super().__init__(project, now)
        self.world = Emulated(project, lambda: self.now)

    def given(self, entities: Iterable[Mapping[str, Any]]) -> None:
        """Seed the simulation's store, then the emulators."""
        raw = list(entities)
        super().given(raw)
        # Visits are the store's history: no system's emulator holds them (YCLIENTS's would report them).
        self.world.seed(Entity(EntityRef(str(e["kind"]), str(e["id"])),
                               {k: v for k, v in e.items() if k not in ("kind", "id")}, self.now) for e in raw
                        if e.get("kind") not in GIVEN_KINDS)

    def event(self, raw: Mapping[str, Any]) -> None:
        """A test's event reports a change made in a system (a booking made in YCLIENTS, a deal moved by hand in
        Bitrix24): the emulators hold the entity as it is after it, then the event is decided as written."""
        entity, kind = raw.get("entity"), str(raw["event"]).partition(".")
        if entity and kind[0] == str(entity["kind"]) and kind[2] in ("created", "updated"):
            ref = EntityRef(str(entity["kind"]), str(entity["id"]))
            known = self.store.entity(ref)
            fields = {**(known.fields if known else {}), **dict(raw.get("data") or {})}
            self.world.seed([Entity(ref, fields, self.now)])
        super().event(raw)

    def _perform(self, effect: Effect) -> list[Event]:
        connector = self.world.connectors.get(effect.connector)
        if connector is None:
            return super()._perform(effect)
        # As the daemon's outbox does at a call's start: the change it will cause is expected back as our echo.
        echo = expected_echo(effect.action, effect.params)
        if echo is not None:
            self.store.expect_echo(person_ref(echo[0], effect.connector, self.store), echo[1], effect.key,
                                   effect.rule_id, effect.depth, self.now + ECHO_WINDOW)
        answer: list[Event] = []
        try:
            result = self.world.perform(connector, effect)
        except Exception as exc:  # refused or failed: a result to show, as in `automator test`
            self.performed.append(Performed(effect, False, str(exc)))
            self.store.record_effect(effect.key, "failed", {"error": str(exc)})
        else:
            self.performed.append(Performed(effect, True))
            answer = self.store.settle(effect, Settlement("done", result.data, events=self._now(result.events)),
                                       self.now)
        # What the call changed before it failed is reported by the system too.
        hooks = self.store.journal_events(self._now(self.world.webhooks(self.now)), self.now)
        return [*answer, *(e for e in hooks if e is not None)]

    def _now(self, events: Iterable[Event]) -> tuple[Event, ...]:
        # What the systems report happens now on the simulated clock, whatever their own clocks say.
        return tuple(replace(e, at=self.now) for e in events)

    def close(self) -> None:
        """Release the connectors and the event loop."""
        self.world.close()
