"""Index from event type (and field, for changed/held) to candidate rules; cost flat in the number of rules."""
from __future__ import annotations

from collections.abc import Iterable, Mapping

from automator.model import Event, Rule
from automator.triggers import kind_of


class Router:
    """Candidate rules for an event, found through dictionaries built once at load."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        self.rules = tuple(rules)
        self.by_id: dict[str, Rule] = {}
        self.index: dict[str, list[Rule]] = {}
        self.schedules: list[Rule] = []
        for rule in self.rules:
            self.by_id[rule.id] = rule
            kind = kind_of(rule.trigger)
            keys = kind.routes(rule.trigger)
            if keys and kind.routed is None:
                raise TypeError(f"rule {rule.id}: trigger kind {kind.key!r} gives routes but does not react to them")
            if not keys:
                self.schedules.append(rule)
            for key in keys:
                self.index.setdefault(key, []).append(rule)

    def candidates(self, event: Event, changed_fields: Iterable[str] = ()) -> list[Rule]:
        """Rules whose trigger could match: by event type, and by each changed field of the entity."""
        found = list(self.index.get(f"event:{event.type}", ()))
        if event.entity is not None:
            seen = {r.id for r in found}
            for name in changed_fields:
                for rule in self.index.get(f"field:{event.entity.kind}.{name}", ()):
                    if rule.id not in seen:
                        seen.add(rule.id)
                        found.append(rule)
        return found

    def field_rules(self, kind: str, fields: Mapping[str, object]) -> list[Rule]:
        """Rules watching any of these fields of entities of `kind` (to arm held timers for known state)."""
        out: list[Rule] = []
        for name in fields:
            out.extend(self.index.get(f"field:{kind}.{name}", ()))
        return out
