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

import difflib
import re
from dataclasses import dataclass, field, replace
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

# What a field holds. `money` is a number in the currency's major unit as the system sends it; `id` is text
# naming another record (`links` says which kind); `list` has `of` for the items' type.
FIELD_TYPES = ("text", "number", "money", "bool", "date", "datetime", "phone", "list", "id", "object")

# The envelope of every event: `event.<name>` reads these, never a data field of the same name.
ENVELOPE = ("id", "type", "at", "source", "entity", "data")

# An event type, <kind>.<verb> (the `event_type` of schemas/common.json).
EVENT_TYPE = r"[a-z][a-z0-9_]{0,63}\.[a-z][a-z0-9_]{0,63}"
# Type words admins bring from JSON, spreadsheets and programming, and the catalogue's word for each.
TYPE_ALIASES = {"integer": "number", "int": "number", "float": "number", "decimal": "number", "numeric": "number",
                "string": "text", "str": "text", "boolean": "bool", "timestamp": "datetime", "time": "datetime",
                "array": "list", "dict": "object", "mapping": "object", "phone_number": "phone", "tel": "phone",
                "price": "money", "currency": "money"}
# What an event's and a field's entries may say.
EVENT_KEYS = ("entity", "doc", "data", "with_fields")
FIELD_KEYS = ("type", "doc", "values", "links", "of")


class CatalogueError(ValueError):
    """A catalogue that does not have the documented form: names the file (or setting) and the entry.

    `path` is where the mistake is inside the catalogue's data (`("events", "nps.received", "data", "score")`),
    so that a catalogue written in a connector's settings is reported at its line; `hint` says what to write.
    """

    def __init__(self, origin: str, path: tuple[str | int, ...] = (), reason: str = "", hint: str | None = None, *,
                 key: bool = False, in_settings: bool = False) -> None:
        where = ".".join(str(p) for p in path)
        # CatalogueError("a whole message") still reads as that message.
        super().__init__(": ".join(part for part in (origin, where, reason) if part))
        self.origin, self.path, self.reason, self.hint = origin, path, reason, hint
        self.key = key  # the mistake is the name at `path` (a key), not its value
        # Written in a connector's settings (local's `events:`): `path` is then the settings' own path.
        self.in_settings = in_settings


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
            for name, theirs in fields.items():
                known = own.get(name)
                # Fixed values hold only if every producer lists them: `validate` refuses a value outside them.
                own[name] = theirs if known is None else known if known.values == theirs.values else \
                    replace(known, values=tuple(dict.fromkeys(known.values + theirs.values))
                            if known.values and theirs.values else ())
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
    if not isinstance(raw, Mapping):
        raise CatalogueError(origin, (), "expected a mapping with `entities:` and `events:`")
    for key in raw:
        if key not in ("entities", "events"):
            raise CatalogueError(origin, (key,), "unknown key: a catalogue has `entities:` and `events:`",
                                 _guess(key, ("entities", "events")), key=True)
    entities: dict[str, dict[str, FieldSpec]] = {}
    fillers: dict[tuple[str, str], tuple[str, ...]] = {}
    for kind, fields in _mapping(raw.get("entities"), origin, ("entities",)).items():
        own = _fields(fields, origin, ("entities", kind))
        # An entity's fields travel in its events' data, where `event.<name>` reads the envelope first.
        _no_envelope_names([name for name in own if name != "id"], origin, ("entities", kind))
        own.setdefault("id", FieldSpec("id", "id", f"the {kind}'s id in the system"))
        entities[str(kind)] = own
        for name in own:
            fillers[(str(kind), name)] = (producer,)
    events: dict[str, EventSpec] = {}
    for type_, spec in _mapping(raw.get("events"), origin, ("events",)).items():
        events[str(type_)] = _event(str(type_), spec, producer, origin)
    return Catalogue(events, entities, fillers)


def _event(type_: str, spec: Any, producer: str, origin: str) -> EventSpec:
    path: tuple[str | int, ...] = ("events", type_)
    if not re.fullmatch(EVENT_TYPE, type_):
        raise CatalogueError(origin, path, f"'{type_}' is not an event type",
                             "write <kind>.<verb> in lower case, such as nps.received", key=True)
    if spec is None:
        spec = {}
    if not isinstance(spec, Mapping):
        raise CatalogueError(origin, path, f"expected a mapping of {', '.join(EVENT_KEYS)}",
                             "such as {entity: client, data: {score: number}}")
    for key in spec:
        if key not in EVENT_KEYS:
            raise CatalogueError(origin, (*path, key), f"unknown key '{key}'",
                                 _guess(key, EVENT_KEYS) or f"an event has {', '.join(EVENT_KEYS)}", key=True)
    entity = spec.get("entity")
    if entity is not None and not isinstance(entity, str):
        raise CatalogueError(origin, (*path, "entity"), "expected the kind of record the event is about",
                             "such as entity: client")
    if spec.get("data") is not None and not isinstance(spec["data"], Mapping):
        raise CatalogueError(origin, (*path, "data"), "expected a mapping of field names to their types",
                             "such as data: {score: number, comment: text}")
    data = _fields(spec.get("data") or {}, origin, (*path, "data"))
    _no_envelope_names(list(data), origin, (*path, "data"))
    return EventSpec(type_, str(spec.get("doc") or ""), entity, data, bool(spec.get("with_fields", True)),
                     (producer,))


def _mapping(raw: Any, origin: str, path: tuple[str | int, ...]) -> Mapping[Any, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise CatalogueError(origin, path, "expected a mapping")
    return raw


def _no_envelope_names(names: list[str], origin: str, path: tuple[str | int, ...]) -> None:
    for name in names:
        if name in ENVELOPE:
            raise CatalogueError(origin, (*path, name),
                                 f"'{name}' is a name of the event's envelope (event.{name} is the event's own)",
                                 f"give the field another name, such as '{str(path[1]).split('.')[0]}_{name}'",
                                 key=True)


def _fields(raw: Any, origin: str, path: tuple[str | int, ...]) -> dict[str, FieldSpec]:
    out: dict[str, FieldSpec] = {}
    for name, spec in _mapping(raw, origin, path).items():
        where = (*path, name)
        if isinstance(spec, str):
            spec = {"type": spec}
        if not isinstance(spec, Mapping):
            raise CatalogueError(origin, where, "expected a field type or {type, doc}",
                                 f"such as `{name}: number` or `{name}: {{type: text, doc: what it is}}`")
        for key in spec:
            if key not in FIELD_KEYS:
                raise CatalogueError(origin, (*where, key), f"unknown key '{key}'",
                                     _guess(key, FIELD_KEYS) or f"a field has {', '.join(FIELD_KEYS)}", key=True)
        type_ = spec.get("type")
        if type_ not in FIELD_TYPES:
            at = (*where, "type") if "type" in spec else where
            raise CatalogueError(origin, at, f"unknown field type '{type_}'" if type_ is not None else "no type",
                                 _type_hint(type_))
        values = spec.get("values") or ()
        if not isinstance(values, (list, tuple)):
            raise CatalogueError(origin, (*where, "values"), "expected a list of the values it can take")
        if spec.get("of") is not None and spec["of"] not in FIELD_TYPES:
            raise CatalogueError(origin, (*where, "of"), f"unknown type of the items '{spec['of']}'",
                                 _type_hint(spec["of"]))
        out[str(name)] = FieldSpec(str(name), str(type_), str(spec.get("doc") or ""), tuple(values),
                                   spec.get("links"), spec.get("of"))
    return out


def _type_hint(word: Any) -> str:
    alias = TYPE_ALIASES.get(str(word).lower())
    if alias is not None:
        return f"write {alias} (the catalogue's word for {word})"
    return _guess(word, FIELD_TYPES) or f"one of {', '.join(FIELD_TYPES)}"


def _guess(word: Any, choices: Iterable[str]) -> str | None:
    found = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f"did you mean '{found[0]}'?" if found else None


def load_text(text: str, producer: str, origin: str) -> Catalogue:
    """A catalogue from YAML text."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CatalogueError(origin, (), str(exc)) from exc
    return parse(raw, producer, origin)


def _core() -> Catalogue:
    from pathlib import Path

    path = Path(__file__).with_name("catalogue.yaml")
    return load_text(path.read_text(encoding="utf-8"), "engine", str(path))


# The engine's own events and fields, in every project.
CORE = _core()
