"""`when: {schedule: CRON | end_of_day | start_of_day}`: cron in the project's timezone, or business hours."""
from __future__ import annotations

from datetime import datetime, timedelta
from collections.abc import Mapping, Sequence
from typing import Any

from automator.clock import cron_between, cron_problem, end_of_day, start_of_day
from automator.config.context import CompileContext, branch_hint
from automator.config.settings import Config
from automator.model import Rule, ScheduleTrigger, Trigger
from automator.triggers.base import Deciding, TriggerKind

KEY = "schedule"
ANCHORS = ("end_of_day", "start_of_day")
CATCH_UP = ("once", "skip", "all")
MAX_FIRES = 1000  # bound one catch-up window: a year of hourly ticks is not a reason to hang


def compile(raw: Mapping[str, Any], path: Sequence[str | int], ctx: CompileContext) -> ScheduleTrigger | None:
    """Build the trigger; a cron that is malformed or can never fire is a problem here, not a silent rule."""
    spec = str(raw[KEY]).strip()
    branch = raw.get("branch")
    catch_up = raw.get("catch_up", "once")
    if catch_up not in CATCH_UP:
        ctx.error((*path, "catch_up"), f"catch_up must be one of {', '.join(CATCH_UP)}, got {catch_up!r}")
    if branch is not None and ctx.config is not None and branch not in ctx.config.branches:
        ctx.error((*path, "branch"), f"unknown branch '{branch}'", branch_hint(branch, ctx))
    if spec in ANCHORS:
        if ctx.config is not None and ctx.config.branch(branch) is None:
            ctx.error((*path, KEY), f"'{spec}' needs business hours",
                      "add `branches:` with hours to automator.yaml (or name a `branch:`)")
        return ScheduleTrigger(cron=None, anchor=spec, branch=branch, catch_up=catch_up)
    problem = cron_problem(spec)
    if problem:
        ctx.error((*path, KEY), problem, "cron is 'minute hour day-of-month month day-of-week', e.g. '0 10 * * *'")
        return None
    return ScheduleTrigger(cron=spec, branch=branch, catch_up=catch_up)


def routes(trigger: Trigger) -> list[str]:
    """Schedules are woken by their timers, not routed from events."""
    return []


def fires_between(trigger: ScheduleTrigger, start: datetime, end: datetime, config: Config) -> list[datetime]:
    """Every fire time in (start, end], in order, at most MAX_FIRES."""
    if trigger.cron is not None:
        return cron_between(trigger.cron, start, end, config.timezone, limit=MAX_FIRES)
    hours = config.branch(trigger.branch)
    if hours is None:
        return []
    step = end_of_day if trigger.anchor == "end_of_day" else start_of_day
    fires: list[datetime] = []
    cursor = start + timedelta(seconds=1)
    while len(fires) < MAX_FIRES:
        at = step(cursor, hours)
        if at <= start:
            cursor = at + timedelta(seconds=1)
            continue
        if at > end:
            break
        fires.append(at)
        cursor = at + timedelta(seconds=1)
    return fires


def timer_id(rule_id: str) -> str:
    """A schedule keeps one durable timer: its next tick."""
    return f"schedule/{rule_id}"


def fired(rule: Rule, deciding: Deciding) -> None:
    """A tick: one run, or one per entity its `for_each` selects (`start` fans out)."""
    deciding.start(rule, None, None)


def describe(trigger: ScheduleTrigger) -> str:
    """One line for traces and dry-run output."""
    return f"schedule {trigger.cron or trigger.anchor}" + (f" ({trigger.branch})" if trigger.branch else "")


KIND = TriggerKind(KEY, ScheduleTrigger, compile, routes, describe, routed=None, fired=fired)
