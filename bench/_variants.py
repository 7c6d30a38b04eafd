"""`automator …` with experimental patches applied in this process only — to measure what a product change would
gain before making it. The product code is not touched: the patches are monkeypatches of this interpreter.

    python bench/_variants.py PATCHES run --config … --port …      (PATCHES: names joined by '+', or 'none')

Patches (the daemon is run with `--processes 1`, so that a patch reaches all of its work):
  switch    sys.setswitchinterval(0.0005): a thread waiting for the GIL gets it after 0.5 ms, not 5 ms
"""
from __future__ import annotations

import sys

def switch() -> None:
    sys.setswitchinterval(0.0005)


# `fairlock` (a FIFO write lock per database), `flow` (admission control), `budget2` (shorter batches) and
# `oldclaim` (the claim query before its UNION ALL rewrite) were measured here first; the first two are now the
# product's (store/sqlite.py FairLock, Daemon.journal_append), the last two went with the worker that decides
# before it writes (daemon/worker.py).
PATCHES = {"switch": switch}


def main() -> None:
    names = [n for n in sys.argv[1].split("+") if n and n != "none"]
    for name in names:
        PATCHES[name]()
    from automator.cli import cli

    sys.argv = ["automator", *sys.argv[2:]]
    cli()


if __name__ == "__main__":
    main()
