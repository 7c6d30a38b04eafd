"""Canonical clients ↔ amoCRM contacts: contact webhooks and v4 contacts as `client.*` data, and the bodies that
create a contact or change one (name, phone, email, responsible, tags, mapped custom fields)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import phonenumbers

from automator.errors import Rejected

from .mapping import FieldMap, FormError, e164, numbered, opt_id, tag_names, user_id

# System fields of contacts, by the `code` webhooks carry; the names are the fallback for a webhook item without
# one (the Russian and English titles amoCRM gives them).
SYSTEM_NAMES = {"PHONE": ("Телефон", "Phone"), "EMAIL": ("Email", "E-mail")}
# Canonical client fields that are contact columns or system fields, not custom fields of contacts.
CONTACT_FIELDS = ("name", "phone", "email", "responsible", "tags")


@dataclass(frozen=True, slots=True)
class ContactState:
    """A contact as a webhook item or a v4 contact describes it, in one shape."""

    id: str
    updated_at: int
    name: str | None = None
    phones: tuple[str, ...] = ()  # E.164, in amoCRM's order
    emails: tuple[str, ...] = ()
    responsible: str | None = None
    tags: tuple[str, ...] = ()
    custom: tuple[tuple[str, Any], ...] = ()  # (field id, first value)
    modified_by: str | None = None  # the user who made the change (webhook: modified_user_id; v4: updated_by)

    @property
    def delivery(self) -> str:
        """The change's delivery id: the webhook and our own contact.update's answer name it alike."""
        return f"contact:{self.id}@{self.updated_at}"


def contact_from_webhook(item: Mapping[str, Any], action: str) -> ContactState:
    """A `contacts[<action>][i]` item (legacy v2 names: last_modified, custom_fields with values and code)."""
    ident = str(item.get("id", ""))
    if not ident.isdigit():
        raise FormError(f"contacts[{action}] item without a numeric id")
    stamp = str(item.get("last_modified") or item.get("updated_at") or "")
    if not stamp.isdigit():
        raise FormError(f"contacts[{action}] item {ident} without last_modified")
    phones: list[str] = []
    emails: list[str] = []
    custom = []
    for cf in numbered(item.get("custom_fields")):
        if not isinstance(cf, dict):
            continue
        values = [v.get("value") if isinstance(v, dict) else v for v in numbered(cf.get("values"))]
        code = str(cf.get("code") or "") or next((c for c, names in SYSTEM_NAMES.items() if cf.get("name") in names), "")
        if code == "PHONE":
            phones += [p for v in values if (p := e164(v))]
        elif code == "EMAIL":
            emails += [str(v).strip() for v in values if str(v or "").strip()]
        elif cf.get("id") is not None:
            custom.append((str(cf["id"]), values[0] if values else None))
    tags = tuple(str(t["name"]) for t in numbered(item.get("tags")) if isinstance(t, dict) and t.get("name"))
    return ContactState(id=ident, updated_at=int(stamp), name=item.get("name"), phones=tuple(phones),
                        emails=tuple(emails), responsible=opt_id(item.get("responsible_user_id")), tags=tags,
                        custom=tuple(custom), modified_by=opt_id(item.get("modified_user_id")))


def contact_from_v4(contact: Mapping[str, Any]) -> ContactState:
    """A contact of the v4 API (GET /api/v4/contacts/{id})."""
    custom = []
    for cf in contact.get("custom_fields_values") or []:
        if cf.get("field_code") not in ("PHONE", "EMAIL"):
            values = cf.get("values") or []
            custom.append((str(cf.get("field_id")), values[0].get("value") if values else None))
    tags = tuple(str(t["name"]) for t in (contact.get("_embedded") or {}).get("tags") or []
                 if isinstance(t, Mapping) and t.get("name"))
    return ContactState(id=str(contact["id"]), updated_at=int(contact.get("updated_at") or 0),
                        name=contact.get("name"), phones=tuple(contact_phones(contact)),
                        emails=tuple(system_values(contact, "EMAIL")),
                        responsible=opt_id(contact.get("responsible_user_id")), tags=tags, custom=tuple(custom),
                        modified_by=opt_id(contact.get("updated_by")))


def client_data(state: ContactState, fields: FieldMap) -> dict[str, Any]:
    """The canonical client fields of a contact: the first phone and e-mail are the client's."""
    data: dict[str, Any] = {}
    if state.name:
        data["name"] = str(state.name)
    if state.phones:
        data["phone"] = state.phones[0]
    if state.emails:
        data["email"] = state.emails[0]
    if state.responsible:
        data["responsible"] = state.responsible
    if state.modified_by:
        data["modified_by"] = state.modified_by
    data["tags"] = list(state.tags)
    for field_id, value in state.custom:
        known = fields.by_id(field_id)
        if known is not None:
            data[known.name] = known.from_amo(value)
    return data


def system_values(contact: Mapping[str, Any], code: str) -> list[str]:
    """The values of a v4 contact's system field (PHONE, EMAIL) as typed."""
    return [str(v.get("value")) for cf in contact.get("custom_fields_values") or [] if cf.get("field_code") == code
            for v in cf.get("values") or [] if str(v.get("value") or "").strip()]


def contact_phones(contact: Mapping[str, Any]) -> list[str]:
    """The E.164 phones of a v4 contact (as typed in amoCRM: normalised here)."""
    return [p for value in system_values(contact, "PHONE") if (p := e164(value))]


def search_digits(phone: str) -> str:
    """What to search a phone by with `query`: its national digits (9161234567 for +79161234567), the part that
    +7 916… and 8 916… share (contract 2 §3.1, whose example searches so). The search is full-text over filled
    fields and no source says how it treats separators, so a match is checked on the contact's phones after."""
    number = phonenumbers.parse(phone, None)
    return str(number.national_number)


def contact_body(name: str | None, phone: str | None, email: str | None,
                 responsible: int | None) -> dict[str, Any]:
    """A contact for POST /api/v4/contacts, phone and email in the system fields addressed by field_code."""
    body: dict[str, Any] = {"name": name or phone or email or "—"}
    if name:
        first, _, last = name.strip().partition(" ")
        body["first_name"] = first
        if last:
            body["last_name"] = last
    values = []
    if phone:
        values.append({"field_code": "PHONE", "values": [{"value": phone, "enum_code": "MOB"}]})
    if email:
        values.append({"field_code": "EMAIL", "values": [{"value": email, "enum_code": "WORK"}]})
    if values:
        body["custom_fields_values"] = values
    if responsible is not None:
        body["responsible_user_id"] = responsible
    return body


def contact_patch(fields: Mapping[str, Any], current: Mapping[str, Any], users: Mapping[str, Any],
                  custom: FieldMap) -> dict[str, Any]:
    """The PATCH /api/v4/contacts/{id} body that sets canonical client `fields` on the contact `current` (as read).

    Setting a system multitext field replaces all its values (contract 2 §3.1), so a new phone or e-mail goes
    first and the contact's others are sent again after it: the client's phone is the first. Rejected for a
    name the contact has no field for, before anything is sent."""
    body: dict[str, Any] = {}
    values: list[dict[str, Any]] = []
    unknown = []
    for name, value in fields.items():
        if name == "name":
            if str(value or "").strip() == "":
                raise Rejected("fields.name: a contact's name cannot be empty")
            body["name"] = str(value).strip()
        elif name in ("phone", "email"):
            values.append(_first_value(name, value, current))
        elif name == "responsible":
            body["responsible_user_id"] = user_id(value, users, "responsible")
        elif name == "tags":
            body["_embedded"] = {"tags": [{"name": t} for t in tag_names(value, "fields.tags")]}
        elif name in custom.by_name:
            values.append(custom.by_name[name].to_amo(value))
        else:
            unknown.append(name)
    if unknown:
        raise Rejected(f"amoCRM contacts have no field for {', '.join(sorted(unknown))}: map it to a custom field of "
                       f"contacts in the connector's contact_fields: setting (known: "
                       f"{', '.join([*CONTACT_FIELDS, *custom.by_name])})")
    if values:
        body["custom_fields_values"] = values
    return body


def _first_value(name: str, value: Any, current: Mapping[str, Any]) -> dict[str, Any]:
    code = "PHONE" if name == "phone" else "EMAIL"
    kept = [{k: v[k] for k in ("value", "enum_id", "enum_code") if v.get(k) is not None}
            for cf in current.get("custom_fields_values") or [] if cf.get("field_code") == code
            for v in cf.get("values") or [] if str(v.get("value") or "").strip()]
    if name == "phone":
        new = e164(value)
        if new is None:
            raise Rejected(f"fields.phone {value!r} is not a valid phone number")
        others = [v for v in kept if e164(v["value"]) != new]
    else:
        new = str(value or "").strip()
        if "@" not in new:
            raise Rejected(f"fields.email {value!r} is not an e-mail address")
        others = [v for v in kept if str(v["value"]).strip().lower() != new.lower()]
    kind = "MOB" if name == "phone" else "WORK"
    return {"field_code": code, "values": [{"value": new, "enum_code": kind}, *others]}
