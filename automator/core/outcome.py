"""What a step can end in: go on (None), wait until a moment, stop on purpose, or fail with a StepError."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


class StepError(Exception):
    """A step could not be carried out (missing field, bad params): the run fails, the trace says why."""

    path: str | None = None


@dataclass(frozen=True, slots=True)
class Wait:
    """The run sleeps until `until`."""

    until: datetime


@dataclass(frozen=True, slots=True)
class Stop:
    """The run ends here on purpose."""

    reason: str


Outcome = Wait | Stop | None
