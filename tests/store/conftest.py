"""The store tests' fixtures: each contract test runs once per backend of store_backends.BACKENDS."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from store_backends import BACKENDS, Backend, sqlite_file

from automator.store.base import Store
from automator.store.sqlite import SqliteStore


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
    sqlite = sqlite_file(tmp_path) if request.param == "file" else SqliteStore()
    yield sqlite
    sqlite.close()
