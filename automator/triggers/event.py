"""`when: {event: TYPE, where: EXPR, pipeline: NAME}`: an event of one type, optionally filtered."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from automator.config.context import CompileContext
from automator.model import EventTrigger, Trigger

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
