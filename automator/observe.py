"""Read-only views of a daemon's store for operators: status, runs, explain, timers and dead letters."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from automator.config.source import load_document
from automator.store.sqlite import SqliteStore

STALE = 10.0  # seconds without a heartbeat after which a daemon that says "running" is taken as gone


def open_store(config: Path, db: Path | None = None) -> SqliteStore:
    """The store a project's daemon uses (`store:` of automator.yaml, else automator.db beside it)."""
    return SqliteStore(store_file(config, db))


def store_file(config: Path, db: Path | None = None) -> Path:
    """The database file a project's daemon uses; FileNotFoundError if there is none yet."""
    if db is None:
        doc, _ = load_document(config)
        name = (doc.data or {}).get("store") if doc is not None and isinstance(doc.data, dict) else None
        db = Path(str(name or "automator.db"))
        if not db.is_absolute():
            db = config.parent / db
    if not db.exists():
        raise FileNotFoundError(f"no database at {db}: has `automator run` been started for this project?")
    return db


def status(store: SqliteStore, now: datetime | None = None) -> dict[str, Any]:
    """The daemon's last heartbeat with the queue, timers, effects and dead letters as the store has them."""
    from automator.daemon.process import gauges

    now = now or datetime.now(timezone.utc)
    record = json.loads(store.get_meta("daemon") or "{}")
    if record.get("state") == "running" and record.get("heartbeat"):
        age = (now - datetime.fromisoformat(record["heartbeat"])).total_seconds()
        if age > STALE:
            record["state"] = f"not responding (last heartbeat {age:.0f} s ago)"
    return {"daemon": record, **gauges(store, now), "runs_waiting": store.count("runs", "status = 'waiting'"),
            "events_failed": store.count("journal", "status = 'failed'")}


def explain(store: SqliteStore, ident: str) -> dict[str, Any] | None:
    """Everything recorded about one run (by id) or one event (by id): rules considered, values, steps, effects."""
    run = store.run(ident)
    if run is not None:
        return {"run": _run(run, store), "event": store.journal_event(run.event_id)}
    event = store.journal_event(ident)
    if event is None:
        return None
    return {"event": event, "runs": [_run(r, store) for r in store.runs(event_id=ident)]}


def _run(run: Any, store: SqliteStore) -> dict[str, Any]:
    return {"id": run.id, "rule": run.rule_id, "version": run.rule_version, "status": run.status,
            "entity": str(run.entity) if run.entity else None, "key": run.key, "event": run.event_id,
            "started_at": run.started_at.isoformat() if run.started_at else None, "vars": dict(run.vars),
            "trace": [t.to_json() for t in run.trace],
            "effects": [{k: e[k] for k in ("key", "action", "connector", "params", "status", "attempts", "error",
                                           "result")} for e in store.effects(run.id)]}


def format_explain(report: dict[str, Any]) -> str:
    """An explain report as an operator reads it."""
    lines: list[str] = []
    event = report.get("event")
    if event:
        body = event["body"]
        entity = body.get("entity")
        lines.append(f"event {event['id']}  {body['type']}" + (f"  {entity['kind']}:{entity['id']}" if entity else "")
                     + f"  at {body['at']}  from {event['source']}  [{event['status']}]")
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
                     f"{run['entity'] or ''}  version {run['version']}")
        for step in run["trace"]:
            value = f" → {step['value']!r}" if "value" in step else ""
            error = f"  ERROR: {step['error']}" if step.get("error") else ""
            lines.append(f"      {step['path']:<16} {step['kind']:<9} {step.get('detail', '')}{value}{error}")
        for effect in run["effects"]:
            lines.append(f"      effect {effect['key']}  {effect['action']} via {effect['connector']}  "
                         f"[{effect['status']}, {effect['attempts'] or 0} {'try' if effect['attempts'] == 1 else 'tries'}]  "
                         f"{json.dumps(effect['params'], ensure_ascii=False, default=str)}"
                         + (f"  error: {effect['error']}" if effect.get("error") else ""))
    return "\n".join(lines)


def config_path(path: Path) -> Path:
    """`--config` may name the file or the project folder."""
    return path / "automator.yaml" if path.is_dir() else path
