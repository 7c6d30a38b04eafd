"""automator: CRM funnels and automations for service businesses, written in YAML.

The public API mirrors the CLI: `load_project` (validate), `dry_run`, `run_tests` (test), `Daemon` (run), and
the core `decide`.
"""
from importlib import import_module
from typing import Any

# Where each public name lives. Loaded on first use: `automator validate` needs neither the store nor the
# simulator, and the daemon brings uvicorn and httptools, so importing the package costs only what is used.
_PUBLIC = {
    "ActionResult": "automator.connector",
    "CheckContext": "automator.checks",
    "Connector": "automator.connector",
    "Daemon": "automator.daemon.process",
    "Decision": "automator.model",
    "Effect": "automator.model",
    "Entity": "automator.model",
    "EntityRef": "automator.model",
    "Event": "automator.model",
    "ParamProblem": "automator.checks",
    "Problem": "automator.config.problems",
    "Project": "automator.config.project",
    "Rule": "automator.model",
    "Run": "automator.model",
    "SpendRow": "automator.connector",
    "Timer": "automator.model",
    "WebConnector": "automator.connector",
    "action": "automator.connector",
    "daemon_options": "automator.daemon.options",
    "decide": "automator.core.decide",
    "dry_run": "automator.dryrun",
    "load_project": "automator.config.load",
    "run_tests": "automator.testing",
}

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
    "SpendRow",
    "Timer",
    "WebConnector",
    "action",
    "daemon_options",
    "decide",
    "dry_run",
    "load_project",
    "run_tests",
]


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'automator' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
