"""A tier change leaves one tier category (issue 13's done-when), in the daemon with --sandbox: a client who is
`Постоянный` and `Аллергия` in YCLIENTS comes to a visit, the rule sets `VIP`, and YCLIENTS is left with `VIP` and
`Аллергия`: the other tier is gone, the category of no group is kept."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from clinic import clinic, config
from e2e_support import Daemon, get_json, post_json, wait_for, wait_outbox_drained

ANNA = "79161234567"
RULES = """\
rules:
  - id: a-visit-makes-a-vip
    when: {changed: booking.status, to: arrived}
    do:
      - client.set_category: {category: VIP}
"""


def test_a_tier_change_in_the_daemon_leaves_one_tier_category(tmp_path: Path,
                                                             start_daemon: Callable[..., Daemon]) -> None:
    groups = 'poll_every: "off", categories: [Аллергия], category_groups: {tier: [VIP, Постоянный, Новый]}}'
    daemon = start_daemon(clinic(tmp_path / "clinic", config("admin").replace('poll_every: "off"}', groups), RULES),
                          args=("--sandbox",))
    yclients = f"http://127.0.0.1:{daemon.port}/_sandbox/booking/_emulator"
    state = get_json(f"{yclients}/state")
    labels = {label["title"]: label["id"] for label in state["labels"]}
    anna = next(c for c in state["clients"] if str(c["phone"]).lstrip("+") == ANNA)
    post_json(f"{yclients}/client", {**anna, "labels": [labels["Постоянный"], labels["Аллергия"]]})

    def titles() -> set[str]:
        client = next(c for c in get_json(f"{yclients}/state")["clients"] if c["id"] == anna["id"])
        return {category["title"] for category in client["categories"]}
    assert titles() == {"Постоянный", "Аллергия"}
    record = next(r for r in state["records"] if str(r["client"]["phone"]).lstrip("+") == ANNA)
    post_json(f"{yclients}/attendance", {"record_id": record["id"], "attendance": 1})
    wait_for(lambda: titles() == {"VIP", "Аллергия"}, 20, "VIP in place of Постоянный, Аллергия kept")
    wait_outbox_drained(daemon.project.db, 10)
    assert titles() == {"VIP", "Аллергия"}
    assert daemon.terminate() == 0
