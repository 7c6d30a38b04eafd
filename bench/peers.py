"""Side by side with Node-RED on the peers flow (issue 14): `../shared/peers/run.sh` on a patched copy of its kit.

The kit (`../shared/peers/`, beside the project's root; read-only, never edited) posts a 500-byte booking webhook,
each with its own delivery id, to Node-RED and to `automator run` in turn; a three-clause condition; a POST to a
sink; 200. It is copied into a temporary folder and patched only where automator's hardening requires it: the
`local` connector refuses webhooks without a secret and events it was not told about, so the copy's
`automator.yaml` gets `secret: ${env:PEERS_HOOK_TOKEN}` and an `events:` declaration, and its `run.sh` sends
`?token=` on automator's URL. Then `run.sh` runs with RUNS=3 (Node-RED first, then automator; each: a closed loop
of N requests from 50 connections, then an open loop at 500/s), and this prints the issue's table (medians of
the runs), the ratios automator / Node-RED, the load average at the start, and one JSON line.

Needs node and npm: run.sh installs Node-RED 4.1.15 once into `${TMPDIR:-/tmp}/automator-peers/nodered`. So it is
not in run_all.py's default set. `--quick`: one short run each (a smoke test of the kit, not figures). Takes
about 5 minutes (quick: about 1).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
KIT = ROOT.parent / "shared" / "peers"
TOKEN = "peers-bench-token"
TOKEN_ENV = "PEERS_HOOK_TOKEN"

# What automator's `local` connector needs that the kit's config lacks: a secret and the events it accepts.
HOOK_AS_SHIPPED = "  hook: {type: local}"
HOOK_HARDENED = """\
  hook:                                                # receives generic JSON events at POST /hooks/hook
    type: local
    secret: "${env:PEERS_HOOK_TOKEN}"
    events:   # what the flow reads of the YCLIENTS-shaped payload it is sent
      booking.updated: {entity: booking, data: {resource_id: number, client: object, status: text}}"""
URL_AS_SHIPPED = 'measure automator http://127.0.0.1:8090/hooks/hook "$au"'
URL_WITH_TOKEN = 'measure automator "http://127.0.0.1:8090/hooks/hook?token=$PEERS_HOOK_TOKEN" "$au"'
SIZES = {"full": {"N": "20000", "RATE_N": "10000", "RUNS": "3"},
         "quick": {"N": "2000", "RATE_N": "1000", "RUNS": "1"}}


def patched_kit(dest: Path, kit: Path = KIT) -> Path:
    """A copy of the kit at `dest` with automator's hardening patched in (the original is left as it is)."""
    if not (kit / "run.sh").exists():
        raise SystemExit(f"no peers kit at {kit} (expected ../shared/peers beside the project)")
    shutil.copytree(kit, dest)
    for path in [dest, *dest.rglob("*")]:  # the kit is read-only: the copy must not be
        path.chmod(path.stat().st_mode | 0o200)
    _replace(dest / "automator" / "automator.yaml", HOOK_AS_SHIPPED, HOOK_HARDENED, whole_line=True)
    _replace(dest / "run.sh", URL_AS_SHIPPED, URL_WITH_TOKEN)
    return dest


def _replace(path: Path, old: str, new: str, *, whole_line: bool = False) -> None:
    text = path.read_text()
    if whole_line:
        lines = text.splitlines(keepends=True)
        hits = [i for i, line in enumerate(lines) if line.startswith(old)]
        if len(hits) != 1:
            raise SystemExit(f"{path}: expected one line starting {old!r} to patch; the kit changed")
        lines[hits[0]] = new + "\n"
        path.write_text("".join(lines))
        return
    if text.count(old) != 1:
        raise SystemExit(f"{path}: expected one {old!r} to patch; the kit changed")
    path.write_text(text.replace(old, new))


def rows_of(results: Path) -> dict[str, dict[str, Any]]:
    """run.sh's JSON lines by name (`nodered`, `nodered@500rps`, `automator`, ...)."""
    rows = {}
    for line in results.read_text().splitlines():
        record = json.loads(line)
        rows[record["name"]] = record
    return rows


def figures_of(rows: dict[str, dict[str, Any]], system: str, rate: int) -> dict[str, float | None]:
    """One system's row of the table: closed loop acks/s and effects/s, and at `rate`/s CPU ms per event and
    p50/p99 ack (medians of the runs)."""
    closed = rows.get(system, {}).get("median", {})
    paced = rows.get(f"{system}@{rate}rps", {}).get("median", {})
    per_cpu = paced.get("req_per_cpu_s")
    return {"acks_s": closed.get("rps"), "effects_s": closed.get("effects_s") or closed.get("rps"),
            "cpu_ms_per_event": 1000 / per_cpu if per_cpu else None,
            "p50_ms": paced.get("p50_ms"), "p99_ms": paced.get("p99_ms"),
            "sink_ok": all(rows.get(name, {}).get("sink_ok_all", False) for name in (system, f"{system}@{rate}rps"))}


def _f(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one short run each: a smoke test")
    parser.add_argument("--rate", type=int, default=500, help="the open loop's requests per second")
    parser.add_argument("--automator", default=str(Path(sys.executable).parent / "automator"),
                        help="the automator to measure (default: this environment's)")
    parser.add_argument("--args", default="", help="flags passed to `automator run` (AUTO_ARGS)")
    args = parser.parse_args(argv if argv is not None else sys.argv[1:])
    size = SIZES["quick" if args.quick else "full"]
    work = Path(tempfile.mkdtemp(prefix="automator-bench-peers-"))
    load = os.getloadavg()
    try:
        kit = patched_kit(work / "peers")
        results = work / "results.jsonl"
        env = {**os.environ, **size, "RATE": str(args.rate), "AUTO": args.automator, "AUTO_ARGS": args.args,
               "OUT": str(results), TOKEN_ENV: os.environ.get(TOKEN_ENV, TOKEN)}
        done = subprocess.run(["bash", str(kit / "run.sh")], cwd=ROOT, env=env, timeout=3600)
        if done.returncode != 0 or not results.exists():
            raise SystemExit(f"run.sh failed (exit {done.returncode}); its logs: "
                             f"{os.environ.get('TMPDIR', '/tmp')}/automator-peers/logs/")
        rows = rows_of(results)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    table = {system: figures_of(rows, system, args.rate) for system in ("nodered", "automator")}
    runs = size["RUNS"]
    print(f"\nThe peers flow side by side, medians of {runs} run(s){' (--quick)' if args.quick else ''}; "
          f"load average at the start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores:")
    print(f"| system | acks/s | effects/s | CPU per event at {args.rate}/s | p50 / p99 ack at {args.rate}/s |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for system, name in (("nodered", "Node-RED (keeps nothing)"),
                         ("automator", f"automator{' ' + args.args if args.args else ''}, synchronous=FULL")):
        f = table[system]
        print(f"| {name} | {_f(f['acks_s'], ',.0f')} | {_f(f['effects_s'], ',.0f')} | "
              f"{_f(f['cpu_ms_per_event'], '.2f')} ms | {_f(f['p50_ms'], '.1f')} / {_f(f['p99_ms'], '.1f')} ms |")
    ratios = {}
    nr, au = table["nodered"], table["automator"]
    for key in ("acks_s", "effects_s", "cpu_ms_per_event", "p99_ms"):
        if nr[key] and au[key]:
            ratios[key] = round(au[key] / nr[key], 2)
    print("automator / Node-RED: " + ", ".join(f"{k} x{v:.2f}" for k, v in ratios.items()))
    if not (nr["sink_ok"] and au["sink_ok"]):
        print("WARNING: a sink did not see exactly one action per request (see run.sh's output above)")
    figures = {"nodered": nr, "automator": au, "ratios": ratios, "loadavg_at_start": [round(x, 2) for x in load],
               "runs": int(runs), "rate": args.rate, "quick": args.quick, "args": args.args}
    print(json.dumps({"bench": "peers", **figures}))
    return figures


if __name__ == "__main__":
    main()
