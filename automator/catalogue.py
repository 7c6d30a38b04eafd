"""The catalogue of what rules can read: the events each connector produces and the fields it fills, with types.

Each connector package declares its own in `catalogue.yaml` beside its module (data, not code), read by
`Connector.produces`; the engine's own events and fields are `CORE`. A project's catalogue is the union of
`CORE` and the catalogues of the connectors named in `automator.yaml`. `validate` checks rules against it,
`automator events` prints it, and the README's list and the JSON Schemas are generated from it.

The file's form:

    entities:
      booking:                                   # an entity kind
        starts_at: {type: datetime, doc: when the visit starts}
        status: {type: text, values: [confirmed, arrived, waiting, no_show, cancelled]}
        client: {type: id, links: client}         # the id of another entity
    events:
      booking.created:
        entity: booking                           # the event's entity kind (none for lead.created)
        doc: a record was made
        data: {}                                  # fields carried besides the entity's own
        with_fields: true                         # the entity's fields are carried too (the default)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

# What a field holds. `money` is a number in the currency's major unit as the system sends it; `id` is text
# naming another record (`links` says which kind); `list` has `of` for the items' type.
FIELD_TYPES = ("text", "number", "money", "bool", "date", "datetime", "phone", "list", "id", "object")

# The envelope of every event: `event.<name>` reads these, never a data field of the same name.
ENVELOPE = ("id", "type", "at", "source", "entity", "data")


class CatalogueError(ValueError):
    """A catalogue file that does not have the documented form: names the file and the entry."""


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field of an entity or an event: its name, type and what it means."""

    name: str
    type: str
    doc: str = ""
    values: tuple[Any, ...] = ()  # the values it can take, when they are few and fixed (statuses)
    links: str | None = None  # for an `id`: the entity kind it names
    of: str | None = None  # for a `list`: the items' type


@dataclass(frozen=True, slots=True)
class EventSpec:
    """One event type: the entity it is about, its own data fields, and who produces it."""

    type: str
    doc: str = ""
    entity: str | None = None
    data: Mapping[str, FieldSpec] = field(default_factory=dict)
    with_fields: bool = True  # the entity's fields travel in the event's data
    producers: tuple[str, ...] = ()  # connector types (or "engine") that produce it


@dataclass(frozen=True, slots=True)
class Catalogue:
    """Events and entity fields, merged from several producers."""

    events: Mapping[str, EventSpec] = field(default_factory=dict)
    entities: Mapping[str, Mapping[str, FieldSpec]] = field(default_factory=dict)
    # Which producers fill each (kind, field): "yclients", "bitrix24", "engine", …
    fillers: Mapping[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)

    def entity_fields(self, kind: str) -> Mapping[str, FieldSpec]:
        """The fields some producer fills on entities of `kind` (`id` always)."""
        return self.entities.get(kind, {})

    def event_fields(self, type_: str) -> Mapping[str, FieldSpec]:
        """The data fields an event of this type carries: its own and, `with_fields`, its entity's."""
        spec = self.events.get(type_)
        if spec is None:
            return {}
        if spec.with_fields and spec.entity:
            return {**self.entity_fields(spec.entity), **spec.data}
        return spec.data

    def merged(self, other: Catalogue) -> Catalogue:
        """The union of both: events by type (data fields and producers joined), entity fields by name."""
        events = dict(self.events)
        for name, spec in other.events.items():
            mine = events.get(name)
            if mine is None:
                events[name] = spec
            else:
                events[name] = EventSpec(name, mine.doc or spec.doc, mine.entity or spec.entity,
                                         {**spec.data, **mine.data}, mine.with_fields or spec.with_fields,
                                         tuple(dict.fromkeys(mine.producers + spec.producers)))
        entities = {kind: dict(fields) for kind, fields in self.entities.items()}
        for kind, fields in other.entities.items():
            own = entities.setdefault(kind, {})
            for name, spec in fields.items():
                own.setdefault(name, spec)
        fillers = dict(self.fillers)
        for key, who in other.fillers.items():
            fillers[key] = tuple(dict.fromkeys(fillers.get(key, ()) + who))
        return Catalogue(events, entities, fillers)


def merge(catalogues: Iterable[Catalogue]) -> Catalogue:
    """The union of several catalogues, the first one's wording kept where two describe the same thing."""
    out = Catalogue()
    for one in catalogues:
        out = out.merged(one)
    return out


def parse(raw: Any, producer: str, origin: str) -> Catalogue:
    """A catalogue from its YAML form; `producer` is the connector type (or "engine") that fills it.

    Raises CatalogueError naming `origin` (the file) and the entry for anything not in the documented form.
    """
    if raw is None:
        return Catalogue()
    if not isinstance(raw, Mapping) or set(raw) - {"entities", "events"}:
        raise CatalogueError(f"{origin}: expected a mapping with `entities:` and `events:`")
    entities: dict[str, dict[str, FieldSpec]] = {}
    fillers: dict[tuple[str, str], tuple[str, ...]] = {}
    for kind, fields in (raw.get("entities") or {}).items():
        entities[str(kind)] = _fields(fields, f"{origin}: entities.{kind}")
        entities[str(kind)].setdefault("id", FieldSpec("id", "id", f"the {kind}'s id in the system"))
        for name in entities[str(kind)]:
            fillers[(str(kind), name)] = (producer,)
    events: dict[str, EventSpec] = {}
    for type_, spec in (raw.get("events") or {}).items():
        where = f"{origin}: events.{type_}"
        if not isinstance(spec, Mapping) or set(spec) - {"entity", "doc", "data", "with_fields"}:
            raise CatalogueError(f"{where}: expected entity, doc, data and with_fields")
        data = _fields(spec.get("data") or {}, f"{where}.data")
        clash = sorted(set(data) & set(ENVELOPE))
        if clash:
            raise CatalogueError(f"{where}.data: {', '.join(clash)} is a name of the event's envelope "
                                 "(event.id, event.source, …); give the field another name")
        events[str(type_)] = EventSpec(str(type_), str(spec.get("doc") or ""), spec.get("entity"), data,
                                       bool(spec.get("with_fields", True)), (producer,))
    return Catalogue(events, entities, fillers)


def _fields(raw: Any, where: str) -> dict[str, FieldSpec]:
    if not isinstance(raw, Mapping):
        raise CatalogueError(f"{where}: expected a mapping of field names")
    out: dict[str, FieldSpec] = {}
    for name, spec in raw.items():
        if isinstance(spec, str):
            spec = {"type": spec}
        if not isinstance(spec, Mapping) or spec.get("type") not in FIELD_TYPES \
                or set(spec) - {"type", "doc", "values", "links", "of"}:
            raise CatalogueError(f"{where}.{name}: expected {{type: one of {', '.join(FIELD_TYPES)}, doc, values, "
                                 "links, of}")
        out[str(name)] = FieldSpec(str(name), str(spec["type"]), str(spec.get("doc") or ""),
                                   tuple(spec.get("values") or ()), spec.get("links"), spec.get("of"))
    return out


def load_text(text: str, producer: str, origin: str) -> Catalogue:
    """A catalogue from YAML text."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CatalogueError(f"{origin}: {exc}") from exc
    return parse(raw, producer, origin)


def _core() -> Catalogue:
    from pathlib import Path

    path = Path(__file__).with_name("catalogue.yaml")
    return load_text(path.read_text(encoding="utf-8"), "engine", str(path))


# The engine's own events and fields, in every project.
CORE = _core()
