"""What an idle daemon costs: CPU and wake-ups of both processes while nothing happens (issue 14: none measurable).

`automator run` is started as an operator starts it (rules reloaded on change, as by default) on two projects in
turn: a generated one of 100 rules (every trigger kind, `_daemon.py`) and the peers flow's (`peers.py`'s patched
copy of `../shared/peers/automator`). Once /healthz answers and a settling pause has passed, nothing is sent for
60 s (`--quick`: 10 s) and each process of the daemon (the first, then the engine process) is read from /proc
before and after: CPU time (`/proc/PID/task/*/schedstat`, nanoseconds, every thread; `stat`'s utime+stime in
clock ticks beside it) and context switches of every thread (`status`: voluntary + involuntary), which count its
wake-ups. Each thread that woke is named with its count, so a loop that polls shows where it is. Prints a table
and one JSON line.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _daemon as d  # noqa: E402
from peers import TOKEN, TOKEN_ENV, patched_kit  # noqa: E402

SETTLE_S = 3.0  # after /healthz: the engine process loads its rules, the first status record is written


def threads(pid: int) -> dict[int, dict[str, Any]]:
    """Every thread of a process: its name, CPU nanoseconds and context switches so far."""
    out: dict[int, dict[str, Any]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError):
            name = (task / "comm").read_text().strip()
            cpu_ns = int((task / "schedstat").read_text().split()[0])
            switches = 0
            for line in (task / "status").read_text().splitlines():
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    switches += int(line.split()[1])
            out[int(task.name)] = {"name": name, "cpu_ns": cpu_ns, "switches": switches}
    return out


def ticks(pid: int) -> int:
    """utime + stime of a process (all its threads), in clock ticks."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return int(fields[11]) + int(fields[12])


def measure(pid: int, seconds: float) -> dict[str, dict[str, Any]]:
    """CPU and wake-ups of the daemon's processes over `seconds` of nothing happening."""
    members = {"first": pid, **{"engine": child for child in d.family(pid)[1:2]}}
    before = {role: (threads(p), ticks(p)) for role, p in members.items()}
    time.sleep(seconds)
    after = {role: (threads(p), ticks(p)) for role, p in members.items()}
    out = {}
    for role in members:
        (t0, k0), (t1, k1) = before[role], after[role]
        woke = {}
        cpu_ns = 0
        for tid, now in t1.items():
            then = t0.get(tid, {"cpu_ns": 0, "switches": 0})
            cpu_ns += now["cpu_ns"] - then["cpu_ns"]
            if now["switches"] > then["switches"]:
                key = f"{now['name']}[{tid}]"
                woke[key] = now["switches"] - then["switches"]
        out[role] = {"cpu_ms": cpu_ns / 1e6, "cpu_ticks": k1 - k0, "wakeups": sum(woke.values()),
                     "wakeups_per_s": sum(woke.values()) / seconds, "threads": dict(sorted(woke.items(), key=lambda kv: -kv[1]))}
    return out


def idle(config: Path, db: Path, seconds: float, log: Path, env: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Start the daemon on `config`, let it settle, measure it idle, stop it."""
    port = d.free_port()
    cmd = [str(d.AUTOMATOR), "run", "--config", str(config), "--port", str(port), "--db", str(db),
           "--log-level", "WARNING"]
    with d.running(cmd, port, log, env) as proc:
        time.sleep(SETTLE_S)
        return measure(proc.pid, seconds)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 s idle instead of 60")
    parser.add_argument("--seconds", type=float, default=None, help="how long to watch each daemon idle")
    args = parser.parse_args(argv if argv is not None else sys.argv[1:])
    seconds = args.seconds or (10.0 if args.quick else 60.0)
    work = Path(tempfile.mkdtemp(prefix="automator-bench-idle-"))
    results: dict[str, dict[str, dict[str, Any]]] = {}
    try:
        generated = work / "generated"
        generated.mkdir()
        config = d.write_daemon_project(generated, 100, emulator_port=d.free_port())
        results["100 rules"] = idle(config, generated / "automator.db", seconds, work / "generated.log", {})
        kit = patched_kit(work / "peers")
        results["peers flow"] = idle(kit / "automator" / "automator.yaml", work / "peers.db", seconds,
                                     work / "peers.log", {TOKEN_ENV: os.environ.get(TOKEN_ENV, TOKEN)})
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"An idle daemon over {seconds:g} s{' (--quick)' if args.quick else ''}; {d.machine_load()}:")
    rows = []
    for project, processes in results.items():
        for role, f in processes.items():
            rows.append([f"{project}, {role} process", f["cpu_ms"], f["cpu_ms"] / seconds / 10, f["cpu_ticks"],
                         f["wakeups_per_s"]])
    print(d.table(["daemon", "CPU ms", "CPU %", "CPU ticks", "wake-ups/s"], rows))
    for project, processes in results.items():
        for role, f in processes.items():
            if f["threads"]:
                print(f"  {project}, {role} process, wake-ups by thread: "
                      + ", ".join(f"{name} {count}" for name, count in f["threads"].items()))
    figures = {f"{'generated' if p == '100 rules' else 'peers'}_{role}_{key}": round(f[key], 3)
               for p, processes in results.items() for role, f in processes.items()
               for key in ("cpu_ms", "wakeups_per_s")}
    print(d.json_line("idle", {**figures, "seconds": seconds, "quick": args.quick}))
    return figures


if __name__ == "__main__":
    main()
