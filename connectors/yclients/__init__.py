"""The `yclients` connector: bookings and clients of one YCLIENTS company — actions, webhooks, catch-up polling.

Contract points read under uncertainty (reference §2, §7), each the safest reading:
* Record PUT is treated as a full update: `booking.set_status` reads the record and sends back staff, services,
  client, datetime, length, comment, labels and custom fields with the new `attendance`, `send_sms: false` (an
  attendance mark must not text the client) and `save_if_busy: true` (the record already holds its slot).
  Setting the status the record already has sends nothing. `cancelled` deletes the record (YCLIENTS cancels a
  visit that way; the record stays readable with `with_deleted`); a record already gone counts as cancelled.
* Client categories are labels of entity 1. `client.set_category` ADDS the category and keeps the client's
  others (staff set them by hand; an RFM rule must not erase them), sending the request schema's `labels`
  field with the whole new id list plus every writable field read from GET (`name`, `phone` are required and
  the update replaces the client). A category missing from the company is created unless
  `create_categories: false`, in which case the action is refused. With `categories:` (the titles rules may
  set) another title is refused before any call, and by `validate`: a misspelt category is never created.
* Webhooks carry no signature: the secret is the `token` query parameter of the hook URL (or a path segment
  after `/hooks/<name>/`, for a daemon that passes such paths on), compared in constant time. A webhook for
  another company is refused with 400: it means the URL was pasted into the wrong branch, and refusing is what
  shows up in the logs and metrics (ignoring it would hide the mistake; YCLIENTS retries neither).
* A webhook whose partial `data` lacks `last_change_date` is completed by reading the record; when that read
  fails the partial event is journaled without a delivery id (the poll may then bring it a second time).
* Naive times (`date`) are read in the `timezone` setting, else in the offset of the same object's aware times.
* Delivery ids are `record:<id>:<create|update|delete>@<last_change_date in UTC>`; the poll derives the status
  a webhook would carry (deleted → delete, never changed since creation → create, else update). A record's
  embedded client also yields a `client.updated` (id `…/client`) so that rules can address the client.
* Client webhooks `create`/`update`/`delete` become `client.created`/`updated`/`deleted` (name, phone in E.164,
  email, `categories` titles, `category` = the first of them); other resources are accepted and dropped.
* The poll sends `changed_after` as an ISO datetime in UTC one second before the cursor, with `with_deleted=1`:
  whether the API's bound is inclusive is unknown, and the cursor's ids of its last second make either work.
* 5 requests a second and 200 a minute are per IP: the outbox starts at most 1 action a second (burst 2) and
  every request of every YCLIENTS connector to one host is paced under both windows (api.Pace).
* 429 retries after Retry-After when the answer has one (it is not documented to), else the outbox's backoff.
"""
from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any, ClassVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from automator.checks import CheckContext, ParamProblem
from automator.connector import ActionResult, ConfigError, Inbound, WebConnector, action
from automator.errors import ConnectorError, InboundRejected, Rejected
from automator.model import Entity, EntityRef, Event
from . import mapping
from .checks import allowed_category, check
from .api import ACCEPT, DEFAULT_BASE_URL, PAGE_SIZE, Api, Pace, auth_header
from .emulator import YclientsEmulator

__all__ = ["Yclients", "YclientsEmulator"]

SECRET = {"type": "string", "pattern": r"\$\{env:[A-Za-z_][A-Za-z0-9_]*\}",
          "description": "A `${env:NAME}` reference: secrets never live in automator.yaml."}
VERBS = {"create": "created", "update": "updated", "delete": "deleted"}
RESOURCES = ("record", "client")  # other resources (staff, goods, finances…) carry nothing the rules read
MAX_ITEMS = 100  # webhook items accepted in one request
POLL_WAIT = 65.0  # the poll has no outbox deadline: it may wait out a full minute of the limit
SANDBOX = {"partner_token": "sandbox-partner-token", "user_token": "sandbox-user-token",
           "hook_secret": "sandbox-hook-secret"}


class Yclients(WebConnector):
    """One YCLIENTS company (branch): `booking.set_status`, `client.set_category`, `yclients.loyalty_cards`;
    record and client webhooks; a catch-up poll of records by change date."""

    type = "yclients"
    webhook_auth = ("hook_secret",)  # the ?token= (or path) of the webhook URL
    default_base_url = DEFAULT_BASE_URL
    config_schema: ClassVar[Mapping[str, Any]] = {
        "type": "object",
        "required": ["type", "company_id", "partner_token", "user_token", "hook_secret"],
        "additionalProperties": False,
        "properties": {
            "type": {"const": "yclients"},
            "company_id": {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": r"^\d+$"}],
                           "description": "The company (branch) id in YCLIENTS."},
            "partner_token": SECRET, "user_token": SECRET, "hook_secret": SECRET,
            "base_url": {"type": "string", "pattern": "^https?://", "description": f"Default {DEFAULT_BASE_URL}."},
            "poll_every": {"anyOf": [{"type": "number", "exclusiveMinimum": 0}, {"type": "string"},
                                     {"const": False}],
                           "description": "Catch-up poll interval (seconds or a duration; off/false: never)."},
            "branch": {"type": "string", "description": "The automator.yaml branch this company is."},
            "timezone": {"type": "string", "description": "IANA zone of the company, for naive times."},
            "region": {"type": "string", "pattern": "^[A-Z]{2}$", "description": "Phone region, default RU."},
            "create_categories": {"type": "boolean", "description": "Create a missing client category (default)."},
            "categories": {"type": "array", "items": {"type": "string", "minLength": 1}, "uniqueItems": True,
                           "description": "The client categories rules may set (the company's own, such as VIP): "
                                          "client.set_category of another is refused, by validate and before any "
                                          "call, so a misspelt category is never created."},
            "category_color": {"type": "string", "pattern": "^#[0-9a-fA-F]{6}$"},
        },
    }
    # Actions per second the outbox starts: one action makes two to four requests, and YCLIENTS allows 5 a
    # second and 200 a minute per IP (the requests themselves are paced by api.Pace).
    rate_limit: tuple[float, int] | None = (1.0, 2)
    poll_every: ClassVar[float | None] = 300.0

    def __init__(self, name: str, config: Mapping[str, Any], *, transport: Any = None) -> None:
        super().__init__(name, config, transport=transport)
        self.company_id = str(config.get("company_id") or "")
        if not self.company_id.isdigit():
            raise ConfigError(f"connector {name!r}: company_id must be a number, not {config.get('company_id')!r}")
        for key in ("partner_token", "user_token", "hook_secret"):
            if not config.get(key):
                raise ConfigError(f"connector {name!r}: {key} is required")
        self.hook_secret = str(config["hook_secret"])
        self.branch = config.get("branch")
        self.region = str(config.get("region") or "RU")
        self.tz: tzinfo | None = None
        if config.get("timezone"):
            try:
                self.tz = ZoneInfo(str(config["timezone"]))
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ConfigError(f"connector {name!r}: unknown timezone {config['timezone']!r}") from exc
        parts = urlsplit(self.base_url())
        pace = Pace.of(f"{parts.hostname}:{parts.port}")
        self.api = Api(self, self.company_id, pace)
        self.poll_api = Api(self, self.company_id, pace, POLL_WAIT)

    def default_headers(self) -> dict[str, str]:
        """The v2 Accept header (required) and the partner + user token pair."""
        return {"Accept": ACCEPT, "Content-Type": "application/json",
                "Authorization": auth_header(str(self.config["partner_token"]), str(self.config["user_token"]))}

    @classmethod
    def check_params(cls, action: str, params: Mapping[str, Any], options: Mapping[str, Any],
                     context: CheckContext) -> list[ParamProblem]:
        """A category not among `categories:`, ids that are not YCLIENTS's (connectors/yclients/checks.py)."""
        return check(action, params, options, context)

    # ---- events ----------------------------------------------------------------------------------
    def _event(self, type_: str, ref: EntityRef, data: Mapping[str, Any], delivery: str | None,
               at: datetime) -> Event:
        ident = delivery or hashlib.sha1(json.dumps([type_, str(ref), data], sort_keys=True, default=str)
                                         .encode()).hexdigest()[:20]
        return Event(id=f"{self.name}:{ident}", type=type_, at=at, entity=ref, data=dict(data), source=self.name,
                     delivery_id=delivery)

    def record_events(self, record: Mapping[str, Any], status: str, fallback: datetime, *,
                      with_client: bool = True) -> list[Event]:
        """The events of one record change: the embedded client's `client.updated` (unless not `with_client`),
        then `booking.<verb>`."""
        zone = mapping.object_tz(record, self.tz)
        delivery = mapping.delivery_id("record", record["id"], status, record.get("last_change_date"), zone)
        at = mapping.parse_datetime(record.get("last_change_date"), zone) or fallback
        events = []
        client = record.get("client")
        if with_client and status != "delete" and isinstance(client, Mapping) and client.get("id"):
            events.append(self._event("client.updated", EntityRef("client", str(client["id"])),
                                      mapping.client_fields(client, tz=zone, region=self.region),
                                      f"{delivery}/client" if delivery else None, at))
        fields = mapping.booking_fields({**record, "deleted": True} if status == "delete" else record,
                                        company_id=self.company_id, branch=self.branch, tz=zone, region=self.region)
        events.append(self._event(f"booking.{VERBS[status]}", EntityRef("booking", str(record["id"])), fields,
                                  delivery, at))
        return events

    def client_events(self, client: Mapping[str, Any], status: str, fallback: datetime) -> list[Event]:
        """The `client.<verb>` event of one client change."""
        zone = mapping.object_tz(client, self.tz)
        delivery = mapping.delivery_id("client", client["id"], status, client.get("last_change_date"), zone)
        at = mapping.parse_datetime(client.get("last_change_date"), zone) or fallback
        return [self._event(f"client.{VERBS[status]}", EntityRef("client", str(client["id"])),
                            mapping.client_fields(client, tz=zone, region=self.region), delivery, at)]

    # ---- webhooks --------------------------------------------------------------------------------
    def _authenticate(self, request: Inbound) -> None:
        token = request.query.get("token")
        prefix = f"/hooks/{self.name}/"
        if token is None and request.path.startswith(prefix):
            token = request.path[len(prefix):].strip("/") or None
        if token is None or not hmac.compare_digest(token.encode(), self.hook_secret.encode()):
            raise InboundRejected(401, "missing or wrong webhook token", "auth")

    async def parse(self, request: Inbound) -> list[Event]:
        """Authenticate a YCLIENTS webhook and translate `{company_id, resource, resource_id, status, data}`
        (or a list of them) into events; resources the rules do not read are accepted and dropped."""
        self._authenticate(request)
        try:
            body = json.loads(request.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InboundRejected(400, f"the body is not JSON: {exc}", "malformed") from exc
        items = body if isinstance(body, list) else [body]
        if not items or len(items) > MAX_ITEMS or not all(isinstance(i, dict) for i in items):
            raise InboundRejected(400, "expected a webhook object (or a list of up to 100)", "malformed")
        received = request.received_at or datetime.now(timezone.utc)
        checked = [self._check(item) for item in items]
        events: list[Event] = []
        for resource, status, data in checked:
            if resource == "record":
                if status != "delete" and not data.get("last_change_date"):
                    data = await self._complete(data)
                events.extend(self.record_events(data, status, received))
            elif resource == "client":
                events.extend(self.client_events(data, status, received))
        return events

    def _check(self, item: Mapping[str, Any]) -> tuple[str, str, dict[str, Any]]:
        if str(item.get("company_id")) != self.company_id:
            raise InboundRejected(400, f"webhook of company {item.get('company_id')!r}; connector {self.name!r} "
                                       f"serves company {self.company_id}", "malformed")
        resource, status, ident = item.get("resource"), item.get("status"), item.get("resource_id")
        if not isinstance(resource, str) or status not in VERBS:
            raise InboundRejected(400, f"unknown resource/status {resource!r}/{status!r}", "malformed")
        if not str(ident).isdigit():
            raise InboundRejected(400, f"resource_id must be a number, not {ident!r}", "malformed")
        data = item.get("data")
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise InboundRejected(400, "data must be an object", "malformed")
        return (resource if resource in RESOURCES else "", status, {**data, "id": int(str(ident))})

    async def _complete(self, partial: dict[str, Any]) -> dict[str, Any]:
        """A partial record webhook re-read in full (it must name the change time to be deduplicated)."""
        try:
            return {**partial, **await self.api.get_record(str(partial["id"]))}
        except ConnectorError:
            return partial

    # ---- catch-up polling ------------------------------------------------------------------------
    async def poll(self, cursor: str | None) -> tuple[list[Event], str | None]:
        """Records changed since the cursor (`changed_after`, deleted ones included), page by page, as the same
        events and delivery ids their webhooks carry. The cursor is the newest change time seen plus the
        delivery ids at that second, so that a boundary change is neither lost nor repeated."""
        now = datetime.now(timezone.utc).replace(microsecond=0)
        state = _read_cursor(cursor)
        if state is None:  # the first start: changes from now on (the past was never promised to anyone)
            return [], json.dumps({"after": now.isoformat(), "seen": []})
        after, seen = state
        query = {"changed_after": (after - timedelta(seconds=1)).isoformat(), "with_deleted": 1}
        found: list[tuple[datetime, dict[str, Any]]] = []
        page = 1
        while True:
            records, total = await self.poll_api.list_records(query, page)
            for record in records:
                changed = mapping.parse_datetime(record.get("last_change_date"), mapping.object_tz(record, self.tz))
                if changed is not None and record.get("id"):
                    found.append((changed.astimezone(timezone.utc), record))
            if len(records) < PAGE_SIZE or (total is not None and page * PAGE_SIZE >= total):
                break
            page += 1
        found.sort(key=lambda pair: pair[0])
        events: list[Event] = []
        newest, newest_seen = after, set(seen)
        for changed, record in found:
            status = mapping.record_verb(record)
            made = self.record_events(record, status, changed)
            delivery = made[-1].delivery_id
            if changed < after or (changed == after and delivery in seen):
                continue
            events.extend(made)
            if changed > newest:
                newest, newest_seen = changed, set()
            newest_seen.add(str(delivery))
        return events, json.dumps({"after": newest.isoformat(), "seen": sorted(newest_seen)})

    # ---- actions ---------------------------------------------------------------------------------
    @action("booking.set_status")
    async def set_status(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """Set a record's attendance (confirmed 2, arrived 1, waiting 0, no_show -1) by a full record PUT, or
        delete the record for `cancelled`; returns the `booking.updated` the webhook will repeat."""
        record_id = _numeric(params.get("booking"), "booking")
        status = str(params.get("status"))
        if status == mapping.CANCELLED:
            deleted = await self.api.delete_record(record_id)
            return ActionResult({"booking": record_id, "status": status, "changed": deleted})
        if status not in mapping.ATTENDANCE_CODES:
            raise Rejected(f"booking.set_status: unknown status {status!r}")
        code = mapping.ATTENDANCE_CODES[status]
        record = await self.api.get_record(record_id)
        if str(record.get("attendance")) == str(code):
            return ActionResult({"booking": record_id, "status": status, "changed": False})
        updated = await self.api.put_record(record_id, mapping.record_update(record, code))
        record = {**record, "attendance": code, **updated}
        # Only the booking's own change is ours to report back (the client's fields were not touched).
        return ActionResult({"booking": record_id, "status": status, "changed": True},
                            tuple(self.record_events(record, "update", datetime.now(timezone.utc), with_client=False)))

    @action("client.set_category")
    async def set_category(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """Add a client category (a label of entity 1, made if missing): GET the client, PUT it back whole with
        the new `labels` list; returns the `client.updated` the webhook will repeat."""
        client_id = _numeric(params.get("client"), "client")
        title = str(params.get("category") or "").strip()
        if not title:
            raise Rejected("client.set_category: the category is empty")
        if not allowed_category(title, self.config.get("categories")):
            raise Rejected(f"client.set_category: {title!r} is not among connector {self.name!r}'s categories")
        labels = await self.api.client_labels()
        label = next((x for x in labels if str(x.get("title", "")).strip().casefold() == title.casefold()
                      and not x.get("deleted")), None)
        client = await self.api.get_client(client_id)
        current = mapping.category_ids(client)
        if label is not None and str(label["id"]) in current:
            return ActionResult({"client": client_id, "category": title, "changed": False})
        if label is None:
            if self.config.get("create_categories") is False:
                raise Rejected(f"client.set_category: company {self.company_id} has no client category {title!r}")
            label = await self.api.create_client_label(title, str(self.config.get("category_color") or "#ff9800"))
        updated = await self.api.put_client(client_id, mapping.client_update(client, [*current, str(label["id"])]))
        client = {**client, **updated}
        return ActionResult({"client": client_id, "category": title, "category_id": str(label["id"]),
                             "changed": True},
                            tuple(self.client_events(client, "update", datetime.now(timezone.utc))))

    @action("yclients.loyalty_cards", schema="actions/yclients.loyalty_cards.json")
    async def loyalty_cards(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """Read a client's loyalty cards (they belong to the chain): number, type, balance, points, visits."""
        client_id = _numeric(params.get("client"), "client")
        cards = await self.api.client_cards(client_id)
        return ActionResult({"client": client_id, "cards": [
            {"id": str(c.get("id")), "number": c.get("number"), "type": (c.get("type") or {}).get("title"),
             "type_id": c.get("type_id"), "balance": c.get("balance"), "points": c.get("points"),
             "visits": c.get("visits_count"), "paid_amount": c.get("paid_amount"),
             "programs": [p.get("title") for p in c.get("programs") or [] if isinstance(p, Mapping)]}
            for c in cards]})

    # ---- sandbox ---------------------------------------------------------------------------------
    def sandbox_given(self, emulator: Any, entities: Sequence[Entity]) -> None:
        """Given clients and bookings, as the company's own (each written again when a test's event changes it): a
        booking is a record with the emulator's master and a service (the one it names, else the first), its
        status an attendance. A client YCLIENTS needs a phone for gets a made-up one (+7900 and its id)."""
        for entity in entities:
            fields, ident = entity.fields, entity.ref.id
            if entity.ref.kind == "client" and ident.isdigit():
                phone = mapping.to_e164(fields.get("phone")) or f"+7900{int(ident):07d}"
                emulator.seed_client(int(ident), {"name": str(fields.get("name") or ""), "phone": phone,
                                                  "email": str(fields.get("email") or "")})
            elif entity.ref.kind == "booking" and ident.isdigit():
                master = next(iter(emulator.staff.values()), None) or emulator.add_staff("Мастер")
                services = emulator.services.values()
                service = next((s for s in services if s["title"] == fields.get("service")), None) \
                    or next(iter(services), None) or emulator.add_service("Услуга", 0)
                starts = fields.get("starts_at") or datetime.now(timezone.utc).isoformat()
                emulator.seed_record(int(ident), {
                    "staff_id": master["id"], "services": [{"id": service["id"]}], "datetime": str(starts),
                    "seance_length": 3600, "attendance": mapping.ATTENDANCE_CODES.get(str(fields.get("status")), 0)},
                    client=int(fields["client"]) if str(fields.get("client", "")).isdigit() else None)

    @classmethod
    def sandbox(cls, name: str, options: Mapping[str, Any], *, base_url: str, hook_url: str
                ) -> tuple[dict[str, Any], Any] | None:
        """Settings aimed at a seeded emulator (fixed sandbox tokens on both sides) that sends its webhooks to
        `hook_url?token=<the sandbox hook secret>`."""
        company = options.get("company_id")
        company_id = int(str(company)) if str(company).isdigit() else 100000
        settings = {**{k: v for k, v in options.items() if k not in SANDBOX}, **SANDBOX,
                    "company_id": company_id, "base_url": f"{base_url.rstrip('/')}/api/v1"}
        separator = "&" if "?" in hook_url else "?"
        emulator = YclientsEmulator(company_id=company_id, partner_token=SANDBOX["partner_token"],
                                    user_token=SANDBOX["user_token"],
                                    hook_url=f"{hook_url}{separator}token={SANDBOX['hook_secret']}")
        seed(emulator)
        return settings, emulator


def seed(emulator: YclientsEmulator) -> None:
    """Demo data for the sandbox: a master, two services, two clients, a VIP category and two bookings."""
    master = emulator.add_staff("Ирина", "Косметолог")
    consult = emulator.add_service("Консультация", 1500)
    emulator.add_service("Массаж лица", 3000)
    emulator.add_label("VIP")
    anna = emulator.make_client({"name": "Анна", "phone": "79161234567"}, notify=False)
    emulator.make_client({"name": "Борис", "phone": "79031112233"}, notify=False)
    emulator.add_card(anna["id"], "01010101", balance=500)
    today = datetime.now(emulator.tz).replace(hour=15, minute=0, second=0, microsecond=0)
    for offset, phone in ((0, "79161234567"), (1, "79031112233")):
        emulator.make_record({"staff_id": master["id"], "services": [{"id": consult["id"]}],
                              "datetime": (today + timedelta(days=offset)).isoformat(), "seance_length": 3600,
                              "client": {"phone": phone}}, notify=False)


def _numeric(value: Any, what: str) -> str:
    text = str(value if value is not None else "").strip()
    if not text.isdigit():
        raise Rejected(f"a YCLIENTS {what} id is a number, not {value!r}")
    return text


def _read_cursor(cursor: str | None) -> tuple[datetime, set[str]] | None:
    if not cursor:
        return None
    try:
        state = json.loads(cursor)
        after = datetime.fromisoformat(state["after"])
    except (ValueError, KeyError, TypeError):
        return None  # a cursor of another shape (an older version): start again from now
    if after.tzinfo is None:
        after = after.replace(tzinfo=timezone.utc)
    return after.astimezone(timezone.utc), {str(x) for x in state.get("seen") or []}
