"""`when: {held: KIND.FIELD, is: VALUE, for: DURATION | until: TIME}`: a value that stayed; a timer per entity."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from automator.config.context import CompileContext, branch_hint
from automator.model import EntityRef, HeldTrigger, Trigger
from automator.model import same
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


def describe(trigger: HeldTrigger) -> str:
    """One line for traces and dry-run output."""
    span = f"for {trigger.for_.text}" if trigger.for_ else f"until {getattr(trigger.until, 'source', trigger.until)}"
    return f"{trigger.kind}.{trigger.field} is {trigger.value!r} {span}"

