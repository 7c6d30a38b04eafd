"""decide(): the echo guard (our own effect reported back does not restart its rule, and an echo that changes
nothing starts nothing), and a waiting run meeting a new version of its rule (params only: it continues; steps
reshaped: it is cancelled, with the reason in its trace)."""
from __future__ import annotations

from dataclasses import replace
import textwrap
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from automator.config.load import load_project
from automator.config.project import Project
from automator.core.decide import decide
from automator.core.wakeup import timer_event
from automator.model import Decision, Effect, Entity, EntityRef, Event, steps_shape
from automator.store.base import Settlement
from automator.store.sqlite import SqliteStore

MSK = ZoneInfo("Europe/Moscow")
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=MSK)
DEAL = EntityRef("deal", "5")

ECHO_RULES = """
    rules:
      - id: won-task
        when: {changed: deal.stage, to: won}
        do:
          - task.create: {assignee: admin, title: "won {{ deal.id }}"}
      - id: won-notify
        when: {changed: deal.stage, to: won}
        do:
          - notify: {to: admin, text: "won"}
      - id: any-update
        when: {event: deal.updated}
        do:
          - notify: {to: admin, text: "updated"}
      - id: note
        when: {event: deal.note_added}
        do:
          - notify: {to: admin, text: "note"}
    """


def load(root: Path) -> Project:
    project, problems = load_project(root)
    assert project is not None, problems
    return project


@pytest.fixture(scope="module")
def echo_project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    root = tmp_path_factory.mktemp("echo")
    (root / "automator.yaml").write_text("timezone: Europe/Moscow\nconnectors:\n  crm: {type: local, events: {nps.received: {entity: client, data: {score: number}}, deal.note_added: {entity: deal}}}\n")
    (root / "pipelines").mkdir()
    (root / "pipelines" / "sales.yaml").write_text(
        "pipelines:\n  sales:\n    connector: crm\n    stages:\n      new: {id: NEW}\n      won: {id: WON}\n")
    (root / "rules").mkdir()
    (root / "rules" / "rules.yaml").write_text(textwrap.dedent(ECHO_RULES))
    return load(root)


def store_with_deal(stage: str) -> SqliteStore:
    store = SqliteStore()
    store.put_entity(Entity(DEAL, {"pipeline": "sales", "stage": stage, "title": "T"}, NOW))
    return store


def updated(stage: str, *, echo_of: str | None = None, ident: str = "hook-1", type_: str = "deal.updated") -> Event:
    return Event(id=ident, type=type_, at=NOW, entity=DEAL, data={"stage": stage}, source="crm",
                 depth=1 if echo_of else 0, caused_by="run-x/do/0" if echo_of else None, echo_of=echo_of)


def started(decision: Decision) -> list[str]:
    return sorted(r.rule_id for r in decision.runs)


def why(decision: Decision) -> dict[str, str]:
    return {w.rule_id: w.reason for w in decision.why_not}


# ---- the echo guard ----------------------------------------------------------------------------------------------

def test_an_echo_does_not_restart_its_own_rule_but_starts_the_others(echo_project: Project) -> None:
    decision = decide(echo_project, store_with_deal("new"), updated("won", echo_of="won-task"), NOW)
    assert started(decision) == ["any-update", "won-notify"]
    assert why(decision) == {"won-task": "the echo of this rule's own effect"}
    assert {e.action for e in decision.effects} == {"notify"}
    assert decision.entity_after is not None and decision.entity_after.fields["stage"] == "won"  # state still kept
    # Chain depth goes on: the runs it starts carry the echo's depth.
    assert {r.depth for r in decision.runs} == {1}


def test_the_same_change_from_a_person_starts_every_rule(echo_project: Project) -> None:
    decision = decide(echo_project, store_with_deal("new"), updated("won"), NOW)
    assert started(decision) == ["any-update", "won-notify", "won-task"]
    assert decision.why_not == ()


def test_an_echo_that_changes_nothing_starts_no_rule(echo_project: Project) -> None:
    store = store_with_deal("won")  # our own deal.move was already applied from its result
    decision = decide(echo_project, store, updated("won", echo_of="won-task"), NOW)
    assert decision.runs == () and decision.effects == ()
    assert why(decision) == {"any-update": "the echo of our own effect: it changes nothing"}
    # Without the echo mark the same no-change update does start the event rule: the guard is what stops it.
    assert started(decide(echo_project, store, updated("won"), NOW)) == ["any-update"]


def test_an_echo_of_another_kind_of_event_only_spares_its_rule(echo_project: Project) -> None:
    store = store_with_deal("won")
    assert started(decide(echo_project, store, updated("x", echo_of="won-task", type_="deal.note_added"), NOW)) == \
        ["note"]
    decision = decide(echo_project, store, updated("x", echo_of="note", type_="deal.note_added"), NOW)
    assert decision.runs == () and why(decision) == {"note": "the echo of this rule's own effect"}


def test_the_crm_webhook_echoing_our_effect_through_the_journal(echo_project: Project) -> None:
    """The whole path: our effect is settled (its result event journaled, the echo expected), then the CRM's
    webhook reports the same change; decided from the journal, it does not restart the rule that made it."""
    store = store_with_deal("new")
    move = Effect(key="run-x/do/0", run_id="run-x", rule_id="won-task", action="deal.move", connector="crm",
                  params={"deal": "5", "stage": "won"}, delivery="at_least_once", at=NOW, entity=DEAL)
    store.apply(Decision(event=updated("new", ident="t"), entity_before=None, entity_after=None, effects=(move,)))
    result = Event(id="run-x/do/0>deal.updated", type="deal.updated", at=NOW, entity=DEAL,
                   data={"stage": "won"}, source="crm")
    store.claim_effects("w", NOW, 1, timedelta(minutes=5))
    (ours,) = store.settle(move, Settlement("done", events=(result,)), NOW)
    webhook = Event(id="crm:hook-77", type="deal.updated", at=NOW, entity=DEAL, data={"stage": "won"},
                    source="crm", delivery_id="77")
    assert store.append([webhook], NOW + timedelta(seconds=2)) == [True]
    first, second = store.claim_events("w", NOW + timedelta(seconds=2), 10, timedelta(seconds=60))
    assert (first.id, first.echo_of) == (ours.id, "won-task")
    decision = decide(echo_project, store, first, NOW)
    assert started(decision) == ["any-update", "won-notify"]
    store.commit(first, decision, NOW)
    # The webhook arrives after our own result was applied: it is the echo and changes nothing.
    assert (second.id, second.echo_of, second.caused_by, second.depth) == ("crm:hook-77", "won-task", "run-x/do/0", 1)
    echo = decide(echo_project, store, second, NOW)
    assert echo.runs == () and why(echo) == {"any-update": "the echo of our own effect: it changes nothing"}


def _journal_both_reports(store: SqliteStore, webhook_first: bool) -> list[Event]:
    """Our deal.move is performed; its answer and the CRM's webhook (which carries more of the deal than our
    answer knew) are journaled in the order given. Returns the two events as the engine reads them."""
    move = Effect(key="run-x/do/0", run_id="run-x", rule_id="won-task", action="deal.move", connector="crm",
                  params={"deal": "5", "stage": "won"}, delivery="at_least_once", at=NOW, entity=DEAL)
    store.apply(Decision(event=updated("new", ident="t"), entity_before=None, entity_after=None, effects=(move,)))
    store.claim_effects("w", NOW, 1, timedelta(minutes=5))
    store.expect_echo(DEAL, {"stage": "won"}, move.key, move.rule_id, 0, NOW + timedelta(minutes=10))  # at call start
    webhook = Event(id="crm:hook-77", type="deal.updated", at=NOW, entity=DEAL, source="crm", delivery_id="77",
                    data={"stage": "won", "title": "T", "updated_at": "2026-03-02T10:00:01+03:00"})
    result = Event(id="run-x/do/0>deal.updated", type="deal.updated", at=NOW, entity=DEAL, data={"stage": "won"},
                   source="crm")
    if webhook_first:
        assert store.append([webhook], NOW) == [True]
    store.settle(move, Settlement("done", events=(result,)), NOW)
    if not webhook_first:
        assert store.append([webhook], NOW) == [True]
    return store.claim_events("w", NOW, 10, timedelta(seconds=60))


@pytest.mark.parametrize("webhook_first", [False, True], ids=["answer-first", "webhook-first"])
def test_the_answer_and_the_webhook_of_one_change_start_the_event_rule_once(echo_project: Project,
                                                                           webhook_first: bool) -> None:
    store = store_with_deal("new")
    first, second = _journal_both_reports(store, webhook_first)
    assert (first.id == "crm:hook-77") is webhook_first
    assert first.repeats is None and second.repeats == first.id
    runs = []
    for event in (first, second):
        decision = decide(echo_project, store, event, NOW)
        store.commit(event, decision, NOW)
        runs += started(decision)
    # The webhook adds fields our answer did not know (updated_at): the state takes them, but `deal.updated`
    # happened once, and the rule whose move it was never runs on it.
    assert sorted(runs) == ["any-update", "won-notify"]
    assert why(decision)["any-update"] == ("the echo of our own effect: it changes nothing" if webhook_first else
                                           f"the same change as event {first.id}, which was already decided")
    assert store.entity(DEAL).fields["updated_at"] == "2026-03-02T10:00:01+03:00"


def test_a_later_change_by_a_person_is_not_a_repeat(echo_project: Project) -> None:
    store = store_with_deal("new")
    for event in _journal_both_reports(store, webhook_first=False):
        store.commit(event, decide(echo_project, store, event, NOW), NOW)
    person = Event(id="crm:hook-78", type="deal.updated", at=NOW, entity=DEAL, source="crm", delivery_id="78",
                   data={"stage": "new"})
    assert store.append([person], NOW) == [True]
    (event,) = store.claim_events("w", NOW, 10, timedelta(seconds=60))
    assert event.repeats is None and event.caused_by is None
    assert started(decide(echo_project, store, event, NOW)) == ["any-update"]


# ---- a waiting run and a new version of its rule -----------------------------------------------------------------

def rules(second_text: str = "second v1", *, extra_first: bool = False, wait: str = "1d",
          second_action: str = "notify") -> str:
    first = ["      - task.create: {assignee: admin, title: added}"] if extra_first else []
    second = (f'      - notify: {{to: admin, text: "{second_text}"}}' if second_action == "notify"
              else f'      - task.create: {{assignee: admin, title: "{second_text}"}}')
    return "\n".join([
        "rules:",
        "  - id: follow-up",
        "    when: {event: nps.received}",
        "    do:",
        *first,
        '      - notify: {to: admin, text: "first"}',
        f"      - wait: {wait}",
        second,
        "",
    ])


def reload(root: Path, text: str) -> Project:
    (root / "rules" / "rules.yaml").write_text(textwrap.dedent(text))
    return load(root)


@pytest.fixture
def root(make_project) -> Path:  # type: ignore[no-untyped-def]
    return make_project(rules())


def waiting(root: Path) -> tuple[SqliteStore, Project, Event]:
    """A run of follow-up waiting at its wait; the event its timer fires."""
    project = load(root)
    store = SqliteStore()
    event = Event(id="nps-1", type="nps.received", at=NOW, entity=EntityRef("client", "7"), data={"score": 9})
    decision = decide(project, store, event, NOW)
    (run,) = decision.runs
    assert run.status == "waiting" and run.rule_version == project.rule("follow-up").version
    store.apply(decision)
    (timer,) = decision.timers
    return store, project, timer_event(timer)


def test_an_unchanged_rule_resumes_without_a_version_line(root: Path) -> None:
    store, project, fired = waiting(root)
    decision = decide(project, store, fired, fired.at)
    (run,) = decision.runs
    assert run.status == "done" and "version" not in [t.kind for t in run.trace]
    assert [e.params["text"] for e in decision.effects] == ["second v1"]


def test_a_params_only_change_continues_on_the_new_version(root: Path) -> None:
    store, old, fired = waiting(root)
    new = reload(root, rules("second v2", wait="2d"))  # texts and durations: the steps keep their shape
    old_rule, new_rule = old.rule("follow-up"), new.rule("follow-up")
    assert old_rule.version != new_rule.version and old_rule.shape == new_rule.shape
    decision = decide(new, store, fired, fired.at)
    (run,) = decision.runs
    assert run.status == "done" and run.rule_version == new_rule.version
    (line,) = [t for t in run.trace if t.kind == "version"]
    assert line.path == "do" and line.at == fired.at
    assert line.detail == f"continues on the rule's new version {new_rule.version} (was {old_rule.version})"
    assert [e.params["text"] for e in decision.effects] == ["second v2"]  # the new params are used
    assert [e.key for e in decision.effects] == [f"{run.id}/do/2"]


@pytest.mark.parametrize("change", [
    {"extra_first": True},            # a step added before the wait: the cursor would point elsewhere
    {"second_action": "task.create"},  # another action at the cursor
])
def test_a_reshaped_rule_cancels_the_waiting_run(root: Path, change: dict) -> None:
    store, old, fired = waiting(root)
    new = reload(root, rules(**change))
    old_rule, new_rule = old.rule("follow-up"), new.rule("follow-up")
    assert old_rule.shape != new_rule.shape
    decision = decide(new, store, fired, fired.at)
    (run,) = decision.runs
    assert run.status == "cancelled" and decision.effects == () and decision.timers == ()
    last = run.trace[-1]
    assert (last.kind, last.path, last.at) == ("cancel", "do", fired.at)
    assert last.detail == (f"the rule's steps changed while the run waited (version {old_rule.version} → "
                           f"{new_rule.version}): cancelled, not resumed at a step that moved")
    store.apply(decision)
    assert store.run(run.id).status == "cancelled"
    assert store.run(run.id).trace[-1].detail == last.detail  # kept in the stored trace


def test_a_removed_rule_cancels_the_waiting_run(root: Path) -> None:
    store, _old, fired = waiting(root)
    new = reload(root, "rules:\n  - id: other\n    when: {event: booking.created}\n    do:\n      - notify: {to: a, text: b}\n")
    (run,) = decide(new, store, fired, fired.at).runs
    assert run.status == "cancelled" and run.trace[-1].detail == "the rule was removed while the run waited"


def test_steps_shape_ignores_params_but_not_structure(make_project) -> None:  # type: ignore[no-untyped-def]
    branched = ("  - id: {id}\n    when: {{event: nps.received}}\n    do:\n"
                "      - if: \"event.score > {n}\"\n        then: [{then}]\n        else: [{else_}]\n")
    b, c, d = ("{notify: {to: a, text: %s}}" % t for t in "bcd")
    variants = {
        "base": rules(),
        "texts": rules("other text", wait="3h"),
        "added": rules(extra_first=True),
        "action": rules(second_action="task.create"),
    }
    text = "rules:\n" + "".join(v.partition("rules:\n")[2].replace("id: follow-up", f"id: {k}")
                                 for k, v in variants.items())
    text += branched.format(id="if", n=5, then=b, else_=f"{c}, {d}")
    text += branched.format(id="if-condition", n=7, then=b, else_=f"{c}, {d}")
    # One step moved from else to then: the same steps in all, but a cursor inside the if means another step.
    text += branched.format(id="if-moved", n=5, then=f"{b}, {c}", else_=d)
    project = load(make_project(text))
    shape = {}
    for rule in project.rules:
        assert rule.shape == steps_shape(rule.steps) == rule.version.partition(".")[0]
        shape[rule.id] = rule.shape
    assert shape["texts"] == shape["base"]
    assert shape["added"] != shape["base"] and shape["action"] != shape["base"]
    assert shape["if-condition"] == shape["if"] and shape["if-moved"] != shape["if"]


def test_a_client_effects_echo_is_known_on_the_person_whichever_id_the_system_reports() -> None:
    # Person 5 came from the CRM; YCLIENTS knows them as 77. client.set_category goes to YCLIENTS as 77, and
    # YCLIENTS's webhook about 77, resolved to person 5 when journaled, is recognised as that effect's echo.
    from automator.actions import expected_echo
    from automator.identity import person_ref

    phone = "+79161234567"
    store = SqliteStore(systems=["booking", "crm"])
    store.append([Event(id="c", type="client.updated", at=NOW, entity=EntityRef("client", "5"),
                        data={"phone": phone}, source="crm"),
                  Event(id="y", type="client.updated", at=NOW, entity=EntityRef("client", "77"),
                        data={"phone": phone}, source="booking")], NOW)
    echo = expected_echo("client.set_category", {"client": "77", "category": "Gold"})
    assert echo is not None and echo[0] == EntityRef("client", "77")
    store.expect_echo(person_ref(echo[0], "booking", store), echo[1], "run-x/do/0", "tier", 0,
                      NOW + timedelta(minutes=10))
    webhook = Event(id="hook", type="client.updated", at=NOW, entity=EntityRef("client", "77"),
                    data={"category": "Gold", "name": "Анна"}, source="booking")
    [journaled] = store.journal_events([webhook], NOW)
    assert journaled is not None and journaled.entity == EntityRef("client", "5")
    assert journaled.echo_of == "tier" and journaled.caused_by == "run-x/do/0"
    # Expected on the system's id, as before people, it would have been missed.
    store.expect_echo(echo[0], echo[1], "run-y/do/0", "tier", 0, NOW + timedelta(minutes=10))
    [again] = store.journal_events([replace(webhook, id="hook-2")], NOW)
    assert again is not None and again.echo_of is None
