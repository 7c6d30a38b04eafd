"""Canonical fields ↔ Bitrix24 deal, lead, task and contact fields (multifield changes included); phones to E.164."""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from automator.errors import Rejected
from automator.history import money_of
from automator.phone import Policy, to_e164

# Canonical deal fields a rule may write, and the Bitrix24 field each one is. SOURCE_ID and TYPE_ID are
# `lead_source` and `deal_type`: `event.source` and `event.type` are the event's own (its connector, its type).
DEAL_FIELDS: dict[str, str] = {
    "title": "TITLE", "amount": "OPPORTUNITY", "currency": "CURRENCY_ID", "responsible": "ASSIGNED_BY_ID",
    "contact": "CONTACT_ID", "company": "COMPANY_ID", "comments": "COMMENTS",
    "lead_source": "SOURCE_ID", "source_description": "SOURCE_DESCRIPTION", "deal_type": "TYPE_ID",
    "probability": "PROBABILITY", "begins_at": "BEGINDATE", "closes_at": "CLOSEDATE", "opened": "OPENED",
    "utm_source": "UTM_SOURCE", "utm_medium": "UTM_MEDIUM", "utm_campaign": "UTM_CAMPAIGN",
    "utm_content": "UTM_CONTENT", "utm_term": "UTM_TERM",
}
# The names these fields had before they were renamed, for the hint of a rule that still writes them. A deal's
# `client` is the person (the journal's word); the Bitrix24 contact it is linked to is `contact`.
RENAMED = {"source": "lead_source", "type": "deal_type", "client": "contact"}
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
        why = "the person, not a Bitrix24 id" if name == "client" else f"event.{name} is the event's own"
        raise Rejected(f"no Bitrix24 field for {name!r}: the deal's {DEAL_FIELDS[RENAMED[name]]} is "
                       f"{RENAMED[name]!r} ({why})")
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


# Bitrix24 code → the canonical name events carry (CONTACT_ID is the deal's `contact`: the journal adds `client`).
# MODIFY_BY_ID is who made the change a webhook reports (a stage move among them): the reports' "who moved it".
REVERSE: dict[str, str] = {**{code: name for name, code in DEAL_FIELDS.items()},
                           "DATE_CREATE": "created_at", "DATE_MODIFY": "updated_at", "ORIGIN_ID": "origin_id",
                           "MODIFY_BY_ID": "modified_by"}
NUMBERS = frozenset({"probability"})
MONEY = frozenset({"amount"})  # exact decimal text ("3500.00", as OPPORTUNITY is sent), never a float


def _canonical_value(name: str, value: Any) -> Any:
    """A deal field's value in the words events carry: money as exact decimal text, a number as a number; else
    as it came (a value that is no amount or number stays for the rule to see)."""
    if name in MONEY:
        return money_of(value) or value
    if name in NUMBERS:
        number = _number(value)
        return value if number is None else number
    return value


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
        data[name] = _canonical_value(name, value)
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
        canonical = name if name in custom or name in DEAL_FIELDS else REVERSE.get(name, name)
        out[canonical] = _canonical_value(canonical, value)
    return out


# A lead's fields as events carry them (contract part 2 §2.6, §2.7: SOURCE_ID, SOURCE_DESCRIPTION and UTM_* exist
# on leads as on deals and contacts).
LEAD_FIELDS: dict[str, str] = {
    "title": "TITLE", "name": "NAME", "last_name": "LAST_NAME", "status_id": "STATUS_ID", "lead_source": "SOURCE_ID",
    "source_description": "SOURCE_DESCRIPTION", "responsible": "ASSIGNED_BY_ID", "created_at": "DATE_CREATE",
    "comments": "COMMENTS", "modified_by": "MODIFY_BY_ID", "utm_source": "UTM_SOURCE", "utm_medium": "UTM_MEDIUM",
    "utm_campaign": "UTM_CAMPAIGN", "utm_content": "UTM_CONTENT", "utm_term": "UTM_TERM"}


def canonical_lead(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A Bitrix24 lead (`crm.lead.get`) in canonical words: who, how to reach them, where they came from."""
    # `lead_id` and `lead_source`: `event.id` and `event.source` are the event's own (its id, its connector).
    data: dict[str, Any] = {"lead_id": str(raw.get("ID"))}
    for name, code in LEAD_FIELDS.items():
        if raw.get(code) not in (None, ""):
            data[name] = raw[code]
    phone = first_value(raw.get("PHONE"))
    if phone:
        data["phone"] = e164(phone) or phone
    email = first_value(raw.get("EMAIL"))
    if email:
        data["email"] = email
    amount = money_of(raw.get("OPPORTUNITY"))
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


# ---- contacts ------------------------------------------------------------------------------------------------
# Canonical contact fields a rule may write (contact.update) and read (client.* events), and their Bitrix24 codes
# (contract part 2 §2.1). PHONE and EMAIL are multifields: see multifield_changes.
CONTACT_FIELDS: dict[str, str] = {
    "name": "NAME", "last_name": "LAST_NAME", "second_name": "SECOND_NAME", "phone": "PHONE", "email": "EMAIL",
    "responsible": "ASSIGNED_BY_ID", "lead_source": "SOURCE_ID", "source_description": "SOURCE_DESCRIPTION",
    "birthday": "BIRTHDATE", "comments": "COMMENTS", "post": "POST", "contact_type": "TYPE_ID",
    "company": "COMPANY_ID", "opened": "OPENED", "utm_source": "UTM_SOURCE", "utm_medium": "UTM_MEDIUM",
    "utm_campaign": "UTM_CAMPAIGN", "utm_content": "UTM_CONTENT", "utm_term": "UTM_TERM",
}
# What a contact reports that no rule writes.
CONTACT_READ_ONLY = {"DATE_CREATE": "created_at", "DATE_MODIFY": "updated_at", "MODIFY_BY_ID": "modified_by"}
CONTACT_RESERVED = frozenset({"ID", "ORIGIN_ID", "ORIGINATOR_ID", "DATE_CREATE", "DATE_MODIFY", "CREATED_BY_ID",
                              "MODIFY_BY_ID"})
MULTIFIELDS = ("PHONE", "EMAIL")


def contact_field(name: str, custom: Mapping[str, str]) -> str:
    """The Bitrix24 contact code of a field named in a rule (the settings' `contact_fields:`, the canonical names,
    or a code such as UF_CRM_…); unknown or connector-set names are refused, since Bitrix24 drops an unknown field
    without a word."""
    code = custom.get(name) or CONTACT_FIELDS.get(name) or (name if _NATIVE.match(name) else None)
    if code is None:
        raise Rejected(f"no Bitrix24 contact field for {name!r}: map it under `contact_fields:` in the connector's "
                       f"settings (e.g. {name}: UF_CRM_…) or use the Bitrix24 field code")
    if code in CONTACT_RESERVED:
        raise Rejected(f"contact field {name!r} ({code}) is set by Bitrix24 or the connector, not by `fields:`")
    return code


def contact_values(values: Mapping[str, Any], custom: Mapping[str, str]) -> dict[str, Any]:
    """Canonical `{name: value}` as Bitrix24 contact codes: phones as E.164 and e-mails checked (a list stays a
    list, see multifield_changes), dates as ISO text, booleans Y/N. A bad value is refused before any call."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        code = contact_field(str(name), custom)
        if code not in MULTIFIELDS:
            out[code] = _value(value)
        elif isinstance(value, list):
            out[code] = [comm_value(v, code) for v in value if v not in (None, "")]
        else:
            out[code] = None if value in (None, "") else comm_value(value, code)
    return out


def comm_value(value: Any, kind: str) -> str:
    """A phone (as E.164) or an e-mail (trimmed) to write; an invalid one is refused before any call."""
    text = str(value).strip()
    if kind == "PHONE":
        number = e164(text)
        if number is None:
            raise Rejected(f"not a valid phone number: {text!r}")
        return number
    if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", text):
        raise Rejected(f"not an e-mail address: {text!r}")
    return text


def _same_comm(a: Any, b: str, kind: str) -> bool:
    if kind == "PHONE":
        return (e164(a) or re.sub(r"\D", "", str(a))) == b
    return str(a).strip().lower() == b.lower()


def multifield_changes(current: Any, wanted: Any, kind: str) -> list[dict[str, Any]]:
    """The `PHONE`/`EMAIL` items of a crm.contact.update that make the contact's values what a rule wrote
    (contract part 2 §2.2: an item with ID changes or, with DELETE, removes that value; one without ID adds one;
    values not named stay):
    - one value: the contact's main (first) value becomes it, unless the contact already has it (no duplicate);
    - a list: the contact has exactly those values, the ones it had kept (not re-added), the others removed;
    - empty (`""`, `[]`, null): every value is removed.
    [] when nothing changes."""
    items = [i for i in (current if isinstance(current, list) else []) if isinstance(i, Mapping) and i.get("ID")]
    if wanted in (None, "", []):
        return [{"ID": i["ID"], "DELETE": "Y"} for i in items]
    if not isinstance(wanted, list):
        value = comm_value(wanted, kind)
        if any(_same_comm(i.get("VALUE"), value, kind) for i in items):
            return []
        if items:
            return [{"ID": items[0]["ID"], "VALUE": value, "VALUE_TYPE": items[0].get("VALUE_TYPE") or "WORK"}]
        return [{"VALUE": value, "VALUE_TYPE": "MOBILE" if kind == "PHONE" else "WORK"}]
    values = list(dict.fromkeys(comm_value(v, kind) for v in wanted))
    out: list[dict[str, Any]] = [{"ID": i["ID"], "DELETE": "Y"} for i in items
                                 if not any(_same_comm(i.get("VALUE"), v, kind) for v in values)]
    out += [{"VALUE": v, "VALUE_TYPE": "MOBILE" if kind == "PHONE" else "WORK"} for v in values
            if not any(_same_comm(i.get("VALUE"), v, kind) for i in items)]
    return out


def apply_multifield(current: Any, changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The values a contact holds after `changes` (as Bitrix24 applies them: in place, new ones at the end)."""
    items = [dict(i) for i in (current if isinstance(current, list) else []) if isinstance(i, Mapping)]
    by_id = {str(i.get("ID")): i for i in items}
    for change in changes:
        if change.get("ID") is None:
            items.append({"VALUE": change["VALUE"], "VALUE_TYPE": change.get("VALUE_TYPE")})
            continue
        item = by_id.get(str(change["ID"]))
        if item is None:
            continue
        if change.get("DELETE") == "Y" or not change.get("VALUE"):
            items.remove(item)
        else:
            item["VALUE"] = change["VALUE"]
    return items


def _date_part(text: Any) -> str | None:
    try:
        return datetime.fromisoformat(str(text)).date().isoformat()
    except ValueError:
        return None


def canonical_contact(raw: Mapping[str, Any], custom: Mapping[str, str]) -> dict[str, Any]:
    """A Bitrix24 contact (`crm.contact.get`) as a client's canonical data: phones E.164 (the first is `phone`, all
    of them `phones`), the birthday a date, custom fields under their `contact_fields:` names or codes."""
    names = {**{code: name for name, code in CONTACT_FIELDS.items()}, **CONTACT_READ_ONLY,
             **{code: name for name, code in custom.items()}}
    data: dict[str, Any] = {}
    for code, value in raw.items():
        name = names.get(code, code if code.startswith("UF_CRM_") else None)
        if name is None or value in (None, "", []) or code in MULTIFIELDS:
            continue
        if code == "BIRTHDATE":
            value = _date_part(value)
        elif code == "OPENED":
            value = value == "Y"
        if value is not None:
            data[name] = value
    phones = [e164(i["VALUE"]) or str(i["VALUE"]) for i in raw.get("PHONE") or [] if isinstance(i, Mapping)
              and i.get("VALUE")]
    emails = [str(i["VALUE"]) for i in raw.get("EMAIL") or [] if isinstance(i, Mapping) and i.get("VALUE")]
    if phones:
        data["phone"], data["phones"] = phones[0], phones
    if emails:
        data["email"], data["emails"] = emails[0], emails
    # A contact named by its phone is one made for a deal with nothing but the phone to go on (contact_fields): the
    # phone is no name, and must not overwrite the one the product knows.
    if data.get("name") is not None and e164(str(data["name"])) is not None and e164(str(data["name"])) in phones:
        del data["name"]
    return data


# ---- tasks ---------------------------------------------------------------------------------------------------
TASK_COMPLETED = "5"  # tasks.task.get `status` (contract part 2 §2.9: 2 waiting … 5 completed, 6 postponed)
BINDINGS = {"D": "deal", "L": "lead", "C": "contact"}  # UF_CRM_TASK prefixes: D_394 a deal, L_ a lead, C_ a contact


def task_bindings(values: Any) -> dict[str, str]:
    """A task's CRM bindings (`UF_CRM_TASK: ["D_1723", "C_627"]`) as `{deal: "1723", contact: "627"}`, the first of
    each kind (a company, `CO_`, is not bound to anything rules read)."""
    out: dict[str, str] = {}
    for value in values if isinstance(values, list) else []:
        prefix, _, ident = str(value).partition("_")
        if prefix in BINDINGS and ident.isdigit():
            out.setdefault(BINDINGS[prefix], ident)
    return out
