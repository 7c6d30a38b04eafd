"""Gift certificates and abonements in the daemon, over real HTTP to `automator run`: a sale's webhook issues them
by rules, the certificate's number reaches the buyer by SMS, another client pays with it in part, a visit of the
abonement's service uses one visit (a repeated webhook none), and what is left is in the ledger table."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from e2e_support import CONFIG, Daemon, FakeServer, wait_for, write_project

RULES = """\
rules:
  - id: sell-package
    when: {event: package.sold}
    do:
      - abonement.issue: {type: massage_3, number: "{{ event.number }}"}
  - id: sell-gift
    when: {event: gift.sold}
    do:
      - certificate.issue: {type: gift_any, nominal: "{{ event.amount }}", number: "{{ event.number }}"}
  - id: gift-number
    when: {event: certificate.created}
    do:
      - sms.send: {to: "+79161234567", text: "Сертификат № {{ event.number }} на {{ event.nominal }} ₽"}
"""
EVENTS = "      order.paid: {{data: {{sum: money}}}}\n"
MORE = ("      package.sold: {{entity: client, data: {{number: text}}}}\n"
        "      gift.sold: {{entity: client, data: {{amount: money, number: text}}}}\n"
        "      visit.completed: {{entity: client, data: {{certificate: text, certificate_amount: money}}}}\n")
LOYALTY = """\
certificates:
  gift_any: {title: Подарочный сертификат, nominal: any, expires: 365d}
abonements:
  massage_3: {title: Массаж спины ×3, visits: 3, services: [Массаж спины], expires: 30d}
"""


def event(kind: str, client: str, delivery: str, **data: object) -> dict[str, object]:
    return {"event": kind, "entity": {"kind": "client", "id": client}, "delivery_id": delivery, "data": data}


def test_certificates_and_abonements_sold_used_and_spent_in_the_daemon(
        tmp_path: Path, fake_server: FakeServer, start_daemon: Callable[..., Daemon]) -> None:
    project = write_project(tmp_path / "project", fake_server.port, RULES,
                            config=CONFIG.replace(EVENTS, EVENTS + MORE))
    (project.root / "loyalty.yaml").write_text(LOYALTY)
    daemon = start_daemon(project)
    for client, name in (("7", "Анна"), ("8", "Борис")):  # the booking system told us of its clients first
        assert daemon.post("booking", event("client.created", client, f"c{client}", name=name)).status == 200
    assert daemon.post("booking", event("package.sold", "7", "p1", number="AB-7")).status == 200
    assert daemon.post("booking", event("gift.sold", "7", "g1", amount="5000.00", number="GC-7")).status == 200
    wait_for(lambda: daemon.query("select account, kind, amount from ledger order by account") == [
        ("abonement:AB-7", "issue", 3), ("certificate:GC-7", "issue", 500000)], 20, "both issued")
    wait_for(lambda: daemon.query("select json_extract(fields, '$.client') from entities "
                                  "where kind = 'certificate' and id = 'GC-7'") == [("7",)], 20, "the certificate")
    wait_for(lambda: daemon.query("select json_extract(params, '$.text') from effects where action = 'sms.send'")
             == [("Сертификат № GC-7 на 5000.00 ₽",)], 20, "the number texted")
    massage = event("visit.completed", "7", "v1", visit="v1", services=["Массаж спины"], amount="0.00")
    assert daemon.post("booking", massage).status == 200
    assert daemon.post("booking", {**massage, "delivery_id": "v1-again"}).status == 200  # the webhook repeated
    paid = event("visit.completed", "8", "v2", visit="v2", services=["Стрижка"], amount="3200.50",
                 certificate="GC-7", certificate_amount="3200.50")
    assert daemon.post("booking", paid).status == 200
    wait_for(lambda: len(daemon.query("select id from ledger")) == 5, 20, "the use and the spending")
    assert daemon.query("select client, account, kind, amount, visit from ledger where kind in ('use', 'spend') "
                        "order by account") == [("7", "abonement:AB-7", "use", -1, "booking:v1"),
                                                ("7", "certificate:GC-7", "spend", -320050, "booking:v2"),
                                                ("8", "presented:GC-7", "spend", 0, "booking:v2")]
    assert daemon.query("select account, sum(amount) from ledger group by account order by account") == [
        ("abonement:AB-7", 2), ("certificate:GC-7", 179950), ("presented:GC-7", 0)]
    assert daemon.terminate() == 0
