"""`automator …` with experimental patches applied in this process only — to measure what a product change would
gain before making it. The product code is not touched: the patches are monkeypatches of this interpreter.

    python bench/_variants.py PATCHES run --config … --port …      (PATCHES: names joined by '+', or 'none')

Patches:
  switch    sys.setswitchinterval(0.0005): a thread waiting for the GIL gets it after 0.5 ms, not 5 ms
  budget2   the worker's batch stops after 2 ms instead of 5 ms (process_batch's budget): the write lock is held
            for less time while it decides, so a webhook waits less for it
  oldclaim  claim_events with its query before the UNION ALL rewrite (every pending event read and sorted)
"""
from __future__ import annotations

import sys
from typing import Any

def switch() -> None:
    sys.setswitchinterval(0.0005)


def budget2() -> None:
    import functools

    from automator.daemon import process

    process.process_batch = functools.partial(process.process_batch, budget=0.002)  # type: ignore[assignment]


def oldclaim() -> None:
    from automator.store import journal

    def claim_events(self: Any, worker: str, now: Any, limit: int, lease: Any) -> Any:
        from automator.store.sqlite import utc

        stamp = utc(now)
        with self.atomic():
            held = {row[0] for row in self.db.conn.execute(
                "select distinct key from journal where status = 'claimed' and claimed_until >= ? and claimed_by != ?",
                [stamp, worker])}
            rows = self.db.conn.execute(
                "select seq, key, body from journal where status = 'pending' or (status = 'claimed' and "
                "(claimed_until < ? or claimed_by = ?)) order by seq limit ?",
                [stamp, worker, limit + len(held) * 4]).fetchall()
            taken = [(seq, body) for seq, key, body in rows if key not in held][:limit]
            if taken:
                self.db.conn.executemany(
                    "update journal set status = 'claimed', claimed_by = ?, claimed_until = ? where seq = ?",
                    [[worker, utc(now + lease), seq] for seq, _ in taken])
        return [journal.event_from_body(body) for _, body in taken]

    journal.JournalMixin.claim_events = claim_events  # type: ignore[method-assign]


# `fairlock` (a FIFO write lock per database) and `flow` (admission control) were measured here first and are
# now the product's (store/sqlite.py FairLock, Daemon.journal_append).
PATCHES = {"switch": switch, "budget2": budget2, "oldclaim": oldclaim}


def main() -> None:
    names = [n for n in sys.argv[1].split("+") if n and n != "none"]
    for name in names:
        PATCHES[name]()
    from automator.cli import cli

    sys.argv = ["automator", *sys.argv[2:]]
    cli()


if __name__ == "__main__":
    main()
