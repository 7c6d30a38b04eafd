"""Row codecs: how values are written into the store's rows and read back (JSON, moments, runs, timers, effects).

Pure functions: the worker builds a decision's rows (`writes_of`) before it takes the write lock, so that the lock
is held for the statements only.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from automator.loyalty.ledger import Entry
from automator.model import ENGINE, Decision, Effect, EntityRef, Run, Timer, TraceStep, Visit
from automator.store.base import Writes
from automator.store.facts import rows_of as fact_rows
from automator.store.schema import TABLES

_UTC: dict[datetime, str] = {}


def utc(at: datetime) -> str:
    """A sortable text form of a moment: UTC, fixed width."""
    # A batch stamps the same few moments on every row it writes: each one's text is kept (bounded).
    text = _UTC.get(at)
    if text is None:
        if len(_UTC) >= 1024:
            _UTC.clear()
        text = _UTC[at] = (at if at.tzinfo is timezone.utc else at.astimezone(timezone.utc)).isoformat(
            timespec="microseconds")
    return text


_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str)
# orjson writes what json does here (text as it is, unknown values as their str(), including datetimes and
# dataclasses), compactly and about eight times faster: every event, run, trace and effect is written as JSON.
_ORJSON = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def dump(value: Any) -> str:
    """JSON as stored: readable text, anything unknown as its string."""
    try:
        return orjson.dumps(value, default=str, option=_ORJSON).decode()
    except (orjson.JSONEncodeError, TypeError):  # what orjson refuses (integers past 64 bits, NaN keys): json's way
        return _ENCODER.encode(value)


def load(text: str | bytes) -> Any:
    """JSON as stored, read back (json's reading for what orjson refuses, such as NaN)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def time_of(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


RUN_COLUMNS = tuple(TABLES["runs"][0])
EFFECT_COLUMNS = tuple(TABLES["effects"][0])


def writes_of(decision: Decision) -> Writes:
    """The rows of one decision (pure)."""
    after, before = decision.entity_after, decision.entity_before
    entity = None
    if after is not None:
        # The state it was decided on is the stored one (the worker stages a batch in journal order): `prev`.
        entity = [after.ref.kind, after.ref.id, dump(after.fields), dump(before.fields if before else None),
                  utc(after.updated_at) if after.updated_at else None]
    at = decision.event.at
    runs = [[row[c] for c in RUN_COLUMNS] for row in (_run_row(run, at) for run in decision.runs)]
    effects = [[row[c] for c in EFFECT_COLUMNS] for row in (_effect_row(e) for e in decision.effects)]
    why = [{"rule": w.rule_id, "reason": w.reason, "conditions": [list(c) for c in w.conditions]}
           for w in decision.why_not]
    return Writes(event_id=decision.event.id, why_not=dump(why), entity=entity, runs=runs, effects=effects,
                  cancel=[[t] for t in decision.cancel_timers], timers=[timer_row(t) for t in decision.timers],
                  events=decision.events, visits=[visit_row(v) for v in decision.visits],
                  facts=fact_rows(decision.facts), ledger=[ledger_row(e) for e in decision.ledger])


VISIT_COLUMNS = ("id", "client", "at", "kind", "branch", "services", "category", "staff", "amount", "currency",
                 "booking", "source")


def visit_row(visit: Visit) -> list[Any]:
    """A visit as the row it is stored in, columns in VISIT_COLUMNS' order."""
    return stored_visit(visit.id, visit.client, visit.at, visit.kind, visit.branch, visit.services, visit.category,
                        visit.staff, visit.amount, visit.currency, visit.booking, visit.source)


def stored_visit(ident: str, client: str, at: datetime, kind: str, branch: str | None, services: tuple[str, ...],
                 category: str | None, staff: str | None, amount: int, currency: str, booking: str | None,
                 source: str) -> list[Any]:
    """A visit's fields as the row they are stored in (VISIT_COLUMNS' order), with no Visit made: an import of a
    million rows makes its rows straight from the file (a Visit costs more than the rest of a row's reading)."""
    return [ident, client, utc(at), kind, branch, dump(list(services)), category, staff, int(amount), currency,
            booking, source]


def visit_of(row: tuple[Any, ...]) -> Visit:
    """A stored row (VISIT_COLUMNS' order) back as a Visit."""
    ident, client, at, kind, branch, services, category, staff, amount, currency, booking, source = row
    return Visit(id=str(ident), client=str(client), at=datetime.fromisoformat(str(at)), kind=str(kind or "visit"),
                 branch=branch, services=tuple(load(services or "[]")), category=category, staff=staff,
                 amount=int(amount or 0), currency=str(currency or "RUB"), booking=booking, source=str(source or ""))


LEDGER_COLUMNS = ("id", "client", "account", "kind", "amount", "at", "expires_at", "reason", "event", "rule",
                  "visit", "detail")


def ledger_row(entry: Entry) -> list[Any]:
    """A ledger row as stored, columns in LEDGER_COLUMNS' order."""
    return [entry.id, entry.client, entry.account, entry.kind, int(entry.amount), utc(entry.at),
            utc(entry.expires_at) if entry.expires_at else None, entry.reason, entry.event, entry.rule,
            entry.visit, dump(dict(entry.detail))]


def entry_of(row: Sequence[Any]) -> Entry:
    """A stored ledger row (LEDGER_COLUMNS' order) back as an Entry."""
    ident, client, account, kind, amount, at, expires_at, reason, event, rule, visit, detail = row
    return Entry(id=str(ident), client=str(client), account=str(account), kind=str(kind), amount=int(amount),
                 at=datetime.fromisoformat(str(at)), expires_at=time_of(expires_at), reason=str(reason or ""),
                 event=str(event or ""), rule=str(rule or ""), visit=str(visit or ""), detail=load(detail or "{}"))


def timer_row(timer: Timer) -> list[Any]:
    return [timer.id, utc(timer.due_at), timer.kind, timer.rule_id, timer.key, timer.run_id,
            dump(dict(timer.payload))]


_RESUMABLE = ("waiting", "queued", "running")


def _run_row(run: Run, at: datetime) -> dict[str, Any]:
    return {"id": run.id, "rule_id": run.rule_id, "rule_version": run.rule_version, "key": run.key,
            "event_id": run.event_id, "status": run.status, "cursor": dump(list(run.cursor)),
            "vars": dump(dict(run.vars)), "entity": str(run.entity) if run.entity else None,
            "trace": dump([t.to_json() for t in run.trace]),
            "started_at": utc(run.started_at) if run.started_at else utc(at), "updated_at": utc(at),
            # The event that started a run is kept while the run may go on (it is its scope when resumed); a
            # finished run names it by event_id, and the journal has it: not written twice per event.
            "depth": run.depth, "origin": dump(dict(run.origin)) if run.status in _RESUMABLE else "{}"}


def run_of(row: Mapping[str, Any]) -> Run:
    trace = tuple(TraceStep(path=t["path"], kind=t["kind"], detail=t.get("detail", ""), value=t.get("value"),
                            error=t.get("error"), at=time_of(t.get("at"))) for t in load(row["trace"] or "[]"))
    return Run(id=row["id"], rule_id=row["rule_id"], rule_version=row["rule_version"], key=row["key"],
               event_id=row["event_id"], status=row["status"], cursor=tuple(load(row["cursor"] or "[]")),
               vars=load(row["vars"] or "{}"),
               entity=EntityRef.parse(row["entity"]) if row["entity"] else None, trace=trace,
               started_at=time_of(row["started_at"]), depth=row["depth"] or 0, origin=load(row["origin"] or "{}"))


def _effect_row(effect: Effect) -> dict[str, Any]:
    # Engine effects (segment.recompute) were performed inside the core: they are recorded as done.
    status = "done" if effect.connector == ENGINE else "pending"
    return {"key": effect.key, "run_id": effect.run_id, "rule_id": effect.rule_id, "action": effect.action,
            "connector": effect.connector, "params": dump(dict(effect.params)), "delivery": effect.delivery,
            "status": status, "at": utc(effect.at), "entity": str(effect.entity) if effect.entity else None,
            "depth": effect.depth, "result": None, "attempts": 0, "next_try_at": utc(effect.at),
            "claimed_by": None, "claimed_until": None, "error": None, "updated_at": utc(effect.at),
            "started_at": None, "interrupted": 0, "tries": None}


def timer_of(row: Mapping[str, Any]) -> Timer:
    return Timer(id=row["id"], due_at=datetime.fromisoformat(row["due_at"]), kind=row["kind"],
                 rule_id=row["rule_id"], key=row["key"] or "", run_id=row["run_id"],
                 payload=load(row["payload"] or "{}"))


def effect_of(row: Mapping[str, Any]) -> Effect:
    return Effect(key=row["key"], run_id=row["run_id"], rule_id=row["rule_id"], action=row["action"],
                  connector=row["connector"], params=load(row["params"]), delivery=row["delivery"],
                  at=datetime.fromisoformat(row["at"]),
                  entity=EntityRef.parse(row["entity"]) if row["entity"] else None, depth=row["depth"] or 0)
