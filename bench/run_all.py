"""Runs every benchmark in this folder and prints their figures."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import condition_eval  # noqa: E402
import load_rules  # noqa: E402
import route_event  # noqa: E402


def main() -> None:
    figures: dict[str, float] = {}
    for bench in (load_rules, route_event, condition_eval, __import__("http_client")):
        print(f"== {bench.__name__}")
        figures.update(bench.main())
        print()
    print("summary: " + ", ".join(f"{k}={v:,.3f}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
