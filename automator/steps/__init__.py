"""The step registry: the key present in a `do:` item selects its kind (HA's determine_script_action)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from automator.config.context import CompileContext
from automator.model import Step

CONTROL_KEYS = ("wait", "if", "set", "emit", "stop")


def kind_of(raw: Mapping[str, Any]) -> str:
    """`wait`, `if`, `set`, `emit`, `stop`, or `action` for anything else."""
    for key in CONTROL_KEYS:
        if key in raw:
            return key
    return "action"


def compile_steps(raw: Any, path: Sequence[str | int], ctx: CompileContext) -> tuple[Step, ...]:
    """Compile a list of steps; a broken step is reported and left out, the others still compile."""
    from automator.steps import action, control, wait

    compilers = {"wait": wait.compile, "if": control.compile_if, "set": control.compile_set,
                 "emit": control.compile_emit, "stop": control.compile_stop, "action": action.compile}
    if not isinstance(raw, list):
        return ()
    steps: list[Step] = []
    for index, item in enumerate(raw):
        kind = kind_of(item) if isinstance(item, Mapping) else ""
        here = (*path, index)
        # An action's params and an if's branches check their own parts (skipping what the schema reported),
        # so a schema problem inside them must not hide their other mistakes; other steps are small: skip them.
        if not kind or (here in ctx.broken if kind in ("action", "if") else ctx.is_broken(here)):
            continue  # the schema has reported it
        step = compilers[kind](item, here, ctx)
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
