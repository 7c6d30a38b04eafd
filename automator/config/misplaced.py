"""An action's params written at the action's own depth, a common indentation mistake YAML cannot see:

    - sms.send:
      to: "{{ client.phone }}"      # meant to be under sms.send, but a sibling of it
      text: Hi

YAML reads one step with three keys, `sms.send` (empty), `to` and `text`, and the schemas then say four things
that are all this one. It is told once, at the first stray key, as indentation; the params are then moved
under their action in the loaded data, so that what they hold is still checked like any other params.
"""
from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from automator.config.problems import Problem
from automator.config.schemas import RULES_SCHEMA, SchemaSet
from automator.config.source import Document, PathKey


def misplaced_params(doc: Document, schemas: SchemaSet) -> list[Problem]:
    """One problem per step whose action is empty and whose other keys are that action's params; each such
    step is mended in `doc` (data and marks) as if indented right."""
    dispatch = schemas.schema(RULES_SCHEMA)["$defs"]["step"]["x-dispatch"]
    kinds, action_re = set(dispatch["keys"]), re.compile(dispatch["other"])
    problems = []
    for path, step in list(_steps(doc.data)):
        empty = [k for k, v in step.items() if v is None and isinstance(k, str) and action_re.match(k)
                 and k not in kinds]
        if len(empty) != 1:
            continue
        action = empty[0]
        params = (schemas.action_schema(action) or {}).get("properties") or {}
        stray = [k for k in step if k not in (action, "via")]
        if not stray or not all(k in params for k in stray):
            continue
        col = doc.mark((*path, action), key=True).col
        names = " and ".join(f"'{k}'" for k in stray) if len(stray) < 3 else \
            ", ".join(f"'{k}'" for k in stray[:-1]) + f" and '{stray[-1]}'"
        one = len(stray) == 1
        problems.append(doc.problem(
            (*path, stray[0]), f"{names} {'is' if one else 'are'} indented like '{action}', not under it, so "
                               f"{action} gets no params",
            f"indent {'it' if one else 'them'} {col + 1} spaces (2 more than '{action}'), or write "
            f"`{action}: {{{', '.join(f'{k}: …' for k in stray)}}}`", key=True))
        step[action] = {k: step.pop(k) for k in stray}
        _move_marks(doc, path, action, stray)
    return problems


def _steps(data: Any) -> Iterator[tuple[PathKey, dict[str, Any]]]:
    """(path, step) for every step of every rule, inside `then:` and `else:` too."""
    rules = data.get("rules") if isinstance(data, Mapping) else None
    stack: list[tuple[PathKey, Any]] = [(("rules", i, "do"), r.get("do")) for i, r in
                                        enumerate(rules if isinstance(rules, list) else ()) if isinstance(r, dict)]
    while stack:
        path, steps = stack.pop()
        for index, step in enumerate(steps if isinstance(steps, list) else ()):
            if isinstance(step, dict):
                yield (*path, index), step
                stack += [((*path, index, branch), step.get(branch)) for branch in ("then", "else")]


def _move_marks(doc: Document, path: PathKey, action: str, keys: list[str]) -> None:
    """Marks of the moved keys (and all under them) follow them under the action."""
    n = len(path)
    for marks in (doc.marks, doc.key_marks):
        for old in [p for p in marks if len(p) > n and p[:n] == path and p[n] in keys]:
            marks[(*path, action, *old[n:])] = marks.pop(old)
