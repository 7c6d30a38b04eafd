"""A re-invite is skipped while the client has a booking pending (issue 13's done-when), in the daemon with
--sandbox: YCLIENTS reports visits and a new booking by its webhooks, the rule asks the store for the client's
bookings to come (`bookings_of`), and only the client with nothing booked gets the invitation."""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from clinic import clinic, config
from e2e_support import Daemon, get_json, post_json, query, wait_for, wait_outbox_drained

ANNA, BORIS = "+79161234567", "+79031112233"
RULES = """\
rules:
  - id: reinvite-unless-booked
    when: {changed: booking.status, to: arrived}
    if: "not any(bookings_of(client, status=['confirmed', 'waiting'], after=now()))"
    do:
      - sms.send: {to: "{{ client.phone }}", text: "Спасибо, {{ client.name }}! Запишитесь на следующий визит."}
        via: sms
"""


def test_a_reinvite_is_skipped_while_a_booking_is_pending(tmp_path: Path,
                                                         start_daemon: Callable[..., Daemon]) -> None:
    daemon = start_daemon(clinic(tmp_path / "clinic", config("admin", "  sms: {type: local}\n"), RULES),
                          args=("--sandbox",))
    yclients = f"http://127.0.0.1:{daemon.port}/_sandbox/booking/_emulator"
    state = get_json(f"{yclients}/state")
    seen = state["records"][0]  # a seeded visit: its master and service
    staff, service = seen["staff_id"], seen["services"][0]["id"]
    # Anna books her next visit in a week (the webhook tells the daemon); Boris books nothing.
    later = (datetime.now(ZoneInfo("Europe/Moscow")) + timedelta(days=7)).replace(hour=12, minute=0, second=0,
                                                                                   microsecond=0)
    post_json(f"{yclients}/record", {"staff_id": staff, "services": [{"id": service}], "seance_length": 3600,
                                     "datetime": later.isoformat(), "client": {"phone": ANNA[1:]}})
    wait_for(lambda: query(daemon.project.db, "select count(*) from journal where type = 'booking.created' "
                                              "and status = 'done'") == [(1,)], 20, "Anna's new booking decided")
    # Both come to today's and tomorrow's visits.
    for phone in (ANNA, BORIS):
        record = next(r for r in state["records"] if str(r["client"]["phone"]).lstrip("+") == phone[1:])
        post_json(f"{yclients}/attendance", {"record_id": record["id"], "attendance": 1})
    wait_for(lambda: query(daemon.project.db, "select count(*) from journal where type = 'booking.updated' "
                                              "and status = 'done'") == [(2,)], 20, "both visits decided")
    wait_outbox_drained(daemon.project.db, 10)
    assert query(daemon.project.db, "select \"to\" from local_messages where channel = 'sms'") == [(BORIS,)]
    assert daemon.terminate() == 0
