"""Named points where the restart tests have the daemon kill itself (SIGKILL) to prove recovery; inert otherwise.

`AUTOMATOR_CRASH_AT=effect.after_call` kills the process the first time it gets there, `...:3` the third time,
`...:1@engine` only the engine process (see engine_process.py; the daemon itself is `@daemon`). Read once at import;
a daemon started without the variable pays one truth test per point.
"""
from __future__ import annotations

import os
import signal
from typing import Any

POINTS = ("journal.before_commit", "journal.after_commit", "decide.before_commit", "decide.after_commit",
          "effect.before_call", "effect.after_call", "settle.after_commit", "timers.before_commit",
          "timers.after_commit")


def _wanted(spec: str | None) -> tuple[str, int, str | None] | None:
    if not spec:
        return None
    spec, _, role = spec.partition("@")
    name, _, count = spec.partition(":")
    if name not in POINTS:
        raise ValueError(f"AUTOMATOR_CRASH_AT: unknown point {name!r}; one of {', '.join(POINTS)}")
    return name, int(count or 1), role or None


_WANTED = _wanted(os.environ.get("AUTOMATOR_CRASH_AT"))
_seen = 0
role = "daemon"  # which process of the daemon this is: the engine process sets "engine"


def reached(name: str) -> None:
    """Die here, as a power cut would, if this is the point (and the time) the test asked for."""
    global _seen
    if _WANTED is None or name != _WANTED[0] or (_WANTED[2] is not None and _WANTED[2] != role):
        return
    _seen += 1
    if _seen >= _WANTED[1]:
        os.kill(os.getpid(), signal.SIGKILL)


def after_commit(store: Any, name: str) -> None:
    """reached(name), once the transaction `store` is in is committed: a point named after a commit must come
    after the real one, also when the daemon's writer has grouped this write with others into a larger one."""
    if _WANTED is not None and name == _WANTED[0]:
        store.on_commit(lambda: reached(name))
