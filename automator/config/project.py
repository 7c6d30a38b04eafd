"""Project: every file of one rule set, compiled, with a content hash as its version."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from automator.actions.spec import ActionSpec
from automator.config.files import walk_yaml
from automator.config.problems import Problem
from automator.config.settings import Config, choose_connector
from automator.core.outcome import StepError
from automator.model import Location, Pipeline, Rule

if TYPE_CHECKING:
    from automator.config.reads import Knowledge
    from automator.config.schemas import SchemaSet
    from automator.core.router import Router
    from automator.loyalty.config import LoyaltyConfig
    from automator.segments import SegmentsConfig

CONFIG_FILE = "automator.yaml"
SEGMENTS_FILE = "segments.yaml"
LOYALTY_FILE = "loyalty.yaml"
TEST_SUFFIX = ".test.yaml"


@dataclass(frozen=True, slots=True)
class Project:
    """A compiled rule set: what `decide` needs, and nothing that does I/O."""

    root: Path
    config: Config
    pipelines: Mapping[str, Pipeline]
    rules: tuple[Rule, ...]
    segments: SegmentsConfig | None
    router: Router
    schemas: SchemaSet
    version: str
    files: tuple[str, ...] = ()
    # What loads but does not work as written (a rule file with no rules): `validate` shows these, exit still 0.
    warnings: tuple[Problem, ...] = ()
    # What the project's connectors produce and its rules emit: what a test's events are checked against.
    knowledge: Knowledge | None = None
    loyalty: LoyaltyConfig | None = None  # loyalty.yaml, when the project has one

    def rule(self, rule_id: str) -> Rule | None:
        """The rule with this id, if loaded."""
        return self.router.by_id.get(rule_id)

    def action_schema_id(self, name: str) -> str:
        """The params schema of an action."""
        spec = self.action_spec(name)
        return spec.schema_id if spec else f"actions/{name}.json"

    def connector_for(self, action: str, params: Mapping[str, Any], via: str | None,
                      scope: Mapping[str, Any]) -> str:
        """Which connector performs an action: `via`, else the deal's pipeline's, else the first that can."""
        deal = written if isinstance(written := scope.get("deal"), Mapping) else {}
        found = choose_connector(action, via, params.get("pipeline") or deal.get("pipeline"), self.pipelines,
                                 self.config.connectors)
        if found is None:
            raise StepError(f"no configured connector can perform {action!r}")
        return found

    def action_spec(self, name: str) -> ActionSpec | None:
        """The spec of an action as some configured connector declares it."""
        for connector in self.config.connectors.values():
            if name in connector.actions:
                return connector.actions[name]
        return None


def find_root(path: Path) -> Path | None:
    """The nearest directory at or above `path` that holds automator.yaml."""
    # A file's own folder, not its symlink target's: a link out of the project still belongs to the project.
    start = path.resolve() if path.is_dir() else path.parent.resolve()
    for candidate in (start, *start.parents):
        if os.path.lexists(candidate / CONFIG_FILE):  # whatever it is: reading it says what is wrong with it
            return candidate
    return None


def rule_files(root: Path, under: Path | None = None) -> list[Path]:
    """Rule files of a project: rules/**/*.yaml without tests, optionally only those under `under`.

    Symlinked folders are not walked; they are listed, so that loading them reports them (see `walk_yaml`).
    """
    base = root / "rules"
    if under is not None:
        if os.path.lexists(under) and not under.is_dir():
            # A file, or something else named on purpose: the loader reads it, or says why it does not.
            # Its own name is kept (not a symlink's target), so that what is refused is named as the admin wrote it.
            return [under.parent.resolve() / under.name] if not under.name.endswith(TEST_SUFFIX) else []
        under = under.resolve()
        if base.resolve() in (under, *under.parents):
            base = under
        elif under != root.resolve():
            return []
    return [p for p in walk_yaml(base) if not p.name.endswith(TEST_SUFFIX)] if base.is_dir() else []


def content_version(texts: list[tuple[str, bytes]]) -> str:
    """A short hash of every file's name and content: the project's version."""
    digest = hashlib.sha256()
    for name, data in sorted(texts):
        digest.update(name.encode())
        digest.update(b"\0")
        digest.update(data)
    return digest.hexdigest()[:12]


def display(path: Path, base: Path | None = None) -> str:
    """A path as the admin sees it: relative to the working directory when possible."""
    try:
        # The file's own name, not its target's: a symlink is named as it is written in the project.
        return str((path.parent.resolve() / path.name).relative_to((base or Path.cwd()).resolve()))
    except ValueError:
        return str(path)


__all__ = ["Problem", "Project", "find_root", "rule_files"]
