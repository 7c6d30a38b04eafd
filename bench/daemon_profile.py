"""Benchmark: where the daemon's time goes under the throughput load of daemon_throughput.py (daemon FULL, 100
rules, one http.request per event, 64 connections, closed loop).

The daemon runs as one process (`--processes 1`): py-spy sees all of its work in one interpreter, each part's
share of the one GIL (with two processes, the same parts are split between them: the engine process decides and
writes decisions, the first serves webhooks and performs effects). py-spy (`pip install py-spy` into the venv)
samples the running `automator run` process twice, each for WINDOW seconds while the load runs:
  - `--gil`: only the thread holding the GIL — the daemon's Python CPU, which is serial: this is what limits
    throughput in one process;
  - without: every thread that is not idle — shows as well the time the store threads spend in SQLite with the
    GIL released (waiting for the write lock in BEGIN IMMEDIATE, fsync in COMMIT).
Each sample's stack is put in one category (first match in CATEGORIES, checked over the whole stack), and the
top functions by own time are listed.

`--quick`: 2 s windows.
"""
from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _daemon as d  # noqa: E402
from _loadgen import Load  # noqa: E402

RULES = 100
CONNS = 64
RATE_HZ = 200
FULL = {"warm": 2.0, "window": 8.0}
QUICK = {"warm": 1.0, "window": 2.0}
PY_SPY = d.BIN / "py-spy"

# (category, patterns): a sample goes to the first category one of whose patterns occurs in a frame of its
# stack (frames read as "function (file:line)"). Order matters: specific before general.
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("metrics (prometheus_client)", ("prometheus_client/",)),
    ("SQLite write lock wait (BEGIN IMMEDIATE)", ("<lock-wait>",)),
    ("SQLite COMMIT (WAL write + fsync)", ("<commit>",)),
    ("journal webhooks (append_batches)", ("append_batches",)),
    ("decide() (pure core)", ("decide (automator/core/decide.py",)),
    ("worker: commit decisions", ("Journal.commit", "writes_of", "State.write")),
    ("worker: read pending events", ("pending_events", "event_from_body", "process_batch")),
    ("outbox: settle + claim effects", ("settle_and_claim", "next_effect_due")),
    ("outbox: HTTP client (connector, httpx, engine)", ("HttpConnector.", "httpx/", "httpx_aiohttp/", "aiohttp/",
                                                        "automator/http.py", "automator/http1.py", "call_http",
                                                        "httptools/", "yarl/", "multidict/")),
    ("outbox: loop (perform, throttle)", ("automator/daemon/outbox.py",)),
    ("HTTP server: webhook handler (web.py, parse)", ("automator/daemon/web.py", "LocalConnector.parse")),
    ("HTTP server: uvicorn + httptools", ("uvicorn/",)),
    ("timers, heartbeat", ("fire_due", "next_due", "_write_status", "Engine._timers", "Daemon._heartbeat")),
    ("worker loop (engine.py)", ("Engine._work",)),
    ("store-thread / group-commit plumbing", ("storethread.py", "concurrent/futures", "threading.py")),
    ("asyncio / event loop", ("asyncio/",)),
)


def read_raw(path: Path) -> list[tuple[str, list[str], int]]:
    """py-spy's raw (collapsed) output: (thread, frames root first, count)."""
    out = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        frames = stack.split(";")
        thread = frames[0].partition(": ")[2] or frames[0]
        out.append((thread, frames[1:], int(count)))
    return out


def mark_sqlite(frames: list[str]) -> list[str]:
    """A stack whose leaf is atomic()'s BEGIN or COMMIT line (entered from the with statement) gets a marker."""
    if len(frames) >= 2 and frames[-1].startswith("Connection.atomic ("):
        if frames[-2].startswith("_GeneratorContextManager.__enter__"):
            return [*frames, "<lock-wait>"]
        if frames[-2].startswith("_GeneratorContextManager.__exit__") and "COMMIT" in _source_line(frames[-1]):
            return [*frames, "<commit>"]
    return frames


_LINES: dict[str, str] = {}


def _source_line(frame: str) -> str:
    """The source text of a frame like `Connection.atomic (automator/store/connection.py:124)`."""
    if frame not in _LINES:
        match = re.search(r"\((.+):(\d+)\)$", frame)
        text = ""
        if match:
            file = d.ROOT / match.group(1)
            if file.exists():
                lines = file.read_text().splitlines()
                index = int(match.group(2)) - 1
                text = lines[index] if 0 <= index < len(lines) else ""
        _LINES[frame] = text
    return _LINES[frame]


def categorise(samples: list[tuple[str, list[str], int]]) -> tuple[collections.Counter[str], collections.Counter[str],
                                                                  collections.Counter[str], int]:
    by_category: collections.Counter[str] = collections.Counter()
    by_thread: collections.Counter[str] = collections.Counter()
    by_leaf: collections.Counter[str] = collections.Counter()
    total = 0
    for thread, frames, count in samples:
        total += count
        by_thread[thread] += count
        frames = mark_sqlite(frames)
        by_leaf[re.sub(r":\d+\)$", ")", frames[-1]) if frames else "?"] += count
        for name, patterns in CATEGORIES:
            if any(p in f for f in frames for p in patterns):
                by_category[name] += count
                break
        else:
            by_category["other"] += count
    return by_category, by_thread, by_leaf, total


def record(pid: int, seconds: float, out: Path, gil: bool) -> None:
    cmd = [str(PY_SPY), "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))), "--rate",
           str(RATE_HZ), "--format", "raw", "--threads", "--nonblocking", "-o", str(out)]
    if gil:
        cmd.append("--gil")
    subprocess.run(cmd, check=True, capture_output=True, timeout=seconds + 30)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--raw", type=Path, help="keep py-spy's raw (collapsed) stacks in this folder")
    args = parser.parse_args(argv if argv is not None else [])
    phases = QUICK if args.quick else FULL
    if not PY_SPY.exists():
        print(f"py-spy is not installed: {d.BIN / 'pip'} install py-spy")
        return {}
    work = Path(tempfile.mkdtemp(prefix="automator-bench-profile-"))
    emulator = d.Emulator()
    profiles: dict[str, list[tuple[str, list[str], int]]] = {}
    rates: dict[str, float] = {}
    try:
        config = d.write_daemon_project(work, RULES, emulator_port=emulator.port)
        port = d.free_port()
        proc = d.start([*d.daemon_command(config, port), "--processes", "1"], work / "daemon.log")
        try:
            d.wait_healthy(port, proc)
            span = phases["warm"] + 2 * (phases["window"] + 1.5) + 2
            load = Load(mode="closed", port=port, path="/hooks/crm", conns=CONNS, duration=span, cap=2_000_000,
                        nonce=f"profile-{uuid.uuid4().hex[:8]}")
            time.sleep(phases["warm"])
            for name, gil in (("gil", True), ("threads", False)):
                e0, a0, t0, c0 = emulator.count, load.acks.value, time.monotonic(), d.cpu_seconds(proc.pid)
                record(proc.pid, phases["window"], work / f"{name}.txt", gil)
                took = time.monotonic() - t0
                rates[f"{name}_cpu_ms"] = (d.cpu_seconds(proc.pid) - c0) * 1000 / max(1, emulator.count - e0)
                rates[f"{name}_events"] = emulator.count - e0
                rates[f"{name}_eps"] = (emulator.count - e0) / took
                rates[f"{name}_acks"] = (load.acks.value - a0) / took
                profiles[name] = read_raw(work / f"{name}.txt")
                if args.raw:
                    args.raw.mkdir(parents=True, exist_ok=True)
                    shutil.copy(work / f"{name}.txt", args.raw / f"{name}.txt")
            load.result(span + 40)
        finally:
            d.stop(proc)
    finally:
        emulator.close()
        shutil.rmtree(work, ignore_errors=True)

    figures: dict[str, float] = {}
    summary = {name: categorise(samples) for name, samples in profiles.items()}
    names = [n for n, _ in CATEGORIES] + ["other"]
    gil_cat, gil_threads, gil_leaf, gil_total = summary["gil"]
    all_cat, all_threads, _, all_total = summary["threads"]
    possible = RATE_HZ * phases["window"]
    print(f"automator run under load ({RULES} rules, http.request per event, {CONNS} connections, closed loop), "
          f"py-spy at {RATE_HZ} Hz for {phases['window']:g} s each{' (--quick)' if args.quick else ''}; while "
          f"sampled: {rates['gil_eps']:,.0f} / {rates['threads_eps']:,.0f} events/s e2e, "
          f"{rates['gil_acks']:,.0f} / {rates['threads_acks']:,.0f} acks/s; {d.machine_load()}")
    rows = []
    for name in names:
        if not gil_cat[name] and not all_cat[name]:
            continue
        # µs of GIL per event: the category's samples as seconds, over the events done while sampling
        per_event = gil_cat[name] / RATE_HZ / max(1.0, rates["gil_events"]) * 1e6
        rows.append([name, gil_cat[name] / gil_total * 100 if gil_total else float("nan"), per_event,
                     all_cat[name] / all_total * 100 if all_total else float("nan")])
        key = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
        figures[f"profile_gil_{key}_pct"] = round(rows[-1][1], 1)
    rows.sort(key=lambda r: -r[1])
    print(d.table(["category", "% of GIL-held samples", "GIL µs/event", "% of non-idle thread samples"], rows))
    print(f"  GIL held in {gil_total / possible * 100:.0f}% of the samples (busy = {gil_total} of {possible:.0f}); "
          "non-idle samples by thread: " + ", ".join(f"{t} {n / possible * 100:.0f}%" for t, n in
                                                      all_threads.most_common()))
    print("  top functions by own time, GIL-held: " + "; ".join(
        f"{f} {n / gil_total * 100:.1f}%" for f, n in gil_leaf.most_common(12)))
    print(f"  daemon CPU (all threads) per event done while sampled: {rates['gil_cpu_ms']:.2f} ms (--gil run), "
          f"{rates['threads_cpu_ms']:.2f} ms (all-threads run); GIL held per event: "
          f"{gil_total / RATE_HZ / max(1.0, rates['gil_events']) * 1000:.2f} ms")
    figures["profile_gil_busy_pct"] = round(gil_total / possible * 100, 1)
    figures["profile_cpu_ms_per_event"] = round(rates["gil_cpu_ms"], 3)
    figures["profile_eps"] = round(rates["gil_eps"], 1)
    print(d.json_line("daemon_profile", {**figures, "quick": args.quick}))
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])
