"""The YCLIENTS loyalty side of issue 16, against the emulator over real HTTP on 127.0.0.1: points mirrored as card
top-ups and write-offs (exact to the kopeck, never below zero, a card issued when allowed), a tier as a category,
certificates and abonements read, abonements frozen, a refund as `visit.refunded`; the errors the outbox
retries or parks; and what `validate` says of the params."""
from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from automator.actions import CANONICAL
from automator.clock import FakeClock
from automator.connector import ActionResult, ConfigError
from automator.connector_contract import Hooks, Swap
from automator.daemon.metrics import Metrics
from automator.daemon.outbox import Outbox
from automator.daemon.retry import RetryPolicy
from automator.daemon.storethread import StoreThread
from automator.emulator import Served
from automator.errors import Rejected, Retryable
from automator.model import Decision, Effect, Entity, EntityRef, Event
from automator_connectors.yclients import CARD_TYPE, Yclients
from automator_connectors.yclients.emulator import YclientsEmulator
from connector_support import sandbox_test
from test_yclients import (COMPANY, WEB, World, api_calls, control, hook, hooks, make, parse, perform,  # noqa: F401
                           servers, url, world)

CHAIN = 145071
NOW = datetime(2026, 3, 2, 7, 0, tzinfo=timezone.utc)
ANNA_PHONE = "79161234567"


def cards(url: str, **extra: Any) -> Yclients:
    """The connector with the chain and the card type set, as a salon with a points card writes it."""
    return make(url, chain_id=CHAIN, loyalty_card_type=CARD_TYPE, **extra)


def transactions(emu: YclientsEmulator) -> list[tuple[int, Any, int, str]]:
    return [(t["card_id"], t["amount"], t["type_id"], t["title"]) for t in emu.loyalty_transactions]


def sent(emu: YclientsEmulator, path_end: str) -> list[Any]:
    """The bodies of the calls to a path ending so, numbers read as exact decimals."""
    return [json.loads(c.body, parse_float=Decimal) for c in emu.calls if c.path.endswith(path_end)]


@pytest.fixture
def chain(world: World) -> World:
    world.emu.chain_id = CHAIN
    return world


# ---- loyalty.accrue ----------------------------------------------------------------------------------------

def test_accrue_tops_up_the_card_of_the_type_by_the_exact_amount(chain: World, url: str) -> None:
    cid = chain.anna["id"]
    other = chain.emu.add_card(cid, "77770001", balance=80, type_id=9000)
    card = chain.emu.add_card(cid, "01010101", balance=500)
    result = perform(cards(url), "loyalty.accrue", {"client": str(cid), "amount": "150.50", "program": "bonus",
                                                    "reason": "Бонусы за визит"})
    assert api_calls(chain.emu) == [("GET", f"/api/v1/loyalty/client_cards/{cid}"),
                                    ("POST", f"/api/v1/company/{COMPANY}/loyalty/cards/{card['id']}/manual_transaction")]
    raw = chain.emu.calls[-1].body.decode()
    assert raw == '{"amount":150.50,"title":"Бонусы за визит"}'  # the decimal as written, never through a float
    assert result.data == {"client": str(cid), "card": str(card["id"]), "number": "01010101", "amount": "150.50",
                           "balance": "650.50", "issued": False, "program": "bonus"}
    assert result.events == ()  # YCLIENTS sends no loyalty webhook: nothing echoes
    assert transactions(chain.emu) == [(card["id"], 150.5, 5, "Бонусы за визит")]
    assert card["balance"] == 650.5 and other["balance"] == 80  # the card of the other type is left alone
    # Small top-ups stay exact: 0.10 three times is 0.30 (in floats, 0.30000000000000004).
    for _ in range(3):
        perform(cards(url), "loyalty.accrue", {"client": str(cid), "amount": "0.10", "reason": "копейки"})
    assert Decimal(str(card["balance"])) == Decimal("650.80")


def test_a_client_without_a_card_gets_one_issued_when_the_settings_allow(chain: World, url: str) -> None:
    cid = chain.anna["id"]
    chain.emu.add_card_type("Бонусная карта", CARD_TYPE)
    result = perform(cards(url, issue_cards=True), "loyalty.accrue",
                     {"client": str(cid), "amount": 200, "reason": "Приветственные баллы"})
    issued, = chain.emu.cards[cid]
    assert api_calls(chain.emu) == [
        ("GET", f"/api/v1/loyalty/client_cards/{cid}"), ("GET", f"/api/v1/client/{COMPANY}/{cid}"),
        ("POST", f"/api/v1/loyalty/cards/{COMPANY}"),
        ("POST", f"/api/v1/company/{COMPANY}/loyalty/cards/{issued['id']}/manual_transaction")]
    assert sent(chain.emu, f"/loyalty/cards/{COMPANY}") == [
        {"loyalty_card_number": int(ANNA_PHONE), "loyalty_card_type_id": CARD_TYPE, "phone": int(ANNA_PHONE)}]
    assert (issued["number"], issued["type_id"], issued["balance"]) == (ANNA_PHONE, CARD_TYPE, 200)
    assert result.data["issued"] is True and result.data["balance"] == "200.00"
    # The next accrual finds the card: none is issued twice.
    perform(cards(url, issue_cards=True), "loyalty.accrue", {"client": str(cid), "amount": "1", "reason": "x"})
    assert len(chain.emu.cards[cid]) == 1 and issued["balance"] == 201


def test_no_card_and_issuing_off_is_refused_naming_the_setting(chain: World, url: str) -> None:
    cid = chain.anna["id"]
    chain.emu.add_card_type("Бонусная карта", CARD_TYPE)
    with pytest.raises(Rejected, match=r"no loyalty card of type 8230, and connector 'yc' has `issue_cards` off: "
                                       r"issue the card in YCLIENTS, or set issue_cards: true"):
        perform(cards(url), "loyalty.accrue", {"client": str(cid), "amount": "100", "reason": "Бонусы"})
    assert chain.emu.cards == {} and chain.emu.loyalty_transactions == []
    # Without a card type to issue one of, the setting to write is named.
    with pytest.raises(Rejected, match=r"has no loyalty card, and connector 'yc' sets no `loyalty_card_type`"):
        perform(make(url, issue_cards=True), "loyalty.accrue", {"client": str(cid), "amount": "100", "reason": "Б"})


def test_without_a_card_type_the_only_card_is_used_and_two_are_refused(world: World, url: str) -> None:
    cid = world.anna["id"]
    only = world.emu.add_card(cid, "01010101", balance=10)
    perform(make(url), "loyalty.accrue", {"client": str(cid), "amount": "5", "reason": "Бонусы"})
    assert only["balance"] == 15
    world.emu.add_card(cid, "02020202", balance=0, type_id=9000)
    with pytest.raises(Rejected, match=r"has 2 loyalty cards; set connector 'yc''s `loyalty_card_type` \(or the "
                                       r"action's card_type\)"):
        perform(make(url), "loyalty.accrue", {"client": str(cid), "amount": "5", "reason": "Бонусы"})
    result = perform(make(url), "loyalty.accrue", {"client": str(cid), "amount": "5", "reason": "Бонусы",
                                                   "card_type": "9000"})
    assert result.data["number"] == "02020202" and result.data["balance"] == "5.00"


@pytest.mark.parametrize(("amount", "message"), [
    ("0", "more than 0"), ("-5", "more than 0"), ("1.005", "at most two digits after the point"),
    (1.5, "decimal text"), ("12,50", "decimal text"), ("", "decimal text"), (None, "decimal text"),
    (True, "decimal text"), ("1e20", "less than 10\\^13"), ("NaN", "more than 0"),
])
def test_an_amount_that_is_not_exact_money_is_refused_before_any_call(chain: World, url: str, amount: Any,
                                                                     message: str) -> None:
    chain.emu.add_card(chain.anna["id"], "01010101", balance=500)
    with pytest.raises(Rejected, match=f"loyalty.accrue: .*{message}"):
        perform(cards(url), "loyalty.accrue", {"client": chain.anna["id"], "amount": amount, "reason": "Бонусы"})
    assert chain.emu.calls == []


def test_a_client_given_by_phone_is_read_through_the_chain_or_found(chain: World, url: str) -> None:
    card = chain.emu.add_card(chain.anna["id"], "01010101", balance=500)
    perform(cards(url), "loyalty.accrue", {"client": "+79161234567", "amount": "10", "reason": "Бонусы"})
    assert api_calls(chain.emu)[0] == ("GET", f"/api/v1/loyalty/cards/{ANNA_PHONE}/{CHAIN}/{COMPANY}")
    chain.emu.calls.clear()
    perform(make(url, loyalty_card_type=CARD_TYPE), "loyalty.accrue",
            {"client": "+79161234567", "amount": "10", "reason": "Бонусы"})
    assert api_calls(chain.emu)[:2] == [("POST", f"/api/v1/company/{COMPANY}/clients/search"),
                                        ("GET", f"/api/v1/loyalty/client_cards/{chain.anna['id']}")]
    assert card["balance"] == 520
    with pytest.raises(Rejected, match=r"has no client with phone \+79031110000 \(set `chain_id`"):
        perform(make(url), "loyalty.accrue", {"client": "+79031110000", "amount": "10", "reason": "Бонусы"})


# ---- loyalty.spend -----------------------------------------------------------------------------------------

def test_spend_writes_off_and_never_drives_the_card_below_zero(chain: World, url: str) -> None:
    cid = chain.anna["id"]
    card = chain.emu.add_card(cid, "01010101", balance=500)
    result = perform(cards(url), "loyalty.spend", {"client": cid, "amount": "99.50", "reason": "Оплата баллами"})
    assert sent(chain.emu, "/manual_transaction") == [{"amount": Decimal("-99.50"), "title": "Оплата баллами"}]
    assert result.data["amount"] == "-99.50" and result.data["balance"] == "400.50"
    assert transactions(chain.emu) == [(card["id"], -99.5, 6, "Оплата баллами")]
    chain.emu.calls.clear()
    with pytest.raises(Rejected, match=r"loyalty.spend: loyalty card 01010101 of client \d+ has 400.50, less than "
                                       r"400.51: a card is never driven below zero"):
        perform(cards(url), "loyalty.spend", {"client": cid, "amount": "400.51", "reason": "Оплата баллами"})
    assert [m for m, _ in api_calls(chain.emu)] == ["GET"]  # read, refused, nothing written off
    perform(cards(url), "loyalty.spend", {"client": cid, "amount": "400.50", "reason": "Оплата баллами"})
    assert card["balance"] == 0


def test_spend_from_no_card_is_refused_even_when_issuing_is_on(chain: World, url: str) -> None:
    chain.emu.add_card_type("Бонусная карта", CARD_TYPE)
    with pytest.raises(Rejected, match="has no loyalty card of type 8230: there is nothing to write off"):
        perform(cards(url, issue_cards=True), "loyalty.spend",
                {"client": chain.anna["id"], "amount": "1", "reason": "Оплата баллами"})
    assert chain.emu.cards == {}


def test_the_emulator_refuses_a_write_off_past_the_balance_itself(chain: World, url: str) -> None:
    card = chain.emu.add_card(chain.anna["id"], "01010101", balance=5)
    answer = WEB.post(f"{url}/api/v1/company/{COMPANY}/loyalty/cards/{card['id']}/manual_transaction",
                      content=b'{"amount":-5.01,"title":"x"}', headers=make(url).default_headers())
    assert (answer.status_code, answer.json()) == (422, {"success": False, "data": None,
                                                        "meta": {"message": "Недостаточно средств на карте"}})
    chain_path = f"{url}/api/v1/chain/{CHAIN}/loyalty/cards/{card['id']}/manual_transaction"
    answer = WEB.post(chain_path, content=b'{"amount":-5,"title":"x"}', headers=make(url).default_headers())
    assert answer.status_code == 200 and answer.json()["data"]["balance"] == 0


# ---- errors: what the outbox retries, parks or drops ---------------------------------------------------------

def test_a_server_error_is_retried_and_the_retry_tops_up_once(chain: World, url: str) -> None:
    card = chain.emu.add_card(chain.anna["id"], "01010101", balance=500)
    chain.emu.faults.update({"fail": {"status": 503, "count": 1}})
    params = {"client": chain.anna["id"], "amount": "150", "reason": "Бонусы"}
    with pytest.raises(Retryable, match="HTTP 503"):
        perform(cards(url), "loyalty.accrue", params)
    assert chain.emu.loyalty_transactions == []
    perform(cards(url), "loyalty.accrue", params)
    assert len(chain.emu.loyalty_transactions) == 1 and card["balance"] == 650


class LateTransactions:
    """The emulator, whose manual transactions are made at once but answered `late` seconds later: a timeout
    after the card changed."""

    def __init__(self, emulator: YclientsEmulator, late: float) -> None:
        self.emulator, self.late = emulator, late

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if not str(scope.get("path", "")).endswith("/manual_transaction"):
            await self.emulator(scope, receive, send)
            return
        held: list[Any] = []

        async def hold(message: Any) -> None:
            held.append(message)
        await self.emulator(scope, receive, hold)
        await asyncio.sleep(self.late)
        for message in held:
            await send(message)


class Outboxed(Yclients):
    """The connector, telling the test when a try has ended."""

    ended: asyncio.Event | None = None

    async def perform(self, action_name: str, params: Mapping[str, Any], key: str) -> ActionResult:  # type: ignore[override]
        try:
            return await super().perform(action_name, params, key)
        finally:
            if self.ended is not None:
                self.ended.set()


def test_a_timeout_on_the_transaction_is_parked_and_never_performed_twice(
        chain: World, url: str, servers: tuple[Served, Swap, Served, Hooks], tmp_path: Path) -> None:
    card = chain.emu.add_card(chain.anna["id"], "01010101", balance=500)
    swap = servers[1]
    swap.app = LateTransactions(chain.emu, 1.0)
    engine = StoreThread(tmp_path / "outbox.db", "engine", synchronous="NORMAL")
    clock = FakeClock(NOW)
    params = {"client": str(chain.anna["id"]), "amount": "150", "reason": "Бонусы за визит"}
    assert CANONICAL["loyalty.accrue"].delivery == "at_most_once" and not Yclients.deduplicates
    effect = Effect(key="accrue-1", run_id="run-1", rule_id="loyalty", action="loyalty.accrue", connector="yc",
                    params=params, delivery="at_most_once", at=NOW, entity=EntityRef("client", "anna"))
    engine.executor.submit(engine.store.apply, Decision(event=Event(id="t", type="x.y", at=NOW), entity_before=None,
                                                        entity_after=None, effects=(effect,))).result()

    def life(wait_for_a_try: bool) -> Outboxed:
        connector = Outboxed("yc", cards(url).config)
        stopping = asyncio.Event()
        connector.ended = stopping
        outbox = Outbox(engine, lambda: {"yc": connector}, worker="w", clock=clock, metrics=Metrics(),
                        policy=RetryPolicy(), deadline=0.3)

        async def main() -> None:
            if not wait_for_a_try:
                asyncio.get_running_loop().call_later(0.5, stopping.set)
            async with asyncio.timeout(10):
                await outbox.run(stopping)
            await connector.aclose()
        asyncio.run(main())
        return connector

    def row() -> dict[str, Any]:
        return engine.executor.submit(
            lambda: next(engine.store.db.query("select * from effects where key = 'accrue-1'"))).result()

    try:
        life(wait_for_a_try=True)
        first = row()
        assert first["status"] == "uncertain" and "at_most_once: not repeated" in first["error"]
        clock.advance(timedelta(hours=1))  # long past any retry's backoff: a parked effect stays parked
        life(wait_for_a_try=False)
        assert row()["status"] == "uncertain" and row()["attempts"] == first["attempts"]
    finally:
        engine.close()
        swap.app = chain.emu
    # The card changed once, though its answer never came in time.
    posts = [c for c in chain.emu.calls if c.path.endswith("/manual_transaction")]
    assert len(posts) == 1 and len(chain.emu.loyalty_transactions) == 1 and card["balance"] == 650


# ---- loyalty.set_tier ----------------------------------------------------------------------------------------

def test_a_tier_is_the_clients_category_of_its_group(world: World, url: str) -> None:
    cid = world.anna["id"]
    gold = world.emu.add_label("Золото")
    tiered = make(url, category_groups={"tier": ["Золото", "Серебро"], "visits": ["Постоянный", "Новый"]})
    silver = world.emu.add_label("Серебро")
    world.anna["categories"].append({"id": silver["id"], "title": "Серебро", "color": "#ccc"})
    result = perform(tiered, "loyalty.set_tier", {"client": str(cid), "tier": "gold", "program": "discount",
                                                  "category": "Золото"})
    assert [c["title"] for c in world.emu.clients[cid]["categories"]] == ["Постоянный", "Золото"]
    assert result.data == {"client": str(cid), "category": "Золото", "category_id": str(gold["id"]),
                           "changed": True, "removed": ["Серебро"], "tier": "gold", "program": "discount"}
    event, = result.events
    assert event.type == "client.updated" and event.data["categories"] == ["Постоянный", "Золото"]
    # The echo the engine expects is that category; the tier's name stands for it when none is given.
    assert CANONICAL["loyalty.set_tier"].echo({"tier": "gold", "category": "Золото"}) == {"category": "Золото"}
    assert CANONICAL["loyalty.set_tier"].echo({"tier": "Золото"}) == {"category": "Золото"}
    again = perform(tiered, "loyalty.set_tier", {"client": str(cid), "tier": "Золото"})
    assert again.data["changed"] is False and again.events == ()
    with pytest.raises(Rejected, match=r"loyalty.set_tier: company \d+ has no client category 'Платина'"):
        perform(tiered, "loyalty.set_tier", {"client": str(cid), "tier": "platinum", "category": "Платина"})


# ---- certificates and abonements -------------------------------------------------------------------------------

def test_certificates_and_abonements_are_read_by_the_clients_phone(world: World, url: str) -> None:
    cid = world.anna["id"]
    gift = world.emu.add_certificate(cid, "GC-77", 5000, balance=1250, expires="2026-12-31")
    ticket = world.emu.add_abonement(cid, "A-0042", 10, expires="2026-09-30")
    world.emu.add_certificate(world.emu.make_client({"name": "Борис", "phone": "79031112233"}, notify=False)["id"],
                              "GC-78", 3000)
    result = perform(make(url), "yclients.certificates", {"client": str(cid)})
    assert api_calls(world.emu) == [("GET", f"/api/v1/client/{COMPANY}/{cid}"), ("GET", "/api/v1/loyalty/certificates/")]
    assert world.emu.calls[-1].query == {"company_id": str(COMPANY), "phone": ANNA_PHONE}
    assert result.data == {"client": str(cid), "certificates": [
        {"id": str(gift["id"]), "number": "GC-77", "balance": "1250.00", "nominal": "5000.00",
         "type": "Сертификат 5000", "type_id": 501, "status": "Активен", "created": gift["created_date"],
         "expires": "2026-12-31"}]}
    world.emu.calls.clear()
    result = perform(make(url), "yclients.abonements", {"client": "+79161234567"})
    assert api_calls(world.emu) == [("GET", "/api/v1/loyalty/abonements/")]
    assert result.data == {"client": "+79161234567", "abonements": [
        {"id": str(ticket["id"]), "number": "A-0042", "type": "Абонемент на 10 посещений", "type_id": 701,
         "balance": "10 посещений", "frozen": False, "freeze_period": 0, "expires": "2026-09-30",
         "status": "Активирован"}]}
    assert perform(make(url), "yclients.abonements", {"client": "+79990000000"}).data["abonements"] == []


def test_an_abonement_is_frozen_and_unfrozen_through_the_chain(chain: World, url: str) -> None:
    ticket = chain.emu.add_abonement(chain.anna["id"], "A-0042", 10)
    result = perform(cards(url), "yclients.abonement_freeze", {"abonement": ticket["id"], "till": "2026-04-15"})
    assert api_calls(chain.emu) == [("POST", f"/api/v1/chain/{CHAIN}/loyalty/abonements/{ticket['id']}/freeze")]
    assert sent(chain.emu, "/freeze") == [{"freeze_till": "2026-04-15"}]
    assert result.data == {"abonement": str(ticket["id"]), "frozen": True, "till": "2026-04-15",
                           "expires": "2027-06-30"}
    assert ticket["is_frozen"] is True
    perform(cards(url), "yclients.abonement_unfreeze", {"abonement": ticket["id"]})
    assert ticket["is_frozen"] is False
    chain.emu.calls.clear()
    with pytest.raises(Rejected, match=r"connector 'yc' sets no `chain_id` \(abonements belong to the chain"):
        perform(make(url), "yclients.abonement_freeze", {"abonement": ticket["id"], "till": "2026-04-15"})
    with pytest.raises(Rejected, match="a day is yyyy-mm-dd"):
        perform(cards(url), "yclients.abonement_freeze", {"abonement": ticket["id"], "till": "15.04.2026"})
    assert chain.emu.calls == []
    fixed = chain.emu.add_abonement(chain.anna["id"], "A-0043", 5, allow_freeze=False)
    with pytest.raises(Rejected, match="HTTP 422: Заморозка абонемента этого типа запрещена"):
        perform(cards(url), "yclients.abonement_freeze", {"abonement": fixed["id"], "till": "2026-04-15"})


# ---- a refund --------------------------------------------------------------------------------------------------

def test_money_given_back_for_a_visit_is_visit_refunded(world: World, url: str, hooks: Hooks) -> None:
    record = world.record
    control(url, "attendance", {"record_id": record["id"], "attendance": 1})
    control(url, "pay", {"record_id": record["id"], "amount": 4000})
    control(url, "refund", {"record_id": record["id"], "amount": 1500.5})
    got = hooks.wait(2)
    refund = [json.loads(h.body) for h in got if json.loads(h.body)["resource"] == "finances_operation"]
    assert len(refund) == 1 and refund[0]["data"]["amount"] == -1500.5
    events = parse(make(url), got[-1])
    assert [(e.type, str(e.entity), e.data) for e in events] == [
        ("visit.refunded", f"client:{world.anna['id']}",
         {"visit": str(record["id"]), "booking": str(record["id"]), "amount": "1500.50", "currency": "RUB"})]
    # The visit is the one visit.completed named; a repeated webhook carries the same delivery id.
    visit = next(e for e in parse(make(url), got[0]) if e.type == "visit.completed")
    assert visit.data["visit"] == events[0].data["visit"]
    assert parse(make(url), got[-1])[0].delivery_id == events[0].delivery_id == \
        f"visit:record-{record['id']}:refund-{refund[0]['resource_id']}"


@pytest.mark.parametrize("change", [
    {"amount": 4000},  # a payment
    {"amount": -500, "record_id": 0},  # money given back, but of no record (a prepayment, goods)
    {"amount": -500, "client": []},  # of no client
    {"amount": "x"},
])
def test_other_cash_desk_operations_are_no_refund(world: World, url: str, change: dict[str, Any]) -> None:
    data = {"id": 199254095, "document_id": 258345769, "expense": {"id": 8, "title": "Прочие доходы"},
            "date": "2020-09-21T12:30:00+0400", "amount": 100, "comment": "", "master": [], "supplier": [],
            "account": {"id": 17433, "title": "Основная касса"},
            "client": {"id": 73168632, "name": "…", "phone": "+79996373955"},
            "record_id": 224086399, "visit_id": 189519462, "sold_item_id": 0, "sold_item_type": ""}
    body = {"company_id": COMPANY, "resource": "finances_operation", "resource_id": 199254095, "status": "create",
            "data": {**data, **change}}
    assert parse(make(url), hook(body)) == []
    # The captured operation itself, with its money negative, is one.
    refund = parse(make(url), hook({**body, "data": {**data, "amount": -100}}))
    assert [(e.type, e.data["amount"], e.at.isoformat()) for e in refund] == [
        ("visit.refunded", "100.00", "2020-09-21T12:30:00+04:00")]


# ---- settings, sandbox, validate ---------------------------------------------------------------------------------

def test_the_loyalty_settings_are_numbers(url: str) -> None:
    for key in ("chain_id", "loyalty_card_type"):
        with pytest.raises(ConfigError, match=f"{key} must be a number"):
            make(url, **{key: "сеть"})


def test_a_sandbox_has_a_chain_and_the_card_type_its_settings_name() -> None:
    settings, emu = Yclients.sandbox("yc", {"company_id": 307626, "chain_id": 77, "loyalty_card_type": 555},
                                     base_url="http://127.0.0.1:1", hook_url="http://127.0.0.1:2/hooks/yc")
    assert (settings["chain_id"], settings["loyalty_card_type"], emu.chain_id) == (77, 555, 77)
    anna = next(c for c in emu.clients.values() if c["name"] == "Анна")
    card, = emu.cards[anna["id"]]
    assert (card["type_id"], card["balance"], card["salon_group_id"]) == (555, 500, 77)
    default, emu = Yclients.sandbox("yc", {}, base_url="http://127.0.0.1:1", hook_url="http://127.0.0.1:2/h")
    assert (default["chain_id"], default["loyalty_card_type"]) == (1, CARD_TYPE) and CARD_TYPE in emu.card_types
    # A test's given client with a `card` has that loyalty card; given again, it keeps its balance.
    connector = Yclients("yc", default)
    given = Entity(EntityRef("client", "42"), {"name": "Вера", "phone": "+79161112233", "card": "55501"})
    connector.sandbox_given(emu, [given])
    card, = emu.cards[42]
    assert (card["number"], card["type_id"], card["balance"]) == ("55501", CARD_TYPE, 0)
    card["balance"] = 150
    connector.sandbox_given(emu, [given])
    assert emu.cards[42] == [card] and card["balance"] == 150


CONFIG = """\
timezone: Europe/Moscow
connectors:
  crm: {type: local}
  booking: {type: yclients, company_id: 307626, partner_token: "${env:YCLIENTS_PARTNER_TOKEN}",
            user_token: "${env:YCLIENTS_USER_TOKEN}", hook_secret: "${env:YCLIENTS_HOOK_SECRET}",
            categories: [VIP], category_groups: {tier: [Золото, Серебро]} EXTRA}
"""


@pytest.mark.parametrize(("step", "extra", "found"), [
    ("yclients.abonement_freeze: {abonement: 7, till: 2026-04-15}", "chain_id: 1", []),
    ("yclients.abonement_freeze: {abonement: 7, till: 2026-04-15}", "", ["sets no `chain_id`"]),
    ('yclients.abonement_freeze: {abonement: 7, till: "15.04"}', "chain_id: 1", ["'15.04' is not a day"]),
    ("yclients.certificates: {client: x1}", "", ["a YCLIENTS client id is a number"]),
    ('{loyalty.accrue: {amount: "150", reason: визит}, via: booking}', "loyalty_card_type: 8230",
     ["'loyalty.accrue' is performed by automator itself: `via:` does not apply",
      "loyalty.yaml's `sync:` names the booking system"]),
])
def test_validate_says_what_yclients_would_refuse(make_project: Callable[..., Any], step: str, extra: str,
                                                  found: list[str]) -> None:
    from automator.config.load import load_project
    from automator_connectors.local import LocalConnector

    rules = f"rules:\n  - id: r\n    when: {{event: visit.completed}}\n    do:\n      - {step}\n"
    root = make_project(rules, config=CONFIG.replace(" EXTRA", f", {extra}" if extra else ""))
    project, problems = load_project(root, connector_types={"local": LocalConnector, "yclients": Yclients})
    messages = [p.format() for p in problems or (project.warnings if project is not None else ())]
    assert all(any(f in m for m in messages) for f in found), messages
    assert len(messages) == (1 if found else 0), messages


@pytest.mark.parametrize(("loyalty", "extra", "found"), [
    ("programs: {cards: {default: true, points: {percent: 5}}}", "loyalty_card_type: 8230", []),
    ("programs: {cards: {default: true, points: {percent: 5}}}", "",
     ["loyalty.yaml:1:7: warning: connector 'booking' mirrors loyalty.accrue:", "sets no `loyalty_card_type`"]),
    ("programs: {cards: {default: true, tiers: {by: visits, levels: {gold: {from: 0, discount: 5, "
     "category: Золото}}}}}", "", []),
    ("programs: {cards: {default: true, tiers: {by: visits, levels: {platinum: {from: 0, discount: 5, "
     "category: Платина}}}}}", "", ["'Платина' is not among the client categories"]),
    ("programs: {cards: {default: true, tiers: {by: visits, levels: {vip: {from: 0, discount: 5, "
     "category: VIP}}}}}", "", ["'VIP' is in no group of connector 'booking' `category_groups:`",
                                "put the tiers' categories in one group"]),
])
def test_validate_says_what_yclients_would_refuse_of_the_ledgers_mirror(
        make_project: Callable[..., Any], loyalty: str, extra: str, found: list[str]) -> None:
    from automator.config.load import load_project
    from automator_connectors.local import LocalConnector

    root = make_project("rules: []\n", config=CONFIG.replace(" EXTRA", f", {extra}" if extra else ""))
    (root / "loyalty.yaml").write_text(f"sync: booking\n{loyalty}\n")
    project, problems = load_project(root, connector_types={"local": LocalConnector, "yclients": Yclients})
    messages = [p.format() for p in problems or (project.warnings if project is not None else ())]
    messages = [m for m in messages if "it has no rules" not in m]
    assert all(any(f in m for m in messages) for f in found), messages
    assert len(messages) == (1 if found else 0), messages


def test_certificate_and_abonement_issue_are_not_the_yclients_connectors() -> None:
    """YCLIENTS sells certificates and abonements through sale documents: its API has no call that issues one
    (reference part 2 §1.5), so its connector does not declare them; the engine and `local` do."""
    from automator_connectors.local import LocalConnector

    for name in ("certificate.issue", "abonement.issue"):
        assert name in CANONICAL and CANONICAL[name].delivery == "at_most_once"
        assert name not in Yclients.actions and name in LocalConnector.actions
    for name, delivery in (("loyalty.accrue", "at_most_once"), ("loyalty.spend", "at_most_once"),
                           ("loyalty.set_tier", "at_least_once")):
        assert Yclients.actions[name].delivery == CANONICAL[name].delivery == delivery
        assert CANONICAL[name].target == "client"
    assert "client.updated" in CANONICAL["loyalty.set_tier"].emits  # the mirror's answer; the ledger's own event too


def test_every_emulated_loyalty_route_answers_in_the_envelope(chain: World, url: str) -> None:
    headers = make(url).default_headers()
    for path in ("/api/v1/loyalty/certificates/", "/api/v1/loyalty/abonements/"):
        answer = WEB.get(f"{url}{path}", params={"company_id": COMPANY}, headers=headers)
        assert (answer.status_code, answer.json()["meta"]) == (422, {"message": "Ошибка валидации",
                                                                     "errors": [{"phone": "Обязательное поле"}]})
    answer = WEB.post(f"{url}/api/v1/loyalty/cards/{COMPANY}", json={"loyalty_card_number": 1,
                                                                     "loyalty_card_type_id": 1, "phone": 1},
                      headers=headers)
    assert answer.status_code == 422 and answer.json()["meta"]["errors"] == [{"phone": "Клиент не найден"}]
    answer = WEB.post(f"{url}/api/v1/company/{COMPANY}/loyalty/cards/999/manual_transaction",
                      json={"amount": 1, "title": "x"}, headers=headers)
    assert answer.status_code == 404 and answer.json()["success"] is False
    answer = WEB.post(f"{url}/api/v1/chain/{CHAIN}/loyalty/abonements/999/unfreeze", json={}, headers=headers)
    assert answer.status_code == 404


# ---- through `automator test --sandbox` ------------------------------------------------------------------------

SANDBOX_CONFIG = """\
timezone: Europe/Moscow
connectors:
  booking: {type: yclients, company_id: 307626, partner_token: "${env:YC_P}", user_token: "${env:YC_U}",
            hook_secret: "${env:YC_H}", loyalty_card_type: 8230}
  forms: {type: local, secret: "${env:FORMS_SECRET}", events: {points.pay: {entity: client, data: {amount: text}}}}
"""

SANDBOX_RULES = """\
rules:
  - id: points-for-a-visit
    when: {event: visit.completed}
    do:
      - loyalty.accrue: {amount: "{{ event.data.amount }}", reason: Бонусы за визит}
  - id: pay-with-points
    when: {event: points.pay}
    do:
      - loyalty.spend: {amount: "{{ event.data.amount }}", reason: Оплата баллами}
"""
# The product's ledger mirrored on the YCLIENTS card: each move is the ledger's, then the card's.
SANDBOX_LOYALTY = "sync: booking\nprograms:\n  cards: {default: true}\n"

SANDBOX_TEST = """\
name: a visit's points are on the client's YCLIENTS card, and can be spent to the last kopeck
load: ..
now: 2026-03-02T10:00:00+03:00
given:
  - {kind: client, id: 77, name: Вера, phone: "+79161112233", card: "55501"}
when:
  - {event: visit.completed, entity: {kind: client, id: 77}, data: {visit: "9001", amount: "1500.50"}}
  - {event: points.pay, entity: {kind: client, id: 77}, data: {amount: "%s"}}
expect:
  - {action: loyalty.accrue, params: {amount: "1500.50"}, count: 2}
  - {action: loyalty.spend, count: 2}
"""


def sandbox_run(tmp_path: Path, spent: str) -> tuple[int, str]:
    (tmp_path / "loyalty.yaml").write_text(SANDBOX_LOYALTY)
    return sandbox_test(tmp_path, SANDBOX_CONFIG, SANDBOX_RULES, SANDBOX_TEST % spent)


def test_points_accrued_in_the_sandbox_are_on_the_card_to_the_kopeck(tmp_path: Path) -> None:
    # The card's write-off of all 1500.50 succeeds (the emulator refuses one past the balance): the top-up was exact.
    assert sandbox_run(tmp_path, "1500.50") == (0, "1 passed, 0 failed\n")


def test_spending_a_kopeck_more_than_the_card_holds_fails_in_the_sandbox(tmp_path: Path) -> None:
    code, out = sandbox_run(tmp_path, "1500.51")
    assert code == 1 and "client 77 has 1500.50 points of program cards to spend, 1500.51 asked" in out, out
