"""The daemon's durable timers: schedule timers kept in sync with the rules, due timers moved into the journal,
catch-up after downtime, and DST days."""
from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from automator.config.load import load_project
from automator.config.project import Project
from automator.core.wakeup import tick_event
from automator.daemon import crashpoints
from automator.daemon.timers import fire_due, sync_schedules
from automator.model import EntityRef, Event, Timer
from automator.store.sqlite import SqliteStore

BERLIN = ZoneInfo("Europe/Berlin")
UTC = timezone.utc
Projects = Callable[..., Project]


@pytest.fixture(scope="module")
def projects(tmp_path_factory: pytest.TempPathFactory) -> Projects:
    """Projects with one rules file, written and loaded once per module (loading is most of these tests' time)."""
    cache: dict[tuple[str, str], Project] = {}

    def make(rules: str, *, tz: str) -> Project:
        if (rules, tz) not in cache:
            root = tmp_path_factory.mktemp("timers")
            (root / "automator.yaml").write_text(
                f"timezone: {tz}\nbranches:\n  main: {{hours: \"09:00-21:00\", days: mon-sat}}\n"
                "connectors:\n  crm: {type: local, events: {nps.received: {entity: client, data: {score: number}}}}\n")
            (root / "rules").mkdir()
            (root / "rules" / "rules.yaml").write_text(rules)
            project, problems = load_project(root)
            assert project is not None, problems
            cache[rules, tz] = project
        return cache[rules, tz]

    return make


def load(projects: Projects, rules: str, tz: str = "Europe/Berlin") -> Project:
    return projects(rules, tz=tz)


def schedule_rules(*specs: tuple[str, str]) -> str:
    lines = ["rules:"]
    for rule_id, when in specs:
        lines += [f"  - id: {rule_id}", f"    when: {when}", "    do:", "      - notify: {to: admin, text: tick}"]
    return "\n".join(lines) + "\n"


def schedule_timers(store: SqliteStore) -> dict[str, datetime]:
    return {t.id: t.due_at for t in store.timers() if t.kind == "schedule"}


def journal_ids(store: SqliteStore) -> list[str]:
    return [r["id"] for r in store.db.query("select id from journal order by seq")]


# ---- sync_schedules ----------------------------------------------------------------------------------------------

def test_sync_creates_one_timer_per_schedule_rule(projects: Projects) -> None:
    project = load(projects, schedule_rules(("morning", '{schedule: "0 10 * * *"}'),
                                                ("closing", "{schedule: end_of_day}"),
                                                ("on-event", "{event: nps.received}")))
    store = SqliteStore()
    now = datetime(2026, 3, 2, 12, 0, tzinfo=BERLIN)  # a Monday, after 10:00
    assert sync_schedules(store, project, now) == 2
    assert schedule_timers(store) == {
        "schedule/morning": datetime(2026, 3, 3, 10, 0, tzinfo=BERLIN),
        "schedule/closing": datetime(2026, 3, 2, 21, 0, tzinfo=BERLIN),  # the branch closes at 21:00
    }
    (timer,) = [t for t in store.timers() if t.id == "schedule/morning"]
    assert (timer.rule_id, timer.payload) == ("morning", {"spec": "0 10 * * *||once"})
    # Syncing again (every start, every reload) changes nothing.
    assert sync_schedules(store, project, now + timedelta(minutes=5)) == 0
    assert len(schedule_timers(store)) == 2


def test_a_kept_timer_keeps_its_due_time_across_a_restart(projects: Projects) -> None:
    project = load(projects, schedule_rules(("morning", '{schedule: "0 10 * * *"}')))
    store = SqliteStore()
    sync_schedules(store, project, datetime(2026, 3, 2, 9, 0, tzinfo=BERLIN))
    # Down for three days: the timer must still say the first missed tick, so fire_due can catch up.
    assert sync_schedules(store, project, datetime(2026, 3, 5, 12, 0, tzinfo=BERLIN)) == 0
    assert schedule_timers(store) == {"schedule/morning": datetime(2026, 3, 2, 10, 0, tzinfo=BERLIN)}


def test_a_changed_schedule_resets_its_timer(projects: Projects) -> None:
    store = SqliteStore()
    start = datetime(2026, 3, 2, 9, 0, tzinfo=BERLIN)
    sync_schedules(store, load(projects, schedule_rules(("r", '{schedule: "0 10 * * *"}'))), start)
    later = datetime(2026, 3, 4, 12, 0, tzinfo=BERLIN)
    changed = load(projects, schedule_rules(("r", '{schedule: "0 18 * * *"}')))
    assert sync_schedules(store, changed, later) == 1
    assert schedule_timers(store) == {"schedule/r": datetime(2026, 3, 4, 18, 0, tzinfo=BERLIN)}
    # The catch-up policy is part of what the timer was computed from too.
    policy = load(projects, schedule_rules(("r", '{schedule: "0 18 * * *", catch_up: all}')))
    assert sync_schedules(store, policy, later + timedelta(hours=1)) == 1
    (timer,) = store.timers()
    assert timer.payload == {"spec": "0 18 * * *||all"} and timer.due_at == datetime(2026, 3, 4, 18, 0, tzinfo=BERLIN)


def test_orphan_schedule_timers_are_deleted_others_kept(projects: Projects) -> None:
    store = SqliteStore()
    now = datetime(2026, 3, 2, 9, 0, tzinfo=BERLIN)
    sync_schedules(store, load(projects, schedule_rules(("a", '{schedule: "0 10 * * *"}'),
                                                            ("b", '{schedule: "0 11 * * *"}'))), now)
    wait = Timer(id="resume/run-1", due_at=now + timedelta(days=1), kind="resume", rule_id="a", run_id="run-1")
    store.put_timer(wait)
    assert sync_schedules(store, load(projects, schedule_rules(("b", '{schedule: "0 11 * * *"}'),
                                                                   ("c", "{event: nps.received}"))), now) == 0
    assert schedule_timers(store) == {"schedule/b": datetime(2026, 3, 2, 11, 0, tzinfo=BERLIN)}
    assert [t.id for t in store.timers() if t.kind == "resume"] == ["resume/run-1"]  # waits are not schedules


# ---- fire_due ----------------------------------------------------------------------------------------------------

@pytest.fixture
def plain(projects: Projects) -> Project:
    return load(projects, schedule_rules(("later", '{schedule: "0 10 * * *"}')))


def test_fire_due_moves_waits_and_held_timers_into_the_journal(plain: Project) -> None:
    store = SqliteStore()
    now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    store.put_timer(Timer(id="resume/run-1", due_at=now - timedelta(minutes=1), kind="resume", rule_id="r1",
                          key="client:7", run_id="run-1"))
    store.put_timer(Timer(id="held/r2/booking:5", due_at=now, kind="held", rule_id="r2", key="booking:5"))
    store.put_timer(Timer(id="resume/run-2", due_at=now + timedelta(seconds=1), kind="resume", rule_id="r1",
                          run_id="run-2"))
    report = fire_due(store, plain, now)
    assert report.by_kind == {"resume": 1, "held": 1}
    assert [e.id for e in report.events] == [f"resume/run-1@{(now - timedelta(minutes=1)).isoformat()}",
                                             f"held/r2/booking:5@{now.isoformat()}"]
    resume, held = report.events
    assert (resume.type, resume.source, resume.entity, dict(resume.data)) == (
        "timer.fired", "timer", None, {"kind": "resume", "rule": "r1", "run": "run-1", "timer": "resume/run-1"})
    assert held.entity == EntityRef("booking", "5") and held.at == now
    assert journal_ids(store) == [e.id for e in report.events]
    assert [t.id for t in store.timers()] == ["resume/run-2"]
    # Nothing is due any more: a second pass fires nothing (a timer fires once).
    assert fire_due(store, plain, now).events == []
    assert store.count("journal") == 2


def test_when_nothing_is_due_fire_due_says_when_the_next_timer_is_without_a_transaction(
        plain: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """The timers loop sleeps until then; a look that finds nothing due takes no turn at the write lock."""
    store = SqliteStore()
    now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    assert fire_due(store, plain, now).next_due is None  # no timer at all
    store.put_timer(Timer(id="resume/run-1", due_at=now + timedelta(hours=1), kind="resume", rule_id="r1",
                          run_id="run-1"))

    def no_transaction() -> None:
        raise AssertionError("a transaction was opened")

    monkeypatch.setattr(store, "atomic", no_transaction)
    report = fire_due(store, plain, now)
    assert (report.events, report.next_due) == ([], now + timedelta(hours=1))
    monkeypatch.undo()
    fired = fire_due(store, plain, now + timedelta(hours=1))
    assert len(fired.events) == 1 and fired.next_due is None


def test_fire_due_is_one_transaction(plain: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    store = SqliteStore()
    now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    store.put_timer(Timer(id="resume/run-1", due_at=now, kind="resume", rule_id="r1", run_id="run-1"))

    def crash(name: str) -> None:
        if name == "timers.before_commit":
            raise RuntimeError("power cut")

    monkeypatch.setattr(crashpoints, "reached", crash)
    with pytest.raises(RuntimeError):
        fire_due(store, plain, now)
    # Neither half happened: the timer is still there and nothing was journaled.
    assert [t.id for t in store.timers()] == ["resume/run-1"] and store.count("journal") == 0
    monkeypatch.undo()
    assert len(fire_due(store, plain, now).events) == 1
    assert store.timers() == [] and store.count("journal") == 1


def test_a_schedule_timer_of_a_removed_rule_is_dropped(plain: Project) -> None:
    store = SqliteStore()
    now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    store.put_timer(Timer(id="schedule/gone", due_at=now, kind="schedule", rule_id="gone"))
    report = fire_due(store, plain, now)
    assert report.events == [] and store.timers() == []


# ---- catch-up after downtime -------------------------------------------------------------------------------------

@pytest.mark.parametrize("policy, fired_days, missed", [
    ("once", [4], 3),
    ("skip", [], 3),
    ("all", [2, 3, 4], 3),
])
def test_catch_up_after_several_missed_ticks(projects: Projects, caplog: pytest.LogCaptureFixture,
                                             policy: str, fired_days: list[int], missed: int) -> None:
    project = load(projects, schedule_rules(("daily", f'{{schedule: "0 10 * * *", catch_up: {policy}}}')))
    store = SqliteStore()
    sync_schedules(store, project, datetime(2026, 3, 2, 9, 0, tzinfo=BERLIN))
    # The daemon was down from before the 2nd 10:00 until after the 4th's: ticks on the 2nd, 3rd and 4th missed.
    now = datetime(2026, 3, 4, 15, 0, tzinfo=BERLIN)
    with caplog.at_level(logging.WARNING, logger="automator.daemon.timers"):
        report = fire_due(store, project, now)
    assert [e.at for e in report.events] == [datetime(2026, 3, d, 10, 0, tzinfo=BERLIN) for d in fired_days]
    assert all(e.data["missed"] == missed for e in report.events)
    assert report.catch_ups == [("daily", policy, missed)]
    assert schedule_timers(store) == {"schedule/daily": datetime(2026, 3, 5, 10, 0, tzinfo=BERLIN)}
    assert journal_ids(store) == [e.id for e in report.events]
    (record,) = [r for r in caplog.records if r.name == "automator.daemon.timers"]
    assert record.levelno == logging.WARNING
    assert (record.rule, record.missed, record.policy) == ("daily", missed, policy)  # type: ignore[attr-defined]
    assert f"{missed} tick(s) missed" in record.getMessage()
    assert f"fires {len(fired_days)}" in record.getMessage()


@pytest.mark.parametrize("policy", ["once", "skip", "all"])
def test_an_on_time_tick_fires_under_every_policy_and_is_not_logged(
        projects: Projects, caplog: pytest.LogCaptureFixture, policy: str) -> None:
    project = load(projects, schedule_rules(("daily", f'{{schedule: "0 10 * * *", catch_up: {policy}}}')))
    store = SqliteStore()
    sync_schedules(store, project, datetime(2026, 3, 2, 9, 0, tzinfo=BERLIN))
    with caplog.at_level(logging.WARNING, logger="automator.daemon.timers"):
        report = fire_due(store, project, datetime(2026, 3, 2, 10, 0, 2, tzinfo=BERLIN))
    assert [e.at for e in report.events] == [datetime(2026, 3, 2, 10, 0, tzinfo=BERLIN)]
    assert "missed" not in report.events[0].data and report.catch_ups == []
    assert not [r for r in caplog.records if r.name == "automator.daemon.timers"]
    assert schedule_timers(store) == {"schedule/daily": datetime(2026, 3, 3, 10, 0, tzinfo=BERLIN)}


@pytest.mark.parametrize("policy, fired_days, missed", [("once", [4], 2), ("skip", [4], 2), ("all", [2, 3, 4], 2)])
def test_catch_up_when_the_last_tick_is_on_time(projects: Projects, policy: str, fired_days: list[int],
                                                missed: int) -> None:
    project = load(projects, schedule_rules(("daily", f'{{schedule: "0 10 * * *", catch_up: {policy}}}')))
    store = SqliteStore()
    sync_schedules(store, project, datetime(2026, 3, 2, 9, 0, tzinfo=BERLIN))
    report = fire_due(store, project, datetime(2026, 3, 4, 10, 0, 30, tzinfo=BERLIN))
    assert [e.at for e in report.events] == [datetime(2026, 3, d, 10, 0, tzinfo=BERLIN) for d in fired_days]
    assert report.catch_ups == [("daily", policy, missed)]


def test_one_missed_tick_under_once(projects: Projects) -> None:
    project = load(projects, schedule_rules(("daily", '{schedule: "0 10 * * *"}')))
    store = SqliteStore()
    sync_schedules(store, project, datetime(2026, 3, 2, 9, 0, tzinfo=BERLIN))
    report = fire_due(store, project, datetime(2026, 3, 2, 11, 0, tzinfo=BERLIN))
    assert [(e.at, e.data["missed"]) for e in report.events] == [(datetime(2026, 3, 2, 10, 0, tzinfo=BERLIN), 1)]


# ---- DST ---------------------------------------------------------------------------------------------------------

def run_timer_loop(store: SqliteStore, project: Project, start: datetime, end: datetime) -> list[Event]:
    """The daemon's timer loop without the waiting: jump to each due time and fire."""
    sync_schedules(store, project, start)
    fired: list[Event] = []
    while (due := store.next_due()) is not None and due <= end:
        fired.extend(fire_due(store, project, due).events)
    return fired


def local(events: list[Event]) -> list[str]:
    return [e.at.astimezone(BERLIN).isoformat() for e in events]


def test_daily_0230_on_the_fall_back_day_fires_once(projects: Projects) -> None:
    project = load(projects, schedule_rules(("nightly", '{schedule: "30 2 * * *"}')))
    store = SqliteStore()
    fired = run_timer_loop(store, project, datetime(2026, 10, 23, 12, 0, tzinfo=BERLIN),
                           datetime(2026, 10, 27, 12, 0, tzinfo=BERLIN))
    # 25 October 2026: 03:00 CEST becomes 02:00 CET, so 02:30 happens twice; the schedule fires at the first.
    assert local(fired) == ["2026-10-24T02:30:00+02:00", "2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00",
                            "2026-10-27T02:30:00+01:00"]
    assert fired[1].at == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    assert not any("missed" in e.data for e in fired)
    ids = [e.id for e in fired]
    assert len(set(ids)) == len(ids) and journal_ids(store) == ids
    assert all(i.startswith("schedule/nightly@2026-10-") and "T02:30:00" in i for i in ids)


def test_daily_0230_on_the_spring_forward_day_fires_once_at_0300(projects: Projects) -> None:
    project = load(projects, schedule_rules(("nightly", '{schedule: "30 2 * * *"}')))
    store = SqliteStore()
    fired = run_timer_loop(store, project, datetime(2026, 3, 27, 12, 0, tzinfo=BERLIN),
                           datetime(2026, 3, 30, 12, 0, tzinfo=BERLIN))
    # 29 March 2026: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist and fires once at 03:00 CEST.
    assert local(fired) == ["2026-03-28T02:30:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]
    ids = [e.id for e in fired]
    assert len(set(ids)) == len(ids) and journal_ids(store) == ids


def test_catch_up_all_across_the_fall_back_day_fires_each_local_time_once(projects: Projects) -> None:
    project = load(projects, schedule_rules(("nightly", '{schedule: "30 2 * * *", catch_up: all}')))
    store = SqliteStore()
    sync_schedules(store, project, datetime(2026, 10, 23, 12, 0, tzinfo=BERLIN))
    report = fire_due(store, project, datetime(2026, 10, 26, 12, 0, tzinfo=BERLIN))
    assert local(report.events) == ["2026-10-24T02:30:00+02:00", "2026-10-25T02:30:00+02:00",
                                    "2026-10-26T02:30:00+01:00"]
    assert len({e.id for e in report.events}) == 3 and store.count("journal") == 3


def test_tick_ids_are_per_rule_and_local_wall_time(plain: Project) -> None:
    config = plain.config
    assert config.timezone == BERLIN
    first = tick_event("r", datetime(2026, 10, 25, 0, 30, tzinfo=UTC), config)
    assert first.id.startswith("schedule/r@2026-10-25T02:30:00")
    assert tick_event("r", datetime(2026, 10, 25, 0, 30, tzinfo=UTC), config).id == first.id  # deterministic
    assert tick_event("other", datetime(2026, 10, 25, 0, 30, tzinfo=UTC), config).id != first.id
    assert tick_event("r", datetime(2026, 10, 26, 1, 30, tzinfo=UTC), config).id.startswith(
        "schedule/r@2026-10-26T02:30:00")
    store = SqliteStore()
    assert store.append([first], first.at) == [True]
    assert store.append([tick_event("r", first.at, config, missed=2)], first.at) == [False]  # a tick journals once


def test_an_hourly_schedule_fires_in_both_passes_of_the_repeated_hour(projects: Projects) -> None:
    # Hourly schedules follow real time (automator/clock.py, cron_next): during the repeated hour of the
    # fall-back night they fire in both passes, as `automator test` on the simulated clock shows. The daemon
    # must journal both ticks, not drop the second as a duplicate of the first's wall time.
    project = load(projects, schedule_rules(("hourly", '{schedule: "30 * * * *"}')))
    store = SqliteStore()
    fired = run_timer_loop(store, project, datetime(2026, 10, 25, 1, 0, tzinfo=BERLIN),
                           datetime(2026, 10, 25, 4, 0, tzinfo=BERLIN))
    assert local(fired) == ["2026-10-25T01:30:00+02:00", "2026-10-25T02:30:00+02:00", "2026-10-25T02:30:00+01:00",
                            "2026-10-25T03:30:00+01:00"]
    assert len({e.id for e in fired}) == 4
    assert journal_ids(store) == [e.id for e in fired]
