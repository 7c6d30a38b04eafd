"""Canonical fields ↔ Bitrix24 deal, lead, task and contact fields; phones to E.164 and back."""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from automator.errors import Rejected
from automator.phone import Policy, to_e164

# Canonical deal fields a rule may write, and the Bitrix24 field each one is. SOURCE_ID and TYPE_ID are
# `lead_source` and `deal_type`: `event.source` and `event.type` are the event's own (its connector, its type).
DEAL_FIELDS: dict[str, str] = {
    "title": "TITLE", "amount": "OPPORTUNITY", "currency": "CURRENCY_ID", "responsible": "ASSIGNED_BY_ID",
    "client": "CONTACT_ID", "contact": "CONTACT_ID", "company": "COMPANY_ID", "comments": "COMMENTS",
    "lead_source": "SOURCE_ID", "source_description": "SOURCE_DESCRIPTION", "deal_type": "TYPE_ID",
    "probability": "PROBABILITY", "begins_at": "BEGINDATE", "closes_at": "CLOSEDATE", "opened": "OPENED",
    "utm_source": "UTM_SOURCE", "utm_medium": "UTM_MEDIUM", "utm_campaign": "UTM_CAMPAIGN",
    "utm_content": "UTM_CONTENT", "utm_term": "UTM_TERM",
}
# The names these fields had before they were renamed, for the hint of a rule that still writes them.
RENAMED = {"source": "lead_source", "type": "deal_type"}
# Fields the connector itself sets: a rule's `fields:` may not overwrite them.
RESERVED = frozenset({"CATEGORY_ID", "STAGE_ID", "ORIGIN_ID", "ORIGINATOR_ID", "ID"})
_NATIVE = re.compile(r"^(UF_CRM_[A-Z0-9_]+|PARENT_ID_\d+|[A-Z][A-Z0-9_]*)$")
ORIGINATOR = "automator"


def bitrix_field(name: str, custom: Mapping[str, str]) -> str:
    """The Bitrix24 code of a field named in a rule: the settings' `fields:` map, the canonical names, or a
    name already written as a Bitrix code (`UF_CRM_…`, `COMMENTS`). Bitrix ignores unknown fields silently, so an
    unknown name is refused here rather than lost."""
    if name in custom:
        return custom[name]
    if name in DEAL_FIELDS:
        return DEAL_FIELDS[name]
    if _NATIVE.match(name):
        return name
    if name in RENAMED:
        raise Rejected(f"no Bitrix24 field for {name!r}: the deal's {DEAL_FIELDS[RENAMED[name]]} is "
                       f"{RENAMED[name]!r} (event.{name} is the event's own)")
    raise Rejected(f"no Bitrix24 field for {name!r}: map it under `fields:` in the connector's settings "
                   f"(e.g. {name}: UF_CRM_…) or use the Bitrix24 field code")


def deal_fields(values: Mapping[str, Any], custom: Mapping[str, str]) -> dict[str, Any]:
    """Canonical `{name: value}` as Bitrix24 `fields` (datetimes as ISO strings, booleans Y/N)."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        code = bitrix_field(str(name), custom)
        if code in RESERVED:
            raise Rejected(f"field {name!r} ({code}) is set by the connector, not by `fields:`")
        out[code] = _value(value)
    return out


def _value(value: Any) -> Any:
    if isinstance(value, bool):
        return "Y" if value else "N"
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _number(text: Any) -> float | None:
    try:
        return None if text in (None, "") else float(text)
    except (TypeError, ValueError):
        return None


# Bitrix24 code → the canonical name events carry (CONTACT_ID is the deal's client).
REVERSE: dict[str, str] = {**{code: name for name, code in DEAL_FIELDS.items() if name != "contact"},
                           "DATE_CREATE": "created_at", "DATE_MODIFY": "updated_at", "ORIGIN_ID": "origin_id"}
NUMBERS = frozenset({"amount", "probability"})


def stage_category(stage: str) -> int:
    """The pipeline (CATEGORY_ID) a stage id belongs to: `C4:NEW` → 4, `NEW` → 0."""
    match = re.match(r"^C(\d+):", stage)
    return int(match.group(1)) if match else 0


def canonical_deal(raw: Mapping[str, Any], custom: Mapping[str, str],
                   stage_named: Callable[[str, str | None], tuple[str, str] | None]) -> dict[str, Any]:
    """A Bitrix24 deal (`crm.deal.get`/`list` row) in the canonical words rules read; the CRM ids kept too.
    Custom fields appear under their names in the settings' `fields:`, unmapped ones under their codes."""
    category = None if raw.get("CATEGORY_ID") is None else str(raw["CATEGORY_ID"])
    stage_id = str(raw.get("STAGE_ID") or "")
    data: dict[str, Any] = {"id": str(raw.get("ID")), "pipeline_id": category, "stage_id": stage_id}
    named = stage_named(stage_id, category) if stage_id else None
    if named:
        data["pipeline"], data["stage"] = named
    names = {**REVERSE, **{code: name for name, code in custom.items()}}
    for code, value in raw.items():
        if value in (None, "", []) or code in ("ID", "CATEGORY_ID", "STAGE_ID"):
            continue
        name = names.get(code, code if code.startswith("UF_CRM_") else None)
        if name is None:
            continue
        data[name] = (_number(value) if name in NUMBERS else value)
    if raw.get("STAGE_SEMANTIC_ID"):
        data["outcome"] = {"S": "won", "F": "lost"}.get(str(raw["STAGE_SEMANTIC_ID"]), "open")
    for code, name in (("CLOSED", "closed"), ("OPENED", "opened")):  # Bitrix24's Y/N as booleans
        if raw.get(code) in ("Y", "N"):
            data[name] = raw[code] == "Y"
    return data


def event_fields(values: Mapping[str, Any], custom: Mapping[str, str]) -> dict[str, Any]:
    """Fields a rule set, named and typed as the deal's webhook will report them (so the daemon knows that
    webhook as the echo of its own change)."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        name = str(name)
        canonical = "client" if name == "contact" else name if name in custom or name in DEAL_FIELDS \
            else REVERSE.get(name, name)
        number = _number(value) if canonical in NUMBERS else None
        out[canonical] = number if number is not None else value
    return out


def canonical_lead(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A Bitrix24 lead (`crm.lead.get`) in canonical words: who, how to reach them, where they came from."""
    # `lead_id` and `lead_source`: `event.id` and `event.source` are the event's own (its id, its connector).
    data: dict[str, Any] = {"lead_id": str(raw.get("ID"))}
    for name, code in {"title": "TITLE", "name": "NAME", "last_name": "LAST_NAME", "status_id": "STATUS_ID",
                       "lead_source": "SOURCE_ID", "responsible": "ASSIGNED_BY_ID", "created_at": "DATE_CREATE",
                       "comments": "COMMENTS"}.items():
        if raw.get(code) not in (None, ""):
            data[name] = raw[code]
    phone = first_value(raw.get("PHONE"))
    if phone:
        data["phone"] = e164(phone) or phone
    email = first_value(raw.get("EMAIL"))
    if email:
        data["email"] = email
    amount = _number(raw.get("OPPORTUNITY"))
    if amount is not None:
        data["amount"] = amount
    return data


def first_value(multifield: Any) -> str | None:
    """The first VALUE of a PHONE/EMAIL multifield (`[{ID, VALUE_TYPE, VALUE, TYPE_ID}]`)."""
    if isinstance(multifield, list):
        for item in multifield:
            if isinstance(item, Mapping) and item.get("VALUE"):
                return str(item["VALUE"])
    return None


def e164(phone: Any, region: str = "RU") -> str | None:
    """A phone number as E.164 (`+79161234567`), or None when it is not a valid number."""
    # Bitrix24 keeps phones as a person typed them; a contact is searched and created by the E.164 form.
    return to_e164(str(phone), policy=Policy.VALID, region=region)


def looks_like_phone(value: Any) -> bool:
    """True for a phone number written where an id is expected (`+7 916 …`, `8 (916) …`); a bare CRM id is
    all digits and short."""
    text = str(value).strip()
    digits = re.sub(r"\D", "", text)
    return len(digits) >= 10 and (text.startswith("+") or not text.isdigit() or len(digits) >= 11)


def contact_fields(phone: str, name: str | None, responsible: Any, key: str) -> dict[str, Any]:
    """`crm.contact.add` fields for a client known by phone; the effect key marks who made it."""
    fields: dict[str, Any] = {"NAME": name or phone, "OPENED": "Y", "TYPE_ID": "CLIENT",
                              "PHONE": [{"VALUE": phone, "VALUE_TYPE": "MOBILE"}],
                              "ORIGINATOR_ID": ORIGINATOR, "ORIGIN_ID": key}
    if responsible not in (None, ""):
        fields["ASSIGNED_BY_ID"] = responsible
    return fields
