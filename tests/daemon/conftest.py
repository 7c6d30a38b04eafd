"""Fixtures of the daemon's tests: waiting for a condition on the event loop instead of sleeping a guess."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

async def _wait_until(predicate: Callable[[], object], timeout: float = 10.0, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not come within {timeout:g} s")
        await asyncio.sleep(0.005)  # the loop runs meanwhile: the awaited work goes on


@pytest.fixture
def wait_until() -> Callable[..., Awaitable[None]]:
    """`await wait_until(predicate, timeout, what)`: return once `predicate()` holds, fail after `timeout` s."""
    return _wait_until
