"""Segments kept current by the daemon itself (`automator run`, webhooks over HTTP): a visit webhook rescores its
client at once and exactly one `segment.changed` is journaled however often the webhook comes; the daily
rescoring, due at start (the day was not done), moves a client whose recency aged, through `segment.rescore` the
engine decides, and a restart the same day rescores nothing again; a rule reacts to the move."""
from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

from e2e_support import REPO, Daemon, Project, cli, wait_for, write_project

CONFIG = """\
timezone: Europe/Moscow
connectors:
  crm:
    type: local
    secret: "${{env:{token_env}}}"
store: automator.db
"""

RULES = """\
rules:
  - id: at-risk-call
    when: {event: segment.changed}
    if: "event.to == 'at_risk'"
    do:
      - task.create: {assignee: admin, title: "Вернуть клиента {{ client.id }}: {{ event['from'] }} → {{ event.to }}"}
        via: crm
"""


def _at(days_ago: int) -> str:
    return (datetime.now(timezone.utc) - timedelta(days=days_ago, hours=12)).isoformat(timespec="seconds")


def _visit(client: str, visit: str, days_ago: int, amount: str, delivery: str) -> dict[str, object]:
    return {"event": "visit.completed", "entity": {"kind": "client", "id": client}, "at": _at(days_ago),
            "data": {"visit": visit, "at": _at(days_ago), "amount": amount}, "delivery_id": delivery}


def _rescoring_day() -> str:
    """The day of the latest 04:00 in Moscow (segments.yaml's `rescore:`): before 04:00 it is yesterday's."""
    local = datetime.now(timezone.utc).astimezone(timezone(timedelta(hours=3)))
    return (local.date() - timedelta(days=1 if local.hour < 4 else 0)).isoformat()


def _journal(daemon: Daemon, kind: str) -> list[tuple[str, dict[str, object]]]:
    return [(i, json.loads(body)) for i, body in
            daemon.query("select id, body from journal where type = ? order by seq", (kind,))]


def _segment(daemon: Daemon, client: str) -> tuple[str | None, str | None]:
    rows = daemon.query("select json_extract(fields, '$.segment'), json_extract(fields, '$.rfm') from entities "
                        "where kind = 'client' and id = ?", (client,))
    return rows[0] if rows else (None, None)


def _prepared(tmp_path: Path) -> Project:
    """A project with the shipped segments.yaml and history imported and scored, as an operator starts one:
    `automator import visits`, then `automator segments compute`."""
    project = write_project(tmp_path / "project", 0, RULES, config=CONFIG)
    shutil.copy(REPO / "segments.yaml", project.root / "segments.yaml")
    rows = [
        # 1: three visits, the latest 100 days ago: r 2, f 3 (at_risk by now); stored below as it was long ago
        *(f"1,{_at(100 + 30 * i)},2000.00" for i in range(3)),
        # 2: two visits, the latest 40 days ago: r 4, f 2 → promising; a third visit comes as a webhook
        f"2,{_at(40)},3000.00", f"2,{_at(70)},3000.00",
    ]
    (project.root / "visits.csv").write_text("client,at,amount\n" + "\n".join(rows) + "\n")
    cli(project, "import", "visits", str(project.root / "visits.csv"))
    out = cli(project, "segments", "compute").stdout
    assert out.startswith("2 clients scored (2 with a visit in the window), 2 moved"), out
    return project


def test_a_visit_moves_its_client_once_and_the_daily_rescoring_moves_one_whose_recency_aged(
        tmp_path: Path, start_daemon: Callable[..., Daemon]) -> None:
    project = _prepared(tmp_path)
    # Client 1 as a rescoring long ago left them: loyal with r 5. Recency has aged since; today's rescoring is due.
    import sqlite3
    with sqlite3.connect(project.db) as conn:
        conn.execute("""update entities set fields = json_set(fields, '$.segment', 'loyal', '$.rfm',
                        json('{"r": 5, "f": 3, "m": 2}')) where kind = 'client' and id = '1'""")
    daemon = start_daemon(project)

    # The daily rescoring at start: client 1 is rescored by the engine (r 2 now) and moves loyal → at_risk.
    wait_for(lambda: _segment(daemon, "1")[0] == "at_risk", 30, "the daily rescoring to move client 1")
    changed = wait_for(lambda: _journal(daemon, "segment.changed") or None, 10, "segment.changed")
    day = _rescoring_day()
    assert [(i, b["data"]) for i, b in changed] == [
        (f"rescore:{day}:1>segment.changed",
         {"from": "loyal", "to": "at_risk", "category": "Под угрозой", "loyalty": None})]
    assert [i for i, _ in _journal(daemon, "segment.rescore")] == [f"rescore:{day}:1"]  # client 2 had not changed
    assert json.loads(_segment(daemon, "1")[1] or "{}") == {"r": 2, "f": 3, "m": 2}
    # The rule heard of the move.
    wait_for(lambda: daemon.query("select count(*) from effects where action = 'task.create'") == [(1,)], 20,
             "the rule's task")
    assert json.loads(daemon.query("select params from effects where action = 'task.create'")[0][0])["title"] == \
        "Вернуть клиента 1: loyal → at_risk"

    # A visit webhook (twice, as a system repeats it, and once more under another delivery id): client 2's third
    # visit, today: r 5, f 3 → loyal, one segment.changed.
    assert _segment(daemon, "2")[0] == "promising"
    for delivery in ("v1", "v1", "v2"):
        assert daemon.post("crm", _visit("2", "9001", 0, "3000.00", delivery)).status == 200
    wait_for(lambda: _segment(daemon, "2")[0] == "loyal", 20, "the visit to move client 2")
    wait_for(lambda: daemon.query("select count(*) from journal where status = 'pending'") == [(0,)], 20,
             "every event decided")
    moves = [b["data"] for _, b in _journal(daemon, "segment.changed") if b["entity"]["id"] == "2"]
    assert moves == [{"from": "promising", "to": "loyal", "category": "Постоянный", "loyalty": "silver"}]
    assert json.loads(_segment(daemon, "2")[1] or "{}") == {"r": 5, "f": 3, "m": 2}  # 9000 ₽: m 2 (≥ 5000)
    assert daemon.terminate() == 0

    # Restarted the same day: the day is done, nothing is rescored again.
    journaled = daemon.query("select count(*) from journal")
    daemon = start_daemon(project, log_name="daemon2.log")
    assert daemon.post("crm", {"event": "client.updated", "entity": {"kind": "client", "id": "3"},
                               "data": {"name": "Ева"}, "delivery_id": "c1"}).status == 200
    wait_for(lambda: daemon.query("select count(*) from journal where status = 'pending'") == [(0,)], 20,
             "the probe decided")
    assert daemon.query("select count(*) from journal") == [(journaled[0][0] + 1,)]
    assert len(_journal(daemon, "segment.rescore")) == 1
