"""The `local` connector: performs the canonical actions into SQLite tables and emits what a real CRM would."""
from __future__ import annotations

import difflib
import hashlib
import hmac
import json
from datetime import date, datetime
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import orjson
import sqlite_utils

from automator.catalogue import Catalogue, CatalogueError, parse
from automator.clock import parse_duration
from automator.connector import ActionResult, Connector, Inbound, SpendRow, action
from automator.errors import InboundRejected
from automator.model import ENTITY_KINDS, EntityRef, Event

MAX_EVENTS_PER_REQUEST = 1000

TABLES: dict[str, dict[str, Any]] = {
    "local_deals": {"id": int, "pipeline": str, "stage": str, "title": str, "client": str, "responsible": str,
                    "amount": float, "fields": str, "created_at": str, "updated_at": str},
    "local_tasks": {"id": int, "title": str, "assignee": str, "due": str, "description": str, "deal": str,
                    "client": str, "created_at": str},
    "local_messages": {"id": int, "channel": str, "to": str, "text": str, "sent_at": str},
    "local_categories": {"client": str, "category": str, "updated_at": str},
    "local_bookings": {"id": str, "status": str, "updated_at": str},
    # A client's categories beside `local_categories`' one category: what client.add_category/remove_category keep.
    "local_client_categories": {"client": str, "category": str},
    "local_requests": {"id": int, "method": str, "url": str, "body": str, "at": str},
    "local_done": {"key": str, "result": str},
    # The loyalty actions a rule (or the engine's mirror of its ledger) asked of the local world, one row each:
    # the product's own ledger is the engine's; this is what a loyalty system would have been told.
    "local_loyalty": {"id": int, "action": str, "client": str, "program": str, "amount": str, "detail": str,
                      "at": str},
    # Ad spend the local world reports through `spend` (`automator spend pull`): rows put there by a script or a
    # test, as an ad cabinet would report them; amount_minor in kopecks.
    "local_spend": {"day": str, "channel": str, "campaign": str, "amount_minor": int, "currency": str},
}
PKS = {"local_categories": "client", "local_bookings": "id", "local_done": "key",
       "local_client_categories": ("client", "category"), "local_spend": ("day", "channel", "campaign")}


class LocalConnector(Connector):
    """Canonical actions on the embedded SQLite database: the product works end to end with nothing outside.

    Every action is idempotent by its effect key (`local_done`), so a retried effect changes nothing twice.
    `http.request` is recorded, not sent: the local world has no network.
    """

    type = "local"
    config_schema = {"type": "object", "properties": {
        "type": {"const": "local"},
        # A secret never lives in the file: a literal here would sit in the repository (the contract suite checks).
        "secret": {"type": "string", "pattern": r"^\$\{env:[A-Za-z_][A-Za-z0-9_]*\}$",
                   "x-pattern-message": "a secret, written as ${env:NAME}: never the value itself"},
        # The custom events a form or a site posts here, in the catalogue's own form (checked by `produces`).
        "events": {"description": "The events a form or a site posts here, by type: {entity, doc, data}."}},
        "additionalProperties": False}
    in_store = True
    own_ids = False  # its records are automator's own: they name persons as they are
    webhook_auth = ("secret",)  # without it the connector performs actions and receives nothing
    deduplicates = True

    def __init__(self, name: str, config: Mapping[str, Any], *, db: sqlite_utils.Database,
                 now: Callable[[], datetime]) -> None:
        super().__init__(name, config)
        self.db = db
        self.now = now
        self._secret = str(config.get("secret") or "").encode()  # what `parse` compares each request's token with
        for table, columns in TABLES.items():
            if not db.table(table).exists():
                db.table(table).create(columns, pk=PKS.get(table, "id"))

    def perform(self, action_name: str, params: Mapping[str, Any], key: str) -> ActionResult:
        """Perform once per key, atomically with the record of it: a repeated key returns the first answer and
        the same events (same ids, so the journal takes them once)."""
        from automator.store.journal import event_body, event_from_body

        conn = self.db.conn
        # BEGIN IMMEDIATE, as the store's own writes: the write lock is taken up front, waiting out the journal
        # thread's commits (busy_timeout). A deferred BEGIN that reads first cannot upgrade to a write once
        # another connection has committed meanwhile: "database is locked" at once, and a failed try.
        own = not conn.in_transaction
        if own:
            conn.execute("BEGIN IMMEDIATE")
        try:
            with self.db.atomic():  # a savepoint inside our transaction (or the caller's)
                row = conn.execute("select result from local_done where key = ?", [key]).fetchone()
                if row:
                    first = json.loads(row[0])
                    if "data" not in first:  # written before events were kept
                        result = ActionResult(data=first)
                    else:
                        result = ActionResult(first["data"], tuple(event_from_body(e) for e in first["events"]))
                else:
                    result = super().perform(action_name, params, key)
                    record = {"data": dict(result.data), "events": [event_body(e) for e in result.events]}
                    self.db.table("local_done").insert({"key": key, "result": json.dumps(record, default=str)})
        except BaseException:
            if own and conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        if own:
            conn.execute("COMMIT")
        return result

    @classmethod
    def produces(cls, name: str, options: Mapping[str, Any]) -> Catalogue:
        """The canonical catalogue and the events the admin declared under `events:` (what their form posts),
        each `{entity: KIND, doc: TEXT, data: {FIELD: TYPE or {type, doc}}}`."""
        canonical = super().produces(name, options)
        declared = options.get("events")
        if not declared:
            return canonical
        if not isinstance(declared, Mapping):
            raise CatalogueError(f"connector '{name}'", ("events",), "expected a mapping of event types",
                                 "such as events: {nps.received: {entity: client, data: {score: number}}}",
                                 in_settings=True)
        try:
            own = parse({"events": declared}, cls.type, f"connector '{name}'")
        except CatalogueError as exc:
            raise CatalogueError(exc.origin, exc.path, exc.reason, exc.hint, key=exc.key, in_settings=True) from None
        for type_, spec in own.events.items():
            if spec.entity is not None and spec.entity not in ENTITY_KINDS:
                guess = difflib.get_close_matches(spec.entity.lower(), ENTITY_KINDS, n=1, cutoff=0.6)
                raise CatalogueError(f"connector '{name}'", ("events", type_, "entity"),
                                     f"unknown entity kind '{spec.entity}'",
                                     f"did you mean '{guess[0]}'?" if guess else
                                     f"one of {', '.join(ENTITY_KINDS)}, or no `entity:` for an event about no "
                                     "record", in_settings=True)
            if type_.startswith("timer."):
                raise CatalogueError(f"connector '{name}'", ("events", type_), "timer.* events are the engine's own",
                                     "name the event after what happened, such as nps.received", key=True,
                                     in_settings=True)
        return canonical.merged(own)

    @classmethod
    def create(cls, name: str, options: Mapping[str, Any], *, db: Any, now: Callable[[], datetime]) -> Connector:
        """The daemon's local connector writes into the daemon's own database."""
        return cls(name, options, db=db, now=now)

    async def spend(self, since: date, until: date) -> AsyncIterator[SpendRow]:
        """The rows of `local_spend` from `since` to `until` (days included), by day, channel and campaign."""
        rows = self.db.conn.execute(
            "select day, channel, campaign, amount_minor, currency from local_spend where day between ? and ? "
            "order by day, channel, campaign", (since.isoformat(), until.isoformat())).fetchall()
        for day, channel, campaign, amount, currency in rows:
            yield SpendRow(date.fromisoformat(day), str(channel), str(campaign or ""), int(amount),
                           str(currency or "RUB"))

    def parse(self, request: Inbound) -> list[Event]:
        """A generic JSON webhook: one event, a list, or `{"events": [...]}`, each written as in a test's `when:`.

        The request must carry the `secret:` setting as the `X-Automator-Token` header or `?token=`; without that
        setting every request is refused (the daemon refuses them before, too: see `Connector.webhook_auth`).
        """
        secret = self._secret
        given = request.headers.get("x-automator-token") or request.query.get("token") or ""
        if not secret or not hmac.compare_digest(given.encode(), secret):
            raise InboundRejected(401, "missing or wrong token", "auth")
        try:
            body = orjson.loads(request.body or b"null")
        except (ValueError, UnicodeDecodeError) as exc:
            raise InboundRejected(400, f"the body is not JSON: {exc}") from exc
        items = body.get("events") if isinstance(body, dict) and "events" in body else body
        items = items if isinstance(items, list) else [items]
        if not items or len(items) > MAX_EVENTS_PER_REQUEST:
            raise InboundRejected(400, f"expected 1 to {MAX_EVENTS_PER_REQUEST} events")
        return [_inbound_event(item, index, self.name, request.received_at or self.now())
                for index, item in enumerate(items)]

    def _event(self, key: str, type_: str, ref: EntityRef, data: Mapping[str, Any]) -> Event:
        return Event(id=f"{key}>{type_}", type=type_, at=self.now(), entity=ref, data=dict(data), source=self.name)

    def _stamp(self) -> str:
        return self.now().isoformat()

    @action("deal.create")
    def deal_create(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """Insert a deal and emit `deal.created` with all its fields."""
        extra = dict(params.get("fields") or {})
        row = {"pipeline": params["pipeline"], "stage": params["stage"], "title": params.get("title", ""),
               "client": _text(params.get("contact", params.get("client"))),
               "responsible": _text(params.get("responsible")), "amount": params.get("amount"),
               "fields": json.dumps(extra, default=str), "created_at": self._stamp(), "updated_at": self._stamp()}
        deal_id = str(self.db.table("local_deals").insert(row).last_pk)
        data = {k: v for k, v in row.items() if k not in ("fields", "created_at", "updated_at") and v is not None}
        data.update(extra)
        ref = EntityRef("deal", deal_id)
        return ActionResult({"id": deal_id}, (self._event(key, "deal.created", ref, data),))

    @action("deal.move")
    def deal_move(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """Move a deal to a stage (and pipeline) and emit `deal.updated`."""
        change: dict[str, Any] = {"stage": params["stage"]}
        if params.get("pipeline"):
            change["pipeline"] = params["pipeline"]
        change.update(params.get("fields") or {})
        return self._update_deal(str(params["deal"]), change, key)

    @action("deal.update")
    def deal_update(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """Set fields of a deal and emit `deal.updated`."""
        return self._update_deal(str(params["deal"]), dict(params["fields"]), key)

    def _update_deal(self, deal_id: str, change: dict[str, Any], key: str) -> ActionResult:
        table = self.db.table("local_deals")
        columns = {c for c in TABLES["local_deals"] if c not in ("id", "fields")}
        stored = list(table.rows_where("id = ?", [deal_id]))
        if stored:
            extra = json.loads(stored[0]["fields"] or "{}")
            extra.update({k: v for k, v in change.items() if k not in columns})
            row = {k: v for k, v in change.items() if k in columns}
            table.update(int(deal_id), {**row, "fields": json.dumps(extra, default=str), "updated_at": self._stamp()})
        ref = EntityRef("deal", deal_id)
        return ActionResult({"id": deal_id}, (self._event(key, "deal.updated", ref, change),))

    @action("booking.set_status")
    def booking_set_status(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """Record a booking's status and emit `booking.updated`."""
        booking_id = str(params["booking"])
        self.db.table("local_bookings").upsert({"id": booking_id, "status": params["status"],
                                          "updated_at": self._stamp()}, pk="id")
        ref = EntityRef("booking", booking_id)
        return ActionResult({"id": booking_id},
                            (self._event(key, "booking.updated", ref, {"status": params["status"]}),))

    @action("client.set_category")
    def client_set_category(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """Record a client's category and emit `client.updated`."""
        client_id = str(params["client"])
        self.db.table("local_categories").upsert({"client": client_id, "category": params["category"],
                                            "updated_at": self._stamp()}, pk="client")
        ref = EntityRef("client", client_id)
        return ActionResult({"client": client_id},
                            (self._event(key, "client.updated", ref, {"category": params["category"]}),))

    @action("client.add_category")
    def client_add_category(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """Add a category beside the client's others and emit `client.updated` with all of them."""
        client_id = str(params["client"])
        self.db.table("local_client_categories").insert({"client": client_id, "category": str(params["category"])},
                                                      ignore=True)
        return self._categories(client_id, key)

    @action("client.remove_category")
    def client_remove_category(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """Remove one category of the client (none to remove changes nothing) and emit `client.updated`."""
        client_id = str(params["client"])
        self.db.conn.execute("delete from local_client_categories where client = ? and category = ?",
                             [client_id, str(params["category"])])
        return self._categories(client_id, key)

    def _categories(self, client_id: str, key: str) -> ActionResult:
        rows = self.db.conn.execute("select category from local_client_categories where client = ? order by category",
                                    [client_id]).fetchall()
        categories = [row[0] for row in rows]
        ref = EntityRef("client", client_id)
        return ActionResult({"client": client_id, "categories": categories},
                            (self._event(key, "client.updated", ref, {"categories": categories}),))

    @action("client.update")
    def client_update(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """Set fields of the client: `client.updated` with them (the store keeps the person's state)."""
        return self._person(str(params["client"]), params, key)

    @action("contact.update")
    def contact_update(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """Set fields of the client's contact card: in the local world the contact is the person."""
        return self._person(str(params["contact"]), params, key)

    def _person(self, client_id: str, params: Mapping[str, Any], key: str) -> ActionResult:
        fields = {str(k): v for k, v in dict(params["fields"]).items() if k != "id"}
        ref = EntityRef("client", client_id)
        return ActionResult({"client": client_id}, (self._event(key, "client.updated", ref, fields),))

    @action("booking.create")
    def booking_create(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """Record a confirmed booking and emit `booking.created` (with `deal` when it belongs to one)."""
        booking_id = "local-" + hashlib.sha1(key.encode()).hexdigest()[:12]
        self.db.table("local_bookings").upsert({"id": booking_id, "status": "confirmed", "updated_at": self._stamp()},
                                               pk="id")
        data = {"client": _text(params.get("client")), "status": "confirmed", "starts_at": params["datetime"],
                "staff_id": _text(params.get("staff_id")), "services": [str(s) for s in params.get("services") or []],
                "deal": _text(params.get("deal")), "comment": params.get("comment")}
        data = {k: v for k, v in data.items() if v not in (None, "")}
        ref = EntityRef("booking", booking_id)
        return ActionResult({"id": booking_id}, (self._event(key, "booking.created", ref, data),))

    @action("booking.cancel")
    def booking_cancel(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """Record a booking as cancelled and emit `booking.deleted`, as YCLIENTS reports a cancel."""
        booking_id = str(params["booking"])
        self.db.table("local_bookings").upsert({"id": booking_id, "status": "cancelled",
                                                "updated_at": self._stamp()}, pk="id")
        ref = EntityRef("booking", booking_id)
        return ActionResult({"id": booking_id}, (self._event(key, "booking.deleted", ref, {"status": "cancelled"}),))

    @action("deal.assign")
    def deal_assign(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """Give the deal to a person: its `responsible`, and `deal.updated`."""
        return self._update_deal(str(params["deal"]), {"responsible": _text(params["to"])}, key)

    @action("lead.assign")
    def lead_assign(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """Give the lead to a person: `lead.updated` with its new `responsible` (a lead is no stored entity)."""
        data = {"lead_id": str(params["lead"]), "responsible": _text(params["to"])}
        return ActionResult(dict(data), (Event(id=f"{key}>lead.updated", type="lead.updated", at=self.now(),
                                               data=data, source=self.name),))

    @action("note.add")
    def note_add(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """Record the note on the deal, lead or contact it names (kept with the local messages, channel `note`)."""
        target = next(f"{kind}:{params[kind]}" for kind in ("deal", "lead", "contact") if params.get(kind))
        row = {"channel": "note", "to": target, "text": params["text"], "sent_at": self._stamp()}
        return ActionResult({"id": str(self.db.table("local_messages").insert(row).last_pk)})

    @action("task.create")
    def task_create(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """Insert a task and emit `task.created`."""
        row = {"title": params["title"], "assignee": _text(params["assignee"]), "due": _due(params.get("due"), self.now()),
               "description": params.get("description"), "deal": _text(params.get("deal")),
               "client": _text(params.get("client")), "created_at": self._stamp()}
        task_id = str(self.db.table("local_tasks").insert(row).last_pk)
        data = {k: v for k, v in row.items() if v is not None and k != "created_at"}
        return ActionResult({"id": task_id}, (self._event(key, "task.created", EntityRef("task", task_id), data),))

    def _message(self, channel: str, params: Mapping[str, Any]) -> ActionResult:
        row = {"channel": channel, "to": _text(params["to"]), "text": params["text"], "sent_at": self._stamp()}
        return ActionResult({"id": str(self.db.table("local_messages").insert(row).last_pk)})

    @action("sms.send")
    def sms_send(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """Record an SMS as sent."""
        return self._message("sms", params)

    @action("message.send")
    def message_send(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """Record a messenger message as sent."""
        return self._message(params.get("channel") or "message", params)

    @action("notify")
    def notify(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """Record a staff notification."""
        return self._message("notify", params)

    @action("email.send")
    def email_send(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """Record an e-mail as sent (its subject and text, channel `email`)."""
        return self._message("email", {"to": params["to"], "text": f"{params['subject']}\n\n{params['text']}"})

    @action("report.send")
    def report_send(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """Record the report asked for (channel `report`, its params as JSON in `text`), not computed: the local
        world is for a rule's tests, which check what was asked; the daemon's real connectors compose it."""
        asked = {name: params[name] for name in ("report", "period", "by", "touch", "pipeline", "text")
                 if params.get(name) not in (None, "")}
        row = {"channel": "report", "to": _text(params["to"]), "text": json.dumps(asked, ensure_ascii=False,
                                                                                 default=str, sort_keys=True),
               "sent_at": self._stamp()}
        return ActionResult({"id": str(self.db.table("local_messages").insert(row).last_pk)})

    def _loyalty(self, action_name: str, params: Mapping[str, Any], amount: Any, detail: Mapping[str, Any]
                 ) -> ActionResult:
        row = {"action": action_name, "client": _text(params.get("client")), "program": _text(params.get("program")),
               "amount": None if amount in (None, "") else str(amount),
               "detail": json.dumps({k: v for k, v in detail.items() if v not in (None, "")}, ensure_ascii=False,
                                    default=str, sort_keys=True), "at": self._stamp()}
        return ActionResult({"id": str(self.db.table("local_loyalty").insert(row).last_pk),
                             **{k: v for k, v in row.items() if k in ("client", "amount") and v is not None}})

    @action("loyalty.accrue")
    def loyalty_accrue(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """Record points accrued to the client (`local_loyalty`)."""
        return self._loyalty("loyalty.accrue", params, params["amount"], {"reason": params.get("reason")})

    @action("loyalty.spend")
    def loyalty_spend(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """Record points spent by the client (`local_loyalty`)."""
        return self._loyalty("loyalty.spend", params, params["amount"], {"reason": params.get("reason")})

    @action("loyalty.set_tier")
    def loyalty_set_tier(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """Record the client's tier and, as client.set_category does, emit `client.updated` with its category."""
        shown = params.get("category") or params["tier"]
        self._loyalty("loyalty.set_tier", params, None, {"tier": params["tier"], "category": shown})
        return self.client_set_category({"client": params["client"], "category": shown}, key)

    @action("certificate.issue")
    def certificate_issue(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """Record a gift certificate issued to the client (`local_loyalty`)."""
        return self._loyalty("certificate.issue", params, params["nominal"],
                             {k: params.get(k) for k in ("type", "number", "expires")})

    @action("abonement.issue")
    def abonement_issue(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """Record an abonement issued to the client (`local_loyalty`; its amount is its visits)."""
        return self._loyalty("abonement.issue", params, params.get("visits"),
                             {k: params.get(k) for k in ("type", "services", "expires")})

    @action("http.request")
    def http_request(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """Record the request; the local world sends nothing over the network."""
        row = {"method": params["method"], "url": params["url"],
               "body": json.dumps(params.get("json"), default=str), "at": self._stamp()}
        return ActionResult({"id": str(self.db.table("local_requests").insert(row).last_pk), "status": 200})


def _inbound_event(item: Any, index: int, source: str, received: datetime) -> Event:
    where = f"event {index + 1}"
    if not isinstance(item, dict):
        raise InboundRejected(400, f"{where}: expected an object")
    kind_verb = item.get("event", item.get("type"))
    if not isinstance(kind_verb, str) or "." not in kind_verb or kind_verb.startswith("timer."):
        raise InboundRejected(400, f"{where}: 'event' must be a type such as booking.updated")
    entity = item.get("entity")
    ref = None
    if entity is not None:
        if not isinstance(entity, dict) or not entity.get("kind") or entity.get("id") in (None, ""):
            raise InboundRejected(400, f"{where}: 'entity' must be {{kind, id}}")
        ref = EntityRef(str(entity["kind"]), str(entity["id"]))
    data = item.get("data") or {}
    if not isinstance(data, dict):
        raise InboundRejected(400, f"{where}: 'data' must be an object")
    at = received
    if item.get("at") is not None:
        try:
            at = datetime.fromisoformat(str(item["at"]))
        except ValueError as exc:
            raise InboundRejected(400, f"{where}: 'at' is not an ISO 8601 moment") from exc
        if at.tzinfo is None:
            raise InboundRejected(400, f"{where}: 'at' needs a UTC offset")
    delivery = item.get("delivery_id", item.get("id"))
    ident = hashlib.sha1(f"{source}|{delivery}|{kind_verb}|{ref}|{json.dumps(data, sort_keys=True, default=str)}|"
                         f"{at.isoformat() if delivery is None else ''}".encode()).hexdigest()[:20]
    return Event(id=f"{source}:{ident}", type=kind_verb, at=at, entity=ref, data=data, source=source,
                 delivery_id=None if delivery is None else str(delivery))


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _due(value: Any, now: datetime) -> str | None:
    """A task's due moment as the CRMs report it, an ISO datetime with its offset: `1d` is a day from now."""
    if value in (None, ""):
        return None
    try:
        return (now + parse_duration(value).approx()).replace(microsecond=0).isoformat()
    except ValueError:
        return str(value)  # a date and time already (task.create's schema allows nothing else)
