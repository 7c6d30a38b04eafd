"""What the connector tests share: the contract suite's sandbox, and one served address per module whose app each
test swaps, with one event loop that keeps each connector's HTTP client for the module, as the daemon does."""
from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from automator.connector_contract import Sandboxes, Swap, sandboxes
from automator.emulator import serve
from connector_support import Loop

T0 = 1_800_000_000.0  # 2027-01-15 08:00 UTC: mid-day in Moscow


@pytest.fixture
def sandbox() -> Iterator[Sandboxes]:
    """The contract suite's sandboxes, for the tests that build connectors outside a ConnectorContract subclass."""
    with sandboxes() as make:
        yield make


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Swap, str]]:
    """One server for the module; a test puts its emulator behind it with `served[0].app = …`."""
    swap = Swap()
    with serve(swap) as server:
        yield swap, server.url


@pytest.fixture
def clock() -> list[float]:
    """The emulator's time, which a test moves by hand."""
    return [T0]


@pytest.fixture
def url(served: tuple[Swap, str]) -> str:
    """Where the module's emulator is served."""
    return served[1]


@pytest.fixture(scope="module")
def loop() -> Iterator[type[Loop]]:
    """The module's Loop: one event loop and one plain client for the module (`pytestmark = usefixtures("loop")`)."""
    with asyncio.Runner() as runner, httpx.Client(trust_env=False) as web:
        Loop.runner, Loop.made, Loop.opened, Loop.web = runner, {}, [], web
        yield Loop
        for conn in Loop.opened:
            runner.run(conn.aclose())
