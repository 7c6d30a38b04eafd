"""Issue 16's sandbox promise, in the daemon with --sandbox: a visit paid in YCLIENTS accrues points on the
client's YCLIENTS loyalty card (the product's ledger, mirrored), and the tier change it makes sends one SMS —
however often YCLIENTS repeats its webhook."""
from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

from clinic import clinic, config
from e2e_support import Daemon, get_json, post_json, query, wait_for, wait_outbox_drained

ANNA = "79161234567"
BOOKING = ('poll_every: "off", loyalty_card_type: 8230, issue_cards: true, create_categories: true, '
           'category_groups: {tier: [Участник, Золото]}}')
LOYALTY = """\
sync: booking
programs:
  card:
    default: true
    points: {percent: 5, expires: 365d}
    tiers:
      by: visits
      levels:
        member: {from: 1, discount: 5, category: Участник}
        gold: {from: 10, discount: 10, category: Золото}
"""
RULES = """\
rules:
  - id: tier-up-sms
    when: {event: loyalty.tier_changed, where: "event.direction == 'up'"}
    do:
      - sms.send: {to: "{{ client.phone }}", text: "{{ client.name }}, ваша скидка теперь {{ event.discount }} %"}
"""


def test_a_visit_paid_in_yclients_puts_points_on_its_card_and_a_tier_change_sends_one_sms(
        tmp_path: Path, start_daemon: Callable[..., Daemon]) -> None:
    more = '  sms: {type: smsru, api_id: "${env:SMSRU_API_ID}", sender: Clinic}\n'
    project = clinic(tmp_path / "clinic", config("admin", more).replace('poll_every: "off"}', BOOKING), RULES)
    (project.root / "loyalty.yaml").write_text(LOYALTY)
    daemon = start_daemon(project, args=("--sandbox",))
    base = f"http://127.0.0.1:{daemon.port}/_sandbox"
    yclients = f"{base}/booking/_emulator"
    state = get_json(f"{yclients}/state")
    anna = next(c for c in state["clients"] if str(c["phone"]).lstrip("+") == ANNA)
    record = next(r for r in state["records"] if str(r["client"]["phone"]).lstrip("+") == ANNA)

    def cards() -> list[dict[str, object]]:
        return list(get_json(f"{yclients}/state")["cards"].get(str(anna["id"]), []))

    # The sandbox's Анна holds a card of 500.00 already.
    assert [Decimal(str(c["balance"])) for c in cards()] == [Decimal("500")]
    # Her record's services cost 1 500 ₽: she pays them at the desk, then the admin marks her arrived.
    post_json(f"{yclients}/pay", {"record_id": record["id"], "amount": 1500})
    post_json(f"{yclients}/attendance", {"record_id": record["id"], "attendance": 1})

    # 5 % of 1 500.00 = 75.00 onto that card.
    found = wait_for(lambda: [c for c in cards() if Decimal(str(c["balance"])) != 500], 20, "points on her card")
    assert [Decimal(str(c["balance"])) for c in found] == [Decimal("575")]
    messages = wait_for(lambda: get_json(f"{base}/sms/_emulator/state")["messages"], 20, "the tier's SMS")
    assert [m["text"] for sent in messages.values() for m in sent] == ["Анна, ваша скидка теперь 5 %"]

    # YCLIENTS sends the record's webhook again (an admin saves the visit once more): nothing is accrued twice.
    post_json(f"{yclients}/attendance", {"record_id": record["id"], "attendance": 1})
    wait_for(lambda: query(daemon.project.db, "select count(*) from journal where status != 'done'")[0][0] == 0,
             20, "every event decided")
    wait_outbox_drained(daemon.project.db, 10)
    assert [Decimal(str(c["balance"])) for c in cards()] == [Decimal("575")]
    assert len(get_json(f"{yclients}/state")["loyalty_transactions"]) == 1
    assert sum(len(v) for v in get_json(f"{base}/sms/_emulator/state")["messages"].values()) == 1
    rows = query(daemon.project.db, "select account, kind, amount from ledger order by account")
    assert rows == [("points:card", "accrue", 7500), ("tier:card", "tier", 0)]
    assert daemon.terminate() == 0
