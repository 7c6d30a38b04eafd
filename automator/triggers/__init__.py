"""The trigger registry: the key under `when:` selects the kind that compiles, routes, matches and wakes it."""
from __future__ import annotations

from automator.model import Trigger
from automator.registry import register
from automator.triggers import changed, event, held, schedule
from automator.triggers.base import TriggerKind

# An explicit list, no scanning (datasette's DEFAULT_PLUGINS).
TRIGGERS: dict[str, TriggerKind] = register((event.KIND, changed.KIND, held.KIND, schedule.KIND), "trigger")
BY_MODEL: dict[type, TriggerKind] = {kind.model: kind for kind in TRIGGERS.values()}


def kind_of(trigger: Trigger) -> TriggerKind:
    """The kind of a compiled trigger (a dict lookup: this is on the path of every event)."""
    return BY_MODEL[type(trigger)]
