"""Watches the project's files; a change is validated first, then swapped in atomically or reported and refused."""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import watchfiles

from automator.config.load import load_project
from automator.config.problems import Problem
from automator.config.project import Project

if TYPE_CHECKING:
    from automator.daemon.process import Daemon

log = logging.getLogger(__name__)


def is_project_file(root: Path, path: Path) -> bool:
    """automator.yaml, segments.yaml, pipelines/*.yaml and rules/**/*.yaml (tests and the database are not)."""
    try:
        rel = path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    if rel.suffix != ".yaml" or rel.name.endswith(".test.yaml"):
        return False
    if len(rel.parts) == 1:
        return rel.name in ("automator.yaml", "segments.yaml")
    return rel.parts[0] in ("pipelines", "rules")


def load(root: Path) -> tuple[Project | None, list[Problem]]:
    """The project as it is on disk now."""
    return load_project(root)


async def watch(daemon: Daemon, debounce_ms: int = 300) -> None:
    """Reload on every change until the daemon stops; a broken change leaves the running rules in place."""
    root = daemon.root
    async for changes in watchfiles.awatch(root, watch_filter=lambda _c, p: is_project_file(root, Path(p)),
                                           stop_event=daemon.stopping, debounce=debounce_ms, recursive=True):
        names = sorted({str(Path(p).relative_to(root)) for _, p in changes})
        project, problems = await asyncio.to_thread(load, root)
        await daemon.swap(project, problems, names)
