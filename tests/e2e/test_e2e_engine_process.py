"""`automator run` is two processes by default: the engine (rules decided, timers fired) in the second one, stopped
with the daemon, and a crash of it taking the daemon down whole, to come back whole; `--processes 1` is one."""
from __future__ import annotations

from e2e_support import UNSETTLED, FakeServer, Project, wait_for, write_project

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


def test_rules_are_decided_by_the_second_process(tmp_path, fake_server: FakeServer, start_daemon) -> None:
    project: Project = write_project(tmp_path / "project", fake_server.port, RULES)
    daemon = start_daemon(project)
    fake_server.answer("/orders", 200)
    for n in range(5):
        assert daemon.post("booking", order(str(n))).status == 200
    wait_for(lambda: len(fake_server.received("/orders")) == 5, 15, "five calls to the ERP")
    wait_for(lambda: daemon.query("select count(*) from effects where status = 'done'")[0][0] == 10, 15,
             "every effect settled")
    # The SMS went through `local`, which writes into the store: the engine process performed it.
    assert daemon.query("select count(*) from local_messages")[0][0] == 5
    assert "rules are decided by process" in daemon.log()
    runs = ("automator_runs_total", frozenset({("rule", "order-to-erp"), ("status", "done")}))
    sms = ("automator_effects_total", frozenset({("connector", "crm"), ("action", "sms.send"), ("status", "done")}))
    web = ("automator_effects_total", frozenset({("connector", "web"), ("action", "http.request"),
                                                 ("status", "done")}))
    # The engine process sends its counters twice a second: /metrics shows them beside this process's own.
    wait_for(lambda: (daemon.metrics().get(runs), daemon.metrics().get(sms), daemon.metrics().get(web)) == (5, 5, 5),
             5, "runs and effects counted in /metrics")
    # Both processes wrote, so both held the write lock for a while: the operator sees how long each held it.
    figures = daemon.metrics()
    held = {process: figures.get(("automator_store_write_lock_seconds_total",
                                  frozenset({("process", process), ("state", "held")})), 0.0)
            for process in ("daemon", "engine")}
    assert 0 < held["daemon"] < 15 and 0 < held["engine"] < 15, held
    assert daemon.terminate() == 0 and "stopped cleanly" in daemon.log()


def test_a_crash_of_the_engine_process_takes_the_daemon_down_and_it_recovers(
        tmp_path, fake_server: FakeServer, start_daemon) -> None:
    project: Project = write_project(tmp_path / "project", fake_server.port, RULES)
    fake_server.answer("/orders", 200)
    daemon = start_daemon(project, env={"AUTOMATOR_CRASH_AT": "decide.before_commit:1@engine"})
    assert daemon.post("booking", order("1")).status == 200
    assert daemon.wait_exit(20) == -9  # the engine process died mid-batch: the daemon went down whole
    assert "the engine process died" in daemon.log()
    assert daemon.query("select status from journal")[0][0] == "pending"  # accepted, not lost

    again = start_daemon(project, log_name="again.log")
    wait_for(lambda: not again.query(UNSETTLED)
             and again.query("select count(*) from effects")[0][0] == 2, 15, "decided and performed after the restart")
    assert dict(again.query("select action, status from effects")) == {"sms.send": "done", "http.request": "done"}
    assert len(fake_server.received("/orders")) == 1
    assert again.query("select count(*) from local_messages")[0][0] == 1
    assert again.terminate() == 0


def test_one_process_does_it_all_with_processes_1(tmp_path, fake_server: FakeServer, start_daemon) -> None:
    project: Project = write_project(tmp_path / "project", fake_server.port, RULES)
    fake_server.answer("/orders", 200)
    daemon = start_daemon(project, args=("--processes", "1"))
    assert daemon.post("booking", order("1")).status == 200
    wait_for(lambda: daemon.query("select count(*) from effects where status = 'done'")[0][0] == 2, 15,
             "both effects done")
    assert "rules are decided by process" not in daemon.log()
    assert daemon.terminate() == 0
