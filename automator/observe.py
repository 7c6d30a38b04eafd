"""Read-only views of a daemon's store for operators: status, runs, explain, timers and dead letters.

They open the database read-only (`SqliteStore(read_only=True)`: no write lock, no migration), so a daemon holding
the write lock, even one stopped while holding it, never makes them wait. Times are shown in the project's
time zone with its offset (automator.clock.show_time).
"""
from __future__ import annotations

import json
from datetime import datetime, timezone, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from automator.clock import show_time
from automator.config.source import load_document
from automator.store.codec import load
from automator.store.base import Store
from automator.store.sqlite import SqliteStore

STALE = 30.0  # seconds without a heartbeat (every 10 s) after which a daemon that says "running" is taken as gone
WRITE_WAIT = 5.0  # seconds an operator's write (replay, drop) waits for the daemon's write lock at most (a read
# never waits for it; this bounds only SQLite's rare busy moments, such as recovering a write-ahead log)


def _settings(config: Path) -> dict[str, Any]:
    doc, _ = load_document(config) if config.exists() else (None, [])
    return doc.data if doc is not None and isinstance(doc.data, dict) else {}


def open_store(config: Path, db: Path | None = None, *, write: bool = False, create: bool = False) -> Store:
    """The store a project's daemon uses (`store:` of automator.yaml, else automator.db beside it): read-only,
    or with `write` through the write lock, waiting WRITE_WAIT seconds at most for it; `create` makes it when the
    daemon never ran (an import of history before going live)."""
    return SqliteStore(store_file(config, db, must_exist=not create), timeout=WRITE_WAIT, read_only=not write)


def store_file(config: Path, db: Path | None = None, *, must_exist: bool = True) -> Path:
    """The database file a project's daemon uses; FileNotFoundError if there is none yet (and it must be)."""
    if db is None:
        db = Path(str(_settings(config).get("store") or "automator.db"))
        if not db.is_absolute():
            db = config.parent / db
    if must_exist and not db.exists():
        raise FileNotFoundError(f"no database at {db}: has `automator run` been started for this project?")
    return db


def project_timezone(config: Path) -> tzinfo:
    """The project's time zone (`timezone:` of automator.yaml); UTC when it names none or one unknown."""
    name = _settings(config).get("timezone")
    try:
        return ZoneInfo(name) if isinstance(name, str) else timezone.utc
    except (ZoneInfoNotFoundError, ValueError):
        return timezone.utc


def status(store: Store, now: datetime | None = None, tz: tzinfo = timezone.utc) -> dict[str, Any]:
    """The daemon's last heartbeat with the queue, timers, effects and dead letters as the store has them;
    its times in `tz`."""
    from automator.daemon.health import gauges

    now = now or datetime.now(timezone.utc)
    record = json.loads(store.get_meta("daemon") or "{}")
    if record.get("state") == "running" and record.get("heartbeat"):
        age = (now - datetime.fromisoformat(record["heartbeat"])).total_seconds()
        if age > STALE:
            record["state"] = f"not responding (last heartbeat {age:.0f} s ago)"
    for name in ("started_at", "heartbeat"):
        if record.get(name):
            record[name] = local_iso(record[name], tz)
    return {"daemon": record, **gauges(store, now), "runs_waiting": store.count("runs", "status = 'waiting'"),
            "events_failed": store.count("journal", "status = 'failed'")}


def explain(store: Store, ident: str) -> dict[str, Any] | None:
    """Everything recorded about one run (by id) or one event (by id): rules considered, values, steps, effects
    with every try."""
    run = store.run(ident)
    if run is not None:
        return {"run": _run(run, store), "event": store.journal_event(run.event_id)}
    event = store.journal_event(ident)
    if event is None:
        return None
    return {"event": event, "runs": [_run(r, store) for r in store.runs(event_id=ident)]}


def _run(run: Any, store: Store) -> dict[str, Any]:
    return {"id": run.id, "rule": run.rule_id, "version": run.rule_version, "status": run.status,
            "entity": str(run.entity) if run.entity else None, "key": run.key, "event": run.event_id,
            "started_at": run.started_at.isoformat() if run.started_at else None, "vars": dict(run.vars),
            "trace": [t.to_json() for t in run.trace],
            "effects": [{**{k: e[k] for k in ("key", "action", "connector", "params", "status", "attempts", "error",
                                              "result", "updated_at")}, "tries": load(e["tries"] or "[]")}
                        for e in store.effects(run.id)]}


def effect_summary(states: dict[str, int]) -> str:
    """`1 done, 1 dead`: how many of a run's effects are in each state."""
    return ", ".join(f"{count} {state}" for state, count in sorted(states.items()))


def format_explain(report: dict[str, Any], tz: tzinfo = timezone.utc) -> str:
    """An explain report as an operator reads it, its times in `tz`."""
    lines: list[str] = []
    event = report.get("event")
    if event:
        body = event["body"]
        entity = body.get("entity")
        lines.append(f"event {event['id']}  {body['type']}" + (f"  {entity['kind']}:{entity['id']}" if entity else "")
                     + f"  at {show_time(body['at'], tz)}  from {event['source']}  [{event['status']}]")
        if body.get("data"):
            lines.append(f"  data: {json.dumps(body['data'], ensure_ascii=False, default=str)}")
        if event.get("error"):
            lines.append(f"  error: {event['error']}")
        for why in event.get("why_not") or []:
            values = "".join(f"\n      {expr} → {value!r}" for expr, value in why.get("conditions") or [])
            lines.append(f"  ✘ {why['rule']}: {why['reason']}{values}")
    runs = [report["run"]] if "run" in report else report.get("runs", [])
    for run in runs:
        mark = "✘" if run["status"] in ("failed", "cancelled") else "✔"
        lines.append(f"  {mark} run {run['id']}  rule {run['rule']}  [{run['status']}]  "
                     f"{run['entity'] or ''}  version {run['version']}  started {show_time(run['started_at'], tz)}")
        for step in run["trace"]:
            value = f" → {step['value']!r}" if "value" in step else ""
            error = f"  ERROR: {step['error']}" if step.get("error") else ""
            lines.append(f"      {step['path']:<16} {step['kind']:<9} {step.get('detail', '')}{value}{error}")
        for effect in run["effects"]:
            lines.append(f"      effect {effect['key']}  {effect['action']} via {effect['connector']}  "
                         f"[{effect['status']}, {effect['attempts'] or 0} {'try' if effect['attempts'] == 1 else 'tries'}]  "
                         f"{json.dumps(effect['params'], ensure_ascii=False, default=str)}"
                         + (f"  error: {effect['error']}" if effect.get("error") else ""))
            lines.extend(_try_line(t, tz) for t in effect.get("tries") or [])
    return "\n".join(lines)


def _try_line(entry: dict[str, Any], tz: tzinfo) -> str:
    error = f"  {entry['error']}" if entry.get("error") else ""
    if "replayed" in entry:
        return f"          {show_time(entry['replayed'], tz)}  replayed by an operator (was {entry['status']}){error}"
    return f"          {show_time(entry['at'], tz)}  try {entry['try']}: {entry['status']}{error}"


def local_iso(at: datetime | str | None, tz: tzinfo) -> str | None:
    """ISO 8601 in the project's zone, with its offset (for JSON output)."""
    if not at:
        return None
    moment = datetime.fromisoformat(at) if isinstance(at, str) else at
    return moment.astimezone(tz).isoformat()


def config_path(path: Path) -> Path:
    """`--config` may name the file or the project folder."""
    return path / "automator.yaml" if path.is_dir() else path
