"""`when: {event: TYPE, where: EXPR, pipeline: NAME}`: an event of one type, optionally filtered."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from automator.config.context import CompileContext
from automator.expr import EvalError
from automator.model import EventTrigger, Rule, Trigger, plain
from automator.triggers.base import Deciding, TriggerKind, outside_pipeline

KEY = "event"


def compile(raw: Mapping[str, Any], path: Sequence[str | int], ctx: CompileContext) -> EventTrigger:
    """Build the trigger; `where` is compiled once here."""
    where = ctx.expr(raw["where"], (*path, "where")) if "where" in raw else None
    pipeline = raw.get("pipeline")
    if pipeline is not None:
        ctx.pipeline(pipeline, (*path, "pipeline"))
    return EventTrigger(type=str(raw[KEY]), where=where, pipeline=pipeline)


def routes(trigger: Trigger) -> list[str]:
    """Routing keys: the event type."""
    assert isinstance(trigger, EventTrigger)
    return [f"event:{trigger.type}"]


def describe(trigger: EventTrigger) -> str:
    """One line for traces and dry-run output."""
    text = f"event {trigger.type}"
    if trigger.pipeline:
        text += f" in pipeline {trigger.pipeline}"
    if trigger.where:
        text += f" where {trigger.where.source}"
    return text


def routed(rule: Rule, deciding: Deciding) -> None:
    """Start the rule unless the event is a repeat, the deal is outside the pipeline or `where` does not hold."""
    trigger = rule.trigger
    assert isinstance(trigger, EventTrigger)
    event = deciding.event
    if event.repeats:
        # The action's answer and the system's webhook report one change: the event happened once.
        # Field rules still see what the repeat adds to the entity.
        deciding.why_not(rule.id, f"the same change as event {event.repeats}, which was already decided")
        return
    fields = deciding.fields_after or deciding.fields_before or {}
    reason = outside_pipeline(trigger.pipeline, fields)
    if reason is None and trigger.where is not None:
        try:
            value = deciding.evaluate(trigger.where, fields)
        except EvalError as exc:
            reason = f"where {trigger.where.source!r} failed: {exc}"
        else:
            reason = None if value else f"where {trigger.where.source!r} is {plain(value)!r}"
    if reason:
        deciding.why_not(rule.id, reason)
        return
    deciding.start(rule, event.entity, deciding.fields_after)


KIND = TriggerKind(KEY, EventTrigger, compile, routes, describe, routed)
