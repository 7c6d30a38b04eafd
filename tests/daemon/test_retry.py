"""RetryPolicy (exponential backoff, jitter, Retry-After) and TokenBucket (a connector's rate limit)."""
from __future__ import annotations

import random

import pytest

from automator.daemon.retry import RetryPolicy, TokenBucket, retry_policy


class Fixed(random.Random):
    """An rng whose random() is always `value`: the ends of the jitter band."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def random(self) -> float:
        return self.value


LOW, HIGH = Fixed(0.0), Fixed(0.999999999)


def test_delay_doubles_within_the_jitter_band() -> None:
    policy = RetryPolicy(attempts=8, base=1.0, cap=900.0)
    for attempt, computed in ((1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (8, 128.0)):
        assert policy.delay(attempt, rng=LOW) == computed / 2
        assert policy.delay(attempt, rng=HIGH) == pytest.approx(computed)
        rng = random.Random(attempt)
        for _ in range(200):
            assert computed / 2 <= policy.delay(attempt, rng=rng) <= computed


def test_jitter_spreads_a_burst() -> None:
    policy = RetryPolicy()
    rng = random.Random(7)
    delays = [policy.delay(5, rng=rng) for _ in range(100)]
    assert len(set(delays)) == 100 and max(delays) - min(delays) > 4  # band [8, 16]


def test_delay_is_capped() -> None:
    policy = RetryPolicy(attempts=100, base=1.0, cap=900.0)
    assert policy.delay(11, rng=HIGH) == pytest.approx(900.0)  # 1024 computed, capped
    assert policy.delay(100, rng=HIGH) == pytest.approx(900.0)
    assert policy.delay(100, rng=LOW) == 450.0
    assert RetryPolicy(base=5.0, cap=60.0).delay(4, rng=HIGH) == pytest.approx(40.0)
    assert RetryPolicy(base=5.0, cap=60.0).delay(5, rng=HIGH) == pytest.approx(60.0)
    assert RetryPolicy().delay(0, rng=HIGH) == pytest.approx(1.0)  # never below the first delay's band


def test_retry_after_is_a_floor_capped_at_retry_after_cap() -> None:
    policy = RetryPolicy(base=1.0, cap=900.0, retry_after_cap=3600.0)
    assert policy.delay(1, retry_after=120, rng=HIGH) == 120.0  # computed 1 s; the system asked for 120
    assert policy.delay(1, retry_after=120.5, rng=LOW) == 120.5
    assert policy.delay(10, retry_after=5, rng=HIGH) == pytest.approx(512.0)  # backoff is longer: kept
    assert policy.delay(1, retry_after=0, rng=LOW) == 0.5
    assert policy.delay(1, retry_after=10_000, rng=HIGH) == 3600.0  # not waited on blindly for hours
    assert RetryPolicy(retry_after_cap=60).delay(1, retry_after=3600, rng=LOW) == 60.0
    # Retry-After above the backoff cap still wins (up to its own cap): the system said so.
    assert RetryPolicy(cap=10.0).delay(1, retry_after=300, rng=HIGH) == 300.0


def test_exhausted() -> None:
    policy = RetryPolicy(attempts=3)
    assert [policy.exhausted(n) for n in (1, 2, 3, 4)] == [False, False, True, True]
    assert RetryPolicy(attempts=1).exhausted(1) is True


def test_retry_policy_from_settings() -> None:
    assert retry_policy({}) == RetryPolicy()
    assert retry_policy({"attempts": 3, "first_delay": "2s", "max_delay": "1m"}) == \
        RetryPolicy(attempts=3, base=2.0, cap=60.0)
    assert retry_policy({"max_delay": "1h"}) == RetryPolicy(cap=3600.0)


# ---- TokenBucket -------------------------------------------------------------------------------------------------

def test_a_burst_goes_at_once_then_one_per_interval() -> None:
    bucket = TokenBucket(rate=2.0, burst=3)
    assert [bucket.reserve(100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    # Further calls at the same moment queue up, each 1/rate after the previous one.
    assert [bucket.reserve(100.0) for _ in range(3)] == [0.5, 1.0, 1.5]


def test_waits_of_one_over_rate_with_burst_one() -> None:
    bucket = TokenBucket(rate=5.0, burst=1)
    assert [bucket.reserve(0.0) for _ in range(6)] == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])


def test_tokens_refill_over_time_up_to_the_burst() -> None:
    bucket = TokenBucket(rate=1.0, burst=2)
    assert [bucket.reserve(0.0), bucket.reserve(0.0)] == [0.0, 0.0]
    assert bucket.reserve(0.5) == pytest.approx(0.5)  # half a token back; this one waits for the other half
    assert bucket.reserve(1.0) == pytest.approx(1.0)  # the queue: 1.0 → due at 2.0
    # Long idle: the bucket holds at most `burst` tokens, never a backlog of unused calls.
    assert [bucket.reserve(1000.0), bucket.reserve(1000.0)] == [0.0, 0.0]
    assert bucket.reserve(1000.0) == pytest.approx(1.0)


def test_a_steady_caller_at_the_rate_never_waits() -> None:
    bucket = TokenBucket(rate=4.0, burst=1)
    assert all(bucket.reserve(t / 4) == 0.0 for t in range(50))
    assert bucket.reserve(49 / 4 + 1 / 8) == pytest.approx(0.125)  # came half an interval early
