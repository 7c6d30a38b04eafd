"""One client across YCLIENTS and Bitrix24 in the daemon (--sandbox): a person the booking system reports and a
Bitrix24 contact with the same phone are one client, and a deal created for a YCLIENTS client reaches the Bitrix24
contact with that phone (found through the CRM's own search), never the contact whose id is the YCLIENTS id."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from clinic import clinic, config, no_show
from e2e_support import Daemon, get_json, post_json, query, wait_for, wait_outbox_drained

ANNA = "+79161234567"
RULES = """\
rules:
  - id: no-show-to-rehabilitation
    when: {changed: booking.status, to: no_show}
    do:
      - deal.create: {pipeline: rehabilitation, stage: new, title: "Реабилитация: {{ client.name }}"}
"""


def test_a_deal_for_a_yclients_client_reaches_their_bitrix24_contact_and_both_are_one_client(
        tmp_path: Path, start_daemon: Callable[..., Daemon]) -> None:
    daemon = start_daemon(clinic(tmp_path / "clinic", config("admin"), RULES), args=("--sandbox",))
    base = f"http://127.0.0.1:{daemon.port}/_sandbox"
    yclients = next(c for c in get_json(f"{base}/booking/_emulator/state")["clients"] if str(c["phone"]) == ANNA[1:])
    rest = f"{base}/crm/rest/1/sandbox"
    # The portal already knows Boris and Anna; Anna's contact is not the first one, nor her YCLIENTS id.
    post_json(f"{rest}/crm.contact.add.json", {"fields": {"NAME": "Борис", "PHONE": [{"VALUE": "+79031112233"}]}})
    contact = str(post_json(f"{rest}/crm.contact.add.json",
                            {"fields": {"NAME": "Анна", "PHONE": [{"VALUE": ANNA, "VALUE_TYPE": "WORK"}]}})["result"])
    assert contact != str(yclients["id"])

    no_show(daemon)
    deals = wait_for(lambda: get_json(f"{base}/crm/_emulator/state")["deals"], 20, "a deal in the Bitrix24 emulator")
    assert [(d["TITLE"], str(d["CONTACT_ID"])) for d in deals] == [("Реабилитация: Анна", contact)]
    wait_outbox_drained(daemon.project.db, 10)

    # The store, read back: YCLIENTS client, Bitrix24 contact and phone are links of one person.
    person = wait_for(lambda: query(daemon.project.db, "select client from links where system = 'crm' and "
                                                       "ext_id = ?", (contact,)), 10, "the contact's link")[0][0]
    links = sorted(query(daemon.project.db, "select system, ext_id from links where client = ?", (person,)))
    assert links == sorted([("booking", str(yclients["id"])), ("crm", contact), ("phone", ANNA)])
    [(ids,)] = query(daemon.project.db, "select json_extract(fields, '$.ids') from entities where kind = 'client' "
                                        "and id = ?", (person,))
    assert json.loads(ids) == {"booking": str(yclients["id"]), "crm": contact}  # client.ids, both systems
    assert query(daemon.project.db, "select json_extract(fields, '$.client') from entities where kind = 'deal'") \
        == [(person,)]
    # Boris's contact webhook made him a client too; Anna, known to both systems, is one.
    clients = query(daemon.project.db, "select id, json_extract(fields, '$.phone') from entities where kind = 'client' "
                                       "order by id")
    assert sorted(phone for _, phone in clients) == ["+79031112233", ANNA] and (person, ANNA) in clients
    assert daemon.terminate() == 0
