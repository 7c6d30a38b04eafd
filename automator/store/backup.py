"""`automator backup`: a consistent copy of a live database through SQLite's online backup API.

The copy is taken in one step, inside one read transaction on the source: in WAL mode a reader never blocks a
writer, so the daemon keeps journaling and deciding meanwhile, and the copy is the database as it was at one
commit. A copy in steps (`pages=N` with a sleep between them) would be restarted by SQLite each time another
connection writes the source between two steps, and under a steady stream of webhooks it would never end. The
only cost to the daemon is that the write-ahead log cannot be copied back past the backup's snapshot until it
ends (the log grows for that long). Neither SQLite's write lock nor the daemon's own (`<db>-lock`) is taken.
"""
from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path


class BackupError(Exception):
    """The backup could not be made; the message says why, and no file was left at the target."""


@dataclass(frozen=True)
class BackupReport:
    """What was written."""

    target: Path
    size: int  # bytes
    pages: int
    seconds: float


def backup(db: Path | sqlite3.Connection, target: Path, *, force: bool = False) -> BackupReport:
    """Copy the database `db` (a file, live or not, or an open connection: an in-memory database) to `target`,
    checked with `PRAGMA quick_check`.

    The copy is written beside `target` under a temporary name and renamed into place only once complete and
    checked, so a failed or interrupted backup never leaves a file that looks like one. An existing `target` is
    refused unless `force`. The file is readable by its owner only: it holds the clients' personal data.
    """
    if isinstance(db, Path) and not db.is_file():
        raise BackupError(f"no database at {db}")
    if target.exists() and not force:
        raise BackupError(f"{target} exists; pass --force to overwrite it")
    if isinstance(db, Path) and target.resolve() == db.resolve():
        raise BackupError(f"{target} is the database itself")
    if not target.parent.is_dir():
        raise BackupError(f"no folder {target.parent} to write {target.name} into")
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    started = time.monotonic()
    try:
        # Read-only: the backup can never change the database, whoever runs it.
        source = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=30) if isinstance(
            db, Path) else db
        try:
            copy = sqlite3.connect(partial)
            try:
                os.chmod(partial, 0o600)
                source.backup(copy)
                pages = int(copy.execute("PRAGMA page_count").fetchone()[0])
                verdict = copy.execute("PRAGMA quick_check").fetchone()[0]
            finally:
                copy.close()
        finally:
            if source is not db:
                source.close()
        if verdict != "ok":
            raise BackupError(f"the copy failed its check: {verdict}")
        os.replace(partial, target)
    except sqlite3.Error as exc:
        raise BackupError(f"could not back up {db}: {exc}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    return BackupReport(target, target.stat().st_size, pages, time.monotonic() - started)
