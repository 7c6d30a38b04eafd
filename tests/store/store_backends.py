"""The store backends the store's tests run against: every one in BACKENDS must pass the contract suite
(test_store_contract.py); a new backend (PostgreSQL) adds its entry here and runs the same suite. A module of its
own, not conftest.py, so that a test can import Backend whichever conftest was imported first."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from automator.store.base import Store
from automator.store.sqlite import SqliteStore


@dataclass(frozen=True)
class Backend:
    """How the tests get a store of one backend."""

    make: Callable[[Path], Store]  # a fresh, empty store whose files (if it has any) live in the given folder
    open_backup: Callable[[Path], Store]  # a store reading what `Store.backup` wrote to a file


def sqlite_file(folder: Path) -> SqliteStore:
    return SqliteStore(folder / "store.db", synchronous="NORMAL")


def _sqlite_backup(path: Path) -> SqliteStore:
    return SqliteStore(path, read_only=True)


BACKENDS: dict[str, Backend] = {
    "sqlite-file": Backend(sqlite_file, _sqlite_backup),
    "sqlite-memory": Backend(lambda folder: SqliteStore(), _sqlite_backup),
}
