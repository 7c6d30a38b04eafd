"""The step registry: the key present in a `do:` item selects its kind (HA's determine_script_action), and each
kind's one registration says how it compiles and how the runner carries it out."""
from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from automator.config.context import CompileContext
from automator.core.outcome import Outcome
from automator.registry import register
from automator.model import ActionStep, EmitStep, IfStep, SetStep, Step, StopStep, WaitStep
from automator.steps import action, control, wait

if TYPE_CHECKING:
    from automator.core.state import RunState

ACTION = "action"  # the kind of a `do:` item with no control key: `<kind>.<verb>: params`


@dataclass(frozen=True, slots=True)
class StepKind:
    """One kind of step: its key in a `do:` item, its model type, how it compiles, and how a run carries it out:
    `execute` for a step that acts; for a step holding steps, which the runner walks itself so that a wait inside
    it can be resumed, `choose` (the branch it takes) and `body` (a branch's steps)."""

    key: str
    model: type
    compile: Callable[[Mapping[str, Any], Sequence[str | int], CompileContext], Step | None]
    execute: Callable[[Any, str, RunState], Outcome] | None = None
    choose: Callable[[Any, str, RunState], str] | None = None
    body: Callable[[Any, str], tuple[Step, ...]] | None = None

    def __post_init__(self) -> None:
        # Refused here, at import, rather than found when a rule of this kind first runs.
        holds = self.choose is not None and self.body is not None
        if (self.execute is None) != holds or (not holds and (self.choose or self.body)):
            raise TypeError(f"step kind {self.key!r} needs either `execute`, or both `choose` and `body`")
        if getattr(self.model, "KIND", None) != self.key:
            raise TypeError(f"step kind {self.key!r}: its model {self.model.__name__} has KIND "
                            f"{getattr(self.model, 'KIND', None)!r}")


def _compile_if(raw: Mapping[str, Any], path: Sequence[str | int], ctx: CompileContext) -> IfStep | None:
    return control.compile_if(raw, path, ctx, compile_steps)


STEPS: dict[str, StepKind] = register((
    StepKind("wait", WaitStep, wait.compile, execute=wait.execute),
    StepKind("if", IfStep, _compile_if, choose=control.choose_if, body=control.if_body),
    StepKind("set", SetStep, control.compile_set, execute=control.execute_set),
    StepKind("emit", EmitStep, control.compile_emit, execute=control.execute_emit),
    StepKind("stop", StopStep, control.compile_stop, execute=control.execute_stop),
    StepKind(ACTION, ActionStep, action.compile, execute=action.execute),
), "step")
BY_MODEL: dict[type, StepKind] = {kind.model: kind for kind in STEPS.values()}
CONTROL_KEYS = tuple(key for key in STEPS if key != ACTION)


def kind_of(raw: Mapping[str, Any]) -> str:
    """`wait`, `if`, `set`, `emit`, `stop`, or `action` for anything else."""
    for key in CONTROL_KEYS:
        if key in raw:
            return key
    return ACTION


def compile_steps(raw: Any, path: Sequence[str | int], ctx: CompileContext) -> tuple[Step, ...]:
    """Compile a list of steps; a broken step is reported and left out, the others still compile."""
    if not isinstance(raw, list):
        return ()
    steps: list[Step] = []
    for index, item in enumerate(raw):
        kind = kind_of(item) if isinstance(item, Mapping) else ""
        here = (*path, index)
        # An action's params and an if's branches check their own parts (skipping what the schema reported),
        # so a schema problem inside them must not hide their other mistakes; other steps are small: skip them.
        if not kind or (here in ctx.broken if kind in (ACTION, "if") else ctx.is_broken(here)):
            continue  # the schema has reported it
        step = STEPS[kind].compile(item, here, ctx)
        if step is not None:
            steps.append(step)
    return tuple(steps)


def set_names(raw: Any) -> set[str]:
    """Every variable any `set:` step in these steps defines (so `vars.x` can be checked before running)."""
    names: set[str] = set()
    if isinstance(raw, list):
        for item in raw:
            if isinstance(item, Mapping):
                if isinstance(item.get("set"), Mapping):
                    names.update(str(k) for k in item["set"])
                names |= set_names(item.get("then")) | set_names(item.get("else"))
    return names
