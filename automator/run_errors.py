"""What went wrong inside the rules while deciding an event: each failed run and each trigger that could not be
evaluated, with its rule, the step, the step's `file:line` and the message, for `automator test` to show.

A run that fails records an `error` trace line (or a condition with an error) and ends `failed`; a trigger's
`where:` or a `per:` key that cannot be evaluated leaves no run at all, only a why-not reason. Both are the same
mistake to an admin: the rule did not do what it says, and nothing else would tell them why.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from automator.model import ActionStep, Decision, IfStep, Location, Rule, Step, WaitStep



@dataclass(frozen=True, slots=True)
class RunError:
    """One rule that failed on one event."""

    rule_id: str
    path: str          # where in the rule: `when`, `if/0`, `do/1/then/0`
    step: str          # what is there, in the admin's words: `sms.send`, `wait`, `if event.score > 3`
    message: str
    event_type: str
    at: datetime
    location: Location | None

    def format(self, tz: Any) -> str:
        """Two lines: the rule, where and when; then the message."""
        from automator.clock import show_time

        where = f" at {self.location}" if self.location else ""
        return (f"rule '{self.rule_id}' failed{where} ({self.path}: {self.step}), on {self.event_type} "
                f"at {show_time(self.at, tz, seconds=False)}:\n    {self.message}")


def run_errors(project: Any, decision: Decision, now: datetime) -> list[RunError]:
    """Every failure inside the rules that deciding one event met."""
    found = []
    for run in decision.runs:
        if run.status != "failed":
            continue
        rule = project.rule(run.rule_id)
        for step in run.trace:
            if step.error and step.kind in ("error", "condition"):
                what = f"if {step.detail}" if step.kind == "condition" else step_label(rule, step.path)
                found.append(RunError(run.rule_id, step.path, what, step.error, decision.event.type,
                                      step.at or now, step_location(rule, step.path)))
    for why in decision.why_not:
        failure = _why_not_failure(why.reason)
        if failure is not None:
            rule = project.rule(why.rule_id)
            path, what, message = failure
            found.append(RunError(why.rule_id, path, what, message, decision.event.type, now,
                                  rule.location if rule else None))
    return found


def _why_not_failure(reason: str) -> tuple[str, str, str] | None:
    """(path, what, message) of a why-not reason that is an error of the rule rather than a mismatch:
    `where '…' failed: …`, `per key failed: …`, `client:7: for_each where failed: …`, `for_each items '…' failed: …`."""
    what, found, message = reason.partition(" failed: ")
    if not found:
        return None
    if what.startswith("where "):
        return "when", what, message
    if what == "per key":
        return "per", what, message
    if what.startswith("for_each items "):
        return "for_each", what, message
    if what.endswith(": for_each where"):
        return "for_each", f"for_each where, on {what.removesuffix(': for_each where')}", message
    return None


def _step_at(rule: Rule | None, path: str) -> Step | None:
    """The step at a trace path such as `do/2/then/0`."""
    parts = path.split("/")
    if rule is None or parts[0] != "do":
        return None
    steps: tuple[Step, ...] = rule.steps
    step: Step | None = None
    for part in parts[1:]:
        if part in ("then", "else"):
            if not isinstance(step, IfStep):
                return None
            steps = step.then if part == "then" else step.else_
            continue
        index = int(part)
        if index >= len(steps):
            return None
        step = steps[index]
    return step


def step_label(rule: Rule | None, path: str) -> str:
    """The step at a trace path in the admin's words: `sms.send`, `wait`, `if event.score > 3`."""
    step = _step_at(rule, path)
    if isinstance(step, ActionStep):
        return step.action
    if isinstance(step, IfStep):
        return "if " + " and ".join(c.source for c in step.conditions)
    if isinstance(step, WaitStep):
        return "wait"
    return type(step).__name__.removesuffix("Step").lower() if step is not None else "the rule"


def step_location(rule: Rule | None, path: str) -> Location | None:
    """Where the step at a trace path is written (the rule's own place for its conditions and trigger)."""
    step = _step_at(rule, path)
    location = getattr(step, "location", None)
    return location or (rule.location if rule else None)
