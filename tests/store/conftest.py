"""The store backends the store's tests run against: every one in BACKENDS must pass the contract suite
(test_store_contract.py); a new backend (PostgreSQL) adds its entry there and runs the same suite."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from automator.store.base import Store
from automator.store.sqlite import SqliteStore


@dataclass(frozen=True)
class Backend:
    """How the tests get a store of one backend."""

    make: Callable[[Path], Store]  # a fresh, empty store whose files (if it has any) live in the given folder
    open_backup: Callable[[Path], Store]  # a store reading what `Store.backup` wrote to a file


def _sqlite_file(folder: Path) -> SqliteStore:
    return SqliteStore(folder / "store.db", synchronous="NORMAL")


def _sqlite_backup(path: Path) -> SqliteStore:
    return SqliteStore(path, read_only=True)


BACKENDS: dict[str, Backend] = {
    "sqlite-file": Backend(_sqlite_file, _sqlite_backup),
    "sqlite-memory": Backend(lambda folder: SqliteStore(), _sqlite_backup),
}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each backend in turn."""
    return BACKENDS[request.param]


@pytest.fixture
def any_store(backend: Backend, tmp_path: Path) -> Iterator[Store]:
    """A fresh store of each backend, used through the Store protocol only (the contract suite)."""
    store = backend.make(tmp_path)
    yield store
    store.close()


@pytest.fixture(params=["file", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqliteStore]:
    """A fresh SqliteStore on a file and in memory (for the tests of SQLite's own rows and transactions)."""
    sqlite = _sqlite_file(tmp_path) if request.param == "file" else SqliteStore()
    yield sqlite
    sqlite.close()
