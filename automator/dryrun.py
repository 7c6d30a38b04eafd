"""decide() on a read-only snapshot → the plan and the why-not report, as text or JSON."""
from __future__ import annotations

from datetime import datetime
from collections.abc import Mapping, Sequence
from typing import Any

from automator.clock import show_time
from automator.config.project import Project
from automator.core.decide import decide
from automator.core.scope import describe
from automator.model import Entity, EntityRef, Event
from automator.store.sqlite import SqliteStore


def make_event(raw: Mapping[str, Any], at: datetime) -> Event:
    """An event written as in a test's `when:` list (`event`, `entity`, `data`)."""
    if not isinstance(raw, Mapping) or not isinstance(raw.get("event", raw.get("type")), str):
        raise ValueError("the event needs `event: <kind>.<verb>` (for example booking.updated)")
    entity = raw.get("entity")
    if entity is not None and (not isinstance(entity, Mapping) or "kind" not in entity or "id" not in entity):
        raise ValueError("`entity` needs `kind` and `id`")
    return Event(id=str(raw.get("id") or "dry-run"), type=str(raw.get("event", raw.get("type"))), at=at,
                 entity=EntityRef(str(entity["kind"]), str(entity["id"])) if entity else None,
                 data=dict(raw.get("data") or {}), source=str(raw.get("source", "dry-run")))


def dry_run(project: Project, event_raw: Mapping[str, Any], state: Sequence[Mapping[str, Any]],
            at: datetime) -> dict[str, Any]:
    """The plan for one event: every candidate rule, whether it matched, its conditions and steps."""
    store = SqliteStore(":memory:")
    for raw in state:
        if not isinstance(raw, Mapping) or "kind" not in raw or "id" not in raw:
            raise ValueError("each state entity needs `kind` and `id`")
        fields = {k: v for k, v in raw.items() if k not in ("kind", "id")}
        store.put_entity(Entity(EntityRef(str(raw["kind"]), str(raw["id"])), fields, at))
    event = make_event(event_raw, at)
    decision = decide(project, store, event, at, preview=True)
    tz = project.config.timezone
    runs: list[dict[str, Any]] = []
    for run in decision.runs:
        waits = any(step.kind == "wait" and step.detail == "until" for step in run.trace)
        status = "waits" if waits and run.status == "done" else run.status  # a preview looks past its waits
        entry: dict[str, Any] = {"rule": run.rule_id, "matched": run.status != "failed" or _started(run),
                                 "status": status, "conditions": [], "steps": []}
        for step in run.trace:
            if step.kind == "condition" and step.path.startswith("if/"):
                entry["conditions"].append({"expr": step.detail, "value": step.value, **_err(step.error)})
            elif step.kind == "action":
                entry["steps"].append({"path": step.path, "action": step.detail, "params": step.value,
                                       "at": _local(step.at, tz)})
            elif step.kind == "wait":
                entry["steps"].append({"path": step.path, "wait": step.detail, "until": _local_text(step.value, tz)})
            elif step.kind in ("error", "stop", "cancel", "if", "set", "emit"):
                entry["steps"].append({"path": step.path, step.kind: step.detail or step.value, **_err(step.error)})
        runs.append(entry)
    for why in decision.why_not:
        runs.append({"rule": why.rule_id, "matched": False, "reason": why.reason,
                     "conditions": [{"expr": e, "value": v} for e, v in why.conditions], "steps": []})
    listening = {r["rule"] for r in runs}
    return {"event": {**event.to_json(), "at": _local(event.at, tz)}, "runs": runs,
            "timers": [{"id": t.id, "kind": t.kind, "rule": t.rule_id, "due": _local(t.due_at, tz)}
                       for t in decision.timers],
            "cancelled_timers": list(decision.cancel_timers),
            "entity": dict(decision.entity_after.fields) if decision.entity_after else None,
            "other_rules": len(project.rules) - len(listening)}


def _started(run: Any) -> bool:
    return any(step.kind != "condition" and step.kind != "trigger" for step in run.trace)


def _err(error: str | None) -> dict[str, str]:
    return {"error": error} if error else {}


def _local(at: datetime | None, tz: Any) -> str | None:
    return at.astimezone(tz).isoformat() if at else None


def _local_text(value: Any, tz: Any) -> Any:
    """A moment written as ISO text, in the project's zone; anything else as it is."""
    try:
        return _local(datetime.fromisoformat(value), tz) if isinstance(value, str) else value
    except ValueError:
        return value


def format_text(plan: Mapping[str, Any], project: Project) -> str:
    """The plan as an admin reads it, every time in the project's time zone with its offset."""
    tz = project.config.timezone
    event = plan["event"]
    entity = event.get("entity")
    head = f"Event {event['type']}" + (f" on {entity['kind']} {entity['id']}" if entity else "")
    lines = [f"{head} at {show_time(event['at'], tz, seconds=False)}", ""]
    for run in plan["runs"]:
        rule = project.rule(run["rule"])
        trigger = describe(rule) if rule else ""
        if run["matched"]:
            lines.append(f"✔ {run['rule']}  ({trigger})  → {run.get('status', '')}")
        else:
            lines.append(f"✘ {run['rule']}  ({trigger}): {run.get('reason') or 'a condition failed'}")
        for cond in run["conditions"]:
            value = cond.get("error") and f"error: {cond['error']}" or repr(cond["value"])
            lines.append(f"    if {cond['expr']}  →  {value}")
        for step in run["steps"]:
            if "action" in step:
                at = show_time(step["at"], tz, seconds=False)
                lines.append(f"    {at}  {step['action']} {_params(step['params'])}")
            elif "wait" in step:
                lines.append(f"    wait until {_shown(step['until'], tz)}")
            else:
                kind = next(k for k in step if k != "path")
                lines.append(f"    {kind}: {step[kind]}" + (f" ({step['error']})" if step.get("error") else ""))
    if plan["timers"]:
        lines.append("")
        lines.extend(f"timer {t['id']} due {show_time(t['due'], tz, seconds=False)}" for t in plan["timers"])
    if plan["cancelled_timers"]:
        lines.extend(f"timer {t} cancelled" for t in plan["cancelled_timers"])
    if not plan["runs"]:
        lines.append("No rule listens to this event.")
    lines.append("")
    lines.append(f"{plan['other_rules']} other rule(s) do not listen to {event['type']}.")
    return "\n".join(lines)


def _shown(value: Any, tz: Any) -> str:
    try:
        return show_time(value, tz, seconds=False)
    except (TypeError, ValueError):  # not a moment (a wait that could not be computed): as it is
        return str(value)


def _params(params: Any) -> str:
    if isinstance(params, Mapping):
        return "{" + ", ".join(f"{k}: {v}" for k, v in params.items()) + "}"
    return str(params)
