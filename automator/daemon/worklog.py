"""The log lines that follow the work itself: each event accepted, each rule run decided, each effect settled.

One line per thing, with the fields an operator greps for, so that one webhook can be followed to the SMS it
caused: the accepted event's `event_id` is on the line of each run it decided (with the `run_id`), and the
`run_id` is on the line of each effect of that run when it settles (its `effect` key starts with it too). Names
and phones in them are masked by the log formatter (automator/daemon/logs.py), as everywhere.

The daemon does thousands of events a second: a line is built only when its level is enabled, from what the
caller already holds (nothing is read from the store for it). Accepted events and runs are INFO; an effect's
line is INFO when done, WARNING when it will be retried, ERROR when it is parked (dead or uncertain).
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from automator.model import Decision, Effect, Event
from automator.store.base import Settlement

log = logging.getLogger("automator.work")
_LEVELS = {"done": logging.INFO, "retry": logging.WARNING}  # anything else (dead, uncertain) is an ERROR


def _log(level: int, func: str, msg: str, args: tuple[Any, ...], extra: dict[str, Any]) -> None:
    """`log.log(level, msg, *args, extra=extra)` without looking up the caller's frame, which these lines do not
    show: the lookup was a tenth of a line's cost (the caller of a level not enabled has returned already)."""
    log.handle(log.makeRecord(log.name, level, __file__, 0, msg, args, None, func, extra))


def accepted(items: Sequence[tuple[Event, Any]], fresh: Sequence[bool]) -> None:
    """One line per event newly journaled (duplicates were acknowledged only, and are not logged)."""
    if not log.isEnabledFor(logging.INFO):
        return
    for (event, _), new in zip(items, fresh):
        if new:
            _log(logging.INFO, "accepted", "event accepted: %s", (event.type,),
                 {"event_id": event.id, "connector": event.source, "event": event.type,
                  "entity": str(event.entity) if event.entity is not None else None})


def decided(decisions: Iterable[Decision]) -> None:
    """One line per rule run an event decided (started, resumed, ended), with the event that decided it."""
    if not log.isEnabledFor(logging.INFO):
        return
    for decision in decisions:
        for run in decision.runs:
            _log(logging.INFO, "decided", "run %s: %s", (run.status, run.rule_id),
                 {"run_id": run.id, "event_id": decision.event.id, "rule": run.rule_id,
                  "status": run.status, "entity": str(run.entity) if run.entity is not None else None})


def settled(effect: Effect, outcome: Settlement, tries: int) -> None:
    """One line per try of an effect, once its outcome is written: what it was, where it went, how it ended."""
    level = _LEVELS.get(outcome.status, logging.ERROR)
    if not log.isEnabledFor(level):
        return
    extra: dict[str, Any] = {"run_id": effect.run_id, "effect": effect.key, "connector": effect.connector,
                             "action": effect.action, "rule": effect.rule_id, "outcome": outcome.status,
                             "tries": tries}
    to = effect.params.get("to")
    if to is not None:  # the recipient of a message (a phone: masked by the formatter)
        extra["to"] = to
    if outcome.error:
        extra["error"] = outcome.error
    _log(level, "settled", "effect %s %s", (effect.action, outcome.status), extra)
