"""The ledger in the daemon, over real HTTP to `automator run`: a visit's webhook accrues 5 % in points by a rule,
`automator loyalty show` shows them, the ledger's mirror reaches loyalty.yaml's `sync:` connector once (the local
world's loyalty table), and a spending over the balance fails its run with the balance named and mirrors nothing."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from e2e_support import CONFIG, Daemon, FakeServer, wait_for, wait_outbox_drained, write_project

RULES = """\
rules:
  - id: bonus
    when: {event: visit.completed}
    do:
      - loyalty.accrue: {amount: "{{ event.amount * 0.05 }}", reason: "Бонусы за визит", expires: 365d}
  - id: pay
    when: {event: order.paid}
    do:
      - loyalty.spend: {client: "7", amount: "{{ event.sum }}", reason: "Оплата баллами"}
"""
EVENTS = "      order.paid: {{data: {{sum: money}}}}\n"


def visit(ident: str, amount: str) -> dict[str, object]:
    return {"event": "visit.completed", "entity": {"kind": "client", "id": "7"}, "delivery_id": f"visit-{ident}",
            "data": {"visit": ident, "amount": amount, "currency": "RUB", "at": "2026-03-02T12:00:00+03:00"}}


def test_a_visit_accrues_points_in_the_daemon_shown_by_loyalty_show_and_mirrored_once(
        tmp_path: Path, fake_server: FakeServer, start_daemon: Callable[..., Daemon]) -> None:
    config = CONFIG.replace(EVENTS, EVENTS + "      visit.completed: {{entity: client}}\n")
    project = write_project(tmp_path / "project", fake_server.port, RULES, config=config)
    (project.root / "loyalty.yaml").write_text("sync: crm\nprograms:\n  bonus: {default: true}\n")
    daemon = start_daemon(project)
    assert daemon.post("booking", visit("v1", "3250.50")).status == 200
    assert daemon.post("booking", visit("v1", "3250.50")).status == 200  # the webhook repeated: nothing more
    # 3250.50 × 5 % = 162.525 → 162.53, half up to the kopeck.
    wait_for(lambda: daemon.query("select amount from ledger") == [(16253,)], 20, "the accrual in the ledger")
    wait_for(lambda: daemon.query("select action, client, program, amount from local_loyalty"), 20, "the mirror")
    wait_outbox_drained(project.db, 10)
    assert daemon.query("select action, client, program, amount, json_extract(detail, '$.reason') "
                        "from local_loyalty") == [("loyalty.accrue", "7", "bonus", "162.53", "Бонусы за визит")]
    accrued = json.loads(daemon.cli("runs", "--rule", "bonus", "--format", "json").stdout)
    assert [run["effects"] for run in accrued] == [{"done": 2}]  # the engine's accrual and its mirror
    shown = json.loads(daemon.cli("loyalty", "show", "7", "--format", "json").stdout)
    assert shown["points"][0]["balance"] == "162.53"
    assert [(r["kind"], r["amount"], r["reason"]) for r in shown["history"]] == [
        ("accrue", "+162.53", "Бонусы за визит")]

    assert daemon.post("booking", {"event": "order.paid", "data": {"sum": "200.00"}, "delivery_id": "pay-1"}).status \
        == 200
    wait_for(lambda: daemon.query("select status from runs where rule_id = 'pay'") == [("failed",)], 20,
             "the refused spending")
    run = json.loads(daemon.cli("runs", "--rule", "pay", "--format", "json").stdout)[0]
    assert run["effects"] == {}  # refused: no effect recorded, nothing mirrored
    assert "client 7 has 162.53 points of program bonus to spend, 200.00 asked" in daemon.cli("explain",
                                                                                           run["id"]).stdout
    assert daemon.post("booking", {"event": "order.paid", "data": {"sum": "62.53"}, "delivery_id": "pay-2"}).status \
        == 200
    wait_for(lambda: len(daemon.query("select * from local_loyalty")) == 2, 20, "the spending's mirror")
    wait_outbox_drained(project.db, 10)
    assert daemon.query("select action, amount from local_loyalty order by id") == [
        ("loyalty.accrue", "162.53"), ("loyalty.spend", "62.53")]
    assert json.loads(daemon.cli("loyalty", "show", "7", "--format", "json").stdout)["points"][0]["balance"] \
        == "100.00"
    assert daemon.terminate() == 0
