"""What the reports read, kept as events arrive (issue 15, "Data"): channels from the source fields, the facts one
event adds (automator/facts.py) and the rows the store keeps of them (store/facts.py), decided as the daemon and
`automator test` decide them (decide() over a SQLite store), checked against figures worked out by hand."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from automator import channels
from automator.config.load import load_project
from automator.config.project import Project
from automator.core.decide import decide
from automator.facts import facts_of
from automator.model import ENGINE, Entity, EntityRef, Event
from automator.simulator import Simulator
from automator.store.sqlite import SqliteStore

ROOT = Path(__file__).resolve().parents[1]  # the example clinic project
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
E0 = int(T0.timestamp())
MSK = ZoneInfo("Europe/Moscow")


@pytest.fixture(scope="module")
def project() -> Project:
    found, problems = load_project(ROOT)
    assert found is not None, problems
    return found


@pytest.fixture
def store() -> SqliteStore:
    return SqliteStore()


def feed(project: Project, store: SqliteStore, *events: Event) -> None:
    """Decide each event and write its decision, as the worker and the simulator do."""
    for event in events:
        store.apply(decide(project, store, event, event.at))


def deal(n: int, minutes: int, verb: str, data: dict[str, Any], ident: str = "5", **kw: Any) -> Event:
    return Event(id=f"e{n}", type=f"deal.{verb}", at=T0 + timedelta(minutes=minutes), entity=EntityRef("deal", ident),
                 data=data, source=kw.pop("source", "crm"), **kw)


def rows(store: SqliteStore, sql: str) -> list[tuple[Any, ...]]:
    return store.db.conn.execute(sql).fetchall()


def lead(store: SqliteStore, record: str) -> dict[str, Any]:
    cursor = store.db.conn.execute("select * from leads where id = ?", [record])
    names = [c[0] for c in cursor.description]
    row = cursor.fetchone()
    assert row is not None, f"no row for {record}"
    return dict(zip(names, row))


# ---- channels ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("fields", "expected"), [
    ({"channel": "vk", "utm_source": "instagram"}, "vk"),  # an explicit known channel wins
    ({"channel": "nonsense", "utm_source": "instagram"}, "instagram"),  # an unknown one is no channel
    ({"lead_source": "WEB", "utm_source": "VK"}, "vk"),  # the specific channel before the general site form
    ({"lead_source": "WEB"}, "site"),
    ({"lead_source": "WEBFORM"}, "site"), ({"lead_source": "CALLBACK"}, "site"),
    ({"lead_source": "CALL"}, "call_tracking"), ({"lead_source": "EMAIL"}, "email"),
    ({"lead_source": "ADVERTISING"}, "yandex_direct"), ({"lead_source": "PARTNER"}, "recommendation"),
    ({"lead_source": "RECOMMENDATION"}, "recommendation"), ({"lead_source": "TRADE_SHOW"}, "other"),
    ({"lead_source": "RC_GENERATOR"}, "other"), ({"lead_source": "STORE"}, "walk_in"),
    ({"lead_source": "OTHER"}, "other"),
    ({"utm_source": "ig"}, "instagram"), ({"utm_source": "fb"}, "facebook"), ({"utm_source": "tg"}, "telegram"),
    ({"utm_source": "wa"}, "whatsapp"), ({"utm_source": "vkontakte"}, "vk"), ({"utm_source": "2gis"}, "2gis"),
    ({"utm_source": "yandex_maps"}, "yandex_maps"), ({"utm_medium": "email"}, "email"),
    # YCLIENTS's booking sources: its own online booking, the administrator, the portals by name.
    ({"lead_source": "online"}, "site"), ({"lead_source": "widget"}, "site"), ({"lead_source": "admin"}, "walk_in"),
    ({"lead_source": "prodoctorov"}, "aggregator"), ({"lead_source": "yandex_maps"}, "yandex_maps"),
    ({"lead_source": "avito"}, "avito"),
    ({"tags": ["VIP", "Инстаграм"]}, "instagram"),
    ({"lead_source": "UC_8X2Q"}, None), ({}, None), ({"utm_campaign": "spring"}, None),
])
def test_the_default_channels_classify_the_sources_connectors_report(fields: dict[str, Any],
                                                                      expected: str | None) -> None:
    assert channels.DEFAULTS.classify(fields) == expected


def test_the_default_channels_claim_each_value_once() -> None:
    assert channels.overlaps(channels.DEFAULTS) == []


def test_a_projects_channels_are_tried_in_its_order_case_insensitively() -> None:
    mine = channels.load({"prodoctorov": {"title": "ПроДокторов", "aggregator": True,
                                          "match": {"utm_source": ["ProDoctorov"]}},
                          "site": {"title": "Сайт", "match": {"lead_source": "web"}}})
    assert mine.classify({"lead_source": "WEB", "utm_source": "prodoctorov"}) == "prodoctorov"
    assert mine.classify({"lead_source": "Web"}) == "site"
    assert mine.is_aggregator("prodoctorov") and not mine.is_aggregator("site")
    assert mine.title("site") == "Сайт" and mine.title(None) == "не указан"
    assert channels.campaign_of({"utm_campaign": "spring"}) == "spring"
    assert channels.campaign_of({"campaign": "autumn", "utm_campaign": "spring"}) == "autumn"


def _validate(tmp_path: Path, config: str, rules: str = "", pipelines: str = "") -> str:
    (tmp_path / "automator.yaml").write_text("timezone: Europe/Moscow\nconnectors:\n  crm: {type: local}\n" + config)
    if pipelines:
        (tmp_path / "pipelines").mkdir()
        (tmp_path / "pipelines" / "p.yaml").write_text(pipelines)
    if rules:
        (tmp_path / "rules").mkdir()
        (tmp_path / "rules" / "r.yaml").write_text(rules)
    found, problems = load_project(tmp_path)
    if found is not None:
        problems = list(found.warnings)
    return "\n".join(p.format() for p in problems)


def test_a_bad_channel_entry_is_reported_at_its_line(tmp_path: Path) -> None:
    text = _validate(tmp_path, "channels:\n  vk:\n    title: ВКонтакте\n    match: {utm_sorce: [vk]}\n")
    assert text.endswith("automator.yaml:7:13: error: unknown key 'utm_sorce'\n    hint: did you mean 'utm_source'?"), text
    assert text.count("error:") == 1, text


def test_automator_validate_prints_a_bad_channel_with_its_place(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from automator.cli import cli

    (tmp_path / "automator.yaml").write_text("timezone: Europe/Moscow\nchannels:\n  vk:\n    aggregator: yes\n")
    result = CliRunner().invoke(cli, ["validate", str(tmp_path)])
    assert result.exit_code == 1
    assert "automator.yaml:4:17: error:" in result.output and "aggregator" in result.output, result.output


def test_a_value_two_channels_match_is_a_warning(tmp_path: Path) -> None:
    text = _validate(tmp_path, "channels:\n  vk: {match: {utm_source: [vk]}}\n"
                               "  vk_ads: {match: {utm_source: [vk, vkads]}}\n")
    assert "automator.yaml:6:" in text and "warning: utm_source 'vk' is matched by channel 'vk' first" in text, text


SET_SOURCE_RULE = """\
rules:
  - id: mark
    when: {event: deal.created}
    do:
      - set_source: {channel: prodoktorov}
"""


def test_set_source_of_an_unknown_channel_is_an_error_with_a_guess(tmp_path: Path) -> None:
    text = _validate(tmp_path, "channels:\n  prodoctorov: {title: ПроДокторов, aggregator: true}\n"
                               "  site: {title: Сайт}\n", SET_SOURCE_RULE)
    assert "rules/r.yaml:5:31: error: unknown channel 'prodoktorov'" in text, text
    assert "did you mean 'prodoctorov'?" in text


def test_a_lost_stage_cannot_be_the_qualified_one(tmp_path: Path) -> None:
    text = _validate(tmp_path, "", pipelines="pipelines:\n  p:\n    connector: crm\n    stages:\n"
                                             "      new: {id: N}\n      lost: {id: L, outcome: lost, qualified: true}\n")
    assert "pipelines/p.yaml:6:" in text and "stage 'lost' is lost" in text, text


def test_a_second_qualified_mark_is_a_warning(tmp_path: Path) -> None:
    text = _validate(tmp_path, "", pipelines="pipelines:\n  p:\n    connector: crm\n    stages:\n"
                                             "      new: {id: N}\n      talk: {id: T, qualified: true}\n"
                                             "      meet: {id: M, qualified: true}\n")
    assert "pipelines/p.yaml:7:" in text and "warning: stage 'talk' is marked qualified already" in text, text


# ---- deals ---------------------------------------------------------------------------------------------------

def test_a_deals_life_is_kept_with_its_touches_stage_moves_and_outcome(project: Project, store: SqliteStore) -> None:
    feed(project, store,
         deal(1, 0, "created", {"pipeline": "first_sales", "stage": "new", "client": "77", "responsible": "7",
                                "lead_source": "WEB", "utm_source": "vk", "utm_campaign": "spring",
                                "amount": "1500.50"}),
         deal(2, 10, "updated", {"stage": "in_progress", "modified_by": "3"}),
         # Bitrix24 sends the whole deal on each change: the same source again is no new touch.
         deal(3, 20, "updated", {"stage": "in_progress", "lead_source": "WEB", "utm_source": "vk",
                                 "utm_campaign": "spring", "responsible": "8"}),
         deal(4, 30, "updated", {"utm_source": "yandex", "utm_campaign": "retarget"}),
         deal(5, 40, "updated", {"stage": "won", "amount": "2000"}, echo_of="close-won"))
    row = lead(store, "deal:5")
    assert row == {
        "id": "deal:5", "kind": "deal", "source": "crm", "client": "77", "pipeline": "first_sales", "stage": "won",
        "outcome": "won", "responsible": "8", "created_at": E0, "qualified_at": E0 + 600, "closed_at": E0 + 2400,
        "amount": 200000, "currency": "RUB",
        # vk is listed before yandex_direct in automator.yaml; the first touch stays, the last is the retargeting.
        "first_channel": "vk", "first_campaign": "spring", "first_at": E0,
        "last_channel": "yandex_direct", "last_campaign": "retarget", "last_at": E0 + 1800,
        "raw_source": "WEB", "utm_source": "yandex", "utm_medium": None, "utm_campaign": "retarget",
        "utm_content": None, "utm_term": None}
    assert rows(store, 'select record, pipeline, stage, from_stage, "at", "by", responsible, event from stage_moves '
                       "order by id") == [
        ("deal:5", "first_sales", "new", None, E0, None, "7", "e1"),
        ("deal:5", "first_sales", "in_progress", "new", E0 + 600, "3", "7", "e2"),
        ("deal:5", "first_sales", "won", "in_progress", E0 + 2400, "rule:close-won", "8", "e5")]
    assert rows(store, 'select client, channel, campaign, "at", record from client_channels') == [
        ("77", "vk", "spring", E0, "deal:5")]


def test_a_repeated_event_adds_nothing(project: Project, store: SqliteStore) -> None:
    created = deal(1, 0, "created", {"pipeline": "first_sales", "stage": "new", "utm_source": "vk"})
    moved = deal(2, 5, "updated", {"stage": "in_progress"})
    feed(project, store, created, moved)
    before = lead(store, "deal:5")
    # The same events decided again (a replay), and the move reported a second time (its webhook after its poll).
    store.apply(decide(project, store, created, created.at))
    store.apply(decide(project, store, moved, moved.at))
    feed(project, store, deal(3, 9, "updated", {"stage": "in_progress"}))
    assert lead(store, "deal:5") == before
    assert rows(store, "select stage, event from stage_moves order by id") == [("new", "e1"), ("in_progress", "e2")]


def test_qualified_counts_from_the_marked_stage_or_a_later_one_never_a_lost_one(project: Project,
                                                                               store: SqliteStore) -> None:
    feed(project, store,
         deal(1, 0, "created", {"pipeline": "first_sales", "stage": "new"}, ident="1"),
         deal(2, 5, "updated", {"stage": "lost"}, ident="1"),  # lost straight from new: never qualified
         deal(3, 0, "created", {"pipeline": "first_sales", "stage": "won"}, ident="2"),  # won at once: qualified
         deal(4, 0, "created", {"pipeline": "rehabilitation", "stage": "thinking"}, ident="3"),
         deal(5, 7, "updated", {"stage": "booked"}, ident="3"),  # past warmed_up, the marked stage
         deal(6, 9, "updated", {"stage": "thinking"}, ident="3"))  # moved back: qualified it stays
    got = {r[0]: r[1:] for r in rows(store, "select id, outcome, qualified_at, closed_at from leads")}
    assert got == {"deal:1": ("lost", None, E0 + 300), "deal:2": ("won", E0, E0),
                   "deal:3": ("open", E0 + 420, None)}


def test_the_outcome_field_a_deleted_deal_and_a_reopened_one(project: Project, store: SqliteStore) -> None:
    feed(project, store,
         deal(1, 0, "created", {"pipeline": "unknown_pipeline", "stage": "X", "outcome": "won"}, ident="1"),
         deal(2, 0, "created", {"pipeline": "first_sales", "stage": "new"}, ident="2"),
         deal(3, 3, "deleted", {}, ident="2"),
         deal(4, 0, "created", {"pipeline": "first_sales", "stage": "lost"}, ident="3"),
         deal(5, 4, "updated", {"stage": "in_progress"}, ident="3"),
         deal(6, 0, "deleted", {}, ident="4"))  # never seen: nothing to keep
    got = {r[0]: r[1:] for r in rows(store, "select id, outcome, closed_at from leads")}
    assert got == {"deal:1": ("won", E0), "deal:2": ("lost", E0 + 180), "deal:3": ("open", None)}


def test_an_earlier_creation_seen_later_moves_created_at_and_the_first_channel_back(project: Project,
                                                                                    store: SqliteStore) -> None:
    feed(project, store,
         deal(1, 60, "created", {"pipeline": "first_sales", "stage": "new", "client": "77", "utm_source": "vk"},
              ident="1"),
         # The person's older deal, caught up by a poll after: it was made an hour before, from ProDoctorov.
         deal(2, 90, "updated", {"pipeline": "first_sales", "stage": "new", "client": "77",
                                 "utm_source": "prodoctorov", "created_at": "2026-03-02T12:00:00+03:00"}, ident="0"))
    assert lead(store, "deal:0")["created_at"] == E0
    assert rows(store, 'select client, channel, "at", record from client_channels') == [
        ("77", "prodoctorov", E0, "deal:0")]


def test_facts_of_is_pure_and_reads_only_the_event_and_both_states(project: Project) -> None:
    before = Entity(EntityRef("deal", "5"), {"pipeline": "first_sales", "stage": "new", "utm_source": "vk"})
    after = Entity(EntityRef("deal", "5"), {**before.fields, "stage": "won"})
    event = deal(9, 0, "updated", {"stage": "won"}, echo_of="r")
    facts = facts_of(event, before, after, project.config.channels, project.pipelines, MSK)
    assert [m.stage for m in facts.moves] == ["won"] and facts.moves[0].by == "rule:r"
    assert facts.leads[0].first is None  # no source in this event: no touch
    assert facts_of(event, before, after, project.config.channels, project.pipelines, MSK) == facts


# ---- set_source ----------------------------------------------------------------------------------------------

def test_set_source_corrects_the_touches_it_names(project: Project, store: SqliteStore) -> None:
    def corrected(n: int, minutes: int, touch: str, channel: str) -> Event:
        return deal(n, minutes, "updated", {"channel": channel, "campaign": "fix", "source_touch": touch},
                    source=ENGINE, caused_by=f"k{n}", echo_of="mark")

    feed(project, store, deal(1, 0, "created", {"pipeline": "first_sales", "stage": "new", "client": "77",
                                                "utm_source": "vk"}))
    feed(project, store, corrected(2, 5, "last", "site"))
    assert [lead(store, "deal:5")[k] for k in ("first_channel", "last_channel", "last_campaign", "source")] == [
        "vk", "site", "fix", "crm"]
    feed(project, store, corrected(3, 6, "first", "prodoctorov"))
    row = lead(store, "deal:5")
    assert (row["first_channel"], row["first_at"], row["last_channel"]) == ("prodoctorov", E0 + 360, "site")
    assert rows(store, "select client, channel, record from client_channels") == [("77", "prodoctorov", "deal:5")]
    feed(project, store, corrected(4, 7, "both", "call"))
    row = lead(store, "deal:5")
    assert (row["first_channel"], row["last_channel"]) == ("call", "call")


def test_a_rule_test_sees_set_source_in_the_tables(project: Project) -> None:
    """`automator test` and dry-run decide through the same code: the simulated store keeps the same rows."""
    sim = Simulator(project, datetime(2026, 3, 2, 11, 0, tzinfo=MSK))
    sim.event({"event": "deal.created", "entity": {"kind": "deal", "id": "910"}, "source": "crm",
               "data": {"pipeline": "first_sales", "stage": "new", "title": "Запись с ПроДокторов",
                        "lead_source": "WEB"}})
    assert [p.effect.action for p in sim.performed] == ["set_source"]
    got = sim.store.db.conn.execute("select first_channel, first_campaign, last_channel, raw_source from leads "
                                    "where id = 'deal:910'").fetchone()
    assert got == ("prodoctorov", "widget", "prodoctorov", "WEB")


SOURCE_RULES = """\
rules:
  - id: lead-vk
    when: {event: lead.created}
    do:
      - set_source: {channel: vk, campaign: spring}
  - id: client-aggregator
    when: {event: client.created}
    do:
      - set_source: {channel: aggregator, touch: first}
  - id: rendered
    when: {event: deal.created}
    do:
      - set_source: {channel: "{{ deal.title }}"}
"""


def test_set_source_on_a_lead_and_a_client_and_a_rendered_channel_it_does_not_know(tmp_path: Path) -> None:
    (tmp_path / "automator.yaml").write_text("timezone: Europe/Moscow\nconnectors:\n  crm: {type: local}\n")
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "r.yaml").write_text(SOURCE_RULES)
    found, problems = load_project(tmp_path)
    assert found is not None, problems
    sim = Simulator(found, datetime(2026, 3, 2, 12, 0, tzinfo=MSK))
    sim.event({"event": "lead.created", "source": "crm", "data": {"lead_id": "31", "status_id": "NEW",
                                                                "lead_source": "CALL", "client": "77"}})
    assert [(p.effect.action, dict(p.effect.params)) for p in sim.performed] == [
        ("set_source", {"channel": "vk", "campaign": "spring", "touch": "both", "lead": "31", "connector": "crm"})]
    assert lead(sim.store, "lead:crm:31")["first_channel"] == "vk"  # the CRM said CALL; the rule says VK
    assert [lead(sim.store, "lead:crm:31")[k] for k in ("last_channel", "last_campaign", "source", "client")] == [
        "vk", "spring", "crm", "77"]
    sim.event({"event": "client.created", "entity": {"kind": "client", "id": "78"}, "data": {"name": "Анна"}})
    assert rows(sim.store, "select client, channel, record from client_channels order by client") == [
        ("77", "vk", "lead:crm:31"), ("78", "aggregator", "")]
    sim.event({"event": "deal.created", "entity": {"kind": "deal", "id": "9"}, "data": {"title": "tiktok"}})
    assert [(e.rule_id, e.message) for e in sim.errors] == [("rendered", "set_source: unknown channel 'tiktok' (the channels are "
                                             + ", ".join(channels.DEFAULTS.names()) + ")")]
    # A correction of a deal nobody reported keeps no row.
    feed(found, sim.store, deal(9, 0, "updated", {"channel": "vk", "source_touch": "both"}, ident="404",
                                source=ENGINE, caused_by="k9", echo_of="mark"))
    assert rows(sim.store, "select id from leads where id = 'deal:404'") == []


# ---- leads, bookings, reviews --------------------------------------------------------------------------------

def test_a_leads_statuses_are_its_stages_and_converted_is_won(project: Project, store: SqliteStore) -> None:
    def lead_event(n: int, minutes: int, verb: str, data: dict[str, Any]) -> Event:
        return Event(id=f"l{n}", type=f"lead.{verb}", at=T0 + timedelta(minutes=minutes), source="crm",
                     data={"lead_id": "31", **data})

    feed(project, store,
         lead_event(1, 0, "created", {"status_id": "NEW", "lead_source": "WEB", "utm_source": "vk",
                                      "created_at": "2026-03-02T11:58:00+03:00", "responsible": "7"}),
         lead_event(2, 5, "updated", {"responsible": "8"}),
         lead_event(3, 9, "updated", {"status_id": "IN_PROCESS"}),
         lead_event(4, 9, "updated", {"status_id": "IN_PROCESS"}),  # the same status again: no move
         lead_event(5, 20, "updated", {"status_id": "CONVERTED"}))
    row = lead(store, "lead:crm:31")
    assert (row["kind"], row["stage"], row["outcome"], row["responsible"], row["created_at"], row["qualified_at"],
            row["closed_at"], row["first_channel"]) == ("lead", "CONVERTED", "won", "8", E0 - 120, E0 + 1200,
                                                        E0 + 1200, "vk")
    assert rows(store, "select stage, from_stage, event from stage_moves order by id") == [
        ("NEW", None, "l1"), ("IN_PROCESS", "NEW", "l3"), ("CONVERTED", "IN_PROCESS", "l5")]


def test_bookings_are_kept_and_an_earlier_booking_is_the_persons_first_channel(project: Project,
                                                                              store: SqliteStore) -> None:
    def booking(n: int, minutes: int, verb: str, data: dict[str, Any], ident: str = "1001") -> Event:
        return Event(id=f"b{n}", type=f"booking.{verb}", at=T0 + timedelta(minutes=minutes), source="booking",
                     entity=EntityRef("booking", ident), data=data)

    feed(project, store,
         deal(1, 30, "created", {"pipeline": "first_sales", "stage": "new", "client": "77", "utm_source": "vk"}),
         booking(2, 40, "created", {"client": "77", "staff": "12", "branch": "main", "status": "confirmed",
                                    "starts_at": "2026-03-05T15:00:00+03:00", "amount": "2500.00",
                                    "lead_source": "prodoctorov", "created_at": "2026-03-02T11:50:00+03:00"}),
         booking(3, 50, "updated", {"status": "arrived"}),
         booking(4, 60, "deleted", {}, ident="1002"))
    assert rows(store, "select id, source, client, staff, branch, status, created_at, starts_at, amount, channel "
                       "from bookings order by id") == [
        ("1001", "booking", "77", "12", "main", "arrived", E0 - 600,
         int(datetime(2026, 3, 5, 12, 0, tzinfo=timezone.utc).timestamp()), 250000, "prodoctorov"),
        ("1002", "booking", None, None, None, "cancelled", E0 + 3600, None, None, None)]
    assert rows(store, 'select client, channel, "at", record from client_channels') == [
        ("77", "prodoctorov", E0 - 600, "booking:1001")]


def test_reviews_and_nps_answers_are_kept_with_a_score_from_0_to_10(project: Project, store: SqliteStore) -> None:
    def answer(n: int, score: Any, kind: str = "nps.received", **data: Any) -> Event:
        return Event(id=f"r{n}", type=kind, at=T0, source="forms", entity=EntityRef("client", "77"),
                     data={"score": score, **data})

    feed(project, store, answer(1, 9), answer(2, "10", "review.received", staff="12", booking="1001"),
         answer(3, "11"), answer(4, 7.5), answer(5, "good"), answer(1, 9))
    assert rows(store, 'select id, client, "at", score, staff, booking from reviews order by id') == [
        ("r1", "77", E0, 9, None, None), ("r2", "77", E0, 10, "12", "1001")]
