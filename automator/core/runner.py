"""Advances one Run through its steps until it waits or ends; records TraceSteps by config path."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from automator.core.outcome import Outcome, Stop, StepError, Wait
from automator.expr import EvalContext, EvalError, Expr, Template
from automator.steps import action, control, wait
from automator.model import (ActionStep, EmitStep, Effect, Event, IfStep, Rule, Run, SetStep, Step, StopStep,
                             Timer, TraceStep, WaitStep)

if TYPE_CHECKING:
    from automator.config.project import Project
    from automator.store.base import Snapshot


@dataclass
class RunState:
    """Everything one run's steps read and produce while the core advances it."""

    run: Run
    rule: Rule
    project: Project
    snapshot: Snapshot
    scope: dict[str, Any]
    ectx: EvalContext
    now: datetime
    preview: bool = False  # dry-run: look past waits without changing anything
    effects: list[Effect] = field(default_factory=list)
    timers: list[Timer] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    trace: list[TraceStep] = field(default_factory=list)
    preview_offset: int = 0

    def eval(self, expr: Expr) -> Any:
        """Evaluate an expression in this run's scope; EvalError becomes a StepError."""
        try:
            return expr.evaluate(self.scope, self.ectx)
        except EvalError as exc:
            raise StepError(f"{expr.source}: {exc}") from exc

    def render(self, value: Any) -> Any:
        """Render every Template inside params."""
        if isinstance(value, Template):
            try:
                return value.render(self.scope, self.ectx)
            except EvalError as exc:
                raise StepError(f"{value.source}: {exc}") from exc
        if isinstance(value, dict):  # params come from YAML: plain dicts (and typing.Mapping checks are slow)
            return {k: self.render(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.render(v) for v in value]
        return value

    def record(self, path: str, kind: str, detail: str = "", value: Any = None, error: str | None = None) -> None:
        """Append one trace line."""
        self.trace.append(TraceStep(path=path, kind=kind, detail=detail, value=value, error=error, at=self.now))

    def rule_pipeline(self) -> str | None:
        """The trigger's `pipeline:` narrowing, the default pipeline of deal actions."""
        return getattr(self.rule.trigger, "pipeline", None)

    def set_var(self, name: str, value: Any) -> None:
        """Set a run variable, visible to later steps as `vars.name`."""
        self.scope["vars"] = {**self.scope.get("vars", {}), name: value}


def execute(step: Step, path: str, state: RunState) -> Outcome:
    """Carry out one step."""
    if isinstance(step, ActionStep):
        return action.execute(step, path, state)
    if isinstance(step, WaitStep):
        return wait.execute(step, path, state)
    if isinstance(step, IfStep):
        raise AssertionError("if steps are walked by the runner")
    if isinstance(step, SetStep):
        return control.execute_set(step, path, state)
    if isinstance(step, EmitStep):
        return control.execute_emit(step, path, state)
    if isinstance(step, StopStep):
        return control.execute_stop(step, path, state)
    raise AssertionError(f"unknown step {step!r}")


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
        if isinstance(step, IfStep):
            if index == start and inner:  # resuming inside a branch chosen before the wait
                branch, sub = inner[0], inner[1:]
            else:
                try:
                    branch, sub = _choose(step, path, state), (0,)
                except StepError as exc:
                    exc.path = exc.path or path
                    raise
            body = step.then if branch == "then" else step.else_
            outcome, cursor = _walk(body, (*here, branch), (*cursor_prefix, index, branch), sub, state)
        else:
            try:
                outcome = execute(step, path, state)
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


def _choose(step: IfStep, path: str, state: RunState) -> str:
    values = []
    for expr in step.conditions:
        value = state.eval(expr)
        values.append(value)
        state.record(path, "condition", expr.source, plain(value))
        if not value:
            break
    branch = "then" if all(values) and len(values) == len(step.conditions) else "else"
    state.record(path, "if", f"took {branch}")
    return branch


def _finish(state: RunState, status: str, cursor: tuple[Any, ...]) -> Run:
    vars_ = state.scope.get("vars", {})
    return replace(state.run, status=status, cursor=cursor, vars=dict(vars_),
                   trace=(*state.run.trace, *state.trace))


def plain(value: Any) -> Any:
    """Values as they can be shown and stored."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)

