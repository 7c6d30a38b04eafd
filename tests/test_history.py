"""A client's history: visits from events into the decision, the derived fields (kept one decision at a time and
recomputed in SQL, alike), exact money in expressions, `automator import visits`, `automator backfill` and a
test's `given:` visits."""
from __future__ import annotations

import random
import textwrap
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import pytest

from automator import history
from automator.config.load import load_project
from automator.config.project import Project
from automator.core.decide import decide
from automator.model import Entity, EntityRef, Event, Visit
from automator.store.sqlite import SqliteStore
from automator.testing import report, run_tests
from tests.cli_support import invoke

MSK = ZoneInfo("Europe/Moscow")
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=MSK)

RULES = """
    rules:
      - id: thanks
        when: {event: visit.completed}
        do:
          - notify: {to: admin, text: "{{ client.visit_count }} visits, {{ client.total_spent }} paid, {{ event.amount }} now"}
      - id: tenth
        when: {changed: client.visit_count, to: 10}
        do:
          - notify: {to: admin, text: tenth visit}
    """


@pytest.fixture
def project(make_project: Callable[..., Path]) -> Project:
    loaded, problems = load_project(make_project(RULES))
    assert loaded is not None, problems
    return loaded


def visit_event(visit: str, at: str, amount: Any = "1500.00", client: str = "77", *, category: str | None = None,
                type_: str = "visit.completed", source: str = "booking") -> Event:
    data: dict[str, Any] = {"visit": visit, "at": at, "amount": amount, "currency": "RUB", "services": ["Осмотр"]}
    if category:
        data["service_category"] = category
    return Event(id=f"e-{visit}-{at}", type=type_, at=NOW, entity=EntityRef("client", client), data=data,
                 source=source)


def decided(project: Project, store: SqliteStore, event: Event) -> Any:
    decision = decide(project, store, event, NOW)
    store.apply(decision)
    return decision


# ---- visits from events ---------------------------------------------------------------------------------------

def test_a_visit_event_keeps_the_visit_and_derives_the_clients_fields_in_the_same_decision(project: Project) -> None:
    store = SqliteStore()
    store.put_entity(Entity(EntityRef("client", "77"), {"name": "Анна"}, NOW))
    decision = decided(project, store, visit_event("501", "2026-02-01T10:00:00+03:00", "1500.50",
                                                   category="Стоматология"))
    assert [(v.id, v.client, v.amount, v.category) for v in decision.visits] == [("booking:501", "77", 150050,
                                                                                  "Стоматология")]
    fields = decision.entity_after.fields
    assert fields["name"] == "Анна" and fields["visit_count"] == 1 and fields["total_spent"] == "1500.50"
    assert fields["average_check"] == "1500.50" and fields["last_visit_at"] == "2026-02-01T07:00:00.000000+00:00"
    assert fields["services"]["Стоматология"]["visit_count"] == 1
    # The rule on the event reads the new figures, money as exact decimal text.
    effects = [e.params["text"] for e in decision.effects]
    assert effects == ["1 visits, 1500.50 paid, 1500.50 now"]
    assert store.visits_of("77")[0].amount == 150050


def test_a_repeated_visit_adds_nothing(project: Project) -> None:
    store = SqliteStore()
    decided(project, store, visit_event("501", "2026-02-01T10:00:00+03:00"))
    again = decided(project, store, visit_event("501", "2026-02-01T10:00:00+03:00"))
    assert again.visits == () and again.entity_after is None
    assert store.entity(EntityRef("client", "77")).fields["visit_count"] == 1  # type: ignore[union-attr]


def test_an_older_visit_never_moves_the_last_visit_back_and_a_purchase_is_money_not_a_visit(
        project: Project) -> None:
    store = SqliteStore()
    decided(project, store, visit_event("2", "2026-02-01T10:00:00+03:00", "1000"))
    decided(project, store, visit_event("1", "2025-12-01T10:00:00+03:00", "2000"))  # a late webhook, a backfill
    decided(project, store, visit_event("p1", "2026-02-20T10:00:00+03:00", "450.00", type_="purchase.completed"))
    fields = store.entity(EntityRef("client", "77")).fields  # type: ignore[union-attr]
    assert fields["first_visit_at"] == "2025-12-01T07:00:00.000000+00:00"
    assert fields["last_visit_at"] == "2026-02-01T07:00:00.000000+00:00"
    assert (fields["visit_count"], fields["purchase_count"], fields["total_spent"], fields["average_check"]) == \
        (2, 1, "3450.00", "1150.00")


@pytest.mark.parametrize("amount, said", [
    ("1 500,00", "'1 500,00' is not an amount"), ("abc", "'abc' is not an amount"),
    (1500.5, "is a float: money is exact decimal text"), ("10.005", "'10.005' is not an amount"),
    ("-5", "'-5' is not an amount")])
def test_an_amount_that_is_not_exact_decimal_text_refuses_the_event(project: Project, amount: Any,
                                                                    said: str) -> None:
    store = SqliteStore()
    decision = decided(project, store, visit_event("9", "2026-02-01T10:00:00+03:00", amount))
    assert decision.visits == () and decision.runs == () and decision.entity_after is None
    assert len(decision.why_not) == 1 and "the event is refused" in decision.why_not[0].reason
    assert said in decision.why_not[0].reason
    assert store.visits_of("77") == []


def test_a_visit_event_without_its_visit_id_is_refused(project: Project) -> None:
    event = visit_event("x", "2026-02-01T10:00:00+03:00")
    event = Event(id="e", type=event.type, at=NOW, entity=event.entity,
                  data={k: v for k, v in event.data.items() if k != "visit"}, source="booking")
    decision = decide(project, SqliteStore(), event, NOW)
    assert "has no `visit` id" in decision.why_not[0].reason


def test_history_is_the_products_never_a_rules_nor_a_systems(project: Project) -> None:
    store = SqliteStore()
    decided(project, store, visit_event("1", "2026-02-01T10:00:00+03:00"))
    # A client.updated that carries a derived field (a hand-kept counter, a rule's emit) does not set it.
    decided(project, store, Event(id="u", type="client.updated", at=NOW, entity=EntityRef("client", "77"),
                                  data={"name": "Анна", "visit_count": 40, "total_spent": "1.00"}, source="crm"))
    fields = store.entity(EntityRef("client", "77")).fields  # type: ignore[union-attr]
    assert (fields["name"], fields["visit_count"], fields["total_spent"]) == ("Анна", 1, "1500.00")
    # A rule's own `emit: visit.completed` is news for rules, not history.
    emitted = visit_event("2", "2026-02-02T10:00:00+03:00", source="engine")
    assert decide(project, store, emitted, NOW).visits == ()


def test_the_derived_fields_are_the_same_kept_one_visit_at_a_time_and_recomputed_in_sql() -> None:
    rng = random.Random(13)
    start = datetime(2025, 1, 1, tzinfo=timezone.utc)
    visits = [Visit(id=f"v{i}", client=f"c{i % 7}", at=start + timedelta(hours=rng.randrange(0, 9000)),
                    kind=rng.choice(["visit", "visit", "purchase"]), category=rng.choice([None, "Терапия", "Стоматология"]),
                    amount=rng.randrange(0, 500000)) for i in range(300)]
    store = SqliteStore()
    store.put_entity(Entity(EntityRef("client", "c0"), {"name": "kept", "services": {"Старое": {}}}, NOW))
    store.put_visits(visits)
    assert store.recompute_history({v.client for v in visits}, NOW) == 7
    for client in sorted({v.client for v in visits}):
        mine = [v for v in visits if v.client == client]
        one_by_one = history.with_visits({}, mine)  # in the order they came, not by time
        stored = dict(store.entity(EntityRef("client", client)).fields)  # type: ignore[union-attr]
        stored.pop("name", None)
        if client == "c0":
            assert store.entity(EntityRef("client", "c0")).fields["name"] == "kept"  # type: ignore[union-attr]
        assert stored == one_by_one == history.derived(mine), client


# ---- money in expressions ---------------------------------------------------------------------------------------

def play(project: Path, test: str) -> tuple[str, bool]:
    (project / "rules" / "case.test.yaml").write_text(textwrap.dedent(test))
    return report(run_tests(project / "rules" / "case.test.yaml"))


def test_money_is_a_decimal_in_expressions_and_plain_decimal_text_out(make_project: Callable[..., Path]) -> None:
    root = make_project("""
        rules:
          - id: cashback
            when: {event: nps.received}
            if: "client.total_spent * 0.05 > 600 - 0.01 and client.services.Стоматология.total_spent == 12000"
            do:
              - notify: {to: admin, text: "{{ client.total_spent * 0.05 }} / {{ round(client.average_check / 7, 2) }} / {{ client.days_since_last_visit }}"}
              - http.request: {url: "https://example.com/x", method: POST, json: {sum: "{{ client.total_spent }}"}}
        """, config=None)
    (root / "automator.yaml").write_text((root / "automator.yaml").read_text().replace(
        "  sms: {type: local}\n", "  sms: {type: local}\n  hooks: {type: http, allow: [example.com]}\n"))
    text, ok = play(root, """
        load: ..
        now: 2026-03-02T09:00:00+03:00
        given:
          - {kind: client, id: 77, name: Анна}
          - {kind: visit, client: 77, at: 2026-01-01T10:00:00+03:00, amount: "5000.00", category: Стоматология}
          - {kind: visit, client: 77, at: 2026-02-01T10:00:00+03:00, amount: "7000", category: Стоматология}
        when:
          - {event: nps.received, entity: {kind: client, id: 77}, data: {score: 9}}
        expect:
          - {action: notify, params: {text: "600.0000 / 857.14 / 28"}, count: 1}
          - {action: http.request, params: {json: {sum: "12000.00"}}, count: 1}
        """)
    assert ok, text


# ---- a test's given: visits ------------------------------------------------------------------------------------

@pytest.mark.parametrize("record, said", [
    # A visit is checked by the schema: money is exact decimal text.
    ('{kind: visit, client: 77, at: 2026-01-01T10:00:00+03:00, amount: "50.005"}',
     'case.test.yaml:5:70: error: amount: expected decimal text such as "1500.00"'),
    # A client's history fields are the product's: the test gives the visits instead.
    ("{kind: client, id: 77, name: Анна, visit_count: 4}",
     "case.test.yaml:5:40: error: client.visit_count is kept by the product from the client's visits\n"
     "        hint: give the visits instead"),
])
def test_given_history_written_wrong_fails_at_its_place(make_project: Callable[..., Path], record: str,
                                                        said: str) -> None:
    text, ok = play(make_project(RULES), f"""
        load: ..
        now: 2026-03-02T09:00:00+03:00
        given:
          - {record}
        when: [{{advance: 1d}}]
        expect: [{{no_action: notify}}]
        """)
    assert not ok and said in text, text


# ---- automator import visits ----------------------------------------------------------------------------------

CSV = """\
client,phone,at,amount,visit,category,services
77,+79161234567,2025-09-01T10:00:00+03:00,3000.00,4001,Стоматология,Осмотр|Чистка
77,+79161234567,2025-10-22 10:00,2500,4002,Стоматология,Пломба
,8 916 123-45-67,2025-12-01,999.99,,Анализы,
78,not a phone,2025-12-01,100,4004,,
79,,yesterday,100,4005,,
80,,2025-12-01,12.345,4006,,
81,,2025-12-01,100,4007,,
"""


BOOKING = '  booking: {type: yclients, company_id: 1, partner_token: "${env:YC_P}", user_token: "${env:YC_U}", ' \
          'hook_secret: "${env:YC_H}"}\n'


@pytest.fixture
def booking_project(make_project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> Path:
    """The tests' project with YCLIENTS as `booking`: a system whose client ids an import may name."""
    for name in ("YC_P", "YC_U", "YC_H"):
        monkeypatch.setenv(name, "secret")
    root = make_project(RULES)
    config = root / "automator.yaml"
    config.write_text(config.read_text().replace("  sms: {type: local}\n", "  sms: {type: local}\n" + BOOKING))
    return root


def test_import_visits_is_idempotent_keeps_the_good_rows_and_names_each_bad_one(booking_project: Path) -> None:
    root = booking_project
    (root / "visits.csv").write_text(CSV, encoding="utf-8")
    code, out = invoke("import", "visits", str(root / "visits.csv"), "--system", "booking",
                       "--config", str(root / "automator.yaml"))
    assert code == 1, out
    assert f"{root / 'visits.csv'}:5:2: error: phone 'not a phone' is not a phone number" in out
    assert f"{root / 'visits.csv'}:6:3: error: at 'yesterday' is not an ISO 8601 date or moment" in out
    assert f"{root / 'visits.csv'}:7:4: error: amount '12.345' is not an amount" in out
    assert "7 rows read: 4 new visits, 2 clients recomputed, 3 skipped" in out
    store = SqliteStore(str(root / "automator.db"))
    # The phone-only row is Анна's: the person with that phone (matched as a webhook is, links written).
    assert store.client_of("booking", "77") == "77" and store.client_of("phone", "+79161234567") == "77"
    anna = store.entity(EntityRef("client", "77")).fields  # type: ignore[union-attr]
    assert (anna["visit_count"], anna["total_spent"], anna["ids"]) == (3, "6499.99", {"booking": "77"})
    assert anna["services"]["Анализы"]["total_spent"] == "999.99"
    assert [v.id for v in store.visits_of("77")][:2] == ["booking:4001", "booking:4002"]
    assert store.entity(EntityRef("client", "81")).fields["visit_count"] == 1  # type: ignore[union-attr]
    # Importing history starts no rule (the `tenth` and `thanks` rules stay quiet): history is not news.
    assert store.runs(None, limit=10) == [] and store.count("journal") == 0 and store.count("effects") == 0
    store.close()
    code, again = invoke("import", "visits", str(root / "visits.csv"), "--system", "booking",
                         "--config", str(root / "automator.yaml"))
    assert code == 1 and "0 new visits" in again
    store = SqliteStore(str(root / "automator.db"))
    assert store.entity(EntityRef("client", "77")).fields["visit_count"] == 3  # type: ignore[union-attr]


def test_hostile_rows_are_each_named_and_skipped_and_the_good_ones_kept(booking_project: Path) -> None:
    root = booking_project
    huge = "Осмотр" + "x" * 140_000  # past the csv module's 131,072 characters a field
    lines = [b"client,at,amount,services",
             b"77,2025-09-01T10:00:00+03:00,100,",
             f"78,2025-09-01T10:00:00+03:00,100,{huge}".encode(),
             "79,2025-09-01T10:00:00+03:00,100,Осмотр".encode() + b"\xff\xfe",
             b"80,0001-01-01T00:00+03:00,100,",
             b"81,20260-01-01,100,",
             b"82,2025-09-02T10:00:00+03:00,200,"]
    (root / "visits.csv").write_bytes(b"\r\n".join(lines) + b"\r\n")
    code, out = invoke("import", "visits", str(root / "visits.csv"), "--system", "booking",
                       "--config", str(root / "automator.yaml"))
    assert code == 1, out
    shown = root / "visits.csv"
    assert f"{shown}:3:4: error: the row cannot be read: field larger than field limit" in out
    assert f"{shown}:4:40: error: bytes that are not UTF-8 text" in out
    assert f"{shown}:5:2: error: at '0001-01-01T00:00:00+03:00' is not a moment a visit took place" in out
    assert f"{shown}:6:2: error: at '20260-01-01' is not an ISO 8601 date or moment" in out
    assert "6 rows read: 2 new visits, 2 clients recomputed, 4 skipped" in out
    store = SqliteStore(str(root / "automator.db"))
    assert [v.amount for c in ("77", "82") for v in store.visits_of(c)] == [10000, 20000]


def test_two_equal_rows_without_a_visit_id_are_two_visits_kept_once_each(booking_project: Path) -> None:
    root = booking_project
    # Two equal purchases in one minute: the file gives no id to tell them apart, their place among equals does.
    (root / "visits.csv").write_text("phone,at,amount,kind\n"
                                     "+79161234567,2025-09-01T10:00:00+03:00,350,purchase\n"
                                     "+79161234567,2025-09-01T10:00:00+03:00,350,purchase\n", encoding="utf-8")
    for new in (2, 0):
        code, out = invoke("import", "visits", str(root / "visits.csv"), "--config", str(root / "automator.yaml"))
        assert code == 0 and f"{new} new visit" in out, out
    store = SqliteStore(str(root / "automator.db"))
    client = store.client_of("phone", "+79161234567")
    assert client is not None
    assert store.entity(EntityRef("client", client)).fields["purchase_count"] == 2  # type: ignore[union-attr]
    # Matched by the phone alone: no pseudo-system id of the phone joins the person's ids.
    assert store.links_of(client) == [("phone", "+79161234567")]


def test_an_import_keeps_the_ids_of_a_person_it_links_current(tmp_path: Path) -> None:
    from automator.ingest import import_visits

    store = SqliteStore(str(tmp_path / "automator.db"))
    store.link("crm", "5", "anna", NOW)
    store.link("phone", "+79161234567", "anna", NOW)
    store.put_entity(Entity(EntityRef("client", "anna"), {"name": "Анна", "ids": {"crm": "5"}}, NOW))
    (tmp_path / "visits.csv").write_text("client,phone,at,amount,visit\n"
                                         "501,+79161234567,2025-09-01T10:00:00+03:00,100,1\n", encoding="utf-8")
    counts = import_visits(store, tmp_path / "visits.csv", "booking", MSK, NOW)
    assert (counts.new, counts.problems) == (1, [])
    anna = store.entity(EntityRef("client", "anna")).fields  # type: ignore[union-attr]
    assert anna["ids"] == {"crm": "5", "booking": "501"} and anna["name"] == "Анна"
    assert anna["all_ids"] == {"crm": ["5"], "booking": ["501"]} and anna["visit_count"] == 1


def test_import_refuses_a_system_that_is_no_connector(booking_project: Path) -> None:
    root = booking_project
    (root / "visits.csv").write_text(CSV, encoding="utf-8")
    code, out = invoke("import", "visits", str(root / "visits.csv"), "--system", "bookng",
                       "--config", str(root / "automator.yaml"))
    assert code == 2 and "--system 'bookng': no connector of automator.yaml" in out, out
    assert "there are: booking" in out
    assert not (root / "automator.db").exists()


def test_import_refuses_a_file_whose_header_it_cannot_read(make_project: Callable[..., Path]) -> None:
    root = make_project(RULES)
    (root / "visits.csv").write_text("client;когда;amount\n77;2025-01-01;10\n", encoding="utf-8")
    code, out = invoke("import", "visits", str(root / "visits.csv"), "--config", str(root / "automator.yaml"))
    assert code == 1 and f"{root / 'visits.csv'}:1:2: error: unknown column 'когда'" in out


# ---- automator backfill ----------------------------------------------------------------------------------------

class Remembers:
    """A connector type of the test's own: its backfill yields a system's clients, then their visits."""

    calls: ClassVar[list[datetime]] = []


def backfilling_type() -> type:
    from automator.connector import Connector

    class Backfills(Connector):  # type: ignore[misc]
        """A system whose history is two clients and three visits (one with a bad amount)."""

        type = "backfills"

        async def backfill(self, since: datetime) -> AsyncIterator[Event]:
            Remembers.calls.append(since)
            yield Event(id="c1", type="client.updated", at=NOW, entity=EntityRef("client", "501"),
                        data={"name": "Анна", "phone": "+79161234567"}, source=self.name)
            yield Event(id="c2", type="client.updated", at=NOW, entity=EntityRef("client", "502"),
                        data={"name": "Борис"}, source=self.name)
            for visit, client, amount in (("9001", "501", "1000.00"), ("9002", "501", "500"), ("9003", "502", "x")):
                yield Event(id=visit, type="visit.completed", at=NOW, entity=EntityRef("client", client),
                            data={"visit": visit, "at": "2026-01-10T10:00:00+03:00", "amount": amount},
                            source=self.name)

    return Backfills


def test_backfill_brings_a_connectors_clients_and_visits_in_once(make_project: Callable[..., Path],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import automator.connector as connector

    found = connector.discover()
    monkeypatch.setattr(connector, "discover", lambda: {**found, "backfills": backfilling_type()})
    config = textwrap.dedent("""\
        timezone: Europe/Moscow
        connectors:
          crm: {type: local}
          yc: {type: backfills}
        """)
    root = make_project({"rules.yaml": RULES}, config=config)
    code, out = invoke("backfill", "yc", "--since", "2025-01-01", "--config", str(root / "automator.yaml"))
    assert code == 1, out  # one visit's amount is refused, the rest is in
    assert "yc backfill:5:1: error: visit.completed 9003: amount 'x' is not an amount" in out
    assert "5 records read: 2 new visits, 1 client recomputed, 1 skipped" in out
    assert Remembers.calls[-1] == datetime(2025, 1, 1, tzinfo=MSK)
    store = SqliteStore(str(root / "automator.db"))
    anna = store.entity(EntityRef("client", "501")).fields  # type: ignore[union-attr]
    assert (anna["name"], anna["visit_count"], anna["total_spent"]) == ("Анна", 2, "1500.00")
    assert store.client_of("yc", "501") == "501" and store.client_of("phone", "+79161234567") == "501"
    assert store.runs(None, limit=10) == []
    store.close()
    code, again = invoke("backfill", "yc", "--since", "2025-01-01", "--config", str(root / "automator.yaml"))
    assert "0 new visits" in again


def test_backfill_of_a_connector_that_cannot_says_so(make_project: Callable[..., Path]) -> None:
    root = make_project(RULES)
    code, out = invoke("backfill", "crm", "--since", "2025-01-01", "--config", str(root / "automator.yaml"))
    assert code == 1 and "connector 'crm' (local) has no history to backfill" in out
    code, out = invoke("backfill", "nope", "--since", "2025-01-01", "--config", str(root / "automator.yaml"))
    assert code == 2 and "no connector 'nope' in automator.yaml" in out


def test_minor_units_are_exact() -> None:
    assert history.minor_units("1500") == 150000 and history.minor_units("0,5") == 50
    assert history.minor_units(Decimal("10.10")) == 1010 and history.money_text(5) == "0.05"
    assert history.average(100, 3) == 33 and history.average(200, 3) == 67  # half up, as the SQL


def test_a_deals_amount_is_exact_text_from_the_crms_and_a_decimal_in_expressions() -> None:
    """The catalogues type a deal's `amount` money: the CRMs report it as decimal text, expressions see a Decimal."""
    from zoneinfo import ZoneInfo

    from automator.catalogue import CORE, parse
    from automator.core.scope import event_view, typed
    from automator.model import Event

    msk = ZoneInfo("Europe/Moscow")
    catalogue = CORE.merged(parse({"entities": {"deal": {"amount": "money"}},
                                   "events": {"deal.updated": {"entity": "deal"}}}, "test", "test"))
    assert typed("deal", {"amount": "3500.50"}, catalogue, msk) == {"amount": Decimal("3500.50")}
    assert typed("deal", {"amount": 3500}, catalogue, msk) == {"amount": 3500}  # a number as written: exact
    assert typed("deal", {"amount": "много"}, catalogue, msk) == {"amount": "много"}  # for the expression to report
    event = Event(id="e", type="deal.updated", at=datetime(2026, 3, 2, tzinfo=timezone.utc),
                  data={"amount": "4000.10"}, source="crm")
    assert event_view(event, catalogue, msk)["amount"] == Decimal("4000.10")
    assert history.money_of(3500) == "3500.00" and history.money_of("3500.5") == "3500.50"
    assert history.money_of(3500.4) == "3500.40" and history.money_of("x") is None and history.money_of("") is None
