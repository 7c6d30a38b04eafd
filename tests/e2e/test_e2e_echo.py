"""The daemon in --sandbox reacts once to a change it made itself, however the system reports it back."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from clinic import clinic, config, no_show
from e2e_support import Daemon, Project, get_json, query, wait_for, wait_outbox_drained

CONFIG = config("consultant")

RULES = """\
rules:
  - id: no-show-to-rehabilitation
    when: {changed: booking.status, to: no_show}
    do:
      - deal.create: {pipeline: rehabilitation, stage: new, title: "Реабилитация: {{ client.name }}",
                      contact: "{{ client.phone }}"}

  - id: new-deal-task
    when: {event: deal.created, pipeline: rehabilitation}
    do:
      - task.create: {assignee: consultant, title: "Позвонить по сделке {{ deal.id }}", deal: "{{ deal.id }}"}

  - id: moved-deal-task
    when: {event: deal.updated}
    do:
      - task.create: {assignee: consultant, title: "Сделка {{ deal.id }} изменилась", deal: "{{ deal.id }}"}
"""


def _project(root: Path) -> Project:
    return clinic(root, CONFIG, RULES)


def test_a_deal_the_daemon_created_starts_the_deal_created_rule_once(
        tmp_path: Path, start_daemon: Callable[..., Daemon]) -> None:
    daemon = start_daemon(_project(tmp_path / "clinic"), args=("--sandbox",))
    base = no_show(daemon)

    deals = wait_for(lambda: get_json(f"{base}/crm/_emulator/state")["deals"], 20, "a deal in the Bitrix24 emulator")
    # Both reports of the new deal are decided: the action's answer and the portal's ONCRMDEALADD.
    wait_for(lambda: query(daemon.project.db, "select count(*) from journal where type = 'deal.created' and "
                                              "status = 'done'")[0][0] >= 2, 15, "both reports of the deal decided")
    wait_outbox_drained(daemon.project.db, 15)
    tasks = get_json(f"{base}/crm/_emulator/state")["tasks"]
    titles = sorted(t["title"] for t in (tasks.values() if isinstance(tasks, dict) else tasks))
    assert titles == [f"Позвонить по сделке {deals[0]['ID']}"], titles
    assert query(daemon.project.db, "select count(*) from runs where rule_id = 'new-deal-task'")[0][0] == 1
    assert daemon.terminate() == 0
