"""Shared fixtures: small real projects written into tmp_path."""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Callable

import pytest

CONFIG = """\
timezone: {tz}
branches:
  main: {{hours: "09:00-21:00", days: mon-sat}}
default_branch: main
connectors:
  crm: {{type: local}}
  sms: {{type: local}}
settings: {{review_url: "https://example.com/review"}}
limits: {{chain_depth: 5}}
"""

PIPELINES = """\
pipelines:
  sales:
    connector: crm
    stages:
      new: {id: "NEW"}
      in_progress: {id: "PREPARATION"}
      booked: {id: "BOOKED"}
      won: {id: "WON", outcome: won}
      lost: {id: "LOSE", outcome: lost}
  other:
    connector: crm
    stages:
      new: {id: "C2:NEW"}
      in_progress: {id: "C2:PREPARATION"}
"""


@pytest.fixture
def make_project(tmp_path: Path) -> Callable[..., Path]:
    """Write automator.yaml, a pipeline file and rule files; returns the project folder."""
    def make(rules: str | dict[str, str], *, tz: str = "Europe/Moscow", config: str | None = None,
             pipelines: str = PIPELINES, segments: str | None = None) -> Path:
        (tmp_path / "automator.yaml").write_text(config if config is not None else CONFIG.format(tz=tz))
        (tmp_path / "pipelines").mkdir(exist_ok=True)
        (tmp_path / "pipelines" / "sales.yaml").write_text(pipelines)
        if segments is not None:
            (tmp_path / "segments.yaml").write_text(textwrap.dedent(segments))
        files = {"rules.yaml": rules} if isinstance(rules, str) else rules
        (tmp_path / "rules").mkdir(exist_ok=True)
        for name, text in files.items():
            (tmp_path / "rules" / name).write_text(textwrap.dedent(text))
        return tmp_path
    return make
