"""Which connectors of a project cannot authenticate webhooks, and so accept none: `validate`'s warnings."""
from __future__ import annotations

from collections.abc import Mapping

from automator.config.problems import Problem
from automator.config.project import Project
from automator.connector import Connector


def unauthenticated_webhooks(project: Project, types: Mapping[str, type[Connector]]) -> list[Problem]:
    """A warning, at the connector's name in automator.yaml, for each connector whose type receives webhooks but
    whose settings cannot authenticate them (a `local` without `secret:`): the daemon refuses every webhook
    it is sent, while it still performs actions."""
    found = []
    for name, conf in project.config.connectors.items():
        cls = types.get(conf.type)
        refusal = cls.refuses_webhooks(name, conf.options) if cls is not None else None
        if cls is None or refusal is None or conf.location is None:
            continue
        settings = " and ".join(f'`{setting}: "${{env:NAME}}"`' for setting in cls.webhook_auth)
        hint = f"set {settings} to receive them" if settings else None
        found.append(Problem(conf.location.path, conf.location.line, conf.location.col,
                             f"{refusal} (it still performs actions)", hint, severity="warning"))
    return found
