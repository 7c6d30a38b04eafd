"""Canonical booking and client fields ↔ YCLIENTS records and clients: statuses, datetimes, phones, delivery ids."""
from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from automator import phone as phones
from automator.errors import Rejected

# The one attendance table every records schema and real payload agrees on (reference §2.3). The visits/finance
# schema that lists "-1 не пришёл, 0 пришёл, 1 ожидание" contradicts them all and real payloads, so it is ignored.
ATTENDANCE: dict[int, str] = {2: "confirmed", 1: "arrived", 0: "waiting", -1: "no_show"}
ATTENDANCE_CODES: dict[str, int] = {status: code for code, status in ATTENDANCE.items()}
CANCELLED = "cancelled"  # a deleted record: YCLIENTS cancels a visit by deleting the record

# Fields of the client object a PUT must send back so that a full-replace update loses nothing.
CLIENT_WRITABLE = ("name", "surname", "patronymic", "phone", "email", "sex_id", "importance_id", "discount",
                   "card", "birth_date", "comment", "sms_check", "sms_not", "custom_fields")


# What client.update may set: the rule's name → the client's field (reference part 2 §1.3.3). The phone is not
# here: it is how a person is known across systems, changed in YCLIENTS by staff, never by a rule.
UPDATABLE: dict[str, str] = {"name": "name", "surname": "surname", "patronymic": "patronymic", "email": "email",
                             "birth_date": "birth_date", "birthday": "birth_date", "comment": "comment",
                             "custom_fields": "custom_fields"}


def parse_datetime(value: Any, tz: tzinfo | None = None) -> datetime | None:
    """A YCLIENTS datetime as an aware datetime: `+03:00`, `+0300`, `Z`, or naive local time read in `tz`.

    None for empty or unreadable values, and for naive ones when no timezone is known (a guessed offset would
    put a visit hours off).
    """
    if value in (None, "", 0):
        return None
    if isinstance(value, datetime):
        parsed = value
    else:
        # Python 3.11 reads `+03:00`, `+0300`, `+03`, `Z` and a space before the offset alike.
        text = str(value).strip()
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=tz) if tz is not None else None
    return parsed


def object_tz(obj: Mapping[str, Any], fallback: tzinfo | None) -> tzinfo | None:
    """The timezone to read an object's naive times in: the configured one, else the offset of an aware sibling
    (`datetime`, `last_change_date`, `create_date` are written in the company's own offset)."""
    if fallback is not None:
        return fallback
    for key in ("datetime", "last_change_date", "create_date"):
        found = parse_datetime(obj.get(key))
        if found is not None:
            return found.tzinfo
    return None


def utc_stamp(value: Any, tz: tzinfo | None = None) -> str | None:
    """The instant of a change as one spelling (UTC, seconds), whichever offset format the API wrote it in."""
    found = parse_datetime(value, tz)
    if found is None:
        return None
    return found.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def delivery_id(resource: str, resource_id: Any, status: str, last_change: Any, tz: tzinfo | None = None
                ) -> str | None:
    """The identity of one change, shared by its webhook, the catch-up poll and our own action's answer:
    `(resource, resource_id, status, last_change_date)`; None when the change time is unknown."""
    stamp = utc_stamp(last_change, tz)
    return None if stamp is None else f"{resource}:{resource_id}:{status}@{stamp}"


def record_verb(record: Mapping[str, Any]) -> str:
    """The webhook status a record's current state corresponds to: delete, create (never changed since it was
    made) or update. The poll has no webhook status to read, so it derives the one YCLIENTS would have sent."""
    if record.get("deleted"):
        return "delete"
    created, changed = utc_stamp(record.get("create_date")), utc_stamp(record.get("last_change_date"))
    return "create" if created is not None and created == changed else "update"


def to_e164(value: Any, region: str = "RU") -> str | None:
    """A phone as E.164 (`+79161234567`): YCLIENTS returns `+7…` strings, bare digits or a JSON number."""
    if value in (None, "", 0):
        return None
    # YCLIENTS has accepted the number already and stores its digits: only their count is checked.
    return phones.to_e164(str(value), policy=phones.Policy.POSSIBLE, region=region, reading=phones.Reading.DIGITS)


# The UTM parameters a booking page's address may carry, and the canonical fields they fill.
UTM = ("utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term")


def booking_source(record: Mapping[str, Any]) -> dict[str, str]:
    """Where a record was made, as `lead_source` (and `utm_*` from the booking page's address), or {} for a partial
    record that does not say (a later webhook must not blank what the first one said).

    The spec documents `online` ("false если запись внес администратор") and `api_id` (an external system's id);
    `record_from`, `bookform_id`, `is_mobile` and `from_url` are in every real capture (reference §2.4) but have no
    description, so their readings are assumed: `record_from` names the channel the record came through (a
    marketplace or an aggregator), `bookform_id` the online-booking form (the widget on a site or a social page),
    `is_mobile` the client's mobile app, `from_url` the page the form was opened on, with its utm_* parameters.
    The values: the record_from text (lower case), `mobile_app`, `widget`, `online`, `api` (made through the API by
    an integration, automator's booking.create among them) or `admin`."""
    if "online" not in record:
        return {}
    out: dict[str, str] = {}
    origin = str(record.get("record_from") or "").strip().lower()
    url = str(record.get("from_url") or "").strip()
    if origin:
        out["lead_source"] = origin
    elif not record.get("online"):
        out["lead_source"] = "api" if record.get("api_id") not in (None, "", 0, "0") else "admin"
    elif _int(record.get("is_mobile")):
        out["lead_source"] = "mobile_app"
    elif _int(record.get("bookform_id")) or url:
        out["lead_source"] = "widget"
    else:
        out["lead_source"] = "online"
    if url:
        query = {k.lower(): v for k, v in parse_qsl(urlsplit(url).query) if v}
        out.update({name: query[name] for name in UTM if name in query})
    return out


def _text_id(value: Any) -> str | None:
    if value in (None, "", 0, "0"):
        return None
    return str(value)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def booking_fields(record: Mapping[str, Any], *, company_id: str, branch: str | None, tz: tzinfo | None,
                   region: str = "RU") -> dict[str, Any]:
    """Canonical booking fields of a (possibly partial) record: only the fields the record carries are set, so
    a partial webhook never blanks what an earlier one said."""
    zone = object_tz(record, tz)
    out: dict[str, Any] = {"company_id": company_id}
    if branch:
        out["branch"] = branch
    if record.get("deleted"):
        out["status"] = CANCELLED
        out["deleted"] = True
    elif "attendance" in record and record["attendance"] is not None:
        code = _int(record["attendance"])
        if code in ATTENDANCE:
            out["status"] = ATTENDANCE[code]
    elif "visit_attendance" in record and _int(record["visit_attendance"]) in ATTENDANCE:
        out["status"] = ATTENDANCE[_int(record["visit_attendance"])]  # type: ignore[index]
    starts = parse_datetime(record.get("datetime"), zone) or parse_datetime(record.get("date"), zone)
    if starts is not None:
        out["starts_at"] = _iso(starts)
        length = _int(record.get("seance_length") or record.get("length"))
        if length:
            out["ends_at"] = _iso(starts + timedelta(seconds=length))
            out["duration_minutes"] = length // 60
    if "client" in record:
        client = record.get("client")
        out["client"] = _text_id(client.get("id")) if isinstance(client, Mapping) else None
        if isinstance(client, Mapping) and client.get("phone"):
            out["client_phone"] = to_e164(client["phone"], region)
    elif record.get("client_id"):
        out["client"] = _text_id(record["client_id"])
    staff = record.get("staff")
    if isinstance(staff, Mapping) and staff.get("id"):
        out["staff"] = str(staff["id"])
        if staff.get("name"):
            out["staff_name"] = staff["name"]
    elif record.get("staff_id"):
        out["staff"] = str(record["staff_id"])
    services = record.get("services")
    if isinstance(services, list):
        titles = [str(s.get("title")) for s in services if isinstance(s, Mapping) and s.get("title")]
        out["services"] = titles
        out["service_ids"] = [str(s["id"]) for s in services if isinstance(s, Mapping) and s.get("id")]
        out["service"] = titles[0] if titles else None
        costs = [s.get("cost_to_pay", s.get("cost")) for s in services if isinstance(s, Mapping)]
        if all(isinstance(c, (int, float)) for c in costs) and costs:
            out["amount"] = sum(costs)
    for source, target in (("confirmed", "confirmed"), ("paid_full", "paid"), ("online", "online")):
        if source in record and record[source] is not None:
            out[target] = bool(_int(record[source]))
    for key in ("comment", "visit_id", "api_id"):
        if key in record and record[key] not in (None, ""):
            out[key] = str(record[key]) if key != "comment" else record[key]
    out.update(booking_source(record))
    created = parse_datetime(record.get("create_date"), zone)
    if created is not None:
        out["created_at"] = _iso(created)
    changed = parse_datetime(record.get("last_change_date"), zone)
    if changed is not None:
        out["updated_at"] = _iso(changed)
    return out


def client_fields(client: Mapping[str, Any], *, tz: tzinfo | None, region: str = "RU") -> dict[str, Any]:
    """Canonical client fields of a (possibly partial) client object or a record's embedded client."""
    out: dict[str, Any] = {}
    for key in ("name", "surname", "patronymic", "email", "card", "comment"):
        if key in client and client[key] is not None:
            out[key] = client[key]
    if "phone" in client:
        out["phone"] = to_e164(client["phone"], region)
        # A client named by their phone is one we created for an action (YCLIENTS requires a name): the phone is no
        # name, and must not overwrite the one the product knows.
        if out.get("name") is not None and to_e164(out["name"], region) == out["phone"] and out["phone"]:
            del out["name"]
    full = client.get("display_name") or " ".join(
        str(client[k]) for k in ("surname", "name", "patronymic") if client.get(k))
    if full and "name" not in out and to_e164(str(full), region) == out.get("phone"):
        full = None
    if full:
        out["full_name"] = full
    categories = client.get("categories")
    if isinstance(categories, list):
        titles = [str(c.get("title")) for c in categories if isinstance(c, Mapping) and c.get("title")]
        out["categories"] = titles
        out["category_ids"] = [str(c["id"]) for c in categories if isinstance(c, Mapping) and c.get("id")]
        out["category"] = titles[0] if titles else None
    if client.get("birth_date") not in (None, "", 0):  # empty is 0 in some answers, "" in webhooks
        out["birthday"] = str(client["birth_date"])
    for key, target in (("birth_date", "birth_date"), ("discount", "discount"), ("spent", "spent"),
                        ("visits", "visits"), ("balance", "balance"), ("importance_id", "importance"),
                        ("success_visits_count", "visits")):
        if client.get(key) not in (None, ""):
            out[target] = client[key]
    changed = parse_datetime(client.get("last_change_date"), tz)
    if changed is not None:
        out["updated_at"] = _iso(changed)
    return out


def record_update(record: Mapping[str, Any], attendance: int) -> dict[str, Any]:
    """The PUT body that changes a record's attendance and nothing else: the record PUT is a full update, so
    everything it would otherwise reset is sent back as read (reference §2.4, read-modify-write)."""
    body: dict[str, Any] = {
        "staff_id": record.get("staff_id") or (record.get("staff") or {}).get("id"),
        "services": [{k: s[k] for k in ("id", "first_cost", "discount", "cost", "amount") if k in s}
                     for s in record.get("services") or [] if isinstance(s, Mapping)],
        "datetime": record.get("datetime"),
        "seance_length": record.get("seance_length") or record.get("length"),
        "attendance": attendance,
        "comment": record.get("comment") or "",
        # An attendance mark is not a new booking: the client must get no SMS about it, and the slot the record
        # already occupies must not be refused as busy.
        "send_sms": False,
        "save_if_busy": True,
    }
    client = record.get("client")
    if isinstance(client, Mapping) and client.get("phone"):
        body["client"] = {k: client[k] for k in ("phone", "name", "surname", "patronymic", "email")
                          if client.get(k) not in (None, "")}
    for key in ("sms_remain_hours", "email_remain_hours", "api_id", "custom_color"):
        if record.get(key) not in (None, ""):
            body[key] = record[key]
    labels = record.get("record_labels")
    if isinstance(labels, list) and labels:
        body["record_labels"] = [str(x.get("id")) if isinstance(x, Mapping) else str(x) for x in labels]
    if isinstance(record.get("custom_fields"), Mapping) and record["custom_fields"]:
        body["custom_fields"] = dict(record["custom_fields"])
    return body


def client_update(client: Mapping[str, Any], labels: list[str]) -> dict[str, Any]:
    """The PUT body that sets a client's categories: `name` and `phone` are required, the update replaces the
    client, so every writable field goes back as read; `labels` (the request schema's name for the category
    ids) carries the whole new list, which replaces the old one."""
    body = {key: client[key] for key in CLIENT_WRITABLE if key in client and client[key] is not None}
    body["labels"] = [int(x) if str(x).isdigit() else x for x in labels]
    return body


def client_changes(client: Mapping[str, Any], fields: Mapping[str, Any]) -> dict[str, Any]:
    """The PUT body that sets `fields` (names of UPDATABLE) of a client and keeps the rest as read, its categories
    included; custom fields merge into the ones it has. Raises ValueError naming a field YCLIENTS has not or a
    value it would refuse."""
    body = client_update(client, category_ids(client))
    for name, value in fields.items():
        if name not in UPDATABLE:
            raise ValueError(f"YCLIENTS clients have no field {name!r} (fields: {', '.join(UPDATABLE)})")
        if name == "custom_fields":
            if not isinstance(value, Mapping):
                raise ValueError("custom_fields is a mapping of the custom fields' codes to their values")
            had = client.get("custom_fields")
            body["custom_fields"] = {**(dict(had) if isinstance(had, Mapping) else {}), **dict(value)}
        elif UPDATABLE[name] == "birth_date":
            body["birth_date"] = birth_date(value)
        else:
            body[UPDATABLE[name]] = "" if value is None else str(value)
    return body


def birth_date(value: Any) -> str:
    """A birthday as YCLIENTS takes it, `yyyy-mm-dd`, from a date, a datetime or such a text."""
    text = value.isoformat() if hasattr(value, "isoformat") else str(value or "").strip()
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text[:10]) or (len(text) > 10 and text[10] not in "T "):
        raise ValueError(f"a birthday is a date, yyyy-mm-dd, not {value!r}")
    return text[:10]


def category_ids(client: Mapping[str, Any]) -> list[str]:
    """The ids of a client's current categories (objects in answers, bare ids in some examples)."""
    out = []
    for item in client.get("categories") or []:
        ident = item.get("id") if isinstance(item, Mapping) else item
        if ident not in (None, ""):
            out.append(str(ident))
    return out


def numeric_id(value: Any, what: str) -> str:
    """A YCLIENTS id (a record's, a client's, a card type's…) as text: digits only, else Rejected naming `what`."""
    text = str(value if value is not None else "").strip()
    if not text.isdigit():
        raise Rejected(f"a YCLIENTS {what} id is a number, not {value!r}")
    return text


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
