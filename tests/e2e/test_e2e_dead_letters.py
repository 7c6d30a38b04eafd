"""Dead letters end to end: an outside system that keeps failing, `automator dead`, replay and drop."""
from __future__ import annotations

import json

from e2e_support import FakeServer, Project, wait_for, write_project

ORDER_RULES = """\
rules:
  - id: order-to-erp
    description: A paid order is reported to the ERP.
    when: {event: order.paid}
    do:
      - http.request: {method: POST, url: "{{ settings.orders_url }}", json: {order: "{{ entity.id }}"}}
        via: web
"""


def order(order_id: str) -> dict:
    return {"event": "order.paid", "entity": {"kind": "order", "id": order_id}, "data": {"sum": 100},
            "delivery_id": f"order-{order_id}"}


def effect(daemon, key: str) -> tuple:
    rows = daemon.query("select status, attempts, error from effects where key = ?", (key,))
    return rows[0] if rows else (None, None, None)


def test_dead_letter_then_replay_and_refused_at_once(tmp_path, fake_server: FakeServer, start_daemon) -> None:
    project: Project = write_project(tmp_path / "project", fake_server.port, ORDER_RULES)
    daemon = start_daemon(project)

    # 503 with Retry-After: tried twice (attempts: 2), then dead.
    fake_server.answer("/orders", 503, retry_after=1)
    assert daemon.post("booking", order("1")).status == 200
    key = wait_for(lambda: daemon.query("select key from effects where rule_id = 'order-to-erp'"), 10,
                   "the effect")[0][0]
    status, attempts, error = wait_for(lambda: (e := effect(daemon, key))[0] == "dead" and e, 15, "the dead letter")
    assert attempts == 2 and "gave up after 2 attempts" in error and "503" in error
    tries = fake_server.received("/orders")
    assert [r.key for r in tries] == [key, key]
    assert all(r.body == {"order": "1"} for r in tries)
    # The backoff alone would wait 0.5-1 s (first_delay 1s, with jitter): Retry-After: 1 is honoured.
    assert tries[1].at - tries[0].at >= 0.95

    listing = daemon.cli("dead")
    assert f"{key}  [dead]  http.request via web  rule order-to-erp  2 tries" in listing.stdout
    assert "1 dead letter" in listing.stderr
    assert daemon.metrics()[("automator_dead_letters", frozenset())] == 1

    # The ERP is back: replay, and the request goes out once more and succeeds.
    fake_server.answer("/orders", 200)
    assert f"replayed {key}" in daemon.cli("dead", "--replay", key).stdout
    wait_for(lambda: effect(daemon, key)[0] == "done", 10, "the replayed effect done")
    assert [r.key for r in fake_server.received("/orders")] == [key] * 3
    assert "0 dead letters" in daemon.cli("dead").stderr
    assert daemon.cli("dead", "--replay", key, check=False).returncode != 0  # nothing parked under that key now

    # 400: refused by the system, dead after a single try (repeating cannot help).
    fake_server.answer("/orders", 400)
    assert daemon.post("booking", order("2")).status == 200
    key_2 = wait_for(lambda: daemon.query("select key from effects where rule_id = 'order-to-erp' and key != ?",
                                          (key,)), 10, "the second effect")[0][0]
    status, attempts, error = wait_for(lambda: (e := effect(daemon, key_2))[0] == "dead" and e, 10, "the refusal")
    assert attempts == 1 and error.startswith("rejected:") and "400" in error
    assert [r.key for r in fake_server.received("/orders")].count(key_2) == 1
    assert f"{key_2}  [dead]  http.request via web  rule order-to-erp  1 tries" in daemon.cli("dead").stdout

    # Dropped: kept for the record, no longer listed, never tried again.
    assert f"dropped {key_2}" in daemon.cli("dead", "--drop", key_2).stdout
    assert effect(daemon, key_2)[0] == "dropped"
    assert "0 dead letters" in daemon.cli("dead").stderr
    explain = json.loads(daemon.cli("explain", daemon.query("select run_id from effects where key = ?", (key_2,))[0][0],
                                    "--format", "json").stdout)
    assert explain["run"]["effects"][0]["status"] == "dropped"
    assert [r.key for r in fake_server.received("/orders")].count(key_2) == 1
