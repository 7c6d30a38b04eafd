"""`automator run --outbox-process`: effects performed by a second process, stopped with the daemon, and a crash
of it taking the daemon down whole, to come back whole."""
from __future__ import annotations

from e2e_support import FakeServer, Project, wait_for, write_project

RULES = """\
rules:
  - id: order-to-erp
    when: {event: order.paid}
    do:
      - sms.send: {to: "+79161234567", text: "Заказ {{ entity.id }} оплачен"}
      - http.request: {method: POST, url: "{{ settings.orders_url }}", json: {order: "{{ entity.id }}"}}
        via: web
"""


def order(order_id: str) -> dict:
    return {"event": "order.paid", "entity": {"kind": "order", "id": order_id}, "data": {},
            "delivery_id": f"order-{order_id}"}


def test_effects_are_performed_by_the_second_process(tmp_path, fake_server: FakeServer, start_daemon) -> None:
    project: Project = write_project(tmp_path / "project", fake_server.port, RULES)
    daemon = start_daemon(project, args=("--outbox-process",))
    fake_server.answer("/orders", 200)
    for n in range(5):
        assert daemon.post("booking", order(str(n))).status == 200
    wait_for(lambda: len(fake_server.received("/orders")) == 5, 15, "five calls to the ERP")
    wait_for(lambda: daemon.query("select count(*) from effects where status = 'done'")[0][0] == 10, 15,
             "every effect settled")
    assert daemon.query("select count(*) from local_messages")[0][0] == 5
    assert "effects are performed by process" in daemon.log()
    done = ("automator_effects_total", frozenset({("connector", "web"), ("action", "http.request"),
                                                  ("status", "done")}))
    # The second process sends its counters twice a second: /metrics shows them.
    wait_for(lambda: daemon.metrics().get(done) == 5, 5, "the effects counted in /metrics")
    assert daemon.terminate() == 0 and "stopped cleanly" in daemon.log()


def test_a_crash_of_the_second_process_takes_the_daemon_down_and_it_recovers(
        tmp_path, fake_server: FakeServer, start_daemon) -> None:
    project: Project = write_project(tmp_path / "project", fake_server.port, RULES)
    fake_server.answer("/orders", 200)
    daemon = start_daemon(project, args=("--outbox-process",), env={"AUTOMATOR_CRASH_AT": "effect.after_call:1@outbox"})
    assert daemon.post("booking", order("1")).status == 200
    assert daemon.wait_exit(20) == -9  # the outbox process died mid-effect: the daemon went down whole
    assert "the outbox process died" in daemon.log()

    again = start_daemon(project, args=("--outbox-process",), log_name="again.log")
    wait_for(lambda: not again.query("select 1 from effects where status in ('pending', 'running', 'retry')"), 15,
             "the outbox drained after the restart")
    statuses = dict(again.query("select action, status from effects"))
    # The SMS (local, performed by the daemon itself, deduplicating by key) was done or done again safely; the
    # HTTP call that was interrupted
    # after it happened is parked, not repeated.
    assert statuses["sms.send"] == "done"
    assert statuses["http.request"] in ("uncertain", "done")
    assert len(fake_server.received("/orders")) <= 1
    assert again.query("select count(*) from local_messages")[0][0] == 1
    assert again.terminate() == 0
