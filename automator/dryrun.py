"""decide() on a read-only snapshot → the plan and the why-not report, as text or JSON.

The plan follows what the engine itself would feed back: an `emit:` step's event (and a `segment.recompute`'s)
is decided in turn and shown under the step, as deep as `limits.chain_depth` lets a chain go. A rule that did
not match shows each of its conditions (all of them, not only the first that failed) with what it read.
"""
from __future__ import annotations

from datetime import datetime
from collections.abc import Mapping, Sequence
from typing import Any

from automator.clock import show_time
from automator.config.project import Project
from automator.core import scope as scopes
from automator.core.decide import decide
from automator.core.scope import describe
from automator.expr import EvalError, Expr
from automator.loyalty.mirror import is_mirror
from automator.loyalty.statement import amount_text
from automator.model import Decision, Entity, EntityRef, Event, EventTrigger, HeldTrigger, Rule, WhyNot
from automator.run_errors import step_label, step_location
from automator.simulator import seed
from automator.store.sqlite import SqliteStore
from automator.yamltext import flow

# A chain that fans out (each rule emitting to several) is shown up to this many events, then cut short.
MAX_FOLLOWED = 100
_MISSING = object()


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
    store = SqliteStore(":memory:", systems=project.config.systems)
    for raw in state:
        if not isinstance(raw, Mapping) or "kind" not in raw or ("id" not in raw and "client" not in raw):
            raise ValueError("each state entity needs `kind` and `id` (a visit: `kind`, `client` and `at`)")
    seed(store, state, at, project.config.timezone)  # a HistoryError is a ValueError: the CLI reports it
    budget = [MAX_FOLLOWED]
    # An event from a connector whose ids are its own is resolved to persons, as the daemon's journal does.
    plan = _plan(project, store, store.resolve(make_event(event_raw, at), at), at, budget)
    plan["other_rules"] = len(project.rules) - len({r["rule"] for r in plan["runs"]})
    if budget[0] < 0:
        plan["cut_short"] = f"more than {MAX_FOLLOWED} events followed: the rest are not shown"
    return plan


def _plan(project: Project, store: SqliteStore, event: Event, at: datetime, budget: list[int]) -> dict[str, Any]:
    """One event's plan; the events its runs emit are planned in turn, under the steps that emitted them."""
    decision = decide(project, store, event, at, preview=True)
    tz = project.config.timezone
    caused: dict[str, list[Event]] = {}
    for emitted in decision.events:
        caused.setdefault(str(emitted.caused_by), []).append(emitted)
    runs: list[dict[str, Any]] = []
    for run in decision.runs:
        waits = any(step.kind == "wait" and step.detail == "until" for step in run.trace)
        status = "waits" if waits and run.status == "done" else run.status  # a preview looks past its waits
        rule = project.rule(run.rule_id)
        entry: dict[str, Any] = {"rule": run.rule_id, "matched": run.status != "failed" or _started(run),
                                 "status": status, "conditions": [], "steps": []}
        for step in run.trace:
            if step.kind == "condition" and step.path.startswith("if/"):
                entry["conditions"].append({"expr": step.detail, "value": step.value, "holds": bool(step.value)
                                            and not step.error, **_err(step.error)})
            elif step.kind == "condition":  # an `if:` step's condition, before the branch it chose
                entry["steps"].append({"path": step.path, "condition": step.detail, "value": step.value,
                                       "holds": bool(step.value)})
            elif step.kind == "action":
                entry["steps"].append({"path": step.path, "action": step.detail, "params": _local(step.value, tz),
                                       "at": _iso(step.at, tz)})
            elif step.kind == "wait":
                entry["steps"].append({"path": step.path, "wait": step.detail, "until": _local_text(step.value, tz)})
            elif step.kind == "error":
                location = step_location(rule, step.path)
                entry["steps"].append({"path": step.path, "error": step.error or step.detail,
                                       "step": step_label(rule, step.path),
                                       **({"location": str(location)} if location else {})})
            elif step.kind in ("set", "emit"):
                value_key = "value" if step.kind == "set" else "data"
                item = {"path": step.path, step.kind: step.detail, value_key: _local(step.value, tz)}
                if step.kind == "emit":
                    item["follows"] = _follow(project, store, caused.pop(f"{run.id}/{step.path}", []), budget)
                entry["steps"].append(item)
            elif step.kind in ("stop", "cancel", "if"):
                entry["steps"].append({"path": step.path, step.kind: step.detail or step.value, **_err(step.error)})
        for item in entry["steps"]:  # what an engine action (segment.recompute) fed back, if a rule listens
            if "action" in item and f"{run.id}/{item['path']}" in caused:
                plans = _follow(project, store, caused.pop(f"{run.id}/{item['path']}"), budget)
                if any(p["runs"] for p in plans):
                    item["follows"] = plans
        runs.append(entry)
    for why in decision.why_not:
        runs.append({"rule": why.rule_id, "matched": False, "reason": why.reason,
                     "conditions": _why_conditions(project, store, decision, why, at), "steps": []})
    return {"event": {**event.to_json(), "at": _iso(event.at, tz)}, "runs": runs,
            "timers": [{"id": t.id, "kind": t.kind, "rule": t.rule_id, "due": _iso(t.due_at, tz)}
                       for t in decision.timers],
            "cancelled_timers": list(decision.cancel_timers),
            # The loyalty rows the decision would write, and their mirror in loyalty.yaml's `sync:` system.
            "ledger": [{"id": e.id, "account": e.account, "kind": e.kind, "amount": amount_text(e),
                        "expires_at": _iso(e.expires_at, tz), "reason": e.reason} for e in decision.ledger],
            "mirror": [{"action": e.action, "connector": e.connector, "params": dict(e.params)}
                       for e in decision.effects if is_mirror(e)],
            "entity": _local(dict(decision.entity_after.fields), tz) if decision.entity_after else None}


def _follow(project: Project, store: SqliteStore, events: list[Event], budget: list[int]) -> list[dict[str, Any]]:
    """The plans of events a step fed back; past the chain depth, decide() itself says the chain stops."""
    plans = []
    for event in events:
        budget[0] -= 1
        if budget[0] < 0:
            break
        plans.append(_plan(project, store, event, event.at, budget))
    return plans


def _why_conditions(project: Project, store: SqliteStore, decision: Decision, why: WhyNot,
                    at: datetime) -> list[dict[str, Any]]:
    """Every condition of a rule stopped by one, evaluated again so that each one that fails gets its line
    (decide() stops at the first), with the values it read; a trigger's `where:` likewise."""
    rule = project.rule(why.rule_id)
    if rule is None:
        return [{"expr": e, "value": v, "holds": bool(v)} for e, v in why.conditions]
    if why.reason.startswith("condition "):
        exprs, kind = list(rule.conditions), "if"
    elif why.reason.startswith("where ") and isinstance(rule.trigger, EventTrigger) and rule.trigger.where:
        exprs, kind = [rule.trigger.where], "where"
    else:
        return []
    event = decision.event
    state = decision.entity_after or decision.entity_before
    before = decision.entity_before.fields if decision.entity_before else None
    scope = scopes.build(project, store, event, event.entity, state.fields if state else None, before, now=at)
    ectx = scopes.eval_context(project, store, at)
    return [_evaluate(expr, kind, scope, ectx, project.config.timezone) for expr in exprs]


def _evaluate(expr: Expr, kind: str, scope: Mapping[str, Any], ectx: Any, tz: Any) -> dict[str, Any]:
    reads = {".".join(chain): _local(_read(scope, chain), tz) for chain in expr.fields
             if ".".join(chain) != expr.source.strip()}
    reads = {name: value for name, value in reads.items() if value is not _MISSING}
    try:
        value = expr.evaluate(scope, ectx)
    except EvalError as exc:
        return {"kind": kind, "expr": expr.source, "value": None, "holds": False, "error": str(exc), "reads": reads}
    return {"kind": kind, "expr": expr.source, "value": _local(value, tz), "holds": bool(value), "reads": reads}


def _read(scope: Mapping[str, Any], chain: tuple[str, ...]) -> Any:
    value: Any = scope
    for name in chain:
        if not isinstance(value, Mapping) or name not in value:
            return _MISSING
        value = value[name]
    return value


def _started(run: Any) -> bool:
    return any(step.kind != "condition" and step.kind != "trigger" for step in run.trace)


def _err(error: str | None) -> dict[str, str]:
    return {"error": error} if error else {}


def _iso(at: datetime | None, tz: Any) -> str | None:
    return at.astimezone(tz).isoformat() if at else None


def _local(value: Any, tz: Any) -> Any:
    """Params and values as JSON can carry them: moments as ISO 8601 in the project's time zone."""
    if isinstance(value, datetime):
        return value.astimezone(tz).isoformat() if value.utcoffset() is not None else value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _local(v, tz) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_local(v, tz) for v in value]
    return value


def _local_text(value: Any, tz: Any) -> Any:
    """A moment written as ISO text, in the project's zone; anything else as it is."""
    try:
        return _iso(datetime.fromisoformat(value), tz) if isinstance(value, str) else value
    except ValueError:
        return value


# ---- text --------------------------------------------------------------------------------------------

def format_text(plan: Mapping[str, Any], project: Project) -> str:
    """The plan as an admin reads it: every time in the project's time zone with its offset, every value as
    the YAML it would be written as."""
    tz = project.config.timezone
    event = plan["event"]
    entity = event.get("entity")
    head = f"Event {event['type']}" + (f" on {entity['kind']} {entity['id']}" if entity else "")
    lines = [f"{head} at {show_time(event['at'], tz, seconds=False)}", ""]
    _runs(plan, project, lines, "")
    if not plan["runs"]:
        lines.append("No rule listens to this event.")
    if plan.get("cut_short"):
        lines.append(plan["cut_short"])
    lines.append("")
    lines.append(f"{plan['other_rules']} other rule(s) do not listen to {event['type']}.")
    return "\n".join(lines)


def _runs(plan: Mapping[str, Any], project: Project, lines: list[str], pad: str) -> None:
    tz = project.config.timezone
    for run in plan["runs"]:
        rule = project.rule(run["rule"])
        trigger = describe(rule) if rule else ""
        if run["matched"]:
            lines.append(f"{pad}✔ {run['rule']}  ({trigger})  → {run.get('status', '')}")
        elif run.get("reason", "").startswith("waiting: ") and rule is not None:  # a `held` trigger armed
            lines.append(f"{pad}⏳ {run['rule']}  ({trigger}): {_held(rule, plan, tz)}")
        else:
            lines.append(f"{pad}✘ {run['rule']}  ({trigger}): {_mismatch(run)}")
        for cond in run["conditions"]:
            lines.append(f"{pad}    {_condition(cond)}")
        for step in run["steps"]:
            _step(step, project, lines, pad + "    ")
    if plan["timers"] and not pad:
        lines.append("")
    for row in plan.get("ledger", ()):
        lapse = f", lapses {show_time(row['expires_at'], tz, seconds=False)}" if row["expires_at"] else ""
        lines.append(f"{pad}ledger {row['account']} {row['kind']} {row['amount']}{lapse}: {row['reason']}")
    for told in plan.get("mirror", ()):
        lines.append(f"{pad}mirror {told['action']} via {told['connector']} {_shown(told['params'], tz)}")
    for timer in plan["timers"]:
        lines.append(f"{pad}timer {timer['id']} due {show_time(timer['due'], tz, seconds=False)}")
    lines.extend(f"{pad}timer {t} cancelled" for t in plan["cancelled_timers"])


def _held(rule: Rule, plan: Mapping[str, Any], tz: Any) -> str:
    trigger = rule.trigger
    due = next((t["due"] for t in plan["timers"] if t["rule"] == rule.id and t["kind"] == "held"), None)
    if not isinstance(trigger, HeldTrigger) or due is None:
        return "waiting"
    return (f"timer set: starts at {show_time(due, tz, seconds=False)} if {trigger.kind}.{trigger.field} is "
            f"still {flow(trigger.value)}")


def _mismatch(run: Mapping[str, Any]) -> str:
    """Why a rule did not start, in one line; its conditions follow, one line each."""
    conditions = run["conditions"]
    if conditions and conditions[0].get("kind") == "where":
        return "its `where` does not hold" if not conditions[0].get("error") else "its `where` failed"
    failed = sum(not c.get("holds") for c in conditions)
    if conditions and conditions[0].get("kind") == "if":
        verb = "does" if failed == 1 else "do"
        return f"{failed} of {_plural(len(conditions), 'condition')} {verb} not hold"
    return run.get("reason") or "a condition failed"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _condition(cond: Mapping[str, Any]) -> str:
    mark = "✔" if cond.get("holds", bool(cond.get("value"))) else "✘"
    word = cond.get("kind", "if")
    if cond.get("error"):
        outcome = f"error: {cond['error']}"
    else:
        outcome = flow(cond.get("value"))
    reads = cond.get("reads") or {}
    why = f"  ({', '.join(f'{name} is {flow(value)}' for name, value in reads.items())})" if reads else ""
    return f"{mark} {word} {cond['expr']}  →  {outcome}{why}"


def _step(step: Mapping[str, Any], project: Project, lines: list[str], pad: str) -> None:
    tz = project.config.timezone
    path = str(step.get("path", ""))
    pad += "  " * (path.count("/then/") + path.count("/else/"))  # a branch's steps under its `→ then:`
    if "action" in step:
        lines.append(f"{pad}{show_time(step['at'], tz, seconds=False)}  {step['action']} {flow(step['params'], tz)}")
    elif "wait" in step:
        past = ": already past, the run goes on at once" if step["wait"] == "already past" else ""
        lines.append(f"{pad}wait until {_shown(step['until'], tz)}{past}")
    elif "error" in step:
        where = f" ({step['location']})" if step.get("location") else ""
        lines.append(f"{pad}✘ {step.get('step', 'step')} failed at {step['path']}{where}: {step['error']}")
    elif "condition" in step:
        lines.append(f"{pad}{_condition({'expr': step['condition'], 'value': step['value'], 'holds': step['holds']})}")
    elif "if" in step:
        lines.append(f"{pad}→ {str(step['if']).removeprefix('took ')}:")
    elif "set" in step:
        lines.append(f"{pad}set {step['set']} = {flow(step.get('value'), tz)}")
    elif "emit" in step:
        lines.append(f"{pad}emit {step['emit']} {flow(step.get('data') or {}, tz)}")
    else:
        kind = next(k for k in step if k != "path")
        lines.append(f"{pad}{kind}: {step[kind]}" + (f" ({step['error']})" if step.get("error") else ""))
    for followed in step.get("follows") or ():
        if followed["runs"]:
            if "action" in step:
                lines.append(f"{pad}  → {followed['event']['type']}")
            _runs(followed, project, lines, pad + "    ")


def _shown(value: Any, tz: Any) -> str:
    try:
        return show_time(value, tz, seconds=False)
    except (TypeError, ValueError):  # not a moment (a wait that could not be computed): as it is
        return str(value)
