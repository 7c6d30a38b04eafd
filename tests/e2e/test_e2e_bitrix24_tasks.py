"""A Bitrix24 task completed moves its deal: the portal's ONTASKUPDATE into the daemon in --sandbox, the task read
back, `task.completed` decided, deal.move performed in the emulator; a later edit of that task moves nothing."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from clinic import clinic, config
from e2e_support import Daemon, get_json, post_json, query, wait_for, wait_outbox_drained

RULES = """\
rules:
  - id: task-done-moves-the-deal
    when: {event: task.completed}
    do:
      - deal.move: {deal: "{{ event.deal }}", stage: called}
"""


def test_a_task_completed_in_bitrix24_moves_its_deal_once(tmp_path: Path,
                                                          start_daemon: Callable[..., Daemon]) -> None:
    daemon = start_daemon(clinic(tmp_path / "clinic", config("admin"), RULES), args=("--sandbox",))
    crm = f"http://127.0.0.1:{daemon.port}/_sandbox/crm/_emulator"
    deal = post_json(f"{crm}/manager/deal", {"fields": {"TITLE": "Иванова", "CATEGORY_ID": 4, "STAGE_ID": "C4:NEW"}})
    task = post_json(f"{crm}/manager/task", {"fields": {"TITLE": "Перезвонить", "RESPONSIBLE_ID": 1,
                                                        "UF_CRM_TASK": [f"D_{deal['id']}"]}})
    post_json(f"{crm}/manager/task-complete", {"id": task["id"], "by": 1})

    def stage() -> str:
        return next(d["STAGE_ID"] for d in get_json(f"{crm}/state")["deals"] if d["ID"] == str(deal["id"]))
    wait_for(lambda: stage() == "C4:PREPARATION", 20, "the deal moved to `called`")

    # An edit of the completed task sends ONTASKUPDATE again: the task reads the same closedDate, so the same
    # delivery id, which the journal has already taken.
    post_json(f"{crm}/manager/task-update", {"id": task["id"], "fields": {"TITLE": "Перезвонить (готово)"}})
    wait_for(lambda: [h["status"] for h in get_json(f"{crm}/webhooks")][-1] == 200, 10, "the edit's webhook answered")
    wait_outbox_drained(daemon.project.db, 10)
    assert query(daemon.project.db, "select count(*) from journal where type = 'task.completed'") == [(1,)]
    assert query(daemon.project.db, "select action, status from effects") == [("deal.move", "done")]
    assert daemon.terminate() == 0
