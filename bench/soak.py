"""Soak: `automator run` for 10 minutes at 1,000 webhooks/s with an effect per event; memory, files and queues
sampled every 10 s.

The daemon runs as an operator starts it (two processes, synchronous=FULL) on the throughput benchmark's project
(100 rules; each webhook, a new booking, makes one `http.request` to the emulator of _daemon.py, in its own
process). The load is open loop (_loadgen.py, paced at RATE/s on 64 keep-alive connections). Every INTERVAL s,
for the daemon and for its engine process (its child) separately: VmRSS (/proc/PID/status) and open file
descriptors (/proc/PID/fd); and the webhooks acknowledged and effects received by the emulator per second over
the interval, events, effects and timers pending (/metrics), and the size of the WAL file. Printed as a table,
a row per sample, and one JSON line with the series.

At the end: the RSS slope of each process after warm-up (the first 2 minutes; the first third with --quick), by
least squares, in MB per minute, judged flat when it is under FLAT_PCT_PER_MIN % of its mean RSS then per minute
(a leak of ~10 bytes per event at 1,000/s would exceed it); open files judged flat when they stay within
FDS_RISE (the most open in the last third after warm-up against the most in its first third: connections come
and go with the load, a leak rises); and, once the load stops, the pipeline is given up to DRAIN_CAP_S to
finish (events and effects pending back to 0; timers pending stay: the generated rules' schedules always hold
their next tick): pending counts from /metrics and `automator status --format json` are printed, then the daemon
stops.

`--quick`: 30 s, sampled every 2 s (a smoke run of the instrument, not a soak). `--minutes`, `--rate`,
`--interval` change the run.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _daemon as d  # noqa: E402
from _loadgen import Load  # noqa: E402

RULES = 100
CONNS = 64
RATE = 1000
MINUTES, QUICK_MINUTES = 10.0, 0.5
INTERVAL, QUICK_INTERVAL = 10.0, 2.0
WARM_UP_S = 120.0  # or the first third of a --quick run
FLAT_PCT_PER_MIN = 1.0
FDS_RISE = 10
DRAIN_CAP_S = 60.0
WORK = ("automator_journal_pending", "automator_effects_pending")  # what must come to 0 once the load stops


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    """The least-squares slope of (seconds, value) points, per minute; NaN for fewer than two."""
    if len(points) < 2:
        return float("nan")
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    if spread == 0:
        return float("nan")
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / spread * 60


def sample(t: float, pids: dict[str, int], port: int, wal: Path, load: Load, emulator: d.Emulator,
           before: dict[str, float]) -> dict[str, Any]:
    """One row of the series; `before` holds the counters of the previous sample and is updated."""
    row: dict[str, Any] = {"t": round(t, 1)}
    for name, pid in pids.items():
        row[f"{name}_rss_mb"] = d.rss_mb(pid)
        row[f"{name}_fds"] = d.open_fds(pid)
    now, acks, served = time.monotonic(), load.acks.value, emulator.count
    span = max(1e-6, now - before["at"])
    row["acks_per_s"] = (acks - before["acks"]) / span
    row["effects_per_s"] = (served - before["served"]) / span
    row["errors"] = load.errors.value
    before.update(at=now, acks=acks, served=served)
    try:
        metrics = d.metric_values(port)
    except (OSError, ValueError):
        metrics = {}
    for name in d.PENDING:
        row[name.removeprefix("automator_")] = metrics.get(name)
    row["wal_mb"] = wal.stat().st_size / 2**20 if wal.exists() else 0.0
    return row


COLUMNS = (("t s", 7), ("RSS MB", 8), ("fds", 5), ("acks/s", 8), ("effects/s", 9), ("events pending", 14),
           ("effects pending", 15), ("timers pending", 14), ("WAL MB", 7))


def header(pids: dict[str, int]) -> str:
    """The series' header: time, then RSS and open files per process, then the pipeline's figures."""
    names = ["t s", *[f"{n} {c}" for n in pids for c in ("RSS MB", "fds")], *[c for c, _ in COLUMNS[3:]]]
    widths = [7, *[max(len(f"{n} RSS MB"), 8) if i % 2 == 0 else max(len(f"{n} fds"), 5)
                   for n in pids for i in range(2)], *[w for _, w in COLUMNS[3:]]]
    return "  " + "  ".join(n.rjust(w) for n, w in zip(names, widths))


def line(row: dict[str, Any], pids: dict[str, int]) -> str:
    """One sample as a row under header()."""
    cells = [f"{row['t']:.0f}".rjust(7)]
    for n in pids:
        rss, fds = row[f"{n}_rss_mb"], row[f"{n}_fds"]
        cells.append(("-" if rss is None else f"{rss:.1f}").rjust(max(len(f"{n} RSS MB"), 8)))
        cells.append(("-" if fds is None else str(fds)).rjust(max(len(f"{n} fds"), 5)))
    for (_, width), key in zip(COLUMNS[3:], ("acks_per_s", "effects_per_s", "journal_pending", "effects_pending",
                                              "timers_pending", "wal_mb")):
        value = row[key]
        text = "-" if value is None else (f"{value:.1f}" if key == "wal_mb" else f"{value:,.0f}")
        cells.append(text.rjust(width))
    return "  " + "  ".join(cells)


def judge(series: list[dict[str, Any]], warm_up: float, processes: list[str]) -> dict[str, Any]:
    """RSS slopes and fd spans after warm-up, with the verdicts."""
    after = [row for row in series if row["t"] >= warm_up]
    out: dict[str, Any] = {"warm_up_s": warm_up, "samples_after_warm_up": len(after)}
    for name in processes:
        rss = [(row["t"], row[f"{name}_rss_mb"]) for row in after if row[f"{name}_rss_mb"] is not None]
        fds = [row[f"{name}_fds"] for row in after if row[f"{name}_fds"] is not None]
        slope = slope_per_minute(rss)
        mean = sum(v for _, v in rss) / len(rss) if rss else float("nan")
        out[f"{name}_rss_slope_mb_per_min"] = slope
        out[f"{name}_rss_mean_mb"] = mean
        out[f"{name}_rss_flat"] = bool(rss) and slope == slope and slope < mean * FLAT_PCT_PER_MIN / 100
        # Connections come and go with the load (the client pool, keep-alives): a leak is a rise, not a spread.
        third = max(1, len(fds) // 3)
        out[f"{name}_fds_min_max"] = (min(fds), max(fds)) if fds else None
        out[f"{name}_fds_rise"] = (max(fds[-third:]) - max(fds[:third])) if fds else None
        out[f"{name}_fds_flat"] = bool(fds) and max(fds[-third:]) - max(fds[:third]) <= FDS_RISE
    return out


def status_json(config: Path) -> dict[str, Any] | str:
    """`automator status --format json` as an operator runs it (bounded in time); its error text if it fails."""
    try:
        done = subprocess.run([str(d.AUTOMATOR), "status", "--config", str(config), "--format", "json"],
                              capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return "no answer within 60 s"
    if done.returncode != 0:
        return (done.stderr or done.stdout).strip().splitlines()[-1:][0] if (done.stderr or done.stdout) else \
            f"exit {done.returncode}"
    try:
        return json.loads(done.stdout)  # type: ignore[no-any-return]
    except ValueError:
        return done.stdout.strip()[:200]


def pending_of(status: dict[str, Any] | str) -> dict[str, Any]:
    """The counts of `automator status --format json` (events, effects and timers pending, dead letters, …)."""
    if not isinstance(status, dict):
        return {"error": status}
    return {k: v for k, v in status.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="30 s sampled every 2 s (a smoke run)")
    parser.add_argument("--minutes", type=float, default=None, help=f"how long the load runs (default {MINUTES:g})")
    parser.add_argument("--rate", type=float, default=RATE, help=f"webhooks per second (default {RATE})")
    parser.add_argument("--interval", type=float, default=None, help=f"seconds between samples (default {INTERVAL:g})")
    args = parser.parse_args(argv if argv is not None else [])
    minutes = args.minutes if args.minutes is not None else (QUICK_MINUTES if args.quick else MINUTES)
    interval = args.interval if args.interval is not None else (QUICK_INTERVAL if args.quick else INTERVAL)
    duration = minutes * 60
    warm_up = duration / 3 if args.quick or duration < 3 * WARM_UP_S else WARM_UP_S
    work = Path(tempfile.mkdtemp(prefix="automator-bench-soak-"))
    emulator = d.Emulator(lifetime=duration + DRAIN_CAP_S + 300)
    series: list[dict[str, Any]] = []
    load_before = d.machine_load()
    port = d.free_port()
    proc = None
    load: Load | None = None
    try:
        config = d.write_daemon_project(work, RULES, emulator_port=emulator.port)
        proc = d.start(d.daemon_command(config, port), work / "daemon.log")
        d.wait_healthy(port, proc)
        children = [pid for pid in d.family(proc.pid) if pid != proc.pid]
        pids = {"daemon": proc.pid, **({"engine": children[0]} if children else {})}
        load = Load(mode="paced", port=port, path="/hooks/crm", conns=CONNS, rate=args.rate, duration=duration,
                    nonce=f"soak-{uuid.uuid4().hex[:8]}")
        began = time.monotonic()
        before = {"at": began, "acks": 0.0, "served": float(emulator.count)}
        print(f"soak: {minutes:g} min at {args.rate:g} webhooks/s, a sample every {interval:g} s "
              f"(daemon pid {proc.pid}, engine pid {pids.get('engine')}); {load_before}", flush=True)
        print(header(pids), flush=True)
        while (t := time.monotonic() - began) < duration and proc.poll() is None:
            time.sleep(max(0.0, min(interval - t % interval, duration - t)))
            series.append(sample(time.monotonic() - began, pids, port, work / "automator.db-wal", load, emulator,
                                 before))
            print(line(series[-1], pids), flush=True)
        load.stop()
        result = load.result(60)
        load_errors = load.errors.value
        load = None
        # Timers are not work left: the generated rules' schedules always hold their next tick.
        drained, pending = d.drain(port, DRAIN_CAP_S, WORK) if proc.poll() is None else (None, {})
        status = status_json(config)
        exit_code = d.stop(proc, timeout=30)
    finally:  # whatever happened: every process started here is ended, by its pid
        if proc is not None:
            d.stop(proc, timeout=10)
        if load is not None:
            load.stop()
            try:
                load.result(40)
            except Exception:  # the figures are lost with it; the process is ended either way
                pass
        emulator.close()
        shutil.rmtree(work, ignore_errors=True)

    verdict = judge(series, warm_up, list(pids))
    planned = int(args.rate * duration)
    print(f"  {result['sent']:,} webhooks sent of {planned:,} planned ({result['sent'] / duration:,.0f}/s; an "
          f"open-loop request waits for a free connection when all {CONNS} are busy, as when the daemon slows "
          f"webhooks past its max_backlog), {len(result['from_write']):,} acknowledged, {load_errors} failed, "
          f"{emulator.count:,} effects received by the emulator; {d.machine_load()} at the end")
    if result["sent"] < 0.95 * planned:
        print(f"  !! only {result['sent'] / duration:,.0f} webhooks/s of the {args.rate:g}/s asked went out: the "
              f"figures below are for that rate, not for {args.rate:g}/s")
    for name in pids:
        print(f"  {name}: RSS after warm-up ({verdict['warm_up_s']:g} s) {verdict[f'{name}_rss_mean_mb']:.1f} MB on "
              f"average, slope {verdict[f'{name}_rss_slope_mb_per_min']:+.3f} MB/min: "
              f"{'flat' if verdict[f'{name}_rss_flat'] else 'NOT flat'} (flat: under {FLAT_PCT_PER_MIN:g} % of "
              f"the mean per minute); open files {verdict[f'{name}_fds_min_max']}, rise {verdict[f'{name}_fds_rise']}: "
              f"{'flat' if verdict[f'{name}_fds_flat'] else 'NOT flat'} (flat: the most in the last third after "
              f"warm-up at most {FDS_RISE} above the most in its first third)")
    left = {k.removeprefix("automator_"): pending.get(k) for k in d.PENDING}  # timers: schedules' next ticks
    nothing_left = drained is not None
    print(f"  after the load: {'drained in %.1f s' % drained if drained is not None else 'NOT drained within %g s' % DRAIN_CAP_S}; "
          f"/metrics: {', '.join(f'{k} {v}' for k, v in left.items())}")
    print(f"  automator status --format json: {json.dumps(pending_of(status), ensure_ascii=False)}; daemon exit "
          f"{exit_code}")
    figures: dict[str, Any] = {
        "soak_minutes": minutes, "soak_rate": args.rate, "soak_sent": result["sent"], "soak_planned": planned,
        "soak_acked": len(result["from_write"]), "soak_errors": load_errors,
        "soak_effects": emulator.count, "soak_drain_s": drained, "soak_nothing_pending": nothing_left,
        **{f"soak_{k}": v for k, v in verdict.items()}}
    print(d.json_line("soak", {**figures, "quick": args.quick, "pending_at_end": left,
                               "status": pending_of(status), "series": series}))
    return {k: float(v) for k, v in figures.items() if isinstance(v, (int, float)) and v == v}


if __name__ == "__main__":
    main(sys.argv[1:])
