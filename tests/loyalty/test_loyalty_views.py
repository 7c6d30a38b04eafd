"""The operator's views of the ledger on real files: `automator loyalty show` (by id or phone, table and JSON) and
the loyalty report (points outstanding, flows and lapsing by month), with figures computed by hand.

Two clients, in Moscow time, points 5 % of each visit for 60 days:
  7: 10 Jan visit 2000.00 → +100.00 (lapse 11 Mar); 5 Feb visit 3000.00 → +150.00 (lapse 6 Apr);
     20 Feb pays 120.00 in points: 100.00 from the January lot (it lapses first), 20.00 from February's → 130.00 left.
  8: 20 Jan visit 1000.00 → +50.00 (lapse 21 Mar), never spent: written off on 21 Mar by its timer.
"""
from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Callable
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from automator.cli import cli
from automator.config.load import load_project
from automator.config.project import Project
from automator.core.decide import decide
from automator.core.wakeup import timer_event
from automator.model import Entity, EntityRef, Event
from automator.reports import compute
from automator.store.sqlite import SqliteStore

MSK = ZoneInfo("Europe/Moscow")
RULES = """
    rules:
      - id: bonus
        when: {event: visit.completed}
        do:
          - loyalty.accrue: {amount: "{{ event.amount * 0.05 }}", reason: "Бонусы за визит", expires: 60d}
      - id: pay
        when: {event: payment.received}
        do:
          - loyalty.spend: {amount: "{{ event.amount }}", reason: "Оплата баллами"}
    """


def at(month: int, day: int, hour: int = 10) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=MSK)


@pytest.fixture
def root(make_project: Callable[..., Path]) -> Path:
    root = make_project(RULES)
    (root / "loyalty.yaml").write_text("notice: 7d\nprograms:\n  bonus: {default: true}\n")
    project, problems = load_project(root)
    assert project is not None, problems
    store = SqliteStore(root / "automator.db")
    for ident, phone in (("7", "+79161234567"), ("8", "+79162223344")):
        store.put_entity(Entity(EntityRef("client", ident), {"name": ident, "phone": phone}, at(1, 1)))
        store.link("phone", phone, ident, at(1, 1))
    happenings = [("7", "visit.completed", {"visit": "v1", "amount": "2000.00"}, at(1, 10)),
                  ("8", "visit.completed", {"visit": "v2", "amount": "1000.00"}, at(1, 20)),
                  ("7", "visit.completed", {"visit": "v3", "amount": "3000.00"}, at(2, 5)),
                  ("7", "payment.received", {"amount": "120.00"}, at(2, 20))]
    for number, (client, kind, data, moment) in enumerate(happenings):
        fire(project, store, moment)
        event = Event(id=f"e{number}", type=kind, at=moment, entity=EntityRef("client", client), source="forms",
                      data=data)
        store.commit(event, decide(project, store, event, moment), moment)
    fire(project, store, at(3, 25, 12))
    store.close()
    return root


def fire(project: Project, store: SqliteStore, until: datetime) -> None:
    while (timer := store.next_timer(until)) is not None:
        store.delete_timer(timer.id)
        event = timer_event(timer)
        store.commit(event, decide(project, store, event, timer.due_at), timer.due_at)


def show(root: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["loyalty", "show", *args, "--config", str(root)])
    return result.exit_code, result.output


def test_loyalty_show_gives_the_balance_what_lapses_soon_and_every_row(root: Path) -> None:
    code, out = show(root, "7", "--at", "2026-03-31T12:00:00+03:00", "--format", "json")
    assert code == 0, out
    found = json.loads(out)
    assert found["points"] == [{"program": "bonus", "balance": "130.00", "expiring": [
        {"expires_at": "2026-04-06T10:00:00+03:00", "amount": "130.00"}]}]
    assert [(r["kind"], r["amount"], r["reason"], r["cause"].split(" on ")[0]) for r in found["history"]] == [
        ("accrue", "+100.00", "Бонусы за визит", "rule bonus"), ("accrue", "+150.00", "Бонусы за визит", "rule bonus"),
        ("spend", "-120.00", "Оплата баллами", "rule pay")]
    code, out = show(root, "8", "--at", "2026-03-31T12:00:00+03:00")
    assert code == 0, out
    assert "points      bonus: 0.00" in out
    assert [line.split()[3:5] for line in out.splitlines() if "points:bonus" in line] == [
        ["accrue", "+50.00"], ["expire", "-50.00"]]
    # The expiry is dated at the lot's own moment and names the timer's event as its cause.
    expired = json.loads(show(root, "8", "--format", "json")[1])["history"][1]
    assert (expired["at"], expired["cause"]) == (
        "2026-03-21T10:00:00+03:00", "loyalty/8/points:bonus/expire/2026-03-21T07:00:00Z@2026-03-21T07:00:00+00:00")


def test_loyalty_show_finds_a_client_by_phone_and_says_when_it_cannot(root: Path) -> None:
    code, out = show(root, "+7 916 123-45-67", "--at", "2026-04-07T12:00:00+03:00")
    assert code == 0, out
    assert out.splitlines()[0].startswith("client 7 ")
    assert "points      bonus: 0.00" in out  # the February lot lapsed on 6 April (not yet written off: no timer ran)
    code, out = show(root, "999")
    assert code == 1 and "no client '999' in the store" in out


def test_the_loyalty_report_owes_what_clients_hold_and_shows_what_lapses_by_month(root: Path) -> None:
    found = compute("loyalty", root / "automator.db", start=date(2026, 1, 1), end=date(2026, 3, 31), tz=MSK,
                    now=at(3, 25, 12))
    programs = found.table("programs")
    assert [dict(r) for r in programs.rows] == [{
        "program": "bonus", "clients": 1, "outstanding": Decimal("130.00"), "accrued": Decimal("300.00"),
        "spent": Decimal("120.00"), "expired": Decimal("50.00"), "reversed": Decimal("0.00")}]
    months = [(r["month"], r["accrued"], r["spent"], r["expired"], r["expiring"]) for r in found.table("months").rows]
    assert months == [("2026-01", Decimal("150.00"), Decimal("0.00"), Decimal("0.00"), Decimal("0.00")),
                      ("2026-02", Decimal("150.00"), Decimal("120.00"), Decimal("0.00"), Decimal("0.00")),
                      ("2026-03", Decimal("0.00"), Decimal("0.00"), Decimal("50.00"), Decimal("0.00")),
                      ("2026-04", Decimal("0.00"), Decimal("0.00"), Decimal("0.00"), Decimal("130.00"))]
    assert found.headline[0] == ("Остаток баллов", Decimal("130.00"), "money")


def test_automator_report_loyalty_writes_csv(root: Path) -> None:
    result = CliRunner().invoke(cli, ["report", "loyalty", "--from", "2026-01-01", "--to", "2026-03-31",
                                      "--format", "csv", "--table", "months", "--config", str(root)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "month,program,accrued,spent,expired,reversed,expiring"
    assert lines[1:4] == ["2026-01,bonus,150.00,0.00,0.00,0.00,0.00", "2026-02,bonus,150.00,120.00,0.00,0.00,0.00",
                          "2026-03,bonus,0.00,0.00,50.00,0.00,0.00"]
