"""Runs every benchmark in this folder and prints their figures. `--quick`: the daemon benchmarks' short runs.

The crash test runs in full (a few minutes) without `--quick` and as its 5-kill smoke run with it. The soak runs
only as its 30-second smoke run with `--quick`, or in full (10 minutes of load) when asked with `--soak`: it is
too long for a routine run of the suite."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import condition_eval  # noqa: E402
import connector_calls  # noqa: E402
import crash  # noqa: E402
import daemon_profile  # noqa: E402
import daemon_throughput  # noqa: E402
import load_rules  # noqa: E402
import reports  # noqa: E402
import restart  # noqa: E402
import route_event  # noqa: E402
import soak  # noqa: E402
import timers  # noqa: E402


# Each starts `automator run` in a subprocess and takes its own arguments (`--quick`).
DAEMON_BENCHES = (daemon_throughput, timers, restart, daemon_profile, crash)
# Take `--quick` too, but run in this process (their servers, or each report, in child processes).
QUICK_BENCHES = (connector_calls, reports)


def main(argv: list[str] | None = None) -> None:
    quick = "--quick" in (argv or [])
    full_soak = "--soak" in (argv or [])
    figures: dict[str, float] = {}
    for bench in (load_rules, route_event, condition_eval, __import__("http_client")):
        print(f"== {bench.__name__}")
        figures.update(bench.main())
        print()
    soaks = (soak,) if quick or full_soak else ()  # the full soak only when asked: 10 minutes of load
    for bench in (*QUICK_BENCHES, *DAEMON_BENCHES, *soaks):
        print(f"== {bench.__name__}")
        figures.update(bench.main(["--quick"] if quick and not (bench is soak and full_soak) else []))
        print()
    print("summary: " + ", ".join(f"{k}={v:,.3f}" for k, v in figures.items()))


if __name__ == "__main__":
    main(sys.argv[1:])
