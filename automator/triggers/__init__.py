"""The trigger registry: the key under `when:` selects the module that compiles and matches it."""
from __future__ import annotations

from types import ModuleType

from automator.triggers import changed, event, held, schedule

# The YAML word is the module name (datasette's DEFAULT_PLUGINS: an explicit list, no scanning).
TRIGGERS: dict[str, ModuleType] = {"event": event, "changed": changed, "held": held, "schedule": schedule}

