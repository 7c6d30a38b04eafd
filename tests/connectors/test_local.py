"""The `local` connector: parse() of its generic JSON webhook (auth, shapes, refusals) and perform() once per key."""
from __future__ import annotations

import hmac
import json
from datetime import date, datetime, timedelta, timezone
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils

from automator.connector import Inbound
from automator.connector_contract import ConnectorContract, Hooks, Sandbox, Sandboxes
from automator.errors import InboundRejected
from automator.model import EntityRef
from automator.store.sqlite import SqliteStore
from automator_connectors.local import MAX_EVENTS_PER_REQUEST, LocalConnector

NOW = datetime(2026, 3, 2, 7, 0, tzinfo=timezone.utc)
SECRET = "hook-secret"


@pytest.fixture
def store() -> SqliteStore:
    s = SqliteStore()
    yield s
    s.close()


def local(store: SqliteStore, **config: Any) -> LocalConnector:
    return LocalConnector("crm", {"secret": SECRET, **config}, db=store.db, now=lambda: NOW)


def request(body: Any = None, *, raw: bytes | None = None, headers: dict[str, str] | None = None,
            query: dict[str, str] | None = None, received: datetime | None = NOW) -> Inbound:
    """A webhook carrying the right token, unless `headers` or `query` say otherwise."""
    data = raw if raw is not None else json.dumps(body).encode()
    if headers is None and query is None:
        headers = {"x-automator-token": SECRET}
    return Inbound(connector="crm", method="POST", path="/hooks/crm", query=query or {}, headers=headers or {},
                   body=data, received_at=received)


ONE = {"event": "booking.updated", "entity": {"kind": "booking", "id": 15}, "data": {"status": "arrived"},
       "delivery_id": "d-15"}


# ---- shapes ------------------------------------------------------------------------------------------------------

def test_one_event(store: SqliteStore) -> None:
    (event,) = local(store).parse(request(ONE))
    assert (event.type, event.entity, dict(event.data), event.source, event.delivery_id, event.at) == \
        ("booking.updated", EntityRef("booking", "15"), {"status": "arrived"}, "crm", "d-15", NOW)
    assert event.id.startswith("crm:") and (event.depth, event.caused_by, event.echo_of) == (0, None, None)


def test_a_list_and_an_events_object(store: SqliteStore) -> None:
    connector = local(store)
    second = {"type": "nps.received", "entity": {"kind": "client", "id": "7"}, "data": {"score": 9}}
    as_list = connector.parse(request([ONE, second]))
    as_object = connector.parse(request({"events": [ONE, second]}))
    assert [e.type for e in as_list] == ["booking.updated", "nps.received"]  # `type` is accepted for `event`
    assert as_list == as_object
    assert as_list[1].delivery_id is None and as_list[1].entity == EntityRef("client", "7")


def test_ids_are_deterministic(store: SqliteStore) -> None:
    connector = local(store)
    first = connector.parse(request(ONE))[0]
    # The same delivery, received again later: the same id, so the journal takes it once.
    assert connector.parse(request(ONE, received=NOW + timedelta(hours=1)))[0].id == first.id
    assert connector.parse(request({**ONE, "delivery_id": "d-16"}))[0].id != first.id
    bare = {k: v for k, v in ONE.items() if k != "delivery_id"}
    # Without a delivery id the moment is part of the identity: the same change an hour later is another event.
    a = connector.parse(request(bare))[0]
    assert connector.parse(request(bare))[0].id == a.id
    assert connector.parse(request(bare, received=NOW + timedelta(hours=1)))[0].id != a.id
    # `id` is read as the delivery id when `delivery_id` is absent.
    assert connector.parse(request({**bare, "id": "x-1"}))[0].delivery_id == "x-1"


def test_at_and_defaults(store: SqliteStore) -> None:
    connector = local(store)
    (event,) = connector.parse(request({"event": "lead.created", "at": "2026-03-01T10:00:00+03:00"}))
    assert event.at == datetime(2026, 3, 1, 7, 0, tzinfo=timezone.utc) and event.entity is None
    assert dict(event.data) == {}
    (event,) = connector.parse(request({"event": "lead.created"}, received=None))
    assert event.at == NOW  # no receive time given: the connector's clock


def test_an_inbound_event_cannot_claim_to_be_ours(store: SqliteStore) -> None:
    forged = {**ONE, "source": "timer", "depth": 7, "caused_by": "run/do/0", "echo_of": "rule-x"}
    (event,) = local(store).parse(request(forged))
    assert (event.source, event.depth, event.caused_by, event.echo_of) == ("crm", 0, None, None)
    with pytest.raises(InboundRejected) as caught:
        local(store).parse(request({"event": "timer.fired", "data": {"kind": "resume", "run": "r1"}}))
    assert caught.value.status == 400


# ---- auth --------------------------------------------------------------------------------------------------------

def test_token_in_header_or_query(store: SqliteStore) -> None:
    connector = local(store, secret=SECRET)
    assert len(connector.parse(request(ONE, headers={"x-automator-token": SECRET}))) == 1
    assert len(connector.parse(request(ONE, query={"token": SECRET}))) == 1


@pytest.mark.parametrize("headers, query", [
    ({}, {}),
    ({"x-automator-token": "wrong"}, {}),
    ({"x-automator-token": SECRET[:-1]}, {}),
    ({"x-automator-token": SECRET + " "}, {}),
    ({}, {"token": "wrong"}),
    ({"x-automator-token": ""}, {"token": ""}),
    ({"authorization": f"Bearer {SECRET}"}, {}),
])
def test_a_missing_or_wrong_token_is_401(store: SqliteStore, headers: dict[str, str], query: dict[str, str]) -> None:
    with pytest.raises(InboundRejected) as caught:
        local(store, secret=SECRET).parse(request(ONE, headers=headers, query=query))
    assert (caught.value.status, caught.value.word, caught.value.reason) == (401, "auth", "missing or wrong token")


def test_the_token_is_compared_in_constant_time(store: SqliteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    connector = local(store, secret=SECRET)
    with pytest.raises(InboundRejected):
        connector.parse(request(ONE, headers={"x-automator-token": "nope"}))
    connector.parse(request(ONE, headers={"x-automator-token": SECRET}))
    assert seen == [(b"nope", SECRET.encode()), (SECRET.encode(), SECRET.encode())]


def test_auth_is_checked_before_the_body_is_read(store: SqliteStore) -> None:
    with pytest.raises(InboundRejected) as caught:
        local(store, secret=SECRET).parse(request(raw=b"{not json", headers={}))
    assert caught.value.status == 401


@pytest.mark.parametrize("config", [{"secret": None}, {"secret": ""}])
def test_without_a_secret_it_accepts_no_webhook(store: SqliteStore, config: dict[str, Any]) -> None:
    connector = local(store, **config)
    assert connector.webhook_refusal == "connector 'crm' (local) has no `secret` set: it accepts no webhooks"
    for headers in ({}, {"x-automator-token": ""}, {"x-automator-token": "anything"}):
        with pytest.raises(InboundRejected) as caught:
            connector.parse(request(ONE, headers=headers))
        assert (caught.value.status, caught.value.word) == (401, "auth")


# ---- refusals ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, reason", [
    (b"{not json", "the body is not JSON: "),
    (b"\xff\xfe\xfa", "the body is not JSON: "),
    (b"", "event 1: expected an object"),
    (b"null", "event 1: expected an object"),
    (b"[]", f"expected 1 to {MAX_EVENTS_PER_REQUEST} events"),
    (b'{"events": []}', f"expected 1 to {MAX_EVENTS_PER_REQUEST} events"),
    (b'"booking.updated"', "event 1: expected an object"),
    (b'{"data": {}}', "event 1: 'event' must be a type such as booking.updated"),
    (b'{"event": "updated"}', "event 1: 'event' must be a type such as booking.updated"),
    (b'{"event": 5}', "event 1: 'event' must be a type such as booking.updated"),
    (b'{"event": "timer.fired"}', "event 1: 'event' must be a type such as booking.updated"),
    (b'{"event": "a.b", "entity": "booking:1"}', "event 1: 'entity' must be {kind, id}"),
    (b'{"event": "a.b", "entity": {"kind": "booking"}}', "event 1: 'entity' must be {kind, id}"),
    (b'{"event": "a.b", "entity": {"id": 1}}', "event 1: 'entity' must be {kind, id}"),
    (b'{"event": "a.b", "entity": {"kind": "booking", "id": ""}}', "event 1: 'entity' must be {kind, id}"),
    (b'{"event": "a.b", "data": [1, 2]}', "event 1: 'data' must be an object"),
    (b'{"event": "a.b", "at": "yesterday"}', "event 1: 'at' is not an ISO 8601 moment"),
    (b'{"event": "a.b", "at": "2026-03-02T10:00:00"}', "event 1: 'at' needs a UTC offset"),
    (b'[{"event": "a.b"}, {"event": "c.d"}, 3]', "event 3: expected an object"),
])
def test_malformed_bodies_are_400_with_a_reason(store: SqliteStore, raw: bytes, reason: str) -> None:
    with pytest.raises(InboundRejected) as caught:
        local(store).parse(request(raw=raw))
    assert caught.value.status == 400 and caught.value.word == "malformed"
    assert caught.value.reason.startswith(reason), caught.value.reason


def test_too_many_events_in_one_request(store: SqliteStore) -> None:
    connector = local(store)
    assert len(connector.parse(request([{"event": "a.b", "delivery_id": i} for i in range(MAX_EVENTS_PER_REQUEST)]))) \
        == MAX_EVENTS_PER_REQUEST
    with pytest.raises(InboundRejected) as caught:
        connector.parse(request([{"event": "a.b"}] * (MAX_EVENTS_PER_REQUEST + 1)))
    assert caught.value.status == 400


# ---- perform -----------------------------------------------------------------------------------------------------

def test_perform_is_idempotent_by_key(store: SqliteStore) -> None:
    connector = local(store)
    params = {"pipeline": "sales", "stage": "new", "title": "Визит", "contact": 7}
    first = connector.perform("deal.create", params, "run-1/do/0")
    again = connector.perform("deal.create", params, "run-1/do/0")
    assert again == first  # the same answer and the same events, ids included
    assert [e.id for e in first.events] == ["run-1/do/0>deal.created"]
    assert first.events[0].data == {"pipeline": "sales", "stage": "new", "title": "Визит", "client": "7"}
    assert store.db["local_deals"].count == 1
    other = connector.perform("deal.create", params, "run-2/do/0")
    assert other.data["id"] != first.data["id"] and store.db["local_deals"].count == 2


def test_each_action_once_per_key(store: SqliteStore) -> None:
    connector = local(store)
    calls = [
        ("task.create", {"title": "call", "assignee": "admin", "client": 7}),
        ("sms.send", {"to": "+79161234567", "text": "hi"}),
        ("booking.set_status", {"booking": 15, "status": "no_show"}),
        ("client.set_category", {"client": 7, "category": "vip"}),
        ("http.request", {"method": "POST", "url": "https://example.com/x", "json": {"a": 1}}),
    ]
    results = [connector.perform(name, params, f"k/{name}") for name, params in calls]
    repeated = [connector.perform(name, params, f"k/{name}") for name, params in calls]
    assert repeated == results
    for table in ("local_tasks", "local_messages", "local_bookings", "local_categories", "local_requests"):
        assert store.db[table].count == 1, table
    assert [e.type for r in results for e in r.events] == ["task.created", "booking.updated", "client.updated"]
    assert results[2].events[0].data == {"status": "no_show"} and results[4].data["status"] == 200


def test_a_rolled_back_perform_is_not_remembered(store: SqliteStore) -> None:
    connector = local(store)
    with pytest.raises(RuntimeError):
        with store.atomic():  # the caller's transaction, as when the outbox settles on the store thread
            connector.perform("sms.send", {"to": "+7", "text": "hi"}, "k1")
            raise RuntimeError("settling failed")
    assert store.db["local_done"].count == 0 and store.db["local_messages"].count == 0
    connector.perform("sms.send", {"to": "+7", "text": "hi"}, "k1")
    assert store.db["local_done"].count == 1 and store.db["local_messages"].count == 1


def test_a_failing_action_leaves_nothing(store: SqliteStore) -> None:
    connector = local(store)
    with pytest.raises(KeyError):
        connector.perform("task.create", {"title": "no assignee"}, "k1")
    assert store.db["local_done"].count == 0 and store.db["local_tasks"].count == 0
    assert not store.db.conn.in_transaction


def test_perform_on_a_file_database_commits(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "local.db")
    connector = local(store)
    connector.perform("notify", {"to": "admin", "text": "x"}, "k1")
    assert not store.db.conn.in_transaction
    import sqlite3

    other = sqlite3.connect(tmp_path / "local.db")
    assert other.execute("select count(*) from local_done").fetchone() == (1,)
    other.close()
    store.close()


class TestContract(ConnectorContract):
    type = "local"
    written = {"secret": "${env:FORMS_HOOK_TOKEN}"}

    def build(self, sandbox: Sandboxes) -> Sandbox:
        # No remote system: the connector writes into the daemon's own database.
        made = LocalConnector("it", {"secret": SECRET}, db=sqlite_utils.Database(memory=True), now=lambda: NOW)
        return Sandbox(made, None, "", Hooks("it"))

    def webhook(self, box: Sandbox, secret: str | None) -> Inbound:
        return request(ONE, headers={} if secret is None else {"x-automator-token": secret})

    def malformed(self, box: Sandbox) -> list[Inbound]:
        return [request(raw=raw) for raw in (b"{not json", b"[]", b'{"event": 5}')]

    async def spend_sample(self, box: Sandbox) -> tuple[date, date, int]:
        assert isinstance(box.connector, LocalConnector)
        box.connector.db["local_spend"].insert_all([
            {"day": day, "channel": "vk", "campaign": campaign, "amount_minor": 150050, "currency": "RUB"}
            for day in ("2026-02-28", "2026-03-01", "2026-03-02", "2026-03-03") for campaign in ("", "весна")])
        return date(2026, 3, 1), date(2026, 3, 2), 4

    async def samples(self, box: Sandbox) -> dict[str, Mapping[str, Any]]:
        deal = await box.created("deal.create", {"pipeline": "sales", "stage": "new", "title": "Анна"})
        return {"deal.create": {"pipeline": "sales", "stage": "new", "title": "Анна"},
                "deal.move": {"deal": deal, "stage": "won"}, "deal.update": {"deal": deal, "fields": {"amount": 10}},
                "booking.set_status": {"booking": "15", "status": "arrived"},
                "client.set_category": {"client": "7", "category": "VIP"},
                "task.create": {"title": "Позвонить", "assignee": "admin", "due": "1d", "deal": deal},
                "sms.send": {"to": "+79161234567", "text": "Привет"}, "message.send": {"to": "7", "text": "Привет"},
                "notify": {"to": "admin", "text": "Лид"},
                "email.send": {"to": "owner", "subject": "Заявка", "text": "Анна, +79161234567"},
                "report.send": {"report": "channels", "period": "last_week", "to": "owner"},
                "http.request": {"method": "POST", "url": "https://example.com/hook", "body": {"a": 1}},
                "client.add_category": {"client": "7", "category": "Аллергия"},
                "client.remove_category": {"client": "7", "category": "Новый"},
                "client.update": {"client": "7", "fields": {"email": "anna@example.com"}},
                "contact.update": {"contact": "7", "fields": {"responsible": "5"}},
                "booking.create": {"client": "7", "staff_id": 2835418, "services": [5034676],
                                   "datetime": "2026-03-15T12:00:00+03:00", "deal": deal},
                "booking.cancel": {"booking": "15"},
                "deal.assign": {"deal": deal, "to": "5"}, "lead.assign": {"lead": "301", "to": "5"},
                "note.add": {"deal": deal, "text": "Перезвонить после 18:00"},
                "loyalty.accrue": {"client": "7", "amount": "150", "program": "bonus", "reason": "Бонусы за визит"},
                "loyalty.spend": {"client": "7", "amount": "99.50", "program": "bonus", "reason": "Оплата баллами"},
                "loyalty.set_tier": {"client": "7", "tier": "gold", "program": "discount", "category": "Золото"},
                "certificate.issue": {"client": "7", "nominal": "5000", "type": "gift", "number": "GC-1"},
                "abonement.issue": {"client": "7", "type": "massage10", "visits": 10, "services": ["Массаж"]}}


def test_the_local_world_keeps_a_clients_categories_and_the_new_records(tmp_path: Path) -> None:
    """`automator test` plays every connector with `local`: the issue-13 actions do there what they do in the real
    systems, as far as automator's own store can tell."""
    import sqlite_utils
    from datetime import datetime, timezone

    from automator.config.load import builtin_connectors

    db = sqlite_utils.Database(tmp_path / "local.db")
    local = builtin_connectors()["local"]("staff", {}, db=db, now=lambda: datetime(2026, 3, 2, tzinfo=timezone.utc))
    local.perform("client.add_category", {"client": "7", "category": "VIP"}, "k1")
    local.perform("client.add_category", {"client": "7", "category": "Аллергия"}, "k2")
    removed = local.perform("client.remove_category", {"client": "7", "category": "VIP"}, "k3")
    assert removed.events[0].data == {"categories": ["Аллергия"]}
    booked = local.perform("booking.create", {"client": "7", "staff_id": 1, "services": [2],
                                              "datetime": "2026-03-15T12:00:00+03:00", "deal": "9"}, "k4")
    assert booked.events[0].type == "booking.created" and booked.events[0].data["deal"] == "9"
    again = local.perform("booking.create", {"client": "7", "staff_id": 1, "services": [2],
                                             "datetime": "2026-03-15T12:00:00+03:00"}, "k4")
    assert again.events == booked.events  # one effect key, one booking
    assigned = local.perform("lead.assign", {"lead": "301", "to": "5"}, "k5")
    assert assigned.events[0].type == "lead.updated" and assigned.events[0].data == {"lead_id": "301",
                                                                                     "responsible": "5"}


def test_the_local_world_records_the_loyalty_actions(tmp_path: Path) -> None:
    """The loyalty actions a rule (or the ledger's mirror) asks of `local` are kept, one row each, exactly as
    given; a tier is the client's category, as YCLIENTS shows it."""
    import sqlite_utils
    from datetime import datetime, timezone

    from automator.config.load import builtin_connectors

    db = sqlite_utils.Database(tmp_path / "local.db")
    local = builtin_connectors()["local"]("staff", {}, db=db, now=lambda: datetime(2026, 3, 2, tzinfo=timezone.utc))
    local.perform("loyalty.accrue", {"client": "7", "amount": "150.50", "program": "bonus", "reason": "визит"}, "a")
    local.perform("loyalty.accrue", {"client": "7", "amount": "150.50", "program": "bonus", "reason": "визит"}, "a")
    tier = local.perform("loyalty.set_tier", {"client": "7", "tier": "gold", "category": "Золото"}, "t")
    local.perform("certificate.issue", {"client": "7", "nominal": "5000", "type": "gift", "expires": "2027-01-31"},
                  "c")
    rows = [(r["action"], r["client"], r["program"], r["amount"], json.loads(r["detail"]))
            for r in db.table("local_loyalty").rows_where(order_by="id")]
    assert rows == [("loyalty.accrue", "7", "bonus", "150.50", {"reason": "визит"}),
                    ("loyalty.set_tier", "7", None, None, {"category": "Золото", "tier": "gold"}),
                    ("certificate.issue", "7", None, "5000", {"expires": "2027-01-31", "type": "gift"})]
    assert [(e.type, e.data) for e in tier.events] == [("client.updated", {"category": "Золото"})]
