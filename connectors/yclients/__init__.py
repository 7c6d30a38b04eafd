"""The `yclients` connector: bookings and clients of one YCLIENTS company — actions, webhooks, catch-up polling.

Contract points read under uncertainty (reference §2, §7), each the safest reading:
* Record PUT is treated as a full update: `booking.set_status` reads the record and sends back staff, services,
  client, datetime, length, comment, labels and custom fields with the new `attendance`, `send_sms: false` (an
  attendance mark must not text the client) and `save_if_busy: true` (the record already holds its slot).
  Setting the status the record already has sends nothing. `cancelled` deletes the record (YCLIENTS cancels a
  visit that way; the record stays readable with `with_deleted`); a record already gone counts as cancelled.
* Client categories are labels of entity 1, and YCLIENTS sets them only as a client's whole list (part 2
  §1.3.6): every category action GETs the client and PUTs it back with the request schema's `labels` field
  holding the whole new id list plus every writable field read (`name`, `phone` are required and the update
  replaces the client). `client.set_category` replaces the categories of the same group of `category_groups:`
  (a tier: Gold replaces Silver) and keeps every other (staff set them by hand); a title in no group is added,
  like `client.add_category`. `client.remove_category` drops one. A title the company does not have is refused
  naming the ones it has, unless `create_categories: true` (then it is made). With `categories:` (the titles
  rules may set, the groups' counting too) another title is refused before any call, and by `validate`.
  Edits of one client are serialised in the connector (serial.py): the outbox does not order them.
* `client` of the client actions is the client's YCLIENTS id, or (a person YCLIENTS has no id for yet) their
  phone in E.164: the client is found with `clients/search` (its last 10 digits must match) or created.
* `booking.create` POSTs the record with `api_id` = the effect key, `save_if_busy: false` (a busy slot is
  refused with YCLIENTS' message) and `send_sms: false` (rules send their own messages); an interrupted try is
  found on the retry by that `api_id` among the master's records of that day (the list has no `api_id` filter).
  `booking.cancel` deletes the record, then reads it back from the list with `with_deleted` for the exact
  change time its webhook carries.
* An arrived record (attendance 1) also yields `visit.completed` of its client (visits.py), one delivery id per
  record (a YCLIENTS visit may hold several), so a webhook, the poll and the backfill keep it once.
* Webhooks carry no signature: the secret is the `token` query parameter of the hook URL (or a path segment
  after `/hooks/<name>/`, for a daemon that passes such paths on), compared in constant time. A webhook for
  another company is refused with 400: it means the URL was pasted into the wrong branch, and refusing is what
  shows up in the logs and metrics (ignoring it would hide the mistake; YCLIENTS retries neither).
* A webhook whose partial `data` lacks `last_change_date` is completed by reading the record; when that read
  fails the partial event is journaled without a delivery id (the poll may then bring it a second time).
* A booking's `lead_source` says where the record was made (mapping.booking_source): the spec documents only
  `online` (false when an administrator entered it) and `api_id`; `record_from` (read as the channel's own name,
  an aggregator's), `is_mobile` (the client's app), `bookform_id` and `from_url` (a booking form, the page it was
  opened on, whose utm_* become the booking's) are in every real capture but undescribed: `admin`, `api`,
  `online`, `widget`, `mobile_app` or the record_from text. A partial webhook without `online` says nothing.
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
* Loyalty (part 2 §1.5; loyalty.py): `loyalty.accrue`/`loyalty.spend` mirror the product's ledger as one manual
  transaction of the client's card of `loyalty_card_type` (the company-level route), a card issued first to a
  client who has none only with `issue_cards: true`; a write-off past the card's balance is refused before any
  call. A manual transaction is not idempotent and carries no key YCLIENTS deduplicates by: the actions are
  at_most_once, an answer that does not come in time parks them. `loyalty.set_tier` is `client.set_category` of
  the tier's category. Certificates and abonements are read by the client's phone; an abonement is frozen through
  the chain (`chain_id`). YCLIENTS has no call that issues a certificate or an abonement (they are sold as goods
  through a sale document), none that reads or makes referral links, and no loyalty webhook.
* A `finances_operation` webhook with a negative amount for a record is read as a refund of that record's visit:
  `visit.refunded` (visits.refunded; no capture shows a refund, so this reading is assumed). The poll and the
  backfill read no refunds: a refund whose webhook was lost is not caught up.
"""
from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any, ClassVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from automator.checks import CheckContext, ParamProblem
from automator.connector import ActionResult, ConfigError, Inbound, WebConnector, action
from automator.errors import ConnectorError, InboundRejected, Rejected
from automator.model import Entity, EntityRef, Event
from . import categories, mapping, visits
from .checks import check
from .api import ACCEPT, DEFAULT_BASE_URL, PAGE_SIZE, Api, Pace, auth_header
from .loyalty_actions import LoyaltyActions
from .mapping import numeric_id as _numeric
from .emulator import YclientsEmulator
from .serial import KeyedLocks

__all__ = ["Yclients", "YclientsEmulator"]

SECRET = {"type": "string", "pattern": r"\$\{env:[A-Za-z_][A-Za-z0-9_]*\}",
          "description": "A `${env:NAME}` reference: secrets never live in automator.yaml."}
VERBS = {"create": "created", "update": "updated", "delete": "deleted"}
# Other resources (staff, goods…) carry nothing the rules read; a cash-desk operation may be a refund.
RESOURCES = ("record", "client", "finances_operation")
MAX_ITEMS = 100  # webhook items accepted in one request
POLL_WAIT = 65.0  # the poll has no outbox deadline: it may wait out a full minute of the limit
BACKFILL_DAYS = 31  # the records list is read a month of visit dates at a time
SEANCE = 3600  # a booking's length when the rule gives none, in seconds
CARD_TYPE = 8230  # the sandbox chain's loyalty card type when the settings name none (the spec's example id)
SANDBOX = {"partner_token": "sandbox-partner-token", "user_token": "sandbox-user-token",
           "hook_secret": "sandbox-hook-secret"}


class Yclients(WebConnector, LoyaltyActions):
    """One YCLIENTS company (branch): bookings (`booking.set_status`, `booking.create`, `booking.cancel`),
    clients (`client.update`, `client.set_category`, `client.add_category`, `client.remove_category`), loyalty
    (`loyalty.accrue`, `loyalty.spend`, `loyalty.set_tier`, `yclients.loyalty_cards`, `yclients.certificates`,
    `yclients.abonements`, `yclients.abonement_freeze`, `yclients.abonement_unfreeze`); record, client and
    refund webhooks; a catch-up poll of records by change date; a backfill of past visits."""

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
            "create_categories": {"type": "boolean",
                                  "description": "Create a client category the company does not have (default: "
                                                 "no, the action is refused)."},
            "categories": {"type": "array", "items": {"type": "string", "minLength": 1}, "uniqueItems": True,
                           "description": "The client categories rules may set (the company's own, such as VIP): "
                                          "a category action with another is refused, by validate and before any "
                                          "call, so a misspelt category is never created."},
            "category_groups": {
                "type": "object", "minProperties": 1,
                "additionalProperties": {"type": "array", "minItems": 1, "uniqueItems": True,
                                         "items": {"type": "string", "minLength": 1}},
                "description": "Groups of categories a client has at most one of (a tier: {tier: [VIP, "
                               "Постоянный, Новый]}): client.set_category of one removes the others of its "
                               "group. A category is in one group at most."},
            "category_color": {"type": "string", "pattern": "^#[0-9a-fA-F]{6}$"},
            "chain_id": {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": r"^\d+$"}],
                         "description": "The chain (network) id the company belongs to in YCLIENTS: loyalty cards, "
                                        "certificates and abonements are the chain's (abonement freezes and "
                                        "cards found by phone need it)."},
            "loyalty_card_type": {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": r"^\d+$"}],
                                  "description": "The loyalty card type id whose card loyalty.accrue and "
                                                 "loyalty.spend keep in step with the product's points (default: "
                                                 "the client's only card)."},
            "issue_cards": {"type": "boolean",
                            "description": "Issue a card of `loyalty_card_type` to a client who has none when "
                                           "points are accrued (default: no, the accrual is refused)."},
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
        self.groups: dict[str, list[str]] = {str(k): [str(t) for t in v]
                                             for k, v in (config.get("category_groups") or {}).items()}
        twice = _in_two_groups(self.groups)
        if twice:
            raise ConfigError(f"connector {name!r}: category {twice!r} is in two of `category_groups:`; a client "
                              "has one category of a group, so a category belongs to one group at most")
        self.client_edits = KeyedLocks()
        for key in ("chain_id", "loyalty_card_type"):
            if config.get(key) not in (None, "") and not str(config[key]).isdigit():
                raise ConfigError(f"connector {name!r}: {key} must be a number (the id YCLIENTS shows), not "
                                  f"{config[key]!r}")
        self.chain_id = str(config.get("chain_id") or "")
        self.card_type = str(config.get("loyalty_card_type") or "")
        self.issue_cards = config.get("issue_cards") is True

    def default_headers(self) -> dict[str, str]:
        """The v2 Accept header (required) and the partner + user token pair."""
        return {"Accept": ACCEPT, "Content-Type": "application/json",
                "Authorization": auth_header(str(self.config["partner_token"]), str(self.config["user_token"]))}

    @classmethod
    def check_params(cls, action: str, params: Mapping[str, Any], options: Mapping[str, Any],
                     context: CheckContext) -> list[ParamProblem]:
        """A category not among `categories:` (or, for client.set_category, in no `category_groups:` group), a
        client field YCLIENTS has not, a booking it could not make, ids that are not YCLIENTS's
        (connectors/yclients/checks.py)."""
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
        then `booking.<verb>`, then the client's `visit.completed` when the record says the client came."""
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
        visit = visits.completed(record, branch=self.branch, tz=zone) if status != "delete" else None
        if visit is not None:
            events.append(self._event("visit.completed", EntityRef("client", str(record["client"]["id"])), visit,
                                      visits.delivery_id(record), at))
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
            elif resource == "finances_operation" and status == "create":
                events.extend(self.refund_events(data, received))
        return events

    def refund_events(self, operation: Mapping[str, Any], fallback: datetime) -> list[Event]:
        """The `visit.refunded` of a cash-desk operation giving a record's money back (visits.refunded), or none."""
        found = visits.refunded(operation)
        if found is None:
            return []
        client, data, delivery = found
        zone = mapping.object_tz(operation, self.tz)
        at = mapping.parse_datetime(operation.get("date"), zone) or fallback
        return [self._event("visit.refunded", EntityRef("client", client), data, delivery, at)]

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
        """Set a client category, replacing the others of its `category_groups:` group (a tier); a category in no
        group is added. Returns the `client.updated` the webhook will repeat."""
        return await self._categories("set", params)

    @action("client.add_category")
    async def add_category(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """Add a client category, keeping every other."""
        return await self._categories("add", params)

    @action("client.remove_category")
    async def remove_category(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """Remove a client category; a client without it (or not in YCLIENTS at all) is left as it is."""
        return await self._categories("remove", params)

    async def _categories(self, mode: str, params: Mapping[str, Any], what: str | None = None) -> ActionResult:
        """GET the labels and the client, PUT the client back whole with the new `labels` list (part 2 §1.3.6)."""
        what = what or f"client.{mode}_category"
        title = str(params.get("category") or "").strip()
        if not title:
            raise Rejected(f"{what}: the category is empty")
        if not categories.declared(title, self.config.get("categories"), self.groups):
            raise Rejected(f"{what}: {title!r} is not among connector {self.name!r}'s categories")
        labels = [x for x in await self.api.client_labels() if not x.get("deleted")]
        label = categories.find(labels, title)
        if label is None and (mode == "remove" or self.config.get("create_categories") is not True):
            have = ", ".join(sorted(str(x.get("title")) for x in labels)) or "none"
            raise Rejected(f"{what}: company {self.company_id} has no client category {title!r} (its client "
                           f"categories: {have})")
        client_id = await self._client_id(params, what, create=mode != "remove")
        if client_id is None:
            return ActionResult({"client": None, "category": title, "changed": False})
        async with self.client_edits.hold(client_id):
            client = await self.api.get_client(client_id)  # first: no category is made for a client not there
            if label is None:
                color = str(self.config.get("category_color") or "#ff9800")
                label = await self.api.create_client_label(title, color)
                labels.append(label)
            current = mapping.category_ids(client)
            change = categories.change(mode, label, current, labels, self.groups)
            result = {"client": client_id, "category": title, "category_id": str(label["id"])}
            if change.same_as(current):
                return ActionResult({**result, "changed": False})
            updated = await self.api.put_client(client_id, mapping.client_update(client, change.ids))
        return ActionResult({**result, "changed": True, "removed": change.removed},
                            tuple(self.client_events({**client, **updated}, "update", datetime.now(timezone.utc))))

    @action("loyalty.set_tier")
    async def loyalty_set_tier(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """Show a client's loyalty tier as their client category (`category`, else the tier's name), replacing the
        other tier of its `category_groups:` group; returns the `client.updated` the webhook will repeat."""
        tier = str(params.get("tier") or "").strip()
        if not tier:
            raise Rejected("loyalty.set_tier: the tier is empty")
        category = str(params.get("category") or "").strip() or tier
        done = await self._categories("set", {**params, "category": category}, "loyalty.set_tier")
        extra = {"tier": tier, **({"program": str(params["program"])} if params.get("program") else {})}
        return ActionResult({**done.data, **extra}, done.events)

    @action("client.update")
    async def client_update(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """Set fields of a client (name, surname, patronymic, email, birth_date, comment, custom fields by code):
        GET the client and PUT it back whole with them; returns the `client.updated` the webhook will repeat."""
        fields = params.get("fields")
        if not isinstance(fields, Mapping) or not fields:
            raise Rejected("client.update: `fields` names no field to set")
        client_id = await self._client_id(params, "client.update", create=True)
        assert client_id is not None  # made when missing
        async with self.client_edits.hold(client_id):
            client = await self.api.get_client(client_id)
            try:
                body = mapping.client_changes(client, fields)
            except ValueError as exc:
                raise Rejected(f"client.update: {exc}") from exc
            updated = await self.api.put_client(client_id, body)
        return ActionResult({"client": client_id, "fields": sorted(fields)},
                            tuple(self.client_events({**client, **updated}, "update", datetime.now(timezone.utc))))

    async def _client_id(self, params: Mapping[str, Any], what: str, *, create: bool) -> str | None:
        """The YCLIENTS id of the action's client: `client` as given when it is one, else the client with the
        phone (`client` in E.164, or `client_phone`) found by search, or created with `client_name` (the phone
        stands for the name YCLIENTS requires when there is none); None when not found and not to be created."""
        given = str(params.get("client") if params.get("client") is not None else "").strip()
        if given.isdigit():
            return given
        phone = mapping.to_e164(given, self.region) if given.startswith("+") else None
        if phone is None and not given and params.get("client_phone"):
            phone = mapping.to_e164(params["client_phone"], self.region)
        if phone is None:
            raise Rejected(f"{what}: the client is a YCLIENTS client id or a phone in E.164, not {given or None!r}")
        found = await self.api.find_client(phone)
        if found is not None or not create:
            return found
        made = await self.api.create_client({"name": str(params.get("client_name") or phone),
                                             "phone": phone.lstrip("+")})
        return str(made["id"])

    # ---- bookings --------------------------------------------------------------------------------
    @action("booking.create")
    async def booking_create(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """POST a record for the client (by id, or by phone: YCLIENTS finds or makes the client), with `api_id` =
        the effect key, refusing a busy slot; returns its `booking.created` (with `deal` when given)."""
        body = await self._record_body(params, key)
        record = await self.api.create_record(body)
        return self._booking_created(record, params, key)

    async def recover(self, action_name: str, params: Mapping[str, Any], key: str) -> ActionResult | None:
        """The record an interrupted `booking.create` made, found by its `api_id` (the effect key) among the
        master's records of that day; None when it made none."""
        if action_name != "booking.create":
            return None
        starts = _starts(params.get("datetime"))
        day = (starts.astimezone(self.tz) if self.tz else starts).date().isoformat()
        query = {"staff_id": _numeric(params.get("staff_id"), "staff"), "start_date": day, "end_date": day}
        page = 1
        while True:
            records, total = await self.api.list_records(query, page)
            made = next((r for r in records if str(r.get("api_id") or "") == key), None)
            if made is not None:
                return self._booking_created(made, params, key)
            if len(records) < PAGE_SIZE or (total is not None and page * PAGE_SIZE >= total):
                return None
            page += 1

    async def _record_body(self, params: Mapping[str, Any], key: str) -> dict[str, Any]:
        """The POST body of a new record (reference part 2 §1.1); the client block from the client's card when
        an id is given, else the phone and name the engine passes."""
        services = params.get("services")
        if not isinstance(services, list) or not services:
            raise Rejected("booking.create: `services` names no service")
        length = params.get("seance_length")
        seconds = SEANCE if length in (None, "") else _numeric(length, "seance_length")
        given = str(params.get("client") if params.get("client") is not None else "").strip()
        if given.isdigit():
            card = await self.api.get_client(given)
            client = {k: card[k] for k in ("phone", "name", "surname", "email") if card.get(k) not in (None, "")}
            client["phone"] = str(client.get("phone") or "").lstrip("+")
        else:
            phone = mapping.to_e164(given if given.startswith("+") else params.get("client_phone"), self.region)
            if phone is None:
                raise Rejected(f"booking.create: the client is a YCLIENTS client id or a phone in E.164, "
                               f"not {given or None!r}")
            client = {"phone": phone.lstrip("+"), "name": str(params.get("client_name") or "")}
        body: dict[str, Any] = {
            "staff_id": int(_numeric(params.get("staff_id"), "staff")),
            "services": [{"id": int(_numeric(s, "service"))} for s in services],
            "client": client, "datetime": _starts(params.get("datetime")).isoformat(),
            "seance_length": int(seconds), "save_if_busy": False, "send_sms": False, "api_id": key}
        if params.get("comment") not in (None, ""):
            body["comment"] = str(params["comment"])
        return body

    def _booking_created(self, record: Mapping[str, Any], params: Mapping[str, Any], key: str) -> ActionResult:
        """The `booking.created` of a record we made, as its webhook will carry it, with the deal it belongs to.
        The webhook knows no deal and may be journaled first (the journal then keeps it, not ours, by the
        delivery id both carry), so the link also goes in a `booking.updated` of its own."""
        events = self.record_events(record, "create", datetime.now(timezone.utc))
        deal = params.get("deal")
        result: dict[str, Any] = {"booking": str(record["id"])}
        if deal not in (None, ""):
            result["deal"] = str(deal)
            events = [replace(e, data={**e.data, "deal": str(deal)}) if e.type == "booking.created" else e
                      for e in events]
            events.append(Event(id=f"{self.name}:{key}>deal", type="booking.updated", at=events[-1].at,
                                entity=EntityRef("booking", str(record["id"])), data={"deal": str(deal)},
                                source=self.name, delivery_id=f"{key}>deal"))
        return ActionResult(result, tuple(events))

    @action("booking.cancel")
    async def booking_cancel(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """Cancel a booking as YCLIENTS does, by deleting its record (a record already gone is cancelled); returns
        the `booking.deleted` its webhook will repeat, read back with `with_deleted` for its change time."""
        record_id = _numeric(params.get("booking"), "booking")
        try:
            record = await self.api.get_record(record_id)
        except Rejected as exc:
            if "HTTP 404" not in str(exc):
                raise
            return ActionResult({"booking": record_id, "status": mapping.CANCELLED, "changed": False})
        if not await self.api.delete_record(record_id):
            return ActionResult({"booking": record_id, "status": mapping.CANCELLED, "changed": False})
        starts = mapping.parse_datetime(record.get("datetime"), mapping.object_tz(record, self.tz))
        gone = None
        if starts is not None:  # else the webhook or the poll reports the deletion
            day = starts.date().isoformat()
            query = {"staff_id": record.get("staff_id") or "", "start_date": day, "end_date": day, "with_deleted": 1}
            records, _ = await self.api.list_records(query, 1)
            gone = next((r for r in records if str(r.get("id")) == record_id and r.get("deleted")), None)
        events = self.record_events(gone, "delete", datetime.now(timezone.utc), with_client=False) if gone else []
        return ActionResult({"booking": record_id, "status": mapping.CANCELLED, "changed": True}, tuple(events))

    # ---- history ---------------------------------------------------------------------------------
    async def backfill(self, since: datetime) -> AsyncIterator[Event]:
        """Past visits since `since`: the records list read a month of visit dates at a time, page by page (part 1
        §2.4, part 2 §1.4.1, with their payments), within the pace of 5 requests a second; for each arrived
        record its client's `client.updated` (the first time the client appears) then its `visit.completed`, with
        the delivery ids a webhook or the poll gives the same change."""
        zone = self.tz or since.tzinfo or timezone.utc
        since = since if since.tzinfo is not None else since.replace(tzinfo=zone)
        first, last = since.astimezone(zone).date(), datetime.now(zone).date()
        seen: set[str] = set()
        while first <= last:
            end = min(first + timedelta(days=BACKFILL_DAYS - 1), last)
            query = {"start_date": first.isoformat(), "end_date": end.isoformat(), "include_finance_transactions": 1}
            page = 1
            while True:
                records, total = await self.poll_api.list_records(query, page)
                for record in records:
                    for event in self._history(record, since, seen):
                        yield event
                if len(records) < PAGE_SIZE or (total is not None and page * PAGE_SIZE >= total):
                    break
                page += 1
            first = end + timedelta(days=1)

    def _history(self, record: Mapping[str, Any], since: datetime, seen: set[str]) -> list[Event]:
        """The backfill's events of one record: none unless it is a visit since `since`."""
        zone = mapping.object_tz(record, self.tz)
        starts = mapping.parse_datetime(record.get("datetime"), zone)
        if not record.get("id") or starts is None or starts < since:
            return []
        made = self.record_events(record, mapping.record_verb(record), starts)
        visit = [e for e in made if e.type == "visit.completed"]
        if not visit:
            return []
        client = str(visit[0].entity)
        first = [e for e in made if e.type == "client.updated" and client not in seen]
        seen.add(client)
        return first + visit

    # ---- sandbox ---------------------------------------------------------------------------------
    def sandbox_given(self, emulator: Any, entities: Sequence[Entity]) -> None:
        """Given clients and bookings, as the company's own (each written again when a test's event changes it): a
        booking is a record with the emulator's master and a service (the one it names, else the first), its
        status an attendance. A client YCLIENTS needs a phone for gets a made-up one (+7900 and its id); its
        `categories` are labels of the company (made when missing); its `card` is a loyalty card of that number and
        the chain's card type, made once (written again, it keeps the balance the test's accruals gave it)."""
        for entity in entities:
            fields, ident = entity.fields, entity.ref.id
            if entity.ref.kind == "client" and ident.isdigit():
                phone = mapping.to_e164(fields.get("phone")) or f"+7900{int(ident):07d}"
                given = fields.get("categories")
                titles = given if isinstance(given, list) else []
                labels = [(categories.find(list(emulator.labels.values()), str(t)) or emulator.add_label(str(t)))["id"]
                          for t in titles]
                emulator.seed_client(int(ident), {"name": str(fields.get("name") or ""), "phone": phone,
                                                  "email": str(fields.get("email") or ""), "labels": labels})
                number = str(fields.get("card") or "").strip()
                if number and not any(c["number"] == number for c in emulator.cards.get(int(ident), [])):
                    emulator.add_card(int(ident), number, type_id=next(iter(emulator.card_types), CARD_TYPE))
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
        `hook_url?token=<the sandbox hook secret>`; the company has the client categories the settings name, and
        its chain (`chain_id`, else 1) the loyalty card type `loyalty_card_type` names (else a seeded one)."""
        company, chain, card_type = (options.get(k) for k in ("company_id", "chain_id", "loyalty_card_type"))
        company_id = int(str(company)) if str(company).isdigit() else 100000
        chain_id = int(str(chain)) if str(chain).isdigit() else 1
        type_id = int(str(card_type)) if str(card_type).isdigit() else CARD_TYPE
        settings = {**{k: v for k, v in options.items() if k not in SANDBOX}, **SANDBOX,
                    "company_id": company_id, "chain_id": chain_id, "loyalty_card_type": type_id,
                    "base_url": f"{base_url.rstrip('/')}/api/v1"}
        separator = "&" if "?" in hook_url else "?"
        emulator = YclientsEmulator(company_id=company_id, partner_token=SANDBOX["partner_token"],
                                    user_token=SANDBOX["user_token"], chain_id=chain_id,
                                    hook_url=f"{hook_url}{separator}token={SANDBOX['hook_secret']}")
        emulator.add_card_type("Бонусная карта", type_id)
        seed(emulator)
        named = [*(options.get("categories") or []), *(t for ts in (options.get("category_groups") or {}).values()
                                                     for t in ts)]
        for title in named:
            if categories.find(list(emulator.labels.values()), str(title)) is None:
                emulator.add_label(str(title))
        return settings, emulator


def seed(emulator: YclientsEmulator) -> None:
    """Demo data for the sandbox: a master, two services, two clients (Анна with a loyalty card of 500), a VIP
    category and two bookings."""
    master = emulator.add_staff("Ирина", "Косметолог")
    consult = emulator.add_service("Консультация", 1500)
    emulator.add_service("Массаж лица", 3000)
    emulator.add_label("VIP")
    anna = emulator.make_client({"name": "Анна", "phone": "79161234567"}, notify=False)
    emulator.make_client({"name": "Борис", "phone": "79031112233"}, notify=False)
    emulator.add_card(anna["id"], "01010101", balance=500, type_id=next(iter(emulator.card_types), CARD_TYPE))
    today = datetime.now(emulator.tz).replace(hour=15, minute=0, second=0, microsecond=0)
    for offset, phone in ((0, "79161234567"), (1, "79031112233")):
        emulator.make_record({"staff_id": master["id"], "services": [{"id": consult["id"]}],
                              "datetime": (today + timedelta(days=offset)).isoformat(), "seance_length": 3600,
                              "client": {"phone": phone}}, notify=False)


def _in_two_groups(groups: Mapping[str, Sequence[str]]) -> str | None:
    """A category title that two groups name, if any."""
    owner: dict[str, str] = {}
    for name, titles in groups.items():
        for title in titles:
            if owner.setdefault(categories.fold(title), name) != name:
                return title
    return None


def _starts(value: Any) -> datetime:
    """When a booking starts: an ISO 8601 time with its offset (a naive one would be read in an unknown zone)."""
    found = mapping.parse_datetime(value)
    if found is None:
        raise Rejected(f"a booking's datetime is an ISO 8601 time with an offset, such as "
                       f"2026-03-01T12:00:00+03:00, not {value!r}")
    return found


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
