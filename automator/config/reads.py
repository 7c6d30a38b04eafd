"""What a rule can read: the fields of each entity kind and the data of the events its trigger starts it with.

The project's catalogue (automator/catalogue.py) says what the connectors fill; the project's own files add
what they set themselves: the data an `emit:` sends (and, for `<kind>.created`/`updated`, the fields it gives
the entity), the deal fields of `deal.create`/`deal.update`/`deal.move` and of stages' `requires:`, and the
deal fields a connector's `fields:` setting maps. A rule may also read any field it guards with
`get(x, 'field', …)` or `has(x, 'field')`, the documented way to read an optional one. Everything else is a
mistake `validate` reports with the field's place and a did-you-mean.

What cannot be known is never an error: the fields of a kind no connector of the project describes, of an
event type nothing declares (reported once, at the trigger), of an `object`, of a list's items.
"""
from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from automator.catalogue import ENVELOPE, Catalogue, FieldSpec
from automator.expr import suggest
from automator.expr import chain_of
from automator.typecheck import Type, field_type, literal_texts

KINDS = ("client", "booking", "deal", "task")
# Links a rule reads across (core/scope.py): a deal's booking and a booking's deal open onto the other.
ACROSS = (("deal", "booking"), ("booking", "deal"))
STATE_VERBS = ("created", "updated", "changed", "restored")  # the verbs whose data the entity takes on (core/decide)
TIMER_EVENT = "timer.fired"
# The data of a fired timer (automator/core/wakeup.py): what a `held` or `schedule` rule's event carries.
_VALUE_OPS = (ast.Eq, ast.NotEq, ast.In, ast.NotIn)  # comparisons a listed value can be wrong in
TIMER_DATA: Mapping[str, Type] = {"kind": "text", "rule": "text", "run": "text", "timer": "text", "tick": "text",
                                  "missed": "number"}
ENVELOPE_TYPES: Mapping[str, Type] = {"id": "text", "type": "text", "at": "datetime", "source": "text",
                                      "entity": "record", "data": "record"}
ENVELOPE_MEANING = {"id": "the event's own id", "source": "the connector that sent the event",
                    "type": "the event's type", "at": "when it happened", "entity": "the entity it is about",
                    "data": "its data"}
# Sources that are not connectors: the engine's own events (emit, segment.recompute) and fired timers.
ENGINE_SOURCES = ("engine", "timer")
_SCALARS = ("text", "phone", "number", "money", "bool", "date", "datetime", "id")
Finding = tuple[str, str | None]  # a message and its hint


@dataclass
class Declared:
    """What the project's own rules, pipelines and connector settings add to the catalogue."""

    events: dict[str, set[str]] = field(default_factory=dict)  # emitted type -> its data fields
    kinds: dict[str, str] = field(default_factory=dict)  # emitted type -> the entity kind written with it
    fields: dict[str, set[str]] = field(default_factory=dict)  # kind -> fields some rule or mapping sets


def declared(rule_files: Iterable[Any], requires: Iterable[str], connectors: Iterable[Mapping[str, Any]]) -> Declared:
    """Walk the rule files' data (as read, before compiling) for emits and deal fields; add the pipelines'
    `requires:` fields and the deal fields of the connectors' `fields:` settings."""
    from automator.actions import deal_fields

    out = Declared()
    deal = out.fields.setdefault("deal", set())
    deal.update(requires)
    for options in connectors:
        if isinstance(options.get("fields"), Mapping):
            deal.update(str(name) for name in options["fields"])
    stack: list[Any] = [data.get("rules") for data in rule_files if isinstance(data, Mapping)]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, Mapping):
            for key, value in node.items():
                if key == "emit" and isinstance(value, Mapping):
                    _emit(value, out)
                elif isinstance(key, str) and "." in key and key.split(".")[0] in KINDS:
                    deal.update(deal_fields(key, value))
                elif key in ("do", "then", "else"):
                    stack.append(value)
    return out


def _emit(spec: Mapping[str, Any], out: Declared) -> None:
    type_ = str(spec.get("event", ""))
    data = written if isinstance(written := spec.get("data"), Mapping) else {}
    out.events.setdefault(type_, set()).update(str(k) for k in data)
    entity = spec.get("entity")
    kind = entity.get("kind") if isinstance(entity, Mapping) else None
    if isinstance(kind, str) and kind in KINDS:
        out.kinds[type_] = kind
    prefix, _, verb = type_.partition(".")
    if prefix in KINDS and verb in STATE_VERBS and kind in (None, prefix):
        out.fields.setdefault(prefix, set()).update(str(k) for k in data)


@dataclass(frozen=True)
class Knowledge:
    """The project's catalogue and what its files declare: answers "is this field or event known?"."""

    catalogue: Catalogue
    declared: Declared
    connectors: Mapping[str, str]  # connector name -> type
    # A connector that receives webhooks but declares no catalogue (a plugin without catalogue.yaml) may send
    # any event with any fields: then nothing about events and fields can be known.
    open: bool = False
    # The event types each connector (by name) produces: a did-you-mean names the connectors that send it.
    sends: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # Answers worked out once per project load: a thousand rules ask about the same few kinds and events.
    _kinds: dict[str, dict[str, FieldSpec | None] | None] = field(default_factory=dict, compare=False, repr=False)
    _events: dict[tuple[str, ...], dict[str, Type] | None] = field(default_factory=dict, compare=False, repr=False)
    _updates: dict[str, tuple[str, ...]] = field(default_factory=dict, compare=False, repr=False)

    def kind_fields(self, kind: str) -> dict[str, FieldSpec | None] | None:
        """The fields of a kind (a spec where the catalogue types it), or None when no connector describes it."""
        if kind not in self._kinds:
            self._kinds[kind] = self._kind_fields(kind)
        return self._kinds[kind]

    def _kind_fields(self, kind: str) -> dict[str, FieldSpec | None] | None:
        if self.open or not any(k == kind and set(who) - {"engine"} for (k, _), who in self.catalogue.fillers.items()):
            return None
        fields: dict[str, FieldSpec | None] = dict(self.catalogue.entity_fields(kind))
        for spec in self.catalogue.events.values():  # a state event's own data is merged into its entity
            if spec.entity == kind and spec.type.partition(".")[0] == kind and spec.type.partition(".")[2] in STATE_VERBS:
                for name, one in spec.data.items():
                    fields.setdefault(name, one)
        for name in self.declared.fields.get(kind, ()):
            fields.setdefault(name, None)
        fields.setdefault("id", None)
        return fields

    def event_known(self, type_: str) -> bool:
        """Some connector produces it, the engine does, or a rule emits it."""
        return self.open or type_ in self.catalogue.events or type_ in self.declared.events or type_ == TIMER_EVENT

    def event_kind(self, type_: str) -> str | None:
        """The entity kind an event of this type is about, when that is known."""
        spec = self.catalogue.events.get(type_)
        if spec is not None and spec.entity:
            return spec.entity
        return self.declared.kinds.get(type_)

    def event_data(self, types: tuple[str, ...]) -> dict[str, Type] | None:
        """The data fields of events of these types, with their types where all agree; None when unknowable."""
        if types not in self._events:
            self._events[types] = self._event_data(types)
        return self._events[types]

    def _event_data(self, types: tuple[str, ...]) -> dict[str, Type] | None:
        if self.open or not types or not all(self.event_known(t) for t in types):
            return None
        found: dict[str, set[Type]] = {}
        for type_ in types:
            if type_ == TIMER_EVENT:
                for name, one in TIMER_DATA.items():
                    found.setdefault(name, set()).add(one)
                continue
            own = self.catalogue.events[type_].data if type_ in self.catalogue.events else {}
            for name, spec in self.catalogue.event_fields(type_).items():
                if name != "id" or name in own:  # the entity's id is entity.id (event.id is the event's own)
                    found.setdefault(name, set()).add(field_type(spec.type))
            for name in self.declared.events.get(type_, ()):
                found.setdefault(name, set()).add(None)
        return {name: next(iter(kinds)) if len(kinds) == 1 else None for name, kinds in found.items()}

    def update_events(self, kind: str) -> tuple[str, ...]:
        """The event types whose data changes an entity of this kind (what `changed:` reacts to)."""
        if kind not in self._updates:
            self._updates[kind] = self._update_events(kind)
        return self._updates[kind]

    def _update_events(self, kind: str) -> tuple[str, ...]:
        types = [t for t, spec in self.catalogue.events.items()
                 if spec.entity == kind and t.partition(".")[0] == kind and t.partition(".")[2] in STATE_VERBS]
        types += [t for t in self.declared.events if t.partition(".")[0] == kind
                  and t.partition(".")[2] in STATE_VERBS and t not in types]
        return tuple(types)

    def sources(self) -> tuple[str, ...]:
        """What `event.source` can be: a connector's name, or the engine's own."""
        return (*self.connectors, *ENGINE_SOURCES)


@dataclass(frozen=True)
class Reading:
    """What one rule reads: its entity's kind (`entity.*`, `prev.*`) and the event types that start it."""

    kind: str | None
    events: tuple[str, ...]


def reading_of(when: Any, for_each: str | None, knowledge: Knowledge) -> Reading:
    """A rule's reading from its `when:` as written (and its `for_each:` kind)."""
    if not isinstance(when, Mapping):
        return Reading(None, ())
    if isinstance(when.get("event"), str):
        type_ = when["event"]
        return Reading(knowledge.event_kind(type_), (type_,))
    for key in ("changed", "held"):
        if isinstance(when.get(key), str):
            kind = when[key].partition(".")[0]
            kind = kind if kind in KINDS else None
            if key == "held":  # the run starts when the timer fires: that is its event
                return Reading(kind, (TIMER_EVENT,))
            return Reading(kind, knowledge.update_events(kind) if kind else ())
    if "schedule" in when:
        return Reading(for_each if for_each in KINDS else None, (TIMER_EVENT,))
    return Reading(None, ())


def optional_reads(trees: Iterable[ast.AST]) -> set[tuple[str, ...]]:
    """The fields read through `get(x, 'field', …)` or `has(x, 'field')`: `x`'s chain plus the field."""
    found: set[tuple[str, ...]] = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("get", "has") \
                    and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) \
                    and isinstance(node.args[1].value, str):
                base = chain_of(node.args[0])
                if base is not None:
                    found.add((*base, node.args[1].value))
    return found


def _guarded(chain: tuple[str, ...], optional: set[tuple[str, ...]]) -> bool:
    if chain[:2] in optional:
        return True
    if chain[0] == "event":  # event.x and event.data.x are the same data field
        name = chain[2] if chain[1:2] == ("data",) and len(chain) > 2 else chain[1]
        return ("event", name) in optional or ("event", "data", name) in optional
    return False


def _kind_of(head: str, reading: Reading | None) -> str | None:
    """The entity kind a chain's first name reads: a kind's own name, `contact` (the client as a CRM calls them),
    or the rule's entity through `entity` and `prev`."""
    if head in KINDS:
        return head
    if head == "contact":
        return "client"
    return reading.kind if head in ("entity", "prev") and reading else None


def field_problem(chain: tuple[str, ...], reading: Reading | None, knowledge: Knowledge,
                  optional: set[tuple[str, ...]]) -> Finding | None:
    """Why reading this field chain is a mistake, or None when it is known or cannot be known."""
    if len(chain) < 2 or _guarded(chain, optional):
        return None
    head = chain[0]
    if head == "event":
        return _event_problem(chain, reading, knowledge)
    kind = _kind_of(head, reading)
    if kind is None:
        return None
    fields = knowledge.kind_fields(kind)
    if fields is None:
        return None
    name = chain[1]
    if name not in fields:
        return (f"unknown field '{head}.{name}'", _unknown_hint(name, fields, head))
    spec = fields[name]
    if len(chain) > 2 and spec is not None and spec.type == "id" and (kind, spec.links) in ACROSS:
        return field_problem((str(spec.links), *chain[2:]), None, knowledge, optional)  # `deal.booking.status`
    if len(chain) > 2 and spec is not None and spec.type in _SCALARS:
        return _deeper(chain, spec)
    return None


def _deeper(chain: tuple[str, ...], spec: FieldSpec) -> Finding:
    where = ".".join(chain[:2])
    if spec.type == "id" and spec.links:
        return (f"{where} is the id of a {spec.links}, not the {spec.links} itself: it has no field '{chain[2]}'",
                f"read the linked {spec.links} directly: {spec.links}.{chain[2]}")
    return (f"{where} is {spec.type}, not a record: it has no field '{chain[2]}'", None)


def _unknown_hint(name: str, fields: Mapping[str, Any], head: str) -> str:
    guess = suggest(name, [f for f in fields if f != "id"])
    if guess:
        return f"did you mean '{guess}'?"
    listed = sorted(f for f in fields if f != "id")
    shown = ", ".join(listed[:12]) + (" …" if len(listed) > 12 else "")
    return (f"known fields of {head}: {shown}; a field the connectors do not declare is read with "
            f"get({head}, '{name}', default)")


def _event_problem(chain: tuple[str, ...], reading: Reading | None, knowledge: Knowledge) -> Finding | None:
    name = chain[1]
    if name == "entity":
        if len(chain) > 2 and chain[2] not in ("kind", "id"):
            return (f"unknown field 'event.entity.{chain[2]}'", "event.entity has `kind` and `id` only; the "
                    "entity's own fields are entity.<field>")
        return None
    if name in ENVELOPE and name != "data":
        return None
    data = knowledge.event_data(reading.events) if reading else None
    if data is None:
        return None
    if name == "data":
        if len(chain) < 3 or chain[2] in data:
            return None
        field_name, shown = chain[2], f"event.data.{chain[2]}"
    elif name in data:
        return None
    else:
        field_name, shown = name, f"event.{name}"
    assert reading is not None
    types = ", ".join(reading.events)
    if field_name in ENVELOPE:
        return (f"unknown field '{shown}': {types} carries no data field '{field_name}'",
                f"event.{field_name} (without .data) is {ENVELOPE_MEANING[field_name]}")
    # `event.sorce` may mean the envelope's source; `event.data.sorce` only a data field.
    candidates = list(data) + ([n for n in ENVELOPE if n != "data"] if name != "data" else [])
    guess = suggest(field_name, candidates)
    if guess:
        return (f"unknown field '{shown}'", f"did you mean '{guess}'?")
    listed = sorted(data)
    fields = ", ".join(listed[:12]) + (" …" if len(listed) > 12 else "") if listed else "none"
    return (f"unknown field '{shown}': {types} carries no such data",
            f"its data fields: {fields}; an optional one is read with get(event, '{field_name}', default)")


def type_of(chain: tuple[str, ...], reading: Reading | None, knowledge: Knowledge) -> Type:
    """The type of a field chain's value, None when it is not known."""
    head = chain[0]
    if head == "event":
        name = chain[1]
        if name == "data" and len(chain) == 3:
            name = chain[2]
        elif len(chain) > 2:
            return None
        elif name in ENVELOPE_TYPES:
            return ENVELOPE_TYPES[name]
        data = knowledge.event_data(reading.events) if reading else None
        return data.get(name) if data else None
    kind = _kind_of(head, reading)
    if kind is None or len(chain) != 2:
        return None
    fields = knowledge.kind_fields(kind)
    spec = fields.get(chain[1]) if fields else None
    return field_type(spec.type) if spec is not None else None


def values_of(chain: tuple[str, ...], reading: Reading | None, knowledge: Knowledge) -> tuple[str, ...] | None:
    """The few fixed values a field can take (a status), as the catalogue lists them; None when not listed."""
    head = chain[0]
    if head == "event":
        name = chain[2] if chain[1:2] == ("data",) and len(chain) == 3 else chain[1] if len(chain) == 2 else None
        if name is None or name in ENVELOPE or reading is None or not reading.events or knowledge.open:
            return None
        specs = [knowledge.catalogue.event_fields(t).get(name) for t in reading.events]
        listed = [spec.values for spec in specs if spec is not None and spec.values]
        if not specs or len(listed) < len(specs):  # some event type does not list the field's values
            return None
        return tuple(dict.fromkeys(str(v) for values in listed for v in values))
    kind = _kind_of(head, reading)
    if kind is None or len(chain) != 2:
        return None
    fields = knowledge.kind_fields(kind)
    spec = fields.get(chain[1]) if fields else None
    return tuple(str(v) for v in spec.values) if spec is not None and spec.values else None


def value_problem(tree: ast.AST, reading: Reading | None, knowledge: Knowledge) -> Finding | None:
    """`booking.status == 'confirmd'`: a field compared with a value it never takes, so the condition never holds
    (or always does)."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare) or not all(isinstance(op, _VALUE_OPS) for op in node.ops):
            continue
        operands = [node.left, *node.comparators]
        for operand in operands:
            chain = chain_of(operand)
            values = values_of(chain, reading, knowledge) if chain is not None else None
            if chain is None or values is None:
                continue
            wrong = [text for text in literal_texts([o for o in operands if o is not operand]) if text not in values]
            if wrong:
                return unlisted_value(".".join(chain), wrong[0], values)
    return None


def unlisted_value(field_name: str, value: str, values: tuple[str, ...]) -> Finding:
    """The problem of a value a field never takes, with a did-you-mean or the values it does take."""
    guess = suggest(value, values)
    return (f"{field_name} is never '{value}': it is one of {', '.join(values)}",
            f"did you mean '{guess}'?" if guess else None)


def source_problem(tree: ast.AST, knowledge: Knowledge, reading: Reading | None) -> Finding | None:
    """`event.source == 'instagram'`: the envelope's source is a connector's name, never the lead's channel."""
    names = knowledge.sources()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left, *node.comparators]
        if not any(chain_of(o) == ("event", "source") for o in operands):
            continue
        wrong = [text for text in literal_texts(operands) if text not in names]
        if wrong:
            return (f"event.source is the name of the connector that sent the event ({', '.join(names)}), "
                    f"never '{wrong[0]}'", _source_hint(knowledge, reading))
    return None


def _source_hint(knowledge: Knowledge, reading: Reading | None) -> str:
    data = knowledge.event_data(reading.events) if reading else None
    near = sorted(name for name in data or () if "source" in name)
    if near:
        return f"where the request came from is a data field: event.{near[0]}"
    return ("where a lead or client came from is a field the connector fills (see `automator events`), "
            "such as event.lead_source")


def event_type_problem(type_: str, knowledge: Knowledge) -> Finding | None:
    """An event type no connector of the project produces and no rule emits: such a rule would never fire."""
    if knowledge.event_known(type_):
        return None
    known = sorted({*knowledge.catalogue.events, *knowledge.declared.events})
    guess = suggest(type_, known)
    if guess:
        return (f"unknown event type '{type_}'", f"did you mean '{guess}' ({_from(guess, knowledge)})?")
    listed = ", ".join(known[:12]) + (" …" if len(known) > 12 else "")
    return (f"unknown event type '{type_}': no connector of this project produces it and no rule emits it",
            f"known events: {listed}; declare your own under the `events:` setting of a `local` connector in "
            "automator.yaml")


def _from(type_: str, knowledge: Knowledge) -> str:
    spec = knowledge.catalogue.events.get(type_)
    if spec is None:
        return "emitted by a rule"
    names = [name for name, kind in knowledge.connectors.items()
             if (type_ in knowledge.sends[name] if name in knowledge.sends else kind in spec.producers)]
    if "engine" in spec.producers:
        names.append("the engine")
    return "from " + ", ".join(names) if names else "from " + ", ".join(spec.producers)
