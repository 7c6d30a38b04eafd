"""A faithful YCLIENTS stand-in: records, clients, categories and the chain's loyalty (cards and their manual
transactions, card types, certificates, abonements and their freezes) of one company, its envelopes and codes, the
5 req/s and 200 req/min limit, and a webhook to the daemon on every change (a refund's `finances_operation` too).

Where the contract is unconfirmed the emulator takes the strict reading, so that the connector is written for the
harder case: the record and client PUTs are full updates (a field left out is reset), the Accept header is
required (406 without it), and a 429 carries no Retry-After unless the `retry_after` extra knob is set. A new
record in a busy slot of its master is refused unless `save_if_busy` (reference part 2 §1.1 says so; its status
and text were never captured: 422 and the message below are assumed). Payments are kept per record and listed as
its `finance_transactions` when the records list is asked `include_finance_transactions=1`. Amounts of loyalty are
computed in Decimal from the JSON number's text and written back as the number they are (`wire_number`); the
answers no capture shows (a write-off past the balance, a refused card issue, a second freeze) are assumed and
say so where they are made.
"""
from __future__ import annotations

import json
import re
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, ClassVar

from automator.emulator import Call, Emulator, Reply, route
from .api import ACCEPT
from .mapping import ATTENDANCE, parse_datetime

PER_SECOND, PER_MINUTE = 5, 200
BUSY = "Выбранное время занято"  # assumed: no capture of the busy-slot answer exists (part 2 §8)
ORIGIN_KEYS = ("online", "from_url", "bookform_id", "is_mobile", "record_from")  # where a record was made
RECORD_RESETS = {"comment": "", "record_labels": [], "custom_color": ""}
CLIENT_RESETS = {"surname": "", "patronymic": "", "email": "", "comment": "", "birth_date": "", "card": ""}
_AUTH = re.compile(r"^\s*Bearer\s+(?P<partner>[^,\s]+)\s*(?:,\s*User\s+(?P<user>[^,\s]+))?\s*$", re.I)


def _record_value(record: dict[str, Any], key: str) -> Any:
    """What the records list filters `key` (staff_id, client_id, created_user_id) by: client_id is the client's."""
    return (record["client"] or {}).get("id") if key == "client_id" else record[key]


def wire_number(value: Decimal | int) -> int | float:
    """An exact amount as YCLIENTS' JSON writes it: a whole number, or one with its kopecks. Computed in Decimal, it
    is written through the float whose shortest text is that decimal (at most 15 digits: every amount here)."""
    exact = Decimal(value)
    return int(exact) if exact == exact.to_integral_value() else float(exact)


def envelope(data: Any, meta: Any = None, status: int = 200) -> Reply:
    """A success answer: `{"success": true, "data": …, "meta": …}` (`[]` when there is no meta, as PHP writes)."""
    return Reply(status, {"success": True, "data": data, "meta": [] if meta is None else meta})


def failure(status: int, message: str, errors: list[dict[str, str]] | None = None) -> Reply:
    """An error answer in the same envelope: `{"success": false, "data": null, "meta": {"message": …}}`."""
    meta: dict[str, Any] = {"message": message}
    if errors:
        meta["errors"] = errors
    return Reply(status, {"success": False, "data": None, "meta": meta})


class YclientsEmulator(Emulator):
    """One YCLIENTS company (branch) owned by one user token, reached with one partner token."""

    system: ClassVar[str] = "yclients"

    def __init__(self, *, company_id: int = 1, partner_token: str = "partner", user_token: str = "user",
                 utc_offset: str = "+03:00", chain_id: int = 1, hook_url: str | None = None, limits: bool = True,
                 transport: Any = None, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(hook_url=hook_url, limits=limits, transport=transport)
        self.clock = clock  # monotonic seconds, for the rate limit (tests move it by hand)
        self.company_id, self.partner_token, self.user_token = company_id, partner_token, user_token
        self.other_companies: set[int] = set()  # companies that exist but this user token does not manage
        sign, hours, minutes = utc_offset[0], int(utc_offset[1:3]), int(utc_offset[-2:])
        delta = timedelta(hours=hours, minutes=minutes)
        self.tz = timezone(delta if sign == "+" else -delta)
        self.chain_id = chain_id
        self.records: dict[int, dict[str, Any]] = {}
        self.clients: dict[int, dict[str, Any]] = {}
        self.labels: dict[int, dict[str, Any]] = {}
        self.cards: dict[int, list[dict[str, Any]]] = {}
        self.card_types: dict[int, dict[str, Any]] = {}
        self.loyalty_transactions: list[dict[str, Any]] = []  # manual top-ups and write-offs, as made
        self.certificates: dict[int, list[dict[str, Any]]] = {}  # client id → their gift certificates
        self.abonements: dict[int, list[dict[str, Any]]] = {}  # client id → their abonements
        self.staff: dict[int, dict[str, Any]] = {}
        self.services: dict[int, dict[str, Any]] = {}
        self.payments: dict[int, list[dict[str, Any]]] = {}  # record id → its finance transactions
        self._ids = 1000
        self._hits: deque[float] = deque()
        self._last_change: dict[tuple[str, int], datetime] = {}
        self._latest: datetime | None = None

    # ---- seeding and the clock -----------------------------------------------------------------------
    def next_id(self) -> int:
        """A fresh id for any entity."""
        self._ids += 1
        return self._ids

    def add_staff(self, name: str, specialization: str = "") -> dict[str, Any]:
        """A staff member (master) of the company."""
        ident = self.next_id()
        self.staff[ident] = {"id": ident, "api_id": None, "name": name, "specialization": specialization,
                             "position": {"id": 1, "title": specialization}, "avatar": "", "rating": 5,
                             "votes_count": 0}
        return self.staff[ident]

    def add_service(self, title: str, cost: int) -> dict[str, Any]:
        """A service of the company's catalogue."""
        ident = self.next_id()
        self.services[ident] = {"id": ident, "title": title, "cost": cost}
        return self.services[ident]

    def add_label(self, title: str, color: str = "#ff0000", entity: int = 1) -> dict[str, Any]:
        """A category: entity 1 for clients, 2 for records."""
        ident = self.next_id()
        self.labels[ident] = {"id": ident, "salon_id": self.company_id, "title": title, "color": color,
                              "icon": "", "entity": entity, "deleted": 0, "not_editable": 0}
        return self.labels[ident]

    def add_card_type(self, title: str, ident: int | None = None) -> dict[str, Any]:
        """A loyalty card type of the chain."""
        ident = ident or self.next_id()
        self.card_types[ident] = {"id": ident, "title": title, "salon_group_id": self.chain_id}
        return self.card_types[ident]

    def add_card(self, client_id: int, number: str, balance: int | float = 0, type_id: int = 8230
                 ) -> dict[str, Any]:
        """A loyalty card of the chain issued to a client (of a type made when the chain has none of that id)."""
        kind = self.card_types.get(type_id) or self.add_card_type("Клубная карта", type_id)
        card = {"id": self.next_id(), "balance": balance, "points": 0, "paid_amount": 0, "sold_amount": 0,
                "visits_count": 0, "number": number, "type_id": kind["id"], "salon_group_id": self.chain_id,
                "type": {"id": kind["id"], "title": kind["title"]}, "salon_group": {"id": self.chain_id, "title": "Сеть"},
                "programs": [{"id": 12720, "title": "накопительный кэш", "loyalty_type_id": 7,
                              "loyalty_type": {"id": 7, "title": "Накопительный кэшбэк (оплачено)",
                                               "is_discount": False, "is_cashback": True},
                              "rules": [{"value": 10, "parameter": 100}]}]}
        self.cards.setdefault(client_id, []).append(card)
        return card

    def add_certificate(self, client_id: int, number: str, nominal: int, balance: int | None = None,
                        expires: str = "2027-12-31") -> dict[str, Any]:
        """A gift certificate the client bought (YCLIENTS sells them as goods: the API only lists them)."""
        ident = self.next_id()
        item = {"id": ident, "number": number, "balance": nominal if balance is None else balance,
                "default_balance": nominal, "type_id": 501, "status_id": 1,
                "created_date": datetime.now(self.tz).strftime("%Y-%m-%d %H:%M:%S"), "expiration_date": expires,
                "type": {"id": 501, "title": f"Сертификат {nominal}", "balance": nominal, "is_multi": True,
                         "company_group_id": self.chain_id, "item_type_id": 1, "expiration_type_id": 1,
                         "expiration_date": expires, "expiration_timeout": 0, "expiration_timeout_unit_id": 0,
                         "is_allow_empty_code": False},
                "status": {"id": 1, "title": "Активен"}}
        self.certificates.setdefault(client_id, []).append(item)
        return item

    def add_abonement(self, client_id: int, number: str, visits: int, *, allow_freeze: bool = True,
                      expires: str = "2027-06-30") -> dict[str, Any]:
        """An abonement the client bought (sold through a sale document: the API lists, freezes and unfreezes)."""
        ident = self.next_id()
        item = {"id": ident, "number": number, "balance_string": f"{visits} посещений", "is_frozen": False,
                "freeze_period": 0, "period": 3, "period_unit_id": 3, "expiration_date": expires,
                "status": {"id": 2, "title": "Активирован", "extended_title": "Активирован"},
                "balance_container": {"links": []},
                "type": {"id": 701, "salon_group_id": self.chain_id, "title": f"Абонемент на {visits} посещений",
                         "period": 3, "period_unit_id": 3, "allow_freeze": allow_freeze, "freeze_limit": 30,
                         "is_allow_empty_code": False, "is_united_balance": True,
                         "united_balance_services_count": visits, "balance_container": {"links": []}}}
        self.abonements.setdefault(client_id, []).append(item)
        return item

    def pay(self, record: dict[str, Any], amount: float) -> dict[str, Any]:
        """A payment for a record at the cash desk (a finance transaction of type 1, «Оказание услуг»); the record
        is paid in full once its payments cover its services."""
        transaction = {"id": self.next_id(), "document_id": self.next_id(), "date": record["date"], "type_id": 1,
                       "expense_id": 5, "account_id": 17433, "amount": amount,
                       "client_id": (record["client"] or {}).get("id", 0), "master_id": record["staff_id"],
                       "comment": "", "record_id": record["id"], "goods_transaction_id": 0,
                       "expense": {"id": 5, "title": "Оказание услуг"},
                       "account": {"id": 17433, "title": "Основная касса"}}
        self.payments.setdefault(record["id"], []).append(transaction)
        due = sum(s["cost_to_pay"] for s in record["services"])
        if sum(t["amount"] for t in self.payments[record["id"]]) >= due:
            record["paid_full"] = 1
        return transaction

    def refund(self, record: dict[str, Any], amount: float) -> dict[str, Any]:
        """Money of a record given back at the cash desk: a finance transaction of the negative amount on the
        record, and its `finances_operation` `create` webhook in the captured shape (reference part 2 §1.6). That
        YCLIENTS writes a refund so is assumed: no capture of a refund exists."""
        moment = self.stamp("finances_operation", record["id"])
        transaction = {**self.pay(record, -abs(amount)), "date": self.compact(moment)}
        self.payments[record["id"]][-1] = transaction
        client = record["client"] or {}
        self.notify("finances_operation", transaction["id"], "create", {
            "id": transaction["id"], "document_id": transaction["document_id"],
            "expense": {"id": 5, "title": "Оказание услуг"}, "date": self.compact(moment),
            "amount": transaction["amount"], "comment": "Возврат", "master": [], "supplier": [],
            "account": {"id": 17433, "title": "Основная касса"},
            "client": {"id": client["id"], "name": client.get("name", ""), "phone": client.get("phone", "")}
            if client else [], "record_id": record["id"], "visit_id": record["visit_id"], "sold_item_id": 0,
            "sold_item_type": "", "last_change_date": self.compact(moment)})
        return transaction

    def busy(self, body: dict[str, Any]) -> bool:
        """Whether the master of a new record has another live one overlapping its time."""
        starts = parse_datetime(body["datetime"], self.tz)
        assert starts is not None
        ends = starts + timedelta(seconds=int(body["seance_length"]))
        for record in self.records.values():
            if record["deleted"] or record["staff_id"] != int(body["staff_id"]):
                continue
            other = parse_datetime(record["datetime"], self.tz)
            assert other is not None
            if other < ends and starts < other + timedelta(seconds=int(record["seance_length"])):
                return True
        return False

    def stamp(self, kind: str, ident: int) -> datetime:
        """The company's time of a change; never equal to the entity's previous change (second resolution would
        otherwise give two quick changes one `last_change_date`, and so one delivery id)."""
        now = datetime.now(self.tz).replace(microsecond=0)
        if self._latest is not None and now < self._latest:
            now = self._latest  # and never before another change already reported, which a poll may have seen
        previous = self._last_change.get((kind, ident))
        if previous is not None and now <= previous:
            now = previous + timedelta(seconds=1)
        self._last_change[(kind, ident)] = self._latest = now
        return now

    @staticmethod
    def compact(moment: datetime) -> str:
        """`2025-07-13T12:15:24+0500`: the offset without a colon, as `create_date`/`last_change_date` have it."""
        return moment.strftime("%Y-%m-%dT%H:%M:%S%z")

    # ---- what the base class asks for ----------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Records, clients, categories, cards and payments as plain data."""
        return {"records": list(self.records.values()), "clients": list(self.clients.values()),
                "labels": list(self.labels.values()), "cards": self.cards, "payments": self.payments,
                "card_types": list(self.card_types.values()), "loyalty_transactions": self.loyalty_transactions,
                "certificates": self.certificates, "abonements": self.abonements}

    def limit(self, call: Call) -> Reply | None:
        """200 requests a minute or 5 a second (per IP; every caller of an emulator shares one address)."""
        now = self.clock()
        while self._hits and now - self._hits[0] >= 60:
            self._hits.popleft()
        last_second = sum(1 for t in reversed(self._hits) if now - t < 1)
        if last_second >= PER_SECOND or len(self._hits) >= PER_MINUTE:
            reply = failure(429, "Too many requests")
            if self.faults.extra.get("retry_after"):
                reply.headers["Retry-After"] = str(self.faults.extra["retry_after"])
            return reply
        self._hits.append(now)
        return None

    def storm_reply(self, status: int, retry_after: float | None) -> Reply:
        """An overload answer in the YCLIENTS envelope."""
        reply = failure(status, "Too many requests" if status == 429 else "Service temporarily unavailable")
        if retry_after is not None:
            reply.headers["Retry-After"] = str(int(retry_after))
        return reply

    def error_reply(self, status: int) -> Reply:
        """A server error in the YCLIENTS envelope."""
        return failure(status, "An error has occurred")

    def not_found(self, call: Call) -> Reply:
        """The captured 404 body."""
        return failure(404, "An error has occurred")

    # ---- authentication ------------------------------------------------------------------------------
    def denied(self, call: Call, company_id: str | None = None, *, user: bool = True) -> Reply | None:
        """The answer refusing this call, or None: the v2 Accept header, the partner token, the user token
        (company data) and the user's rights on the company are checked in that order."""
        if ACCEPT not in call.headers.get("accept", ""):
            return failure(406, f"Accept header must be {ACCEPT}")
        match = _AUTH.match(call.headers.get("authorization", ""))
        if match is None:
            return failure(401, "Partner ID not specified")
        if match.group("partner") != self.partner_token:
            return failure(401, "Partner authorization failed")
        if not user:
            return None
        if not match.group("user"):
            return failure(401, "User authorization required")
        if match.group("user") != self.user_token:
            return failure(401, "User authorization failed")
        if company_id is not None and int(company_id) != self.company_id:
            return failure(403 if int(company_id) in self.other_companies else 404,
                           "No company management rights" if int(company_id) in self.other_companies
                           else "An error has occurred")
        return None

    # ---- webhooks ------------------------------------------------------------------------------------
    def notify(self, resource: str, ident: int, status: str, data: dict[str, Any]) -> None:
        """The webhook of one change: `{company_id, resource, resource_id, status, data}`, sent once."""
        self.webhook({"company_id": self.company_id, "resource": resource, "resource_id": ident,
                      "status": status, "data": data})

    # ---- records -------------------------------------------------------------------------------------
    def _client_brief(self, client: dict[str, Any] | None) -> dict[str, Any] | None:
        if client is None:
            return None
        return {"id": client["id"], "name": client["name"], "surname": client.get("surname", ""),
                "patronymic": client.get("patronymic", ""), "display_name": client["name"], "comment": "",
                "phone": "+" + re.sub(r"\D", "", str(client["phone"])), "card": client.get("card", ""),
                "email": client.get("email", ""), "success_visits_count": client.get("visits", 0),
                "fail_visits_count": 0, "discount": client.get("discount", 0), "custom_fields": [], "sex": 0,
                "birthday": client.get("birth_date", ""), "client_tags": []}

    def _find_or_make_client(self, data: dict[str, Any]) -> dict[str, Any] | None:
        digits = re.sub(r"\D", "", str(data.get("phone") or ""))
        if not digits:
            return None
        for client in self.clients.values():
            if re.sub(r"\D", "", str(client["phone"])) == digits:
                return client
        return self.make_client({"name": data.get("name") or "", "phone": digits,
                                 "surname": data.get("surname", ""), "email": data.get("email", "")})

    def _record_errors(self, body: dict[str, Any]) -> list[dict[str, str]]:
        errors = [{key: "Обязательное поле"} for key in ("staff_id", "services", "datetime", "seance_length")
                  if body.get(key) in (None, "", [])]
        if body.get("staff_id") not in (None, "") and int(body["staff_id"]) not in self.staff:
            errors.append({"staff_id": "Сотрудник не найден"})
        if body.get("datetime") and parse_datetime(body["datetime"], self.tz) is None:
            errors.append({"datetime": "Неверный формат даты"})
        if "attendance" in body and body["attendance"] not in (None, "") and int(body["attendance"]) not in ATTENDANCE:
            errors.append({"attendance": "Неверное значение"})
        return errors

    def _apply_record(self, record: dict[str, Any], body: dict[str, Any]) -> None:
        starts = parse_datetime(body["datetime"], self.tz).astimezone(self.tz)  # type: ignore[union-attr]
        staff = self.staff[int(body["staff_id"])]
        services = []
        for item in body["services"]:
            known = self.services.get(int(item["id"]), {"title": "", "cost": 0})
            cost = item.get("cost", known["cost"])
            services.append({"id": int(item["id"]), "title": known["title"], "cost": cost, "cost_to_pay": cost,
                             "manual_cost": cost, "cost_per_unit": cost, "discount": item.get("discount", 0),
                             "first_cost": item.get("first_cost", cost), "amount": item.get("amount", 1)})
        attendance = int(body.get("attendance", record.get("attendance", 0)) or 0)
        record.update({"staff_id": staff["id"], "staff": dict(staff), "services": services,
                       "date": starts.strftime("%Y-%m-%d %H:%M:%S"), "datetime": starts.isoformat(),
                       "seance_length": int(body["seance_length"]), "length": int(body["seance_length"]),
                       "attendance": attendance, "visit_attendance": attendance,
                       "confirmed": 1 if attendance in (1, 2) else record.get("confirmed", 0),
                       "paid_full": 1 if attendance == 1 else record.get("paid_full", 0)})
        for key, default in RECORD_RESETS.items():
            record[key] = body.get(key, default)
        record["record_labels"] = [self.labels[int(x)] for x in record["record_labels"]
                                   if str(x).isdigit() and int(x) in self.labels]
        for key in ("api_id", "sms_remain_hours", "email_remain_hours", "custom_fields"):
            if key in body:
                record[key] = body[key]
        if isinstance(body.get("client"), dict):
            record["client"] = self._client_brief(self._find_or_make_client(body["client"]))

    def make_record(self, body: dict[str, Any], *, notify: bool = True, origin: dict[str, Any] | None = None
                    ) -> dict[str, Any]:
        """Create a record (as the API or an admin in the UI does; `origin` sets where a client made it online:
        `online`, `from_url`, `bookform_id`, `is_mobile`, `record_from`) and send its `create` webhook."""
        ident = self.next_id()
        moment = self.stamp("record", ident)
        record: dict[str, Any] = {
            "id": ident, "company_id": self.company_id, "clients_count": 1, "client": None,
            "create_date": self.compact(moment), "last_change_date": self.compact(moment), "online": False,
            "visit_id": self.next_id(), "confirmed": 0, "sms_before": 1, "sms_now": 0, "sms_now_text": "",
            "email_now": 0, "notified": 0, "master_request": 0, "api_id": "", "from_url": "", "review_requested": 0,
            "created_user_id": 1, "deleted": False, "paid_full": 0, "prepaid": False, "prepaid_confirmed": False,
            "activity_id": 0, "bookform_id": 0, "record_from": "", "is_mobile": 0, "goods_transactions": [],
            "sms_remain_hours": 1, "email_remain_hours": 1, "comer": None, "custom_fields": [],
            "custom_font_color": "", "documents": [], "short_link": "", "composite": []}
        record.update({k: v for k, v in (origin or {}).items() if k in ORIGIN_KEYS})
        self._apply_record(record, body)
        self.records[ident] = record
        if notify:
            self.notify("record", ident, "create", dict(record))
        return record

    def change_record(self, record: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        """A full update of a record, then its `update` webhook."""
        self._apply_record(record, body)
        record["last_change_date"] = self.compact(self.stamp("record", record["id"]))
        self.notify("record", record["id"], "update", dict(record))
        return record

    def set_attendance(self, record: dict[str, Any], attendance: int) -> dict[str, Any]:
        """What an admin marking the visit in the journal does: the attendance changes, the webhook goes out."""
        record["attendance"] = record["visit_attendance"] = attendance
        if attendance in (1, 2):
            record["confirmed"] = 1
        record["last_change_date"] = self.compact(self.stamp("record", record["id"]))
        self.notify("record", record["id"], "update", dict(record))
        return record

    def remove_record(self, record: dict[str, Any]) -> None:
        """Delete (cancel) a record: kept with `deleted: true` for `with_deleted` lists; `delete` webhook."""
        record["deleted"] = True
        record["last_change_date"] = self.compact(self.stamp("record", record["id"]))
        self.notify("record", record["id"], "delete", dict(record))

    def _day(self, value: str) -> str:
        moment = parse_datetime(value, self.tz)
        return moment.astimezone(self.tz).date().isoformat() if moment else ""

    def _live_record(self, record_id: str) -> dict[str, Any] | None:
        record = self.records.get(int(record_id))
        return None if record is None or record["deleted"] else record

    @route("GET", r"/api/v1/records/(?P<company>\d+)")
    async def list_records(self, call: Call, company: str) -> Reply:
        """Records with the list filters and `meta.page`/`total_count`, ordered by visit time."""
        if (refused := self.denied(call, company)) is not None:
            return refused
        q = call.query
        found = [r for r in self.records.values() if q.get("with_deleted") in ("1", "true") or not r["deleted"]]
        for key in ("staff_id", "client_id", "created_user_id"):
            if q.get(key):
                found = [r for r in found if str(_record_value(r, key)) == q[key]]
        for key, attr, lower in (("start_date", "datetime", True), ("end_date", "datetime", False),
                                 ("c_start_date", "create_date", True), ("c_end_date", "create_date", False)):
            if q.get(key):
                day = q[key][:10]
                found = [r for r in found if (self._day(r[attr]) >= day if lower else self._day(r[attr]) <= day)]
        for key, after in (("changed_after", True), ("changed_before", False)):
            if q.get(key):
                bound = parse_datetime(q[key], self.tz)
                if bound is None:
                    return failure(422, "Ошибка валидации", [{key: "Неверный формат даты"}])
                found = [r for r in found if (parse_datetime(r["last_change_date"]) > bound) == after]  # type: ignore[operator]
        found.sort(key=lambda r: (r["datetime"], r["id"]))
        page, count = max(1, int(q.get("page") or 1)), min(300, max(1, int(q.get("count") or 25)))
        chunk = found[(page - 1) * count: page * count]
        if q.get("include_finance_transactions") in ("1", "true"):
            chunk = [{**r, "finance_transactions": self.payments.get(r["id"], [])} for r in chunk]
        return envelope(chunk, {"page": page, "total_count": len(found)})

    @route("POST", r"/api/v1/records/(?P<company>\d+)")
    async def create_record(self, call: Call, company: str) -> Reply:
        """Create a record: 201 with the record object; a slot its master is busy in is refused (422) unless
        `save_if_busy`."""
        if (refused := self.denied(call, company)) is not None:
            return refused
        body = call.json() or {}
        if errors := self._record_errors(body):
            return failure(422, "Ошибка валидации", errors)
        if not body.get("save_if_busy") and self.busy(body):
            return failure(422, BUSY)
        return envelope(self.make_record(body), status=201)

    @route("GET", r"/api/v1/record/(?P<company>\d+)/(?P<ident>\d+)")
    async def get_record(self, call: Call, company: str, ident: str) -> Reply:
        """One record; a deleted one is gone (404)."""
        if (refused := self.denied(call, company)) is not None:
            return refused
        record = self._live_record(ident)
        return envelope(record) if record else self.not_found(call)

    @route("PUT", r"/api/v1/record/(?P<company>\d+)/(?P<ident>\d+)")
    async def put_record(self, call: Call, company: str, ident: str) -> Reply:
        """A full update: staff, services, datetime and length are required; 200 with the record."""
        if (refused := self.denied(call, company)) is not None:
            return refused
        record = self._live_record(ident)
        if record is None:
            return self.not_found(call)
        body = call.json() or {}
        if errors := self._record_errors(body):
            return failure(422, "Ошибка валидации", errors)
        return envelope(self.change_record(record, body))

    @route("DELETE", r"/api/v1/record/(?P<company>\d+)/(?P<ident>\d+)")
    async def delete_record(self, call: Call, company: str, ident: str) -> Reply:
        """Delete a record: 204 without a body."""
        if (refused := self.denied(call, company)) is not None:
            return refused
        record = self._live_record(ident)
        if record is None:
            return self.not_found(call)
        self.remove_record(record)
        return Reply(204)

    # ---- clients -------------------------------------------------------------------------------------
    def make_client(self, data: dict[str, Any], *, notify: bool = True) -> dict[str, Any]:
        """Create a client (phone kept as a JSON number, as the spec's examples show); `create` webhook."""
        ident = self.next_id()
        moment = self.stamp("client", ident)
        client = {"id": ident, "name": data.get("name", ""), "phone": int(re.sub(r"\D", "", str(data["phone"]))),
                  "categories": [], "sex": "Неизвестно", "sex_id": 0, "discount": 0, "importance_id": 0,
                  "importance": "", "spent": 0, "balance": 0, "visits": 0, "sms_check": 0, "sms_not": 0,
                  "custom_fields": {}, "last_change_date": self.compact(moment),
                  **{k: data.get(k, v) for k, v in CLIENT_RESETS.items()}}
        client["categories"] = self._categories(data.get("labels") or data.get("categories") or [])
        self.clients[ident] = client
        if notify:
            self.notify("client", ident, "create", dict(client))
        return client

    def seed_client(self, ident: int, data: dict[str, Any]) -> dict[str, Any]:
        """A client the company already has under `ident` (a test's `given:`), replacing one of that id or that
        phone (YCLIENTS keeps one client per phone); no webhook."""
        digits = re.sub(r"\D", "", str(data.get("phone") or ""))
        for other in [c for c in self.clients.values() if re.sub(r"\D", "", str(c["phone"])) == digits]:
            del self.clients[other["id"]]
        client = self.make_client(data, notify=False)
        del self.clients[client["id"]]
        client["id"] = ident
        self.clients[ident] = client
        return client

    def seed_record(self, ident: int, body: dict[str, Any], *, client: int | None = None) -> dict[str, Any]:
        """A record the company already has under `ident` (a test's `given:`), with its attendance and the client
        of that id, replacing one of that id; no webhook."""
        record = self.make_record(body, notify=False)
        del self.records[record["id"]]
        record["id"] = ident
        record["client"] = self._client_brief(self.clients.get(client)) if client is not None else None
        self.records[ident] = record
        return record

    def _categories(self, ids: list[Any]) -> list[dict[str, Any]]:
        out = []
        for item in ids:
            ident: Any = item.get("id") if isinstance(item, dict) else item
            label = self.labels.get(int(ident)) if str(ident).isdigit() else None
            if label is not None:
                out.append({"id": label["id"], "title": label["title"], "color": label["color"]})
        return out

    def _client_errors(self, body: dict[str, Any]) -> list[dict[str, str]]:
        errors = [{key: "Обязательное поле"} for key in ("name", "phone") if body.get(key) in (None, "")]
        digits = re.sub(r"\D", "", str(body.get("phone") or ""))
        if body.get("phone") not in (None, "") and not 10 <= len(digits) <= 15:
            errors.append({"phone": "Неверный формат телефона"})
        for item in body.get("labels") or body.get("categories") or []:
            ident: Any = item.get("id") if isinstance(item, dict) else item
            label = self.labels.get(int(ident)) if str(ident).isdigit() else None
            if label is None or label["entity"] != 1 or label["deleted"]:
                errors.append({"labels": f"Категория {ident} не найдена"})
        return errors

    @route("POST", r"/api/v1/clients/(?P<company>\d+)")
    async def create_client(self, call: Call, company: str) -> Reply:
        """Create a client: name and phone required; 201."""
        if (refused := self.denied(call, company)) is not None:
            return refused
        body = call.json() or {}
        if errors := self._client_errors(body):
            return failure(422, "Ошибка валидации", errors)
        return envelope(self.make_client(body), status=201)

    @route("GET", r"/api/v1/client/(?P<company>\d+)/(?P<ident>\d+)")
    async def get_client(self, call: Call, company: str, ident: str) -> Reply:
        """One client with its categories as objects."""
        if (refused := self.denied(call, company)) is not None:
            return refused
        client = self.clients.get(int(ident))
        return envelope(client) if client else self.not_found(call)

    @route("PUT", r"/api/v1/client/(?P<company>\d+)/(?P<ident>\d+)")
    async def put_client(self, call: Call, company: str, ident: str) -> Reply:
        """A full update: name and phone required; `labels` (or `categories`) ids replace the categories."""
        if (refused := self.denied(call, company)) is not None:
            return refused
        client = self.clients.get(int(ident))
        if client is None:
            return self.not_found(call)
        body = call.json() or {}
        if errors := self._client_errors(body):
            return failure(422, "Ошибка валидации", errors)
        return envelope(self.change_client(client, body))

    def change_client(self, client: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        """Apply a full client update and send its `update` webhook."""
        client["name"] = body["name"]
        client["phone"] = int(re.sub(r"\D", "", str(body["phone"])))
        for key, default in CLIENT_RESETS.items():
            client[key] = body.get(key, default)
        for key in ("sex_id", "importance_id", "discount", "sms_check", "sms_not", "custom_fields"):
            if key in body:
                client[key] = body[key]
        chosen = body.get("labels", body.get("categories"))
        if chosen is not None:
            client["categories"] = self._categories(chosen)
        client["last_change_date"] = self.compact(self.stamp("client", client["id"]))
        self.notify("client", client["id"], "update", dict(client))
        return client

    @route("POST", r"/api/v1/company/(?P<company>\d+)/clients/search")
    async def search_clients(self, call: Call, company: str) -> Reply:
        """Search with `quick_search`, `category` and `id` filters, paging by `page`/`page_size` (max 200)."""
        if (refused := self.denied(call, company)) is not None:
            return refused
        body = call.json() or {}
        tests = []
        for item in body.get("filters") or []:
            value: Any = (item.get("state") or {}).get("value")
            if item.get("type") == "quick_search":
                needle = str(value).lower()
                tests.append(lambda c, n=needle: n in str(c["phone"]) or n in c["name"].lower()
                             or n in str(c.get("email", "")).lower())
            elif item.get("type") == "category":
                wanted = {int(v) for v in value or []}
                tests.append(lambda c, w=wanted: bool(w & {x["id"] for x in c["categories"]}))
            elif item.get("type") == "id":
                wanted = {int(v) for v in (value if isinstance(value, list) else [value])}
                tests.append(lambda c, w=wanted: c["id"] in w)
        combine = all if str(body.get("operation", "AND")).upper() == "AND" else any
        found = [c for c in self.clients.values() if not tests or combine(t(c) for t in tests)]
        found.sort(key=lambda c: c.get(body.get("order_by") or "id") or 0,
                   reverse=str(body.get("order_by_direction", "desc")).lower() == "desc")
        size = min(200, max(1, int(body.get("page_size") or 25)))
        page = max(1, int(body.get("page") or 1))
        fields = body.get("fields")
        chunk = [{k: c[k] for k in fields if k in c} if fields else c for c in found[(page - 1) * size: page * size]]
        return envelope(chunk, {"total_count": len(found)})

    # ---- categories (labels) -------------------------------------------------------------------------
    @route("GET", r"/api/v1/labels/(?P<company>\d+)/(?P<entity>\w+)")
    async def list_labels(self, call: Call, company: str, entity: str) -> Reply:
        """Categories of one entity: 1 (or `clients`) for clients, 2 (or `records`) for records."""
        if (refused := self.denied(call, company)) is not None:
            return refused
        kind = {"1": 1, "clients": 1, "2": 2, "records": 2}.get(entity)
        if kind is None:
            return self.not_found(call)
        return envelope([x for x in self.labels.values() if x["entity"] == kind and not x["deleted"]])

    @route("POST", r"/api/v1/labels/(?P<company>\d+)")
    async def create_label(self, call: Call, company: str) -> Reply:
        """Create a category from the JSON body or query parameters (the generated client sends the latter);
        the id comes back as a string, as in the spec."""
        if (refused := self.denied(call, company)) is not None:
            return refused
        body = {**call.query, **(call.json() or {})}
        errors = [{key: "Обязательное поле"} for key in ("title", "entity") if body.get(key) in (None, "")]
        if not errors and str(body["entity"]) not in ("1", "2"):
            errors.append({"entity": "Неверное значение"})
        if errors:
            return failure(422, "Ошибка валидации", errors)
        label = self.add_label(str(body["title"]), str(body.get("color") or "#cccccc"), int(body["entity"]))
        return envelope({"id": str(label["id"]), "title": label["title"], "salon_id": label["salon_id"],
                         "color": label["color"], "entity": label["entity"]}, status=201)

    # ---- loyalty -------------------------------------------------------------------------------------
    @route("GET", r"/api/v1/loyalty/client_cards/(?P<client>\d+)")
    async def client_cards(self, call: Call, client: str) -> Reply:
        """The chain's cards of a client by id."""
        if (refused := self.denied(call)) is not None:
            return refused
        if int(client) not in self.clients:
            return self.not_found(call)
        return envelope(self.cards.get(int(client), []))

    @route("GET", r"/api/v1/loyalty/cards/(?P<phone>\d+)/(?P<chain>\d+)/(?P<company>\d+)")
    async def cards_by_phone(self, call: Call, phone: str, chain: str, company: str) -> Reply:
        """The chain's cards of a client by phone."""
        if (refused := self.denied(call, company)) is not None:
            return refused
        if int(chain) != self.chain_id:
            return self.not_found(call)
        owners = [c["id"] for c in self.clients.values() if str(c["phone"]) == phone]
        return envelope([card for owner in owners for card in self.cards.get(owner, [])])

    def _owner_of(self, phone: str) -> dict[str, Any] | None:
        digits = re.sub(r"\D", "", phone)
        return next((c for c in self.clients.values() if re.sub(r"\D", "", str(c["phone"])) == digits), None) \
            if digits else None

    def _card(self, ident: str) -> dict[str, Any] | None:
        return next((c for cards in self.cards.values() for c in cards if str(c["id"]) == ident), None)

    @route("POST", r"/api/v1/loyalty/cards/(?P<company>\d+)")
    async def issue_card(self, call: Call, company: str) -> Reply:
        """Issue a card `{loyalty_card_number, loyalty_card_type_id, phone}` to the company's client with that
        phone: 201 with the card. An unknown phone or type, or a number the chain has already, is a 422 (status
        and texts assumed: no capture of a refused issue exists)."""
        if (refused := self.denied(call, company)) is not None:
            return refused
        body = call.json() or {}
        errors = [{key: "Обязательное поле"} for key in ("loyalty_card_number", "loyalty_card_type_id", "phone")
                  if body.get(key) in (None, "")]
        if errors:
            return failure(422, "Ошибка валидации", errors)
        owner = self._owner_of(str(body["phone"]))
        if owner is None:
            return failure(422, "Ошибка валидации", [{"phone": "Клиент не найден"}])
        if not str(body["loyalty_card_type_id"]).isdigit() or int(body["loyalty_card_type_id"]) not in self.card_types:
            return failure(422, "Ошибка валидации", [{"loyalty_card_type_id": "Тип карты не найден"}])
        number = str(body["loyalty_card_number"])
        if any(c["number"] == number for cards in self.cards.values() for c in cards):
            return failure(422, "Ошибка валидации", [{"loyalty_card_number": "Карта с таким номером уже существует"}])
        return envelope(self.add_card(owner["id"], number, 0, int(body["loyalty_card_type_id"])), status=201)

    @route("POST", r"/api/v1/(?P<level>company|chain)/(?P<owner>\d+)/loyalty/cards/(?P<card>\d+)/manual_transaction")
    async def manual_transaction(self, call: Call, level: str, owner: str, card: str) -> Reply:
        """A manual top-up (amount > 0) or write-off (< 0) `{amount, title}`: 200 with the card after it. The
        amount is read as the exact decimal it is written as. A write-off past the balance is refused with 422
        (assumed: YCLIENTS' answer to it was never captured)."""
        if (refused := self.denied(call, owner if level == "company" else None)) is not None:
            return refused
        if level == "chain" and int(owner) != self.chain_id:
            return self.not_found(call)
        found = self._card(card)
        if found is None:
            return self.not_found(call)
        body = json.loads(call.body, parse_float=Decimal) if call.body else {}
        amount = body.get("amount") if isinstance(body, dict) else None
        if isinstance(amount, bool) or not isinstance(amount, (int, Decimal)) or amount == 0:
            return failure(422, "Ошибка валидации", [{"amount": "Обязательное поле"}])
        balance = Decimal(str(found["balance"])) + amount
        if balance < 0:
            return failure(422, "Недостаточно средств на карте")
        found["balance"] = wire_number(balance)
        self.loyalty_transactions.append({"id": self.next_id(), "card_id": found["id"], "amount": wire_number(amount),
                                          "type_id": 5 if amount > 0 else 6, "title": str(body.get("title") or ""),
                                          "salon_group_id": self.chain_id})
        return envelope(found)

    def _by_phone(self, call: Call, kind: dict[int, list[dict[str, Any]]]) -> Reply:
        """What a client has of certificates or abonements, by `company_id` and `phone` (both required)."""
        company, phone = call.query.get("company_id", ""), call.query.get("phone", "")
        if not company.isdigit() or not phone:
            return failure(422, "Ошибка валидации", [{"company_id" if not company.isdigit() else "phone":
                                                      "Обязательное поле"}])
        if (refused := self.denied(call, company)) is not None:
            return refused
        owner = self._owner_of(phone)
        return envelope(kind.get(owner["id"], []) if owner else [])

    @route("GET", r"/api/v1/loyalty/certificates/?")
    async def list_certificates(self, call: Call) -> Reply:
        """A client's gift certificates by phone."""
        return self._by_phone(call, self.certificates)

    @route("GET", r"/api/v1/loyalty/abonements/?")
    async def list_abonements(self, call: Call) -> Reply:
        """A client's abonements by phone."""
        return self._by_phone(call, self.abonements)

    @route("POST", r"/api/v1/chain/(?P<chain>\d+)/loyalty/abonements/(?P<ident>\d+)/(?P<verb>freeze|unfreeze)")
    async def freeze_abonement(self, call: Call, chain: str, ident: str, verb: str) -> Reply:
        """Freeze until `freeze_till` (yyyy-mm-dd) or unfreeze: 200 with the abonement. Freezing one already
        frozen moves its day, unfreezing one not frozen changes nothing (assumed); a type without freezing, or a
        freeze without a day, is a 422."""
        if (refused := self.denied(call)) is not None:
            return refused
        found = next((a for items in self.abonements.values() for a in items if str(a["id"]) == ident), None)
        if int(chain) != self.chain_id or found is None:
            return self.not_found(call)
        if verb == "unfreeze":
            found.update({"is_frozen": False, "freeze_till": None})
            return envelope(found)
        till = str((call.json() or {}).get("freeze_till") or "")
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", till[:10]):
            return failure(422, "Ошибка валидации", [{"freeze_till": "Неверный формат даты"}])
        if not found["type"]["allow_freeze"]:
            return failure(422, "Заморозка абонемента этого типа запрещена")
        found.update({"is_frozen": True, "freeze_till": till[:10]})
        return envelope(found)

    # ---- control routes: what an admin does in the YCLIENTS UI ---------------------------------------
    async def control(self, call: Call, what: str) -> Reply:
        """`POST /_emulator/attendance {record_id, attendance}`, `/_emulator/record {staff_id, services, …}` (with `origin: {online,
        from_url, bookform_id, is_mobile, record_from}`: a client's online booking),
        `/_emulator/pay {record_id, amount}`, `/_emulator/refund {record_id, amount}` (money given back),
        `/_emulator/delete_record {record_id}`, `/_emulator/client {name, phone, …}` (with `id`: an update):
        changes made in the UI, each sending its webhook (a payment sends none)."""
        body = call.json() or {} if call.method == "POST" else {}
        if what == "attendance" and call.method == "POST":
            record = self._live_record(str(body.get("record_id")))
            if record is None or int(body.get("attendance", 9)) not in ATTENDANCE:
                return Reply(400, {"error": "need a live record_id and an attendance of 2, 1, 0 or -1"})
            return Reply(200, self.set_attendance(record, int(body["attendance"])))
        if what == "record" and call.method == "POST":
            if errors := self._record_errors(body):
                return Reply(400, {"error": errors})
            origin = body.pop("origin", None)
            return Reply(200, self.make_record(body, origin=origin if isinstance(origin, dict) else None))
        if what == "pay" and call.method == "POST":
            record = self._live_record(str(body.get("record_id")))
            if record is None or not isinstance(body.get("amount"), (int, float)):
                return Reply(400, {"error": "need a live record_id and an amount"})
            return Reply(200, self.pay(record, body["amount"]))
        if what == "refund" and call.method == "POST":
            record = self.records.get(int(body.get("record_id") or 0))
            if record is None or not isinstance(body.get("amount"), (int, float)) or body["amount"] <= 0:
                return Reply(400, {"error": "need a record_id and a positive amount to give back"})
            return Reply(200, self.refund(record, body["amount"]))
        if what == "delete_record" and call.method == "POST":
            record = self._live_record(str(body.get("record_id")))
            if record is None:
                return Reply(400, {"error": "no such live record"})
            self.remove_record(record)
            return Reply(200, record)
        if what == "client" and call.method == "POST":
            if body.get("id") is not None:
                client = self.clients.get(int(body["id"]))
                if client is None:
                    return Reply(400, {"error": "no such client"})
                return Reply(200, self.change_client(client, {**client, **body}))
            if errors := self._client_errors(body):
                return Reply(400, {"error": errors})
            return Reply(200, self.make_client(body))
        return await super().control(call, what)
