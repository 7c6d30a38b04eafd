"""`if/then/else`, `set`, `emit` and `stop`: the small step kinds, kept together (`if` cannot be a module name)."""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from automator.core.scope import sendable
from automator.core.outcome import Outcome, Stop
from automator.config.context import CompileContext
from automator.core.state import RunState
from automator.model import ENTITY_KINDS, EmitStep, EntityRef, Event, IfStep, SetStep, Step, StopStep, plain


VAR_NAME = re.compile(r"[a-z_][a-z0-9_]{0,63}")
EVENT_TYPE = re.compile(r"[a-z][a-z0-9_]{0,39}\.[a-z][a-z0-9_]{0,39}")


def compile_if(raw: Mapping[str, Any], path: Sequence[str | int], ctx: CompileContext,
               compile_steps: Callable[[Any, Sequence[str | int], CompileContext], tuple[Step, ...]]
               ) -> IfStep | None:
    """`if` takes one expression or a list (all must hold); `then` is required, `else` optional. Its branches
    are compiled with `compile_steps`, the registry's own (passed in: the registry is built from this module)."""
    sources = raw["if"] if isinstance(raw["if"], list) else [raw["if"]]
    conditions = []
    for index, source in enumerate(sources):
        where = (*path, "if", index) if isinstance(raw["if"], list) else (*path, "if")
        if ctx.is_broken(where):
            continue
        expr = ctx.expr(source, where)
        if expr is not None:
            conditions.append(expr)
    if "then" not in raw:
        ctx.error(path, "`if` needs `then:` (a list of steps)")
        return None
    then = compile_steps(raw["then"], (*path, "then"), ctx)
    else_ = compile_steps(raw.get("else") or [], (*path, "else"), ctx)
    return IfStep(conditions=tuple(conditions), then=then, else_=else_, location=ctx.location(path))


def compile_set(raw: Mapping[str, Any], path: Sequence[str | int], ctx: CompileContext) -> SetStep | None:
    """`set: {name: value}`; values may be templates."""
    values = raw["set"]
    if not isinstance(values, Mapping):
        ctx.error((*path, "set"), "`set` needs a mapping of variable names to values")
        return None
    for name in values:
        if not VAR_NAME.fullmatch(str(name)):
            ctx.error((*path, "set", name), f"bad variable name {name!r}: use lower-case letters, digits and _",
                      key=True)
    return SetStep(values=ctx.templates(dict(values), (*path, "set")), location=ctx.location(path))


def compile_emit(raw: Mapping[str, Any], path: Sequence[str | int], ctx: CompileContext) -> EmitStep | None:
    """`emit: {event: TYPE, entity: {kind, id}, data: {...}}`."""
    spec = raw["emit"]
    if not isinstance(spec, Mapping) or not EVENT_TYPE.fullmatch(str(spec.get("event", ""))):
        ctx.error((*path, "emit"), "`emit` needs `event: <kind>.<verb>` such as `visit.completed`")
        return None
    entity = spec.get("entity")
    if entity is not None and (not isinstance(entity, Mapping) or entity.get("kind") not in ENTITY_KINDS):
        ctx.error((*path, "emit", "entity"), f"entity needs `kind` ({', '.join(ENTITY_KINDS)}) and `id`")
    return EmitStep(type=str(spec["event"]), entity=ctx.templates(entity, (*path, "emit", "entity")),
                    data=ctx.templates(spec.get("data") or {}, (*path, "emit", "data")), location=ctx.location(path))


def compile_stop(raw: Mapping[str, Any], path: Sequence[str | int], ctx: CompileContext) -> StopStep:
    """`stop: reason` or `stop: true`."""
    reason = raw["stop"]
    return StopStep(reason="" if reason is True else str(reason), location=ctx.location(path))


def choose_if(step: IfStep, path: str, state: RunState) -> str:
    """The branch an `if` takes, `then` or `else`; the conditions' values go to the trace."""
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


def if_body(step: IfStep, branch: str) -> tuple[Step, ...]:
    """The steps of an `if`'s branch."""
    return step.then if branch == "then" else step.else_


def execute_set(step: SetStep, path: str, state: RunState) -> Outcome:
    """Set run variables."""
    for name, value in step.values.items():
        rendered = state.render(value)
        state.set_var(name, rendered)
        state.record(path, "set", name, rendered)
    return None


def execute_emit(step: EmitStep, path: str, state: RunState) -> Outcome:
    """Emit an event into the journal; it is one level deeper in the chain than the run's own."""
    entity = sendable(state.render(step.entity), state.ectx.tz) if step.entity is not None else None
    ref = EntityRef(str(entity["kind"]), str(entity["id"])) if isinstance(entity, Mapping) else state.run.entity
    data = sendable(state.render(step.data), state.ectx.tz) or {}
    event = Event(id=f"{state.run.id}/{path}", type=step.type, at=state.now, entity=ref, data=data,
                  source="engine", depth=state.run.depth + 1, caused_by=f"{state.run.id}/{path}")
    state.events.append(event)
    state.record(path, "emit", step.type, data)
    return None


def execute_stop(step: StopStep, path: str, state: RunState) -> Outcome:
    """End the run here."""

    state.record(path, "stop", step.reason)
    return Stop(step.reason)
