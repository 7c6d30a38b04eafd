"""Benchmark: the daemon's events/s with and without a report computing beside it (issue 15).

`daemon_throughput.py --quick --only-daemon` (the daemon with its default two processes, webhooks in, 100 rules,
an `http.request` out per event) runs in pairs: once alone, once while another process computes the retention
report (the heaviest: every visit read) over reports.py's store again and again, at the priority `automator report`
runs at (nice 10 and SCHED_IDLE: `automator.report_delivery.lower_priority`). A report reads a read-only snapshot and
takes no lock the daemon waits for, so what it can take from the daemon is CPU; the priority is to keep that within
the issue's 10 %. Prints each pair's events/s and the median ratio. Needs reports.py's store (run `bench/reports.py`
or `--quick` first; the larger one is used).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import daemon_throughput  # noqa: E402
import reports  # noqa: E402

PAIRS = 3


def _daemon_eps() -> float:
    with contextlib.redirect_stdout(io.StringIO()):
        figures = daemon_throughput.main(["--quick", "--only-daemon"])
    return figures["throughput_daemon_full_eps"]


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=PAIRS)
    # One: what `Limits.beside` gives a report over a store a daemon runs on (this daemon runs on its own store).
    parser.add_argument("--threads", type=int, default=1, help="the report's DuckDB threads (default 1)")
    args = parser.parse_args(argv)
    store = next((p for p in (reports.store_path(n, 15) for n in (reports.FULL, reports.QUICK)) if p.exists()), None)
    if store is None:
        raise SystemExit("no reports store yet: run bench/reports.py (or --quick) first")
    print(f"daemon events/s alone and beside the retention report looping over {store.name} at `automator report`'s priority:")
    ratios = []
    for pair in range(args.pairs):
        alone = _daemon_eps()
        loop = subprocess.Popen(
            # The loop lowers its own priority first, so each report's start (Python, imports) is low too, as
            # `automator report` and report.send's child are from their first line.
            [sys.executable, "-c", "import subprocess, sys\nfrom automator.report_delivery import lower_priority\n"
             "lower_priority()\nwhile True: subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL)",
             sys.executable, reports.__file__, "--child", "retention", str(store),
             "--threads", str(args.threads)],
            start_new_session=True)  # its own group: the report computing when the pair ends stops with the loop
        try:
            time.sleep(1.0)  # the report is reading when the load starts
            beside = _daemon_eps()
        finally:
            os.killpg(loop.pid, signal.SIGKILL)
            loop.wait()
        ratios.append(beside / alone)
        print(f"  pair {pair + 1}: alone {alone:7.0f}   beside a report {beside:7.0f}   ×{beside / alone:.2f}")
    median = statistics.median(ratios)
    print(f"median ratio ×{median:.2f} (target: within 10 %, ≥ ×0.90); load average {os.getloadavg()[0]:.1f} at the end")
    return {"daemon_beside_report_ratio": median}


if __name__ == "__main__":
    main(sys.argv[1:])
