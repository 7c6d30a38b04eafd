"""When to try a failed effect again (exponential backoff, jitter, Retry-After) and how fast a connector may go."""
from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from automator.clock import parse_duration


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter: try `n` waits about base·2^(n-1), capped, never less than Retry-After.

    Jitter draws the wait from [½, 1] of the computed one, so a burst of failures does not come back as a burst.
    """

    attempts: int = 8
    base: float = 1.0
    cap: float = 900.0
    retry_after_cap: float = 3600.0  # a system asking for more than an hour is not waited on blindly

    def delay(self, attempt: int, retry_after: float | None = None, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed try number `attempt` (1-based)."""
        computed = min(self.cap, self.base * (2 ** max(0, attempt - 1)))
        jittered = computed * (0.5 + 0.5 * (rng or random).random())
        if retry_after is not None:
            return max(jittered, min(float(retry_after), self.retry_after_cap))
        return jittered

    def exhausted(self, attempt: int) -> bool:
        """True when try number `attempt` was the last one allowed."""
        return attempt >= self.attempts


@dataclass(slots=True)
class TokenBucket:
    """A connector's rate limit: `rate` calls per second on average, `burst` at once.

    `reserve(now)` takes a token and says how long to wait before using it (0 when one is free), so callers
    queue in order without polling.
    """

    rate: float
    burst: int
    tokens: float = field(init=False)
    stamp: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.tokens = float(self.burst)

    def reserve(self, now: float) -> float:
        """Take one token at monotonic time `now`; seconds until it may be spent."""
        if self.stamp is not None:
            self.tokens = min(float(self.burst), self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= 1.0
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


def retry_policy(settings: Mapping[str, Any]) -> RetryPolicy:
    """`daemon: {retry: ...}` of automator.yaml as a RetryPolicy."""
    default = RetryPolicy()
    seconds = {k: parse_duration(settings[k]).approx().total_seconds() for k in ("first_delay", "max_delay")
               if k in settings}
    return RetryPolicy(attempts=int(settings.get("attempts", default.attempts)),
                       base=seconds.get("first_delay", default.base), cap=seconds.get("max_delay", default.cap))
