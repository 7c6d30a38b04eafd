"""The validate-time check of an action's params by the connector it goes to (`Connector.check_params`).

A connector refuses some params only when it performs them (an assignee it has no user for, a deal field it does
not map, a host off its allow-list): in production, long after the rule was written. What of that is decidable
from the params as written and the connector's settings, its type says at validate time, through one hook. This
module is what the hook is given (`CheckContext`, and the helpers that tell a literal from a template and read
what a template reads) and what it returns (`ParamProblem`).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

from automator.catalogue import ENVELOPE, Catalogue
from automator.expr import EvalContext, EvalError, Expr, Template
from automator.model import Pipeline

ParamPath = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class ParamProblem:
    """What the connector would refuse (or do wrong) with one param: reported at that param's line and column.

    `path` is inside the action's params (`("fields", "visit_at")`, `("to",)`; `()` is the action itself);
    `key` puts the problem at the param's name rather than its value (a field name the connector does not map).
    A `warning` leaves the project loadable (the action works, but not as the admin may think).
    """

    path: ParamPath
    message: str
    hint: str | None = None
    severity: str = "error"
    key: bool = False


class _Unknown:
    """The value of a param that depends on the run (a template reading data)."""

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Any = _Unknown()
# A deal's stage is never one of its `fields:`: where each deal action takes it instead.
STAGE_HINT = {"deal.create": "give the stage as deal.create's own `stage:` (and `pipeline:`)",
              "deal.move": "give it as deal.move's own `stage:` (and `pipeline:`)",
              "deal.update": "move the deal with deal.move (`stage:`, `pipeline:`)"}
# Literal templates are rendered on a fixed clock: one that reads the clock (`{{ now }}`) is not a literal.
_FIXED = EvalContext(now=datetime(2000, 1, 1, tzinfo=timezone.utc), tz=ZoneInfo("UTC"))


def literal(value: Any, settings: Mapping[str, Any] | None = None) -> Any:
    """The value a param has whatever the run: a value as written, or a template that reads no data
    (`{{ 'admin' }}`, a literal in disguise) or, given them, only automator.yaml's `settings:`; `UNKNOWN` when it
    depends on the run."""
    if isinstance(value, Template):
        if value.is_static:
            return value.source
        known = {"settings"} if settings is not None else set()
        if any(isinstance(part, Expr) and not part.names <= known for part in value.parts):
            return UNKNOWN
        try:
            return value.render({"settings": settings or {}}, _FIXED)
        except EvalError:
            return UNKNOWN
    if isinstance(value, Mapping):
        items = {k: literal(v, settings) for k, v in value.items()}
        return UNKNOWN if any(v is UNKNOWN for v in items.values()) else items
    if isinstance(value, list):
        listed = [literal(v, settings) for v in value]
        return UNKNOWN if any(v is UNKNOWN for v in listed) else listed
    return value


def reads(value: Any) -> tuple[tuple[str, ...], ...]:
    """The field chains a param's template reads (`("client", "phone")` for `{{ client.phone }}`); () for a
    literal."""
    return value.fields if isinstance(value, Template) else ()


def lone_field(value: Any) -> tuple[str, ...] | None:
    """The field chain of a param that is one placeholder reading one field as it is (`{{ client.id }}`), so its
    value is that field's; None for anything else (text around it, a function, arithmetic)."""
    if not isinstance(value, Template):
        return None
    exprs = [part for part in value.parts if isinstance(part, Expr)]
    if len(exprs) != 1 or any(isinstance(p, str) and p.strip() for p in value.parts):
        return None
    chain = exprs[0].fields[0] if len(exprs[0].fields) == 1 else None
    return chain if chain is not None and exprs[0].source.strip() == ".".join(chain) else None


def literal_text(value: Any) -> tuple[str, int]:
    """The fixed text of a text param and how many placeholders add to it when the rule runs: ("Спасибо, !", 1)
    for `Спасибо, {{ client.name }}!`. A placeholder that reads no data counts as the text it renders."""
    if not isinstance(value, Template):
        return ("" if value is None else str(value)), 0
    text, placeholders = [], 0
    for part in value.parts:
        if isinstance(part, str):
            text.append(part)
            continue
        known = literal(Template(part.source, (part,), part.names, part.fields)) if not part.names else UNKNOWN
        if known is UNKNOWN:
            placeholders += 1
        else:
            text.append("" if known is None else str(known))
    return "".join(text), placeholders


@dataclass(frozen=True, slots=True)
class CheckContext:
    """What a check needs from the project besides the params and its own settings."""

    connector: str  # the name, in automator.yaml, of the connector the step goes to
    connectors: Mapping[str, str] = field(default_factory=dict)  # every configured connector: name → type
    pipelines: Mapping[str, Pipeline] = field(default_factory=dict)
    catalogue: Catalogue = field(default_factory=Catalogue)
    rule_kind: str | None = None  # the entity kind the rule's trigger is about; None: none, or not known
    rule_sources: tuple[str, ...] = ()  # connector types whose events start the rule (the catalogue's word)
    rule_pipeline: str | None = None  # the trigger's `pipeline:`
    settings: Mapping[str, Any] = field(default_factory=dict)  # automator.yaml's `settings:`, fixed for the daemon

    def literal(self, value: Any) -> Any:
        """`literal(value)`, with the project's `settings:` known too (`{{ settings.ads_url }}` is a literal)."""
        return literal(value, self.settings)

    def pipeline(self, params: Mapping[str, Any]) -> Pipeline | None:
        """The pipeline a deal action works in, when the rule says: a literal `pipeline:`, else the trigger's."""
        named = literal(params.get("pipeline"))
        if named is None and self.rule_pipeline is not None:
            named = self.rule_pipeline
        return self.pipelines.get(named) if isinstance(named, str) else None

    @property
    def run_has_client(self) -> bool:
        """Whether a run of the rule has a client in scope (its entity is one, or links one)."""
        kind = self.rule_kind
        return kind == "client" or (kind is not None and "client" in self.catalogue.entity_fields(kind))

    def filled_by(self, chain: tuple[str, ...] | None) -> tuple[str, ...]:
        """The connector types whose data a field read (`client.id`, `booking.client`, `entity.id`) holds in a run of
        this rule, by the catalogue's fillers, narrowed to the ones whose events start the rule; () when unknown.
        An entity reached through a link (the client of a booking rule) is the one the link's filler names."""
        found = self._field(chain)
        if found is None:
            return ()
        head, name = found
        types = self.catalogue.fillers.get((head, name), ())
        if head == self.rule_kind and self.rule_sources:
            types = tuple(t for t in types if t in self.rule_sources) or types
        owner = self.pipelines.get(self.rule_pipeline) if self.rule_pipeline else None
        if head == self.rule_kind == "deal" and owner is not None and owner.connector in self.connectors:
            types = tuple(t for t in types if t == self.connectors[owner.connector]) or types  # the pipeline's CRM
        return tuple(t for t in types if t != "engine")

    def _field(self, chain: tuple[str, ...] | None) -> tuple[str, str] | None:
        """The (entity kind, field) whose filler decides what a field read holds."""
        if not chain or len(chain) < 2:
            return None
        head, rest = chain[0], list(chain[1:])
        if head in ("entity", "event"):
            if self.rule_kind is None:
                return None
            if head == "event" and rest[0] in ("entity", "data"):
                rest = rest[1:]  # event.entity.id, event.data.client
            elif head == "event" and rest[0] in ENVELOPE:
                return None  # event.id is the event's own id, no record's
            head = self.rule_kind
        if len(rest) != 1:
            return None
        if rest[0] == "id" and self.rule_kind is not None and head != self.rule_kind:
            return self.rule_kind, head  # the client of a booking: booking.client's filler says whose
        return head, rest[0]

    def foreign(self, value: Any) -> tuple[str, ...]:
        """The connector types whose id a param carries when that id cannot be the receiving connector's own (a
        lone `{{ client.id }}` of a client YCLIENTS filled, sent to Bitrix24); () when it can be, or is not known.
        `local` (the project's own store, whose ids are the other systems') is never the reason."""
        return self._foreign(lone_field(value))

    def _foreign(self, chain: tuple[str, ...] | None) -> tuple[str, ...]:
        found = self._field(chain)
        spec = self.catalogue.entity_fields(found[0]).get(found[1]) if found is not None else None
        if spec is None or spec.type != "id":  # a phone, a name: no system's own key
            return ()
        if found == ("client", "id") or spec.links == "client":
            return ()  # a person: the engine sends each system its own id of them, or their phone (identity.py)
        types = self.filled_by(chain)
        own = self.connectors.get(self.connector)
        others = tuple(t for t in types if t != "local")
        return others if others and own not in types else ()

    def named(self, types: tuple[str, ...]) -> str:
        """The configured connectors of these types as an admin knows them: "connector 'booking' (yclients)"."""
        names = [f"'{name}' ({type_})" for name, type_ in self.connectors.items() if type_ in types]
        if not names:
            return ", ".join(types)
        return ("connector " if len(names) == 1 else "connectors ") + ", ".join(names)


def rule_trigger(when: Any, for_each: Any, catalogue: Catalogue) -> tuple[str | None, tuple[str, ...]]:
    """The entity kind a rule's runs are about and the connector types whose events start them, as far as the
    trigger and the catalogue say: a `for_each` kind and who fills it (each run is about one such record,
    whatever the trigger), an event's entity and producers, a changed or held field's kind and fillers."""
    if not isinstance(when, Mapping):
        return None, ()
    if isinstance(for_each, Mapping) and isinstance(for_each.get("kind"), str):
        kind = for_each["kind"]
        return kind, catalogue.fillers.get((kind, "id"), ())
    if isinstance(when.get("event"), str):
        spec = catalogue.events.get(when["event"])
        return (spec.entity, spec.producers) if spec is not None else (None, ())
    for key in ("changed", "held"):
        if isinstance(when.get(key), str) and "." in when[key]:
            kind, _, name = when[key].partition(".")
            return kind, catalogue.fillers.get((kind, name), ())
    return None, ()


def by_phone_hint(context: CheckContext, system: str) -> str:
    """What to write instead of another system's id as a CRM's contact: the phone, which the CRM is searched by."""
    return (f'write `contact: "{{{{ client.phone }}}}"`: connector \'{context.connector}\' finds the {system} contact '
            "with that phone, or creates it")


def foreign_contact(params: Mapping[str, Any], context: CheckContext, system: str, record: str
                    ) -> list[ParamProblem] | None:
    """The problem of a CRM's `contact:` that would carry another system's record id written in a template (never
    a client's: a person, sent as the CRM knows them): the record would be linked to whichever of the CRM's
    contacts has that number. [] when it is fine, None when it is a literal for the connector to judge."""
    if "contact" not in params:
        return []  # the run's client: a person, whom the engine sends as the CRM knows them (identity.py)
    value = params["contact"]
    if literal(value) is not UNKNOWN:
        return None
    others = context.foreign(value)
    if not others:
        return []
    return [ParamProblem(("contact",), f"'{value.source}' is an id from {context.named(others)}, but {system} takes "
                                       f"`contact:` as its own contact id: the {record} would be linked to whichever "
                                       f"{system} contact has that number", by_phone_hint(context, system))]


def choice_hint(name: str, known: Any, what: str) -> str:
    """A did-you-mean for a name that is not among `known`, else the list of them (or that there are none)."""
    from automator.expr import suggest

    listed = sorted(str(k) for k in known)
    guess = suggest(str(name), listed)
    if guess:
        return f"did you mean '{guess}'?"
    if not listed:
        return f"no {what} are set"
    return f"known {what}: " + ", ".join(listed[:12]) + (" …" if len(listed) > 12 else "")
