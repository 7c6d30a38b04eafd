"""Benchmark: `automator run` end to end — webhooks in, 100 rules decided, one `http.request` per event out.

The daemon runs as an operator starts it (`automator run --config … --port … --no-reload`) on a generated
project of 100 rules (97 that cannot match the benchmark event, 3 it reaches, one of which calls the `http`
connector). The outside system is an emulator in its own process (keep-alive, answers 200 JSON, counts the
requests); the load generator is a third process (raw asyncio keep-alive client, see _loadgen.py) posting
`POST /hooks/crm` webhooks, one new booking each. All on 127.0.0.1.

For each server, side by side in one run:
  - warm-up (closed loop, short), then
  - paced: open loop at 500 webhooks/s; p50/p99 time to acknowledge (from the write of the request);
  - closed loop on CONNS connections: acks/s and, for the daemon, events/s at the end of the pipeline
    (requests the emulator received) over a fixed window after a warm-up; then the backlog left and how long
    the pipeline takes to drain it with no more webhooks coming in.
Servers: the daemon with synchronous=FULL (the default) and NORMAL, and a bare uvicorn + raw ASGI endpoint
that journals each event (NORMAL, one commit per request; FULL, group commit): the floor of the ack path.

`--quick` runs every phase for a fraction of the time (a smoke run).
"""
from __future__ import annotations

import argparse
import shutil
import statistics
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
RATE = 500
TARGET_EPS = 2700
TARGET_P99_MS = 10.0
INTERVAL = 1.0
FULL = {"warm": 1.0, "paced": 10.0, "closed_warm": 2.0, "window": 6.0, "drain_cap": 15.0}
QUICK = {"warm": 0.5, "paced": 2.0, "closed_warm": 0.5, "window": 1.5, "drain_cap": 8.0}


def drain(emulator: d.Emulator, expected: int, cap: float) -> float | None:
    """Wait until the emulator has received `expected` requests in all; seconds it took, None past `cap`."""
    start = time.monotonic()
    while emulator.count < expected:
        if time.monotonic() - start > cap:
            return None
        time.sleep(0.01)
    return time.monotonic() - start


def measure(label: str, cmd: list[str], port: int, folder: Path, emulator: d.Emulator, *, pipeline: bool,
            phases: dict[str, float]) -> dict[str, Any]:
    """Every phase against one server process; its figures."""
    out: dict[str, Any] = {"label": label}
    started = time.monotonic()
    proc = d.start(cmd, folder / "server.log")
    try:
        out["start_s"] = d.wait_healthy(port, proc) - started
        base = emulator.count
        acked = 0

        def load(mode: str, duration: float, **extra: Any) -> Load:
            return Load(mode=mode, port=port, path="/hooks/crm", conns=CONNS, duration=duration, cap=1_000_000,
                        nonce=f"{label[:8]}-{mode}-{uuid.uuid4().hex[:8]}", **extra)

        # warm-up: imports, first-call caches, the connector's pool, SQLite's page cache
        warm = load("closed", phases["warm"])
        warm.result(phases["warm"] + 30)
        acked += warm.acks.value
        if pipeline:
            drain(emulator, base + acked, phases["drain_cap"])

        # paced: the time to acknowledge at a moderate rate
        cpu_paced = d.cpu_seconds(proc.pid)
        paced = load("paced", phases["paced"], rate=RATE)
        result = paced.result(phases["paced"] * 2 + 40)
        acked += paced.acks.value
        lat = sorted(result["from_write"])
        due = sorted(result["from_due"])
        out.update(paced_sent=result["sent"], paced_errors=paced.errors.value,
                   p50_ms=d.percentile(lat, 0.5) * 1000, p99_ms=d.percentile(lat, 0.99) * 1000,
                   max_ms=(lat[-1] if lat else float("nan")) * 1000,
                   p99_from_due_ms=d.percentile(due, 0.99) * 1000)
        if pipeline:
            late = drain(emulator, base + acked, phases["drain_cap"])
            out["paced_drain_s"] = late
        # At a rate it keeps up with, every ack is one event done: the CPU it all took, per event.
        out["paced_cpu_ms"] = (d.cpu_seconds(proc.pid) - cpu_paced) * 1000 / max(1, paced.acks.value)

        # closed loop: as fast as the server takes them
        closed = load("closed", phases["closed_warm"] + phases["window"])
        time.sleep(phases["closed_warm"])
        k0 = d.lock_seconds(port) if pipeline else {}
        t0, a0, e0, c0 = time.monotonic(), closed.acks.value, emulator.count, d.cpu_seconds(proc.pid)
        g0, m0 = d.cpu_seconds(closed.pid), d.cpu_seconds(emulator.process.pid)
        ticks = [(t0, a0, e0)]  # every INTERVAL s: medians of the per-interval rates resist a burst of noise
        while ticks[-1][0] < t0 + phases["window"] - 1e-3:
            time.sleep(max(0.0, min(INTERVAL, t0 + phases["window"] - time.monotonic())))
            ticks.append((time.monotonic(), closed.acks.value, emulator.count))
        t1, a1, e1, c1 = time.monotonic(), closed.acks.value, emulator.count, d.cpu_seconds(proc.pid)
        g1, m1 = d.cpu_seconds(closed.pid), d.cpu_seconds(emulator.process.pid)
        if pipeline:  # the share of the window each process held the write lock (and waited for it)
            k1 = d.lock_seconds(port)
            for process in ("daemon", "engine"):
                for state in ("held", "waited"):
                    grown = k1.get((process, state), 0.0) - k0.get((process, state), 0.0)
                    out[f"lock_{state}_{process}_pct"] = grown / (t1 - t0) * 100
        spans = [(b[0] - a[0], b[1] - a[1], b[2] - a[2]) for a, b in zip(ticks, ticks[1:]) if b[0] - a[0] > 0.05]
        out["acks_median"] = statistics.median(n / s for s, n, _ in spans)
        if pipeline:
            out["eps_median"] = statistics.median(n / s for s, _, n in spans)
        closed.result(phases["window"] + 40)
        acked += closed.acks.value
        span = t1 - t0
        # CPU per event (per ack for the bare endpoints) is steadier than a rate on a shared machine.
        out["cpu_ms_per_event"] = (c1 - c0) * 1000 / ((e1 - e0) if pipeline else (a1 - a0) or 1)
        out.update(acks_per_s=(a1 - a0) / span, server_cpu_pct=(c1 - c0) / span * 100,
                   loadgen_cpu_pct=(g1 - g0) / span * 100, emulator_cpu_pct=(m1 - m0) / span * 100,
                   closed_errors=closed.errors.value)
        if pipeline:
            out["eps"] = (e1 - e0) / span
            backlog = base + acked - emulator.count
            out["backlog"] = backlog
            took = drain(emulator, base + acked, phases["drain_cap"])
            out["drain_s"] = took
            out["drain_eps"] = backlog / took if took else None
        out.update(d.proc_memory(proc.pid))
    finally:
        out["exit"] = d.stop(proc)
    return out


def _lock_cell(row: dict[str, Any]) -> str:
    if "lock_held_daemon_pct" not in row:
        return "-"
    if not row.get("lock_held_engine_pct"):  # one process: its writers all count as the daemon's
        return f"{row['lock_held_daemon_pct']:.0f}/{row['lock_waited_daemon_pct']:.0f}"
    return (f"{row['lock_held_daemon_pct']:.0f}+{row['lock_held_engine_pct']:.0f}/"
            f"{row['lock_waited_daemon_pct']:.0f}+{row['lock_waited_engine_pct']:.0f}")


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--variants", default="", help="also the daemon FULL with experimental patches of "
                        "_variants.py, e.g. 'switch' (about 30 s each; the daemon in one process)")
    parser.add_argument("--only-daemon", action="store_true", help="skip the bare endpoints and daemon NORMAL")
    args = parser.parse_args(argv if argv is not None else [])
    phases = QUICK if args.quick else FULL
    work = Path(tempfile.mkdtemp(prefix="automator-bench-"))
    emulator = d.Emulator()
    rows: list[dict[str, Any]] = []
    load_before = d.machine_load()
    try:
        servers = [("daemon FULL", "daemon", "FULL"), ("daemon FULL, one process", "daemon", "FULL+one")]
        if not args.only_daemon:
            servers += [("daemon NORMAL", "daemon", "NORMAL"), ("bare NORMAL, commit/request", "bare", "normal"),
                        ("bare FULL, group commit", "bare", "group")]
        servers += [(f"daemon FULL +{v}", "variant", v) for v in args.variants.split(",") if v]
        for index, (label, kind, option) in enumerate(servers):
            folder = work / f"{index}-{label.split(',')[0].replace(' ', '-').replace('+', '')}"
            folder.mkdir()
            port = d.free_port()
            if kind == "daemon":
                config = d.write_daemon_project(folder, RULES, emulator_port=emulator.port)
                cmd = d.daemon_command(config, port, synchronous=option.split("+")[0])
                if option.endswith("+one"):
                    cmd += ["--processes", "1"]
            elif kind == "variant":
                config = d.write_daemon_project(folder, RULES, emulator_port=emulator.port)
                cmd = [sys.executable, str(d.BENCH / "_variants.py"), option,
                       *d.daemon_command(config, port)[1:], "--processes", "1"]
            else:
                cmd = [sys.executable, str(d.BENCH / "_bare_asgi.py"), "--port", str(port), "--db",
                       str(folder / "bare.db"), "--mode", option]
            rows.append(measure(label, cmd, port, folder, emulator, pipeline=kind != "bare", phases=phases))
    finally:
        emulator.close()
        shutil.rmtree(work, ignore_errors=True)

    print(f"automator run, {RULES} rules (3 reached, 1 calls http.request on a loopback emulator), {CONNS} "
          f"keep-alive connections{' (--quick)' if args.quick else ''}; {load_before} before, "
          f"{d.machine_load()} after:")
    print(d.table(
        ["server", "events/s e2e", "(median 1 s)", "acks/s", "(median 1 s)", "p50 ack ms", "p99 ack ms", "max ms", "p99 from due",
         "backlog", "drain s", "drain ev/s", "CPU% srv/gen/emu", "srv CPU ms/ev", "@500/s", "lock% held/waited",
         "RSS MB"],
        [[r["label"], r.get("eps"), r.get("eps_median"), r["acks_per_s"],
          r["acks_median"], r["p50_ms"], r["p99_ms"], r["max_ms"], r["p99_from_due_ms"],
          r.get("backlog"), r.get("drain_s"), r.get("drain_eps"),
          f"{r['server_cpu_pct']:.0f}/{r['loadgen_cpu_pct']:.0f}/{r['emulator_cpu_pct']:.0f}",
          r["cpu_ms_per_event"], r["paced_cpu_ms"], _lock_cell(r), r.get("VmRSS")]
         for r in rows]))
    full = rows[0]
    print(f"  target: >= {TARGET_EPS:,} events/s end to end (daemon FULL: {full['eps']:,.0f}, "
          f"x{full['eps'] / TARGET_EPS:.2f} of it); p99 ack < {TARGET_P99_MS:g} ms at {RATE}/s "
          f"(daemon FULL: {full['p99_ms']:.2f} ms)")
    print(f"  srv CPU ms/ev: the server's CPU (all threads) per event done (daemon) or per ack (bare) in the closed "
          f"window, and '@500/s' over the paced phase, where every ack is one event done: {TARGET_EPS:,} events/s "
          f"on one core is {1000 / TARGET_EPS:.2f} ms; the daemon FULL took {full['paced_cpu_ms']:.2f} ms at "
          f"{RATE}/s and {full['cpu_ms_per_event']:.2f} ms at full load (larger batches): at most about "
          f"{1000 / full['cpu_ms_per_event']:,.0f} events/s for each core it gets")
    print("  lock% held/waited: the share of the closed window in which the daemon's process / its engine process "
          "held SQLite's one write lock, and waited for it (automator_store_write_lock_seconds in /metrics)")
    print(f"  paced: {RATE}/s for {phases['paced']:g} s (open loop); closed: {phases['window']:g} s window after "
          f"{phases['closed_warm']:g} s; drain = the backlog left when the load stopped, performed with no load; "
          "'p99 from due' counts from when the request was due (includes waiting for a free connection)")
    errors = sum(r["paced_errors"] + r["closed_errors"] for r in rows)
    if errors:
        print(f"  !! {errors} requests failed or were answered non-200")
    figures: dict[str, float] = {}
    keys = {"daemon FULL": "daemon_full", "daemon FULL, one process": "daemon_full_one_process",
            "daemon NORMAL": "daemon_normal", "bare NORMAL, commit/request":
            "bare_normal", "bare FULL, group commit": "bare_group"}
    for r in rows:
        key = keys.get(r["label"]) or "variant_" + r["label"].partition("+")[2].replace("+", "_")
        for name in ("eps", "eps_median", "acks_per_s", "acks_median", "p50_ms", "p99_ms", "drain_eps", "server_cpu_pct", "cpu_ms_per_event", "paced_cpu_ms",
                     "start_s", *(f"lock_{s}_{p}_pct" for s in ("held", "waited") for p in ("daemon", "engine"))):
            if r.get(name) is not None:
                figures[f"throughput_{key}_{name}"] = round(float(r[name]), 3)
    print(d.json_line("daemon_throughput", {**figures, "quick": args.quick}))
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])
