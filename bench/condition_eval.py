"""Benchmark: a typical three-clause condition, compiled once vs parsed for every evaluation."""
from __future__ import annotations

import sys
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import simpleeval

from automator.expr import EvalContext, compile_expr

SOURCE = "event.score >= 9 and client.visits > 2 and days_since(client.last_visit_at) < 30"
NAMES = {"event", "client"}
TZ = ZoneInfo("Europe/Moscow")
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=TZ)
SCOPE = {"event": {"score": 10}, "client": {"visits": 5, "last_visit_at": "2026-02-20T10:00:00+03:00"}}
SECONDS = 2.0


def rate(fn: object) -> float:
    """Evaluations per second over about SECONDS of wall time."""
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < SECONDS:
        for _ in range(200):
            fn()  # type: ignore[operator]
        count += 200
    return count / (time.perf_counter() - start)


def main() -> dict[str, float]:
    ctx = EvalContext(now=NOW, tz=TZ)
    compiled = compile_expr(SOURCE, NAMES)
    assert compiled.evaluate(SCOPE, ctx) is True  # correctness, not timing

    def days_since(value: str) -> float:
        return (NOW - datetime.fromisoformat(value)).total_seconds() / 86400

    class Dotted(dict):  # plain simpleeval reads dict fields with dots only through attribute access
        __getattr__ = dict.__getitem__

    plain_names = {"event": Dotted(SCOPE["event"]), "client": Dotted(SCOPE["client"])}
    figures = {
        "compiled once": rate(lambda: compiled.evaluate(SCOPE, ctx)),
        "compiled for every evaluation": rate(lambda: compile_expr(SOURCE, NAMES).evaluate(SCOPE, ctx)),
        "plain simpleeval.simple_eval each time": rate(
            lambda: simpleeval.simple_eval(SOURCE, names=plain_names, functions={"days_since": days_since})),
    }
    base = figures["compiled once"]
    print(f"condition: {SOURCE}")
    for name, value in figures.items():
        print(f"  {name:<40} {value:>10,.0f} evaluations/s   (compiled is x{base / value:.1f})")
    return {"condition_compiled_per_s": base}


if __name__ == "__main__":
    sys.exit(main() and 0)
