"""decide(project, snapshot, event, now) → Decision: entity before/after, matching, per/mode, deterministic ids."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from datetime import datetime
from collections.abc import Iterable, Mapping
from typing import Any
from zoneinfo import ZoneInfo

from automator.clock import BusinessHours
from automator.config.project import Project
from automator import client_segment
from automator.core import scope as scopes
from automator.core.runner import advance
from automator.core.state import RunState
from automator import facts as reports_facts, history
from automator.loyalty import runtime as loyalty
from automator.loyalty.decision import TIMER_KIND as LOYALTY_TIMER, Outcome as LoyaltyOutcome
from automator.loyalty.ledger import Entry
from automator.expr import EvalError, Expr, Record
from automator.model import (ENGINE, Decision, Effect, Entity, EntityRef, Event, Rule, Run, Timer, TraceStep, Visit,
                             WhyNot, plain)
from automator.segments import RESCORE, rescored_fields
from automator.steps.wait import resume_timer_id
from automator.store.base import Snapshot
from automator.triggers import TRIGGERS, kind_of
from automator.model import same

STATE_VERBS = ("created", "updated", "changed", "restored")
ACTIVE = ("waiting", "queued")


@dataclass
class _Plan:
    """What one decision collects while rules run."""

    runs: dict[str, Run] = field(default_factory=dict)
    effects: list[Effect] = field(default_factory=list)
    timers: dict[str, Timer] = field(default_factory=dict)
    cancel: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    why_not: list[WhyNot] = field(default_factory=list)
    ledger: list[Entry] = field(default_factory=list)  # shared with every run's RunState: actions add to it

    def set_timer(self, timer: Timer) -> None:
        self.timers[timer.id] = timer
        if timer.id in self.cancel:
            self.cancel.remove(timer.id)

    def cancel_timer(self, timer_id: str) -> None:
        self.timers.pop(timer_id, None)
        if timer_id not in self.cancel:
            self.cancel.append(timer_id)

    def add_loyalty(self, outcome: LoyaltyOutcome) -> None:
        """Lay what loyalty decided into the plan: its rows, events, timers and mirror effects."""
        known = {e.id for e in self.ledger}
        self.ledger.extend(e for e in outcome.entries if e.id not in known)
        self.events.extend(outcome.events)
        self.effects.extend(outcome.effects)
        for timer_id in outcome.cancel_timers:
            self.cancel_timer(timer_id)
        for timer in outcome.timers:
            self.set_timer(timer)


def decide(project: Project, snapshot: Snapshot, event: Event, now: datetime, *, preview: bool = False) -> Decision:
    """The effects, timers, runs and events that one event leads to. Pure: reads the snapshot, changes nothing."""
    snapshot = _Memo(snapshot)
    before = snapshot.entity(event.entity) if event.entity else None
    after = apply_event(before, event, now)
    try:
        visits = new_visits(event, snapshot)
    except history.HistoryError as exc:
        # Refused whole: a visit kept with a guessed amount would be wrong money in every figure after it.
        return Decision(event=event, entity_before=before, entity_after=None,
                        why_not=(WhyNot(event.type, f"the event is refused: {exc}"),))
    plan = _Plan()
    if visits:
        assert event.entity is not None  # visit_of names the client
        after = history.recorded(Entity(event.entity, after.fields if after else {}, event.at or now), visits)
        if project.segments is not None and after.fields.get("visit_count"):  # a purchase alone scores no one
            after = _rescored(project, snapshot, event, after, visits, now, plan)
    elif event.type == RESCORE and event.source == ENGINE and after is not None and project.segments is not None \
            and after.fields.get("visit_count"):
        after = _rescored(project, snapshot, event, after, (), now, plan)  # the daily rescoring's (recency aged)
    config = project.config
    facts = reports_facts.facts_of(event, before, after, config.channels, project.pipelines, config.timezone)
    if project.loyalty is not None and event.type != "timer.fired":
        plan.add_loyalty(loyalty.on_event(project.loyalty, snapshot, event, after, visits, now, config.timezone,
                                          project.segments))
    ctx = _Deciding(project, snapshot, event, now, before, after, plan, preview)
    if event.type == "timer.fired":
        ctx.timer_fired()
    elif event.depth > project.config.chain_depth:
        for rule in project.router.candidates(event, changed_fields(before, after)):
            plan.why_not.append(WhyNot(rule.id, f"chain depth {event.depth} is over the limit of "
                                                f"{project.config.chain_depth} (a loop of rules?)"))
    else:
        ctx.route()
    if project.loyalty is not None and plan.ledger:
        settled, unmirrored = loyalty.settle(project.loyalty, snapshot, snapshot, plan.ledger, config.connectors, now,
                                             event.depth, {e.key: e.run_id for e in plan.effects})
        plan.add_loyalty(settled)
        plan.why_not.extend(WhyNot("loyalty", problem) for problem in unmirrored)
    return Decision(event=event, entity_before=before, entity_after=after if after is not before else None,
                    runs=tuple(plan.runs.values()), effects=tuple(plan.effects), timers=tuple(plan.timers.values()),
                    cancel_timers=tuple(plan.cancel), events=tuple(plan.events), why_not=tuple(plan.why_not),
                    visits=visits, facts=facts, ledger=tuple(plan.ledger))


def _rescored(project: Project, snapshot: Snapshot, event: Event, client: Entity, visits: tuple[Visit, ...],
              now: datetime, plan: _Plan) -> Entity:
    """The client a visit added to, rescored at once (segments.yaml): the new segment and scores in their fields,
    and `segment.changed` in the plan's events when they moved; as they were when there are no cut points yet."""
    config = project.segments
    assert config is not None
    try:
        scored = client_segment.rescore(config, snapshot, client.ref.id, now, project.config.timezone,
                                    scopes.eval_context(project, snapshot, now, client), visits)
    except client_segment.Unscorable as exc:
        plan.why_not.append(WhyNot("segments.yaml", f"the client is not rescored: {exc}"))
        return client
    changed = client_segment.changed_event(config, client.fields.get("segment"), scored, event_id=event.id,
                                       client=client.ref.id, now=now, depth=event.depth + 1)
    if changed is not None:
        plan.events.append(changed)
    return Entity(client.ref, rescored_fields(client.fields, scored), client.updated_at)


def new_visits(event: Event, snapshot: Snapshot) -> tuple[Visit, ...]:
    """The visit a `visit.completed` / `purchase.completed` event adds to its client's history, unless the store
    has it already (a webhook repeated, a backfill over a known visit); a HistoryError when it cannot be kept."""
    visit = history.visit_of(event)
    return (visit,) if visit is not None and not snapshot.has_visit(visit.id) else ()


def apply_event(before: Entity | None, event: Event, now: datetime) -> Entity | None:
    """The entity's state after the event: `<kind>.created/updated` of its own kind merge their data (a client's
    history fields excepted: the product keeps them from visits, see `automator.history`)."""
    if event.entity is None or event.kind != event.entity.kind or event.verb not in STATE_VERBS + ("deleted",):
        return before
    fields = dict(before.fields) if before else {}
    if event.verb == "deleted":
        fields["deleted"] = True
    else:
        data = history.without_derived(event.data) if event.kind == "client" else event.data
        fields.update({k: v for k, v in data.items() if k != "id"})
    return Entity(ref=event.entity, fields=fields, updated_at=event.at or now)


def changed_fields(before: Entity | None, after: Entity | None) -> list[str]:
    """Names of fields whose value differs between the two states."""
    if after is None or after is before:
        return []
    old = before.fields if before else {}
    return [k for k, v in after.fields.items() if k not in old or not same(old[k], v)]


def run_id(*parts: object) -> str:
    """Deterministic: deciding the same event again yields the same ids, so a replay inserts nothing new."""
    return hashlib.sha1("|".join(str(p) for p in parts).encode()).hexdigest()[:16]


class _Arming:
    """What a trigger reads to work out a timer's due time (see `automator.triggers.base.Arming`)."""

    def __init__(self, project: Project, snapshot: Snapshot, now: datetime) -> None:
        self.project, self.snapshot, self.now = project, snapshot, now

    @property
    def timezone(self) -> ZoneInfo:
        return self.project.config.timezone

    def hours(self, branch: str | None, fields: Mapping[str, Any]) -> BusinessHours | None:
        return self.project.config.branch(branch or scopes.branch_of(self.snapshot, fields))

    def moment(self, expr: Expr, ref: EntityRef, fields: Mapping[str, Any]) -> datetime | None:
        project, snapshot, now = self.project, self.snapshot, self.now
        scope = scopes.build(project, snapshot, Event(id="", type="timer.arm", at=now, entity=ref), ref, fields, None,
                             now=now)
        try:
            value = expr.evaluate(scope, scopes.eval_context(project, snapshot, now))
        except EvalError:
            return None
        return scopes.to_datetime(value, project.config.timezone)


class _Deciding(_Arming):
    """One call of decide(): the event, both states and the plan being built (the triggers' `Deciding`)."""

    def __init__(self, project: Project, snapshot: Snapshot, event: Event, now: datetime, before: Entity | None,
                 after: Entity | None, plan: _Plan, preview: bool) -> None:
        super().__init__(project, snapshot, now)
        self.event, self.before, self.after, self.plan, self.preview = event, before, after, plan, preview
        self.fields_before = before.fields if before else None
        self.fields_after = after.fields if after else None
        self.ectx = scopes.eval_context(project, snapshot, now, after)
        self.views: dict[str, dict[str, Any]] = {}
        self.scopes: dict[tuple[str, EntityRef | None], tuple[Mapping[str, Any] | None, dict[str, Any]]] = {}

    def why_not(self, rule_id: str, reason: str) -> None:
        self.plan.why_not.append(WhyNot(rule_id, reason))

    def set_timer(self, timer: Timer) -> None:
        self.plan.set_timer(timer)

    def cancel_timer(self, timer_id: str) -> None:
        self.plan.cancel_timer(timer_id)

    def evaluate(self, expr: Expr, fields: Mapping[str, Any]) -> Any:
        return expr.evaluate(self.scope(self.event, self.event.entity, fields), self.ectx)

    # ---- routing ---------------------------------------------------------------------------------
    def route(self) -> None:
        changed = changed_fields(self.before, self.after)
        echo = self.event.echo_of
        if echo and not changed and self.event.verb in STATE_VERBS:
            for rule in self.project.router.candidates(self.event, changed):
                self.why_not(rule.id, "the echo of our own effect: it changes nothing")
            return
        for rule in self.project.router.candidates(self.event, changed):
            if rule.id == echo:
                self.why_not(rule.id, "the echo of this rule's own effect")
                continue
            routed = kind_of(rule.trigger).routed
            assert routed is not None  # the router indexes only kinds that react to routed events
            routed(rule, self)

    # ---- timers ----------------------------------------------------------------------------------
    def timer_fired(self) -> None:
        data = self.event.data
        rule = self.project.rule(str(data.get("rule")))
        kind = data.get("kind")
        if kind == "resume":
            self.resume(str(data.get("run")), rule)
            return
        if kind == LOYALTY_TIMER:
            if self.project.loyalty is not None:
                self.plan.add_loyalty(loyalty.on_timer(self.project.loyalty, self.snapshot, self.event, self.now,
                                                       self.project.config.timezone, self.project.segments))
            return
        if rule is None:
            self.why_not(str(data.get("rule")), "the rule no longer exists")
            return
        trigger = TRIGGERS.get(str(kind))
        if trigger is not None and trigger.fired is not None:
            trigger.fired(rule, self)

    def for_each(self, rule: Rule, ref: EntityRef | None = None, fields: Mapping[str, Any] | None = None) -> None:
        """One run per record the rule's `for_each` selects, each its own (its run id names the event, the rule and
        the record, so deciding the event again starts none twice). `ref` and `fields` are the trigger's entity:
        `items:` is evaluated in its scope."""
        each = rule.for_each
        assert each is not None
        ectx = self.ectx
        selected: Iterable[Entity] = ()
        if each.items is None:
            selected = self.snapshot.entities(each.kind)
        else:
            try:
                selected = self.items(each.items, each.kind, self.scope(self.event, ref, fields))
            except EvalError as exc:
                self.why_not(rule.id, f"for_each items {each.items.source!r} failed: {exc}")
                return
        after = self.after
        for entity in selected:
            if after is not None and entity.ref == after.ref:  # the event's own record, as the event leaves it
                entity = after
            fields = entity.fields
            if each.where is not None:
                scope = self.scope(self.event, entity.ref, fields)
                try:
                    if not each.where.evaluate(scope, ectx):
                        continue
                except EvalError as exc:
                    self.why_not(rule.id, f"{entity.ref}: for_each where failed: {exc}")
                    continue
            self.run_for(rule, entity.ref, fields)

    def items(self, expr: Expr, kind: str, scope: Mapping[str, Any]) -> list[Entity]:
        """The stored records a `for_each: {items:}` lookup names, each once, in its order."""
        value = expr.evaluate(scope, self.ectx)
        if not isinstance(value, (list, tuple)):
            raise EvalError(f"it gave {plain(value)!r}, not a list of records")
        out: dict[EntityRef, Entity] = {}
        for item in value:
            if not isinstance(item, Record) or item.kind != kind or item.get("id") is None:
                raise EvalError(f"it gave {plain(item)!r}, not a {kind} record")
            ref = EntityRef(kind, str(item["id"]))
            entity = self.snapshot.entity(ref)
            if entity is not None:
                out.setdefault(ref, entity)
        return list(out.values())

    def resume(self, rid: str, rule: Rule | None) -> None:
        run = self.plan.runs.get(rid) or self.snapshot.run(rid)
        if run is None or run.status != "waiting":
            self.plan.why_not.append(WhyNot(run.rule_id if run else "?", f"run {rid} is not waiting"))
            return
        if rule is None:
            self.finish(replace(run, status="cancelled", trace=(*run.trace, TraceStep(
                path="do", kind="cancel", detail="the rule was removed while the run waited", at=self.now))))
            return
        if run.rule_version != rule.version:
            if run.rule_version.partition(".")[0] != rule.shape:
                # Steps were added, removed or reordered: the cursor no longer means what it meant.
                self.finish(replace(run, status="cancelled", trace=(*run.trace, TraceStep(
                    path="do", kind="cancel", at=self.now,
                    detail=f"the rule's steps changed while the run waited (version {run.rule_version} → "
                           f"{rule.version}): cancelled, not resumed at a step that moved"))))
                return
            run = replace(run, rule_version=rule.version, trace=(*run.trace, TraceStep(
                path="do", kind="version", at=self.now,
                detail=f"continues on the rule's new version {rule.version} (was {run.rule_version})")))
        entity = self.snapshot.entity(run.entity) if run.entity else None
        origin = event_from(run.origin, self.event)
        scope = self.scope(origin, run.entity, entity.fields if entity else None, run.vars)
        self.advance(rule, replace(run, status="running"), scope)

    # ---- runs ------------------------------------------------------------------------------------
    def scope(self, event: Event, ref: EntityRef | None, fields: Mapping[str, Any] | None,
              vars_: Mapping[str, Any] | None = None) -> dict[str, Any]:
        # Every rule an event reaches sees the same event, entity and linked entities: the scope is built once
        # and each run gets its own copy of the top level (expressions only read it; `set` replaces `vars`).
        key = (event.id, ref)
        cached = self.scopes.get(key)
        if cached is None or cached[0] is not fields:
            before = self.before.fields if self.before and ref == self.event.entity else None
            if event.id not in self.views:
                config = self.project.config
                self.views[event.id] = scopes.event_view(event, config.catalogue, config.timezone)
            cached = self.scopes[key] = (fields, scopes.build(self.project, self.snapshot, event, ref, fields, before,
                                                              None, self.views[event.id], now=self.now))
        scope = dict(cached[1])
        scope["vars"] = dict(vars_ or {})
        return scope

    def start(self, rule: Rule, ref: EntityRef | None, fields: Mapping[str, Any] | None) -> None:
        """The trigger matched: one run about its entity, or, for a `for_each` rule, one per record it selects."""
        if rule.for_each is not None:
            self.for_each(rule, ref, fields)
        else:
            self.run_for(rule, ref, fields)

    def run_for(self, rule: Rule, ref: EntityRef | None, fields: Mapping[str, Any] | None) -> None:
        """One run of `rule` about the record `ref` (its `fields` as the event leaves them): its `if:` conditions
        in order (a false one is a why-not, a failing one a failed run), then its `per` key and `mode` against the
        key's active runs (single: skipped; queued: queued; restart: they are cancelled), then its steps. The run's
        id names the event and the rule, and for a `for_each` rule the record too, so deciding the event again
        starts nothing twice."""
        event = self.event
        scope = self.scope(event, ref, fields)
        rid = run_id(event.id, rule.id, ref if rule.for_each else "")
        ectx = self.ectx
        trace: list[TraceStep] = [TraceStep(path="when", kind="trigger", detail=scopes.describe(rule), at=self.now)]
        values: list[tuple[str, Any]] = []
        for index, expr in enumerate(rule.conditions):
            path = f"if/{index}"
            try:
                value = expr.evaluate(scope, ectx)
            except EvalError as exc:
                trace.append(TraceStep(path=path, kind="condition", detail=expr.source, error=str(exc), at=self.now))
                self.plan.why_not.append(WhyNot(rule.id, f"condition {expr.source!r} failed: {exc}",
                                                tuple(values)))
                self.finish(Run(id=rid, rule_id=rule.id, rule_version=rule.version, key="", event_id=event.id,
                                status="failed", entity=ref, trace=tuple(trace), started_at=self.now,
                                depth=event.depth, origin=event.to_json()))
                return
            values.append((expr.source, plain(value)))
            trace.append(TraceStep(path=path, kind="condition", detail=expr.source, value=plain(value), at=self.now))
            if not value:
                self.plan.why_not.append(WhyNot(rule.id, f"condition {expr.source!r} is {plain(value)!r}",
                                                tuple(values)))
                return
        try:
            key = scopes.per_key(rule, scope, ref, self.ectx)
        except EvalError as exc:
            self.plan.why_not.append(WhyNot(rule.id, f"per key failed: {exc}", tuple(values)))
            return
        run = Run(id=rid, rule_id=rule.id, rule_version=rule.version, key=key, event_id=event.id, status="running",
                  cursor=(0,), entity=ref, trace=tuple(trace), started_at=self.now, depth=event.depth,
                  origin=event.to_json())
        active = [r for r in self.active(rule.id, key) if r.id != rid]
        if active and rule.mode == "single":
            self.plan.why_not.append(WhyNot(rule.id, f"a run for {key} is still waiting (mode: single)",
                                            tuple(values)))
            return
        if active and rule.mode == "queued":
            self.plan.runs[rid] = replace(run, status="queued")
            return
        if rule.mode == "restart":
            for old in active:
                self.cancel_run(old, f"replaced by a newer run for {key} (mode: restart)")
        self.advance(rule, run, scope)

    def advance(self, rule: Rule, run: Run, scope: dict[str, Any]) -> None:
        state = RunState(run=run, rule=rule, project=self.project, snapshot=self.snapshot, scope=scope,
                         ectx=self.ectx, now=self.now, preview=self.preview, ledger=self.plan.ledger)
        done = advance(state)
        self.plan.effects.extend(state.effects)
        self.plan.events.extend(state.events)
        for timer in state.timers:
            if not self.preview or done.status == "waiting":
                self.plan.set_timer(timer)
        self.finish(done)

    def finish(self, run: Run) -> None:
        self.plan.runs[run.id] = run
        rule = self.project.rule(run.rule_id)
        if run.status in ACTIVE or not run.key or rule is None or rule.mode != "queued":
            return
        queued = [r for r in self.active(run.rule_id, run.key) if r.status == "queued" and r.id != run.id]
        if queued:
            nxt = queued[0]
            entity = self.snapshot.entity(nxt.entity) if nxt.entity else None
            origin = event_from(nxt.origin, self.event)
            self.advance(rule, replace(nxt, status="running", cursor=(0,)),
                         self.scope(origin, nxt.entity, entity.fields if entity else None))

    def cancel_run(self, run: Run, reason: str) -> None:
        self.plan.cancel_timer(resume_timer_id(run.id))
        self.plan.runs[run.id] = replace(run, status="cancelled", trace=(*run.trace, TraceStep(
            path="do", kind="cancel", detail=reason, at=self.now)))

    def active(self, rule_id: str, key: str) -> list[Run]:
        """Active runs for a key: the stored ones as this decision has changed them, then the new ones."""
        stored = [self.plan.runs.get(r.id, r) for r in self.snapshot.active_runs(rule_id, key)]
        fresh = [r for r in self.plan.runs.values() if r.rule_id == rule_id and r.key == key
                 and r.id not in {s.id for s in stored}]
        return [r for r in (*stored, *fresh) if r.status in ACTIVE]


class _Memo:
    """The snapshot, read once per entity: one decision asks for the same client for every rule it runs."""

    def __init__(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot
        self._entities: dict[EntityRef, Entity | None] = {}
        self._active: dict[str, list[Run]] = {}

    def active_runs(self, rule_id: str | None, key: str) -> list[Run]:
        if key not in self._active:  # one query per key, however many rules share it
            self._active[key] = self._snapshot.active_runs(None, key)
        if rule_id is None:  # every rule's, as Snapshot.active_runs promises
            return list(self._active[key])
        return [r for r in self._active[key] if r.rule_id == rule_id]

    def entity(self, ref: EntityRef) -> Entity | None:
        if ref not in self._entities:
            self._entities[ref] = self._snapshot.entity(ref)
        return self._entities[ref]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._snapshot, name)


def arm_held(project: Project, snapshot: Snapshot, entity: Entity, now: datetime) -> list[Timer]:
    """The timers state already known arms (a test's `given:`), as if each value had just been seen."""
    timers = []
    arming = _Arming(project, snapshot, now)
    for rule in project.router.field_rules(entity.ref.kind, entity.fields):
        armed = kind_of(rule.trigger).armed
        timer = armed(rule, entity, arming) if armed is not None else None
        if timer is not None:
            timers.append(timer)
    return timers


def event_from(data: Mapping[str, Any], fallback: Event) -> Event:
    """Rebuild a run's triggering event from its stored form."""
    return Event.from_json(data) if data else fallback
