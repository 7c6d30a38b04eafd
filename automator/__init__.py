"""automator: CRM funnels and automations for service businesses, written in YAML.

The public API mirrors the CLI: `load_project` (validate), `dry_run`, `run_tests` (test), `Daemon` (run), and
the core `decide`.
"""
from typing import Any

from automator.checks import CheckContext, ParamProblem
from automator.config.load import load_project
from automator.config.problems import Problem
from automator.config.project import Project
from automator.connector import ActionResult, Connector, action
from automator.core.decide import decide
from automator.dryrun import dry_run
from automator.model import Decision, Effect, Entity, EntityRef, Event, Rule, Run, Timer
from automator.testing import run_tests

__all__ = [
    "ActionResult",
    "CheckContext",
    "Connector",
    "Daemon",
    "Decision",
    "Effect",
    "Entity",
    "EntityRef",
    "Event",
    "ParamProblem",
    "Problem",
    "Project",
    "Rule",
    "Run",
    "Timer",
    "action",
    "decide",
    "dry_run",
    "load_project",
    "run_tests",
]


def __getattr__(name: str) -> Any:
    # The daemon brings uvicorn and aiohttp: loaded only by those who run it, not by `automator validate`.
    if name == "Daemon":
        from automator.daemon.process import Daemon

        return Daemon
    raise AttributeError(f"module 'automator' has no attribute {name!r}")
