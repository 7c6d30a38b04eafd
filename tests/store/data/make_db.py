"""Writes tests/store/data/v0712af0.db with the store code of commit 0712af0 (run with that tree on PYTHONPATH)."""
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import automator
from automator.model import Decision, Effect, Entity, EntityRef, Event, Run, Timer
from automator.store.outbox import Settlement
from automator.store.sqlite import SqliteStore

print(automator.__file__)
NOW = datetime(2026, 3, 2, 7, 0, tzinfo=timezone.utc)
target = Path(sys.argv[1])
store = SqliteStore(target, synchronous="FULL")
client = EntityRef("client", "1")
events = [Event(id=f"e{i}", type="client.updated", at=NOW + timedelta(minutes=i), entity=client,
                data={"name": "Анна", "visits": i}, source="crm", delivery_id=f"d{i}") for i in range(3)]
assert store.append(events, NOW) == [True, True, True]
claimed = store.claim_events("W", NOW, 10, timedelta(minutes=1))
for i, event in enumerate(claimed[:2]):
    run = Run(id=f"run-{i}", rule_id="welcome", rule_version="v1", key=str(client), event_id=event.id,
              status="waiting" if i == 0 else "done", cursor=(1,), vars={"n": i}, entity=client,
              started_at=event.at)
    effect = Effect(key=f"fx-{i}", run_id=run.id, rule_id="welcome", action="sms.send", connector="sms",
                    params={"to": "+79990000000", "text": "Привет"}, delivery="at_least_once", at=event.at,
                    entity=client)
    timer = Timer(id=f"t-{i}", due_at=NOW + timedelta(days=1 + i), kind="resume", rule_id="welcome",
                  key=str(client), run_id=run.id, payload={"step": i})
    decision = Decision(event=event, entity_before=None,
                        entity_after=Entity(client, dict(event.data), event.at), runs=(run,), effects=(effect,),
                        timers=(timer,))
    store.commit(event, decision, NOW)
taken = store.claim_effects("X", NOW, 1, timedelta(minutes=5))
store.settle(taken[0].effect, Settlement("done", {"id": "sms-1"}), NOW)
store.claim_effects("X", NOW + timedelta(hours=1), 1, timedelta(minutes=5))  # left running: a claim of a dead process
store.set_meta("rules_version", "v1")
store.close()
