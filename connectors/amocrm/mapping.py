"""Canonical deal/task/contact fields ↔ amoCRM's: PHP-bracket webhook forms, v4 leads, custom fields, ids, times."""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from automator.clock import parse_duration
from automator.errors import Rejected
from automator.history import money_of
from automator.phone import Policy, to_e164

MAX_DEPTH = 8  # deepest real key: leads[status][0][custom_fields][0][values][0][enum]
WON, LOST = 142, 143  # amoCRM's closed statuses, the same ids in every pipeline
CLOSED = {"won": WON, "lost": LOST}
FIELD_TYPES = ("text", "numeric", "date", "date_time", "checkbox")
# Canonical deal fields that are lead columns, not custom fields.
LEAD_COLUMNS = {"title": "name", "amount": "price", "responsible": "responsible_user_id"}
# Keys of deal.create's `fields` that describe the client (find or create the contact), not the lead.
CONTACT_KEYS = ("phone", "email", "client_name")
# Canonical deal fields kept in amoCRM's system tracking fields of leads, addressed by field_code (contract 2 §3.6).
TRACKING = {"utm_source": "UTM_SOURCE", "utm_medium": "UTM_MEDIUM", "utm_campaign": "UTM_CAMPAIGN",
            "utm_content": "UTM_CONTENT", "utm_term": "UTM_TERM"}
# `lead_source` is the lead's amoCRM source (`source_id`: the integration channel it came through, a site form, a
# chat, Avito…), named by the connector's `sources:` setting. amoCRM sets it only when an integration creates the
# lead (contract 2 §3.6), so no rule writes it.
SOURCE_IS_READ_ONLY = ("amoCRM sets a lead's source (lead_source) only when an integration creates the lead; the "
                       "advert's source is the tracking field utm_source")
_KEY = re.compile(r"([^\[\]]+)((?:\[[^\[\]]*\])*)")


class FormError(ValueError):
    """A webhook body that is not a well-formed PHP-bracket form."""


def parse_php_form(body: str) -> dict[str, Any]:
    """`a[b][0][c]=1&a[b][0][d]=2` → {"a": {"b": {"0": {"c": "1", "d": "2"}}}}, as PHP's $_POST reads it.

    Numbered levels stay dicts keyed by the number's text (see `numbered`); a key that is both a value and a
    branch, or deeper than MAX_DEPTH, makes the body malformed.
    """
    root: dict[str, Any] = {}
    for key, value in parse_qsl(body, keep_blank_values=True, strict_parsing=bool(body)):
        match = _KEY.fullmatch(key)
        if match is None:
            raise FormError(f"cannot read the key {key!r}")
        parts = [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))]
        if len(parts) > MAX_DEPTH:
            raise FormError(f"the key {key!r} is nested deeper than {MAX_DEPTH} levels")
        node = root
        for depth, part in enumerate(parts):
            if part == "":  # `a[]=`: PHP appends
                part = str(len(node))
            last = depth == len(parts) - 1
            if last:
                if isinstance(node.get(part), dict):
                    raise FormError(f"the key {key!r} is both a value and a group")
                node[part] = value
            else:
                child = node.setdefault(part, {})
                if not isinstance(child, dict):
                    raise FormError(f"the key {key!r} is both a value and a group")
                node = child
    return root


def numbered(node: Any) -> list[Any]:
    """The items of a numbered level ({"0": …, "1": …}) in index order; [] for anything else."""
    if not isinstance(node, dict):
        return []
    keyed = [(int(k), v) for k, v in node.items() if str(k).isdigit()]
    return [v for _, v in sorted(keyed, key=lambda kv: kv[0])]


def delivery_id(lead_id: Any, updated_at: Any, status_id: Any) -> str:
    """One change of one lead: the webhook, the catch-up poll and our own action's echo all name it so.

    The reference's dedup key is (entity, action, id, last_modified, status_id); the action is left out so the
    `status` and `update` hooks of one change, and a poll (which knows no action), share it.
    """
    return f"deal:{lead_id}@{updated_at}:{status_id}"


def as_int(value: Any, what: str) -> int:
    """An amoCRM id or number from text or a number; Rejected when it is not one."""
    if isinstance(value, bool):
        raise Rejected(f"{what} must be a number, not {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    text = str(value).strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    raise Rejected(f"{what} must be an amoCRM id (a number), not {value!r}")


def amount_of(price_: Any) -> Any:
    """A lead's `price` as events carry a deal's amount: exact decimal text ("3500.00"), never a float."""
    return money_of(price_) or _number(price_)


def price(value: Any) -> int:
    """A deal amount as amoCRM's integer `price` (rounded to whole money units: the API has no fractions)."""
    if isinstance(value, bool):
        raise Rejected(f"amount must be a number, not {value!r}")
    try:
        return int(round(float(str(value).replace(",", ".").replace(" ", ""))))
    except ValueError as exc:
        raise Rejected(f"amount must be a number, not {value!r}") from exc


def user_id(value: Any, users: Mapping[str, Any], what: str) -> int:
    """An employee as amoCRM's `responsible_user_id`: a numeric id, or a name from the `users:` (or `roles:`)
    setting."""
    text = str(value).strip()
    if text in users:
        return as_int(users[text], f"users.{text}")
    if re.fullmatch(r"\d+", text):
        return int(text)
    raise Rejected(f"{what} {value!r} is neither an amoCRM user id nor a name in the connector's users: or roles: "
                   f"setting")


def people_of(options: Mapping[str, Any]) -> dict[str, Any]:
    """The names rules give employees by: the `users:` setting and the `roles:` setting (a role wins a clash)."""
    return {str(k): v for key in ("users", "roles") for k, v in (options.get(key) or {}).items()}


def tag_names(value: Any, what: str) -> list[str]:
    """A `tags` value as amoCRM tag names: a list of texts (a template rendering a list gives one)."""
    if not isinstance(value, (list, tuple)) or not all(isinstance(t, (str, int)) and not isinstance(t, bool)
                                                       for t in value):
        raise Rejected(f"{what} must be a list of tag names, such as [VIP, повторный], not {value!r}")
    names = [str(t).strip() for t in value]
    if any(not n for n in names):
        raise Rejected(f"{what}: a tag name cannot be empty")
    return list(dict.fromkeys(names))


def unix_time(due: Any, now: datetime) -> int:
    """A task's `complete_till`: a duration from now (1d), a date-time with offset, or unix seconds."""
    if due is None or due == "":
        return int((now + parse_duration("1d").approx()).timestamp())
    if isinstance(due, (int, float)) and not isinstance(due, bool):
        return int(due)
    text = str(due).strip()
    if re.fullmatch(r"\d{9,}", text):
        return int(text)
    try:
        return int((now + parse_duration(text).approx()).timestamp())
    except ValueError:
        pass
    try:
        at = datetime.fromisoformat(text)
    except ValueError as exc:
        raise Rejected(f"due {due!r} is neither a duration such as 1d nor a date-time") from exc
    if at.tzinfo is None:
        raise Rejected(f"due {due!r} needs a UTC offset, such as 2026-03-02T18:00:00+03:00")
    return int(at.timestamp())


def iso(seconds: Any) -> str | None:
    """Unix seconds as an ISO 8601 UTC moment; None when not a number."""
    try:
        return datetime.fromtimestamp(int(seconds), UTC).isoformat()
    except (TypeError, ValueError, OverflowError):
        return None


def e164(phone: Any) -> str | None:
    """A phone as typed (Russian numbers without a country code are common) in E.164; None when not a phone."""
    return to_e164(str(phone), policy=Policy.VALID, region="RU")


@dataclass(frozen=True, slots=True)
class CustomField:
    """One canonical field kept in an amoCRM custom field of leads."""

    name: str
    id: int
    type: str = "text"

    def to_amo(self, value: Any) -> dict[str, Any]:
        """The `custom_fields_values` item that sets it (dates go as unix seconds, as v4 wants them)."""
        out: Any = value
        if self.type in ("date", "date_time"):
            out = _seconds(value, self.name)
        elif self.type == "numeric":
            out = value if isinstance(value, (int, float)) else str(value)
        elif self.type == "checkbox":
            out = value in (True, "true", "1", 1, "yes", "Y")
        else:
            out = "" if value is None else str(value)
        return {"field_id": self.id, "values": [{"value": out}]}

    def from_amo(self, value: Any) -> Any:
        """The canonical value of a custom field read from a webhook or a v4 lead."""
        if self.type in ("date", "date_time") and value not in (None, ""):
            text = str(value)
            return iso(text) if text.lstrip("-").isdigit() else text
        return value


def _seconds(value: Any, name: str) -> int:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        at = datetime.fromisoformat(text)
    except ValueError as exc:
        raise Rejected(f"field {name}: {value!r} is not a date") from exc
    return int((at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp())


@dataclass(frozen=True)
class FieldMap:
    """The `fields:` setting: canonical name → custom field of leads (an id, or {id, type})."""

    by_name: Mapping[str, CustomField] = field(default_factory=dict)

    @classmethod
    def from_config(cls, raw: Mapping[str, Any] | None) -> FieldMap:
        """Read the setting (already checked by the config schema)."""
        found: dict[str, CustomField] = {}
        for name, spec in (raw or {}).items():
            if isinstance(spec, Mapping):
                found[name] = CustomField(name, int(spec["id"]), str(spec.get("type", "text")))
            else:
                found[name] = CustomField(name, int(spec))
        return cls(found)

    def by_id(self, field_id: Any) -> CustomField | None:
        """The canonical field kept in this custom field id, if any."""
        return next((f for f in self.by_name.values() if str(f.id) == str(field_id)), None)

    def lead_body(self, fields: Mapping[str, Any], users: Mapping[str, Any]) -> dict[str, Any]:
        """The lead columns and `custom_fields_values` that set canonical `fields`; Rejected for an unknown
        name, before anything is sent."""
        body: dict[str, Any] = {}
        custom: list[dict[str, Any]] = []
        unknown: list[str] = []
        for name, value in fields.items():
            if name == "title":
                body["name"] = str(value)
            elif name == "amount":
                body["price"] = price(value)
            elif name == "responsible":
                body["responsible_user_id"] = user_id(value, users, "responsible")
            elif name in self.by_name:
                custom.append(self.by_name[name].to_amo(value))
            elif name == "tags":
                # The whole set, replaced (the documented way, contract 2 §3.4): `tags: []` clears them.
                body["_embedded"] = {"tags": [{"name": t} for t in tag_names(value, "tags")]}
            elif name == "lead_source":
                raise Rejected(SOURCE_IS_READ_ONLY)
            elif name in TRACKING:
                custom.append({"field_code": TRACKING[name], "values": [{"value": "" if value is None
                                                                         else str(value)}]})
            else:
                unknown.append(name)
        if unknown:
            known = ", ".join(["title", "amount", "responsible", "tags", *TRACKING, *self.by_name])
            raise Rejected(f"amoCRM has no field for {', '.join(sorted(unknown))}: map it to a custom field "
                           f"id in the connector's fields: setting (known: {known})")
        if custom:
            body["custom_fields_values"] = custom
        return body


@dataclass(frozen=True, slots=True)
class LeadState:
    """A lead as a webhook item or a v4 lead describes it, in one shape."""

    id: str
    updated_at: int
    created_at: int | None
    status_id: str
    pipeline_id: str
    name: str | None = None
    price: Any = None
    responsible: str | None = None
    contact: str | None = None
    custom: tuple[tuple[str, Any], ...] = ()  # (field id, first value)
    tags: tuple[str, ...] | None = None  # None: not reported (a move's answer)
    tracking: tuple[tuple[str, Any], ...] = ()  # (field_code, first value) of the system tracking fields
    modified_by: str | None = None  # the user who made the change (webhook: modified_user_id; v4: updated_by)
    source_id: str | None = None  # the lead's amoCRM source, when it came through one

    @property
    def delivery(self) -> str:
        """The change's delivery id."""
        return delivery_id(self.id, self.updated_at, self.status_id)


def lead_from_webhook(item: Mapping[str, Any], action: str) -> LeadState:
    """A `leads[<action>][i]` item (legacy v2 field names: last_modified, date_create, custom_fields)."""
    lead = str(item.get("id", ""))
    if not lead.isdigit():
        raise FormError(f"leads[{action}] item without a numeric id")
    stamp = str(item.get("last_modified") or item.get("updated_at") or "")
    if action == "delete":
        stamp = stamp or "deleted"
    elif not stamp.isdigit():
        raise FormError(f"leads[{action}] item {lead} without last_modified")
    custom, tracking = [], []
    for cf in numbered(item.get("custom_fields")):
        if isinstance(cf, dict) and cf.get("id") is not None:
            values = numbered(cf.get("values"))
            first = values[0] if values else None
            value = first.get("value") if isinstance(first, dict) else first
            custom.append((str(cf["id"]), value))
            # A system field's item carries its `code` (PHONE, UTM_SOURCE), as v2's GET did (assume: the
            # webhook format is "the entity as the GET describes it"; no captured body holds a tracking field).
            if str(cf.get("code") or "") in TRACKING.values():
                tracking.append((str(cf["code"]), value))
    # A webhook carries the whole lead (its tags included), so a lead without `tags` has none.
    tags = None if action == "delete" else tuple(str(t["name"]) for t in numbered(item.get("tags"))
                                                 if isinstance(t, dict) and t.get("name") not in (None, ""))
    created = str(item.get("date_create") or item.get("created_at") or "")
    return LeadState(
        id=lead, updated_at=int(stamp) if stamp.isdigit() else 0, created_at=int(created) if created.isdigit() else None,
        status_id=str(item.get("status_id", "")), pipeline_id=str(item.get("pipeline_id", "")),
        name=item.get("name"), price=item.get("price"), responsible=opt_id(item.get("responsible_user_id")),
        contact=opt_id(item.get("main_contact_id") or item.get("contact_id")), custom=tuple(custom), tags=tags,
        # `source_id` in a webhook item is assumed (the v2 lead had it; no captured body shows one).
        tracking=tuple(tracking), modified_by=opt_id(item.get("modified_user_id")),
        source_id=opt_id(item.get("source_id")))


def lead_from_v4(lead: Mapping[str, Any]) -> LeadState:
    """A lead of the v4 API (GET /api/v4/leads, with=contacts)."""
    contacts = [c for c in ((lead.get("_embedded") or {}).get("contacts") or []) if isinstance(c, Mapping)]
    main = next((c for c in contacts if c.get("is_main")), contacts[0] if contacts else None)
    custom, tracking = [], []
    for cf in lead.get("custom_fields_values") or []:
        values = cf.get("values") or []
        custom.append((str(cf.get("field_id")), values[0].get("value") if values else None))
        if cf.get("field_code") in TRACKING.values():
            tracking.append((str(cf["field_code"]), custom[-1][1]))
    tags = tuple(str(t["name"]) for t in (lead.get("_embedded") or {}).get("tags") or []
                 if isinstance(t, Mapping) and t.get("name") not in (None, ""))
    return LeadState(
        id=str(lead["id"]), updated_at=int(lead.get("updated_at") or 0), created_at=lead.get("created_at"),
        status_id=str(lead.get("status_id", "")), pipeline_id=str(lead.get("pipeline_id", "")),
        name=lead.get("name"), price=lead.get("price"), responsible=opt_id(lead.get("responsible_user_id")),
        contact=opt_id(main.get("id")) if main else None, custom=tuple(custom), tags=tags, tracking=tuple(tracking),
        modified_by=opt_id(lead.get("updated_by")), source_id=opt_id(lead.get("source_id")))


def outcome_of(status_id: Any) -> str:
    """Where a lead's stage stands, as every CRM's deals say it (`outcome`): won (142), lost (143) or open: the
    core reads this, never amoCRM's ids."""
    return {str(WON): "won", str(LOST): "lost"}.get(str(status_id), "open")


def deal_data(state: LeadState, names: tuple[str, str] | None, fields: FieldMap,
              sources: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The canonical deal fields the rules read, with amoCRM's own ids kept beside the names; `sources` names the
    account's source ids (the `sources:` setting: an unnamed one is its id)."""
    data: dict[str, Any] = {"pipeline_id": state.pipeline_id, "status_id": state.status_id,
                            "outcome": outcome_of(state.status_id)}
    if names is not None:
        data["pipeline"], data["stage"] = names
    if state.name is not None:
        data["title"] = state.name
    if state.price not in (None, ""):
        data["amount"] = amount_of(state.price)
    if state.responsible:
        data["responsible"] = state.responsible
    if state.contact:
        data["contact"] = state.contact  # amoCRM's own contact id: the journal adds the person as `client`
    if state.tags is not None:
        data["tags"] = list(state.tags)
    if state.modified_by:
        data["modified_by"] = state.modified_by
    if state.source_id:
        data["lead_source"] = (sources or {}).get(state.source_id, state.source_id)
    named = {code: name for name, code in TRACKING.items()}
    for code, value in state.tracking:
        if value not in (None, ""):
            data[named[code]] = str(value)
    for field_id, value in state.custom:
        known = fields.by_id(field_id)
        if known is not None:
            data[known.name] = known.from_amo(value)
    return data


def opt_id(value: Any) -> str | None:
    """An id as text; None for amoCRM's ways of saying "none" (empty, 0)."""
    return None if value in (None, "", "0", 0) else str(value)


def _number(value: Any) -> Any:
    text = str(value)
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    try:
        return float(text)
    except ValueError:
        return value
