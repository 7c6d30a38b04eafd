"""`when: {held: KIND.FIELD, is: VALUE, for: DURATION | until: TIME}`: a value that stayed; a timer per entity."""
from __future__ import annotations

from datetime import datetime
from collections.abc import Mapping, Sequence
from typing import Any

from automator.clock import end_of_day, show_time, start_of_day
from automator.config.context import CompileContext, branch_hint
from automator.model import Entity, EntityRef, HeldTrigger, Rule, Timer, Trigger
from automator.model import same
from automator.triggers.base import Arming, Deciding, TriggerKind, outside_pipeline
from automator.triggers.changed import check_stages, split_field

KEY = "held"
ANCHORS = ("end_of_day", "start_of_day")


def compile(raw: Mapping[str, Any], path: Sequence[str | int], ctx: CompileContext) -> HeldTrigger | None:
    """Build the trigger: exactly one of `for` and `until`; `until` is an anchor or an expression."""
    field = split_field(raw[KEY], (*path, KEY), ctx)
    pipeline = raw.get("pipeline")
    if pipeline is not None:
        ctx.pipeline(pipeline, (*path, "pipeline"))
    if "is" not in raw:
        ctx.error(path, "'held' needs 'is': the value that must stay")
        return None
    if ("for" in raw) == ("until" in raw):
        ctx.error(path, "'held' needs exactly one of 'for' (a duration) or 'until' (end_of_day, start_of_day or "
                        "an expression)")
        return None
    for_ = ctx.duration(raw["for"], (*path, "for")) if "for" in raw else None
    until: Any = None
    if "until" in raw:
        until = raw["until"] if raw["until"] in ANCHORS else ctx.expr(raw["until"], (*path, "until"))
        if raw["until"] in ANCHORS and ctx.config is not None and ctx.config.branch(raw.get("branch")) is None:
            ctx.error((*path, "until"), f"'{raw['until']}' needs business hours",
                      "add `branches:` with hours to automator.yaml (or name a `branch:`)")
    branch = raw.get("branch")
    if branch is not None and ctx.config is not None and branch not in ctx.config.branches:
        ctx.error((*path, "branch"), f"unknown branch '{branch}'", branch_hint(branch, ctx))
    if field is None:
        return None
    check_stages(*field, raw["is"], pipeline, (*path, "is"), ctx)
    return HeldTrigger(kind=field[0], field=field[1], value=raw["is"], for_=for_, until=until, branch=branch,
                       pipeline=pipeline)


def routes(trigger: Trigger) -> list[str]:
    """Routing keys: the entity field (any change of it may arm or cancel the timer)."""
    assert isinstance(trigger, HeldTrigger)
    return [f"field:{trigger.kind}.{trigger.field}"]


def transition(trigger: HeldTrigger, before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> str | None:
    """`arm` when the field has just taken the value, `cancel` when it has just left it, else None."""
    was = before is not None and trigger.field in before and same(before[trigger.field], trigger.value)
    now = after is not None and trigger.field in after and same(after[trigger.field], trigger.value)
    if now and not was:
        return "arm"
    if was and not now:
        return "cancel"
    return None


def holds(trigger: HeldTrigger, fields: Mapping[str, Any] | None) -> bool:
    """Whether the entity still holds the value (checked again when the timer fires)."""
    return fields is not None and same(fields.get(trigger.field), trigger.value)


def timer_id(rule_id: str, ref: EntityRef) -> str:
    """One held timer per rule and entity: re-arming replaces it."""
    return f"held/{rule_id}/{ref}"


def timer(rule: Rule, ref: EntityRef, fields: Mapping[str, Any], arming: Arming) -> Timer | None:
    """The timer of a `held` rule for one entity that has just taken the value; None when no due time can be
    worked out (no business hours, an `until` that names no moment)."""
    trigger = rule.trigger
    assert isinstance(trigger, HeldTrigger)
    now = arming.now
    if trigger.for_ is not None:
        due: datetime | None = trigger.for_.add_to(now, arming.timezone)
    elif isinstance(trigger.until, str):
        hours = arming.hours(trigger.branch, fields)
        if hours is None:
            return None
        due = (end_of_day if trigger.until == "end_of_day" else start_of_day)(now, hours)
    else:
        assert trigger.until is not None
        due = arming.moment(trigger.until, ref, fields)
    if due is None:
        return None
    return Timer(id=timer_id(rule.id, ref), due_at=due, kind=KEY, rule_id=rule.id, key=str(ref),
                 payload={"since": now.isoformat()})


def routed(rule: Rule, deciding: Deciding) -> None:
    """Arm the timer when the field has just taken the value (in the pipeline), cancel it when it has left it."""
    trigger = rule.trigger
    assert isinstance(trigger, HeldTrigger) and deciding.event.entity is not None
    ref = deciding.event.entity
    after = deciding.fields_after
    in_pipeline = outside_pipeline(trigger.pipeline, after) is None
    step = transition(trigger, deciding.fields_before, after)
    if step == "arm" and in_pipeline:
        armed = timer(rule, ref, after or {}, deciding)
        if armed is not None:
            deciding.set_timer(armed)
            due = show_time(armed.due_at, deciding.timezone, seconds=False)
            deciding.why_not(rule.id, f"waiting: {describe(trigger)} (until {due})")
    elif step == "cancel" or (step is None and not in_pipeline):
        deciding.cancel_timer(timer_id(rule.id, ref))
        deciding.why_not(rule.id, f"{trigger.kind}.{trigger.field} changed: held timer cancelled")


def fired(rule: Rule, deciding: Deciding) -> None:
    """The timer came due: start the rule if the entity still holds the value."""
    trigger = rule.trigger
    assert isinstance(trigger, HeldTrigger) and deciding.event.entity is not None
    fields = deciding.fields_before
    if not holds(trigger, fields):
        deciding.why_not(rule.id, f"{describe(trigger)}: no longer holds")
        return
    deciding.start(rule, deciding.event.entity, fields)


def armed(rule: Rule, entity: Entity, arming: Arming) -> Timer | None:
    """The timer that state already known arms (a test's `given:`), as if the value had just been seen."""
    trigger = rule.trigger
    assert isinstance(trigger, HeldTrigger)
    if not holds(trigger, entity.fields):
        return None
    if outside_pipeline(trigger.pipeline, entity.fields):
        return None
    return timer(rule, entity.ref, entity.fields, arming)


def describe(trigger: HeldTrigger) -> str:
    """One line for traces and dry-run output."""
    span = f"for {trigger.for_.text}" if trigger.for_ else f"until {getattr(trigger.until, 'source', trigger.until)}"
    return f"{trigger.kind}.{trigger.field} is {trigger.value!r} {span}"


KIND = TriggerKind(KEY, HeldTrigger, compile, routes, describe, routed, fired=fired, armed=armed, per_entity=True)
