"""Advances one Run through its steps until it waits or ends; records TraceSteps by config path."""
from __future__ import annotations

from dataclasses import replace
from collections.abc import Sequence
from typing import Any

from automator.core.outcome import Outcome, Stop, StepError, Wait
from automator.core.state import RunState
from automator.model import Run, Step
from automator.steps import BY_MODEL


def advance(state: RunState) -> Run:
    """Run steps from the run's cursor until it waits, stops, fails or ends; return the updated Run."""
    try:
        outcome, cursor = _walk(state.rule.steps, ("do",), (), state.run.cursor or (0,), state)
    except StepError as exc:
        state.record(exc.path or "do", "error", error=str(exc))
        return _finish(state, "failed", ())
    if isinstance(outcome, Wait):
        return _finish(state, "waiting", cursor)
    if isinstance(outcome, Stop):
        return _finish(state, "stopped", ())
    return _finish(state, "done", ())


def _walk(steps: Sequence[Step], prefix: tuple[Any, ...], cursor_prefix: tuple[Any, ...], resume: tuple[Any, ...],
          state: RunState) -> tuple[Outcome, tuple[Any, ...]]:
    """Walk a step list from `resume`; returns the outcome and, on a wait, the cursor to resume at."""
    start = int(resume[0]) if resume else 0
    inner = resume[1:] if resume else ()
    for index in range(start, len(steps)):
        step = steps[index]
        here = (*prefix, index)
        path = "/".join(str(p) for p in here)
        kind = BY_MODEL[type(step)]
        if kind.execute is None:  # a step holding steps: walked here, so that a wait inside it can be resumed
            assert kind.choose is not None and kind.body is not None
            if index == start and inner:  # resuming inside a branch chosen before the wait
                branch, sub = inner[0], inner[1:]
            else:
                try:
                    branch, sub = kind.choose(step, path, state), (0,)
                except StepError as exc:
                    exc.path = exc.path or path
                    raise
            outcome, cursor = _walk(kind.body(step, branch), (*here, branch), (*cursor_prefix, index, branch), sub,
                                    state)
        else:
            try:
                outcome = kind.execute(step, path, state)
            except StepError as exc:
                exc.path = exc.path or path
                raise
            cursor = (*cursor_prefix, index + 1)
        if isinstance(outcome, Wait) and state.preview:
            state.now = outcome.until  # look ahead: later steps are shown as they would run then
            state.ectx = replace(state.ectx, now=outcome.until.astimezone(state.ectx.tz))
            state.preview_offset += 1
            continue
        if outcome is not None:
            return outcome, cursor
    return None, ()


def _finish(state: RunState, status: str, cursor: tuple[Any, ...]) -> Run:
    vars_ = state.scope.get("vars", {})
    return replace(state.run, status=status, cursor=cursor, vars=dict(vars_),
                   trace=(*state.run.trace, *state.trace))
