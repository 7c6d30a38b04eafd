"""`when: {changed: KIND.FIELD, from: VALUE, to: VALUE}`: a field of an entity took a new value."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from automator.config.context import CompileContext
from automator.model import ChangedTrigger, ENTITY_KINDS, Rule, Trigger
from automator.model import same
from automator.triggers.base import Deciding, TriggerKind, outside_pipeline

KEY = "changed"


def split_field(value: Any, path: Sequence[str | int], ctx: CompileContext) -> tuple[str, str] | None:
    """`booking.status` -> ("booking", "status"), reporting an unknown entity kind."""
    kind, _, name = str(value).partition(".")
    if kind not in ENTITY_KINDS or not name:
        ctx.error(path, f"expected KIND.FIELD with KIND one of {', '.join(ENTITY_KINDS)}, got {value!r}")
        return None
    return kind, name


def values(raw: Any) -> tuple[Any, ...] | None:
    """`to: a` or `to: [a, b]` as a tuple; absent means any."""
    if raw is None:
        return None
    return tuple(raw) if isinstance(raw, list) else (raw,)


def check_stages(kind: str, name: str, raw: Any, pipeline: str | None,
                 path: Sequence[str | int], ctx: CompileContext) -> None:
    """Deal stages are written as stage names: check each one (`to: a` or `to: [a, b]`) against the pipeline."""
    if kind != "deal" or name != "stage" or raw is None:
        return
    found = ctx.pipelines.get(pipeline) if pipeline else None
    # Each name of a list is reported where it is written, not at the list.
    items = enumerate(raw) if isinstance(raw, list) else [(None, raw)]
    for index, value in items:
        ctx.stage(found, value, path if index is None else (*path, index))


def compile(raw: Mapping[str, Any], path: Sequence[str | int], ctx: CompileContext) -> ChangedTrigger | None:
    """Build the trigger, checking stage names when the field is `deal.stage`."""
    field = split_field(raw[KEY], (*path, KEY), ctx)
    pipeline = raw.get("pipeline")
    if pipeline is not None:
        ctx.pipeline(pipeline, (*path, "pipeline"))
    if field is None:
        return None
    from_, to = values(raw.get("from")), values(raw.get("to"))
    check_stages(*field, raw.get("from"), pipeline, (*path, "from"), ctx)
    check_stages(*field, raw.get("to"), pipeline, (*path, "to"), ctx)
    return ChangedTrigger(kind=field[0], field=field[1], from_=from_, to=to, pipeline=pipeline)


def routes(trigger: Trigger) -> list[str]:
    """Routing keys: the entity field."""
    assert isinstance(trigger, ChangedTrigger)
    return [f"field:{trigger.kind}.{trigger.field}"]


def match(trigger: ChangedTrigger, before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> str | None:
    """None when the change matches; otherwise why it does not."""
    if after is None or trigger.field not in after:
        return f"{trigger.kind}.{trigger.field} was not set"
    old = before.get(trigger.field) if before else None
    new = after[trigger.field]
    if same(old, new):
        return f"{trigger.kind}.{trigger.field} did not change (still {new!r})"
    if trigger.to is not None and not any(same(new, v) for v in trigger.to):
        return f"{trigger.kind}.{trigger.field} changed to {new!r}, rule wants {_one_of(trigger.to)}"
    if trigger.from_ is not None and not any(same(old, v) for v in trigger.from_):
        return f"{trigger.kind}.{trigger.field} changed from {old!r}, rule wants from {_one_of(trigger.from_)}"
    return None


def routed(rule: Rule, deciding: Deciding) -> None:
    """Start the rule when the field changed as it wants (and the deal is in its pipeline)."""
    trigger = rule.trigger
    assert isinstance(trigger, ChangedTrigger)
    after = deciding.fields_after
    reason = (outside_pipeline(trigger.pipeline, after or deciding.fields_before)
              or match(trigger, deciding.fields_before, after))
    if reason:
        deciding.why_not(rule.id, reason)
        return
    deciding.start(rule, deciding.event.entity, after)


def describe(trigger: ChangedTrigger) -> str:
    """One line for traces and dry-run output."""
    text = f"{trigger.kind}.{trigger.field} changed"
    if trigger.from_ is not None:
        text += f" from {_one_of(trigger.from_)}"
    if trigger.to is not None:
        text += f" to {_one_of(trigger.to)}"
    return text


def _one_of(vals: tuple[Any, ...]) -> str:
    return " or ".join(repr(v) for v in vals)


KIND = TriggerKind(KEY, ChangedTrigger, compile, routes, describe, routed)
