"""The catalogue as an admin reads it: `automator events` (text or JSON) and the README's "Events and fields" table.

Pure functions of a `Catalogue`; which catalogue (a project's, one connector's, the built-in ones) is the caller's.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from automator.catalogue import Catalogue, FieldSpec
from automator.model import ENTITY_KINDS


def type_word(spec: FieldSpec) -> str:
    """`phone`, `id → client`, `list of text`: a field's type as the listings show it."""
    if spec.type == "id" and spec.links:
        return f"id → {spec.links}"
    if spec.type == "list" and spec.of:
        return f"list of {spec.of}"
    return spec.type


def _kinds(catalogue: Catalogue) -> list[str]:
    """The entity kinds in the order an admin meets them (client, booking, deal, task), then any other."""
    return [k for k in ENTITY_KINDS if k in catalogue.entities] + sorted(set(catalogue.entities) - set(ENTITY_KINDS))


def _ordered(fields: Mapping[str, FieldSpec]) -> list[FieldSpec]:
    """A kind's fields as declared, its `id` first."""
    return sorted(fields.values(), key=lambda spec: spec.name != "id")


def _field_json(spec: FieldSpec, filled_by: Iterable[str] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {"name": spec.name, "type": spec.type, "doc": spec.doc}
    for key, value in (("values", list(spec.values)), ("links", spec.links), ("of", spec.of),
                       ("filled_by", list(filled_by))):
        if value:
            out[key] = value
    return out


def as_json(catalogue: Catalogue) -> dict[str, Any]:
    """Events (type, entity, doc, producers, own data fields) and each kind's fields, as plain data."""
    events = [{"type": spec.type, "entity": spec.entity, "doc": spec.doc, "producers": list(spec.producers),
               "with_fields": spec.with_fields, "data": [_field_json(f) for f in spec.data.values()]}
              for spec in (catalogue.events[t] for t in sorted(catalogue.events))]
    entities = {kind: [_field_json(f, catalogue.fillers.get((kind, f.name), ()))
                       for f in _ordered(catalogue.entities[kind])]
                for kind in _kinds(catalogue)}
    return {"events": events, "entities": entities}


def _field_line(spec: FieldSpec, width: int) -> str:
    values = f"  [{', '.join(str(v) for v in spec.values)}]" if spec.values else ""
    return f"{spec.name:<{width}}  {type_word(spec):<14}  {spec.doc}{values}".rstrip()


def as_text(catalogue: Catalogue) -> str:
    """The listing `automator events` prints: the events, then each kind's fields."""
    lines = ["events:"]
    width = max((len(t) for t in catalogue.events), default=0)
    for type_ in sorted(catalogue.events):
        spec = catalogue.events[type_]
        about = spec.entity or "-"
        lines.append(f"  {type_:<{width}}  {about:<8}  {spec.doc}  ({', '.join(spec.producers)})")
        own = spec.data.values()
        inner = max((len(f.name) for f in own), default=0)
        lines += [f"      {_field_line(f, inner)}" for f in own]
    for kind in _kinds(catalogue):
        fields = catalogue.entities[kind]
        lines.append(f"{kind} fields (read as {kind}.<field>, and as event.<field> in its events):")
        inner = max(len(name) for name in fields)
        lines += [f"  {_field_line(f, inner)}" for f in _ordered(fields)]
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _doc(spec: FieldSpec) -> str:
    values = f" ({', '.join(str(v) for v in spec.values)})" if spec.values else ""
    return _cell(spec.doc + values)


def as_markdown(catalogue: Catalogue) -> str:
    """Markdown tables: the events, then one table of fields per kind, each field with who fills it."""
    lines = ["| event | about | what happened | produced by | its own data |", "| --- | --- | --- | --- | --- |"]
    for type_ in sorted(catalogue.events):
        spec = catalogue.events[type_]
        data = ", ".join(f"`{f.name}` {type_word(f)}" for f in spec.data.values())
        lines.append(f"| `{type_}` | {spec.entity or '—'} | {_cell(spec.doc)} | {', '.join(spec.producers)} | "
                     f"{data} |")
    for kind in _kinds(catalogue):
        lines += ["", f"`{kind}`:", "", "| field | type | what it is | filled by |", "| --- | --- | --- | --- |"]
        for field in _ordered(catalogue.entities[kind]):
            who = ", ".join(catalogue.fillers.get((kind, field.name), ()))
            lines.append(f"| `{field.name}` | {type_word(field)} | {_doc(field)} | {who} |")
    return "\n".join(lines)


def pick(project_catalogue: Catalogue, connectors: Mapping[str, Any], types: Mapping[str, Any],
         which: str | None) -> Catalogue:
    """The catalogue `automator events [CONNECTOR]` shows: the project's whole one, that of the connector named
    `which` in automator.yaml (with its settings: local's `events:`), or that of a connector type.

    Raises LookupError with a did-you-mean when `which` is neither.
    """
    if which is None:
        return project_catalogue
    conf = connectors.get(which)
    if conf is not None and conf.type in types:
        return types[conf.type].produces(which, conf.options)
    if which in types:
        return types[which].produces(which, {})
    names = sorted(set(connectors) | set(types))
    guess = difflib.get_close_matches(which, names, n=1, cutoff=0.6)
    raise LookupError(f"no connector named '{which}' in automator.yaml and no connector type of that name" +
                      (f"; did you mean '{guess[0]}'?" if guess else f" (known: {', '.join(names)})"))
