"""What the daemon runs now: the project, its connectors, and why the last reload was refused.

One small mutable record shared by the parts of the daemon (the web app looks connectors up in it, the health
and status read it, a reload replaces its project and connectors together), so that none of them needs the
Daemon itself.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from automator.config.problems import Problem
from automator.config.project import Project
from automator.connector import Connector


@dataclass
class Running:
    """The project and connectors in service; `load_errors`: the problems of the last reload refused (none once
    one is swapped in)."""

    project: Project
    connectors: dict[str, Connector] = field(default_factory=dict)
    load_errors: list[Problem] = field(default_factory=list)
