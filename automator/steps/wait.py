"""`wait: 14d | {for: EXPR} | {until: EXPR | end_of_day | start_of_day}`: the run sleeps on a durable timer."""
from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo
from collections.abc import Mapping, Sequence
from typing import Any

from automator.clock import BusinessHours, Duration, end_of_day, parse_duration, start_of_day
from automator.core.outcome import Outcome, StepError, Wait
from automator.config.context import CompileContext, branch_hint
from automator.core.scope import to_datetime
from automator.core.state import RunState
from automator.expr import EvalContext, EvalError, Expr
from automator.model import Timer, WaitStep


ANCHORS = ("end_of_day", "start_of_day")
_UTC = ZoneInfo("UTC")


def compile(raw: Mapping[str, Any], path: Sequence[str | int], ctx: CompileContext) -> WaitStep | None:
    """Build the step from its three spellings."""
    spec = raw["wait"]
    here = (*path, "wait")
    if not isinstance(spec, Mapping):
        duration = ctx.duration(spec, here)
        return WaitStep(duration=duration, location=ctx.location(path)) if duration else None
    if ("for" in spec) == ("until" in spec):
        ctx.error(here, "`wait` needs exactly one of 'for' or 'until'")
        return None
    if "for" in spec:
        expr = ctx.expr(spec["for"], (*here, "for"))
        if expr is not None and expr.names <= {"duration"} and _constant_span(expr) is None:
            ctx.error((*here, "for"), f"`wait: {{for: {expr.source}}}` is not a positive duration",
                      "a wait never goes back; to act before a moment, wait until it: "
                      "{until: \"add(booking.starts_at, '-1d')\"}")
            return None
        return WaitStep(for_=expr, location=ctx.location(path)) if expr else None
    branch = spec.get("branch")
    if branch is not None and ctx.config is not None and branch not in ctx.config.branches:
        ctx.error((*here, "branch"), f"unknown branch '{branch}'", branch_hint(branch, ctx))
    if spec["until"] in ANCHORS:
        if ctx.config is not None and ctx.config.branch(branch) is None and not ctx.config.branches:
            ctx.error((*here, "until"), f"'{spec['until']}' needs business hours",
                      "add `branches:` with hours to automator.yaml")
        return WaitStep(until=spec["until"], branch=branch, location=ctx.location(path))
    expr = ctx.expr(spec["until"], (*here, "until"))
    return WaitStep(until=expr, branch=branch, location=ctx.location(path)) if expr else None


def _constant_span(expr: Expr) -> Duration | timedelta | None:
    """The span of a `for:` written with literals only (`duration('-1d')`, `0`), known before any event."""
    try:
        return to_duration(expr.evaluate({}, EvalContext(now=datetime(2000, 1, 1, tzinfo=_UTC), tz=_UTC)))
    except EvalError:
        return None


def due_at(step: WaitStep, state: RunState) -> datetime:
    """When the wait ends, in the project's timezone."""

    tz = state.project.config.timezone
    if step.duration is not None:
        return step.duration.add_to(state.now, tz)
    if step.for_ is not None:
        value = state.eval(step.for_)
        span = to_duration(value)
        if span is None:
            shown = value if isinstance(value, (str, Duration)) else repr(value)
            raise StepError(f"wait for {step.for_.source!r}: expected a positive duration, got {shown}")
        return span.add_to(state.now, tz) if isinstance(span, Duration) else state.now + span
    if isinstance(step.until, str):
        hours = branch_hours(step.branch, state)
        if hours is None:
            raise StepError(f"wait until {step.until}: no business hours for this entity's branch")
        return (end_of_day if step.until == "end_of_day" else start_of_day)(state.now, hours)
    assert step.until is not None
    value = state.eval(step.until)
    at = to_datetime(value, state.project.config.timezone)
    if at is None:
        raise StepError(f"wait until {step.until.source!r}: expected a date and time, got {value!r}")
    return at


def execute(step: WaitStep, path: str, state: RunState) -> Outcome:
    """Set the run's timer; a moment already past does not wait at all."""

    until = due_at(step, state)
    if until <= state.now:
        state.record(path, "wait", "already past", until.isoformat())
        return None
    state.record(path, "wait", "until", until.isoformat())
    state.timers.append(Timer(id=resume_timer_id(state.run.id), due_at=until, kind="resume", rule_id=state.rule.id,
                              key=state.run.key, run_id=state.run.id, payload={"path": path}))
    return Wait(until)


def resume_timer_id(run_id: str) -> str:
    """A run waits on at most one timer at a time."""
    return f"resume/{run_id}"


def branch_hours(explicit: str | None, state: RunState) -> BusinessHours | None:
    """Business hours of the named branch, else of the entity's (or its booking's) branch, else the default."""
    name = explicit
    for key in ("booking", "entity", "deal", "client"):
        if name:
            break
        fields = state.scope.get(key)
        if isinstance(fields, Mapping) and fields.get("branch"):
            name = str(fields["branch"])
    return state.project.config.branch(name)


def to_duration(value: Any) -> Duration | timedelta | None:
    """A positive span: a Duration, a timedelta, a duration text or a number of seconds."""
    if isinstance(value, Duration):
        return value if value.approx() > timedelta(0) else None
    if isinstance(value, timedelta):
        return value if value.total_seconds() > 0 else None
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        try:
            return parse_duration(value)
        except ValueError:
            return None
    return None
