"""The daemon keeps what the reports read as webhooks arrive: deals POSTed to a `local` connector (with its
secret) become a lead row with its first and last touch, a stage move per stage entered with who moved it (a
rule's own move says `rule:<id>`), a person's first channel, a booking and a review; a repeated delivery adds
nothing. Read from the daemon's database while it runs, as the reports read it."""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from e2e_support import Daemon, Project, wait_for, wait_outbox_drained, write_project

CONFIG = """\
timezone: Europe/Moscow
connectors:
  crm:
    type: local
    secret: "${{env:{token_env}}}"
    events:
      nps.received: {{entity: client, data: {{score: number}}}}
store: automator.db
channels:
  vk: {{title: ВКонтакте, match: {{utm_source: [vk]}}}}
  prodoctorov: {{title: ПроДокторов, aggregator: true, match: {{lead_source: [prodoctorov]}}}}
  site: {{title: Сайт, match: {{lead_source: [WEB]}}}}
"""

PIPELINES = """\
pipelines:
  sales:
    connector: crm
    stages:
      new: {id: NEW}
      talking: {id: TALK, qualified: true}
      booked: {id: BOOKED}
      won: {id: WON, outcome: won}
      lost: {id: LOSE, outcome: lost}
"""

# A deal that reaches `booked` is won by the rule itself (its move comes back as the deal's own update); a deal
# whose title names ProDoctorov counts for ProDoctorov, whatever the CRM's source says.
RULES = """\
rules:
  - id: close-booked
    when: {changed: deal.stage, to: booked, pipeline: sales}
    do:
      - deal.move: {stage: won}
  - id: prodoctorov
    when: {event: deal.created, pipeline: sales}
    if: "has(deal, 'title') and contains(deal.title, 'ПроДокторов')"
    do:
      - set_source: {channel: prodoctorov, touch: first}
"""

T = int(datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc).timestamp())


def _deal(ident: str, verb: str, at: str, data: dict[str, object], delivery: str) -> dict[str, object]:
    return {"event": f"deal.{verb}", "entity": {"kind": "deal", "id": ident}, "at": at, "data": data,
            "delivery_id": delivery}


def test_the_daemon_keeps_leads_stage_moves_and_first_channels(tmp_path: Path,
                                                               start_daemon: Callable[..., Daemon]) -> None:
    project: Project = write_project(tmp_path / "project", 0, RULES, config=CONFIG)
    (project.root / "pipelines" / "visits.yaml").write_text(PIPELINES)
    daemon = start_daemon(project)
    posts = [
        _deal("1", "created", "2026-03-02T12:00:00+03:00",
              {"pipeline": "sales", "stage": "new", "client": "77", "responsible": "7", "lead_source": "WEB",
               "utm_source": "vk", "utm_campaign": "spring", "amount": "3000.00"}, "d1"),
        _deal("1", "updated", "2026-03-02T12:05:00+03:00", {"stage": "talking", "modified_by": "3"}, "d2"),
        _deal("1", "updated", "2026-03-02T12:05:00+03:00", {"stage": "talking", "modified_by": "3"}, "d2"),
        _deal("1", "updated", "2026-03-02T12:10:00+03:00", {"stage": "booked", "modified_by": "3"}, "d3"),
        _deal("2", "created", "2026-03-02T12:20:00+03:00",
              {"pipeline": "sales", "stage": "new", "client": "78", "title": "Запись с ПроДокторов",
               "lead_source": "WEB"}, "d4"),
        {"event": "booking.created", "entity": {"kind": "booking", "id": "501"}, "at": "2026-03-02T12:30:00+03:00",
         "data": {"client": "78", "staff": "12", "status": "confirmed", "amount": "2500",
                  "starts_at": "2026-03-04T10:00:00+03:00"}, "delivery_id": "b1"},
        {"event": "nps.received", "entity": {"kind": "client", "id": "77"}, "at": "2026-03-02T13:00:00+03:00",
         "data": {"score": 9}, "delivery_id": "n1"},
    ]
    for body in posts:
        assert daemon.post("crm", body).status == 200
    assert daemon.post("crm", posts[0], token="wrong").status == 401
    wait_for(lambda: daemon.query("select count(*) from stage_moves") == [(5,)]
             and daemon.query("select first_channel from leads where id = 'deal:2'") == [("prodoctorov",)]
             and daemon.query("select count(*) from reviews") == [(1,)], 30, "the facts to be kept")
    wait_outbox_drained(project.db, 20)
    # The rule's move came back as the deal's update, at the moment the daemon performed it.
    won_at = daemon.query("select \"at\" from stage_moves where stage = 'won'")[0][0]
    assert daemon.query("select id, source, client, stage, outcome, created_at, qualified_at, closed_at, amount, "
                        "first_channel, first_campaign, last_channel from leads order by id") == [
        ("deal:1", "crm", "77", "won", "won", T, T + 300, won_at, 300000, "vk", "spring", "vk"),
        ("deal:2", "crm", "78", "new", "open", T + 1200, None, None, None, "prodoctorov", None, "site")]
    assert daemon.query('select record, stage, from_stage, "by" from stage_moves order by record, id') == [
        ("deal:1", "new", None, None), ("deal:1", "talking", "new", "3"), ("deal:1", "booked", "talking", "3"),
        ("deal:1", "won", "booked", "rule:close-booked"), ("deal:2", "new", None, None)]
    assert daemon.query("select client, channel, record from client_channels order by client") == [
        ("77", "vk", "deal:1"), ("78", "prodoctorov", "deal:2")]
    assert daemon.query("select id, client, staff, status, amount, channel from bookings") == [
        ("501", "78", "12", "confirmed", 250000, None)]
    assert daemon.query('select client, score, "at" from reviews') == [("77", 9, T + 3600)]
