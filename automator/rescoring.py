"""Every client rescored from the store at once (`automator segments compute`, the daemon's daily rescoring): the
visits in the window and the clients' current segments read in one consistent snapshot (SQLite through ADBC into
DuckDB, as the reports read it), the values grouped per client and scored in DuckDB, and only the clients whose
segment or scores changed handed back.

Why DuckDB: 10,000,000 visits grouped per client in SQLite take a sort or an index walk with a row lookup per visit
(over ten seconds at that size); read once as columns and grouped in DuckDB they take a few seconds, most of it the
read (bench/segments.py). The scoring is the same as one client's (automator.segments): the cut points come from
`quantile_cuts` over the population's value counts, and each segment's conditions are decided in Python once per
combination of scores (at most 11³ of them), then joined back; only a segment whose `when` reads the raw values
(days, visits, money) makes every client's combination be decided one by one.
"""
from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from automator.config.project import Project
from automator.expr import EvalContext
from automator.model import ENGINE, EntityRef, Event
from automator.reports.snapshot import Limits, Read, Snapshot, literal
from automator.segments import (CUTS_META, METRICS, NOT_SCORED, RESCORE, Cuts, SegmentsConfig, Values, classify,
                                cuts_document, cuts_of)
from automator.store.base import Store

# The raw values a segment's `when` may read besides the scores: reading one decides segments per client.
RAW_NAMES = frozenset({"days", "visits", "money"})
WRITE_BATCH = 20_000  # clients written (or journaled) per transaction: the daemon's writer waits a batch at most


@dataclass(frozen=True, slots=True)
class Change:
    """One client whose segment or scores changed: before and after."""

    client: str
    before: str | None
    after: str | None
    rfm: dict[str, int]
    scores_before: tuple[int | None, int | None, int | None] = (None, None, None)

    @property
    def moved(self) -> bool:
        """True when the segment itself changed (not only a score)."""
        return self.before != self.after


@dataclass
class Rescoring:
    """What a full rescoring found: the cut points, the population, each segment's size, and the changes."""

    cuts: Cuts
    population: int  # clients with a visit in the window (the quantiles' population)
    clients: int  # clients scored (every client with a visit, ever)
    sizes: dict[str | None, int]
    changes: list[Change] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Plain data, as a child process hands it back (`main`)."""
        return {"cuts": self.cuts.to_json(), "population": self.population, "clients": self.clients,
                "sizes": [[name, n] for name, n in self.sizes.items()], "seconds": self.seconds,
                "changes": [[c.client, c.before, c.after, c.rfm, list(c.scores_before)] for c in self.changes]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Rescoring:
        """Back from `to_json`."""
        return cls(cuts=Cuts.from_json(data["cuts"]), population=int(data["population"]),
                   clients=int(data["clients"]), sizes={name: int(n) for name, n in data["sizes"]},
                   seconds=dict(data["seconds"]),
                   changes=[Change(c, b, a, dict(rfm), (s0[0], s0[1], s0[2])) for c, b, a, rfm, s0 in data["changes"]])

    def summary(self, config: SegmentsConfig) -> list[str]:
        """What `automator segments compute` prints: each segment's size and how many moved in and out."""
        moves = self.moves()
        lines = [f"{self.clients} clients scored ({self.population} with a visit in the window), "
                 f"{sum(moves.values())} moved, {len(self.changes) - sum(moves.values())} rescored in place"]
        for name in [*(s.name for s in config.segments), *([None] if self.sizes.get(None) else [])]:
            came = sum(n for (_, to), n in moves.items() if to == name)
            left = sum(n for (was, _), n in moves.items() if was == name)
            lines.append(f"  {name or '(none)':<14} {self.sizes.get(name, 0):>9}   +{came} −{left}")
        return lines

    def moves(self) -> dict[tuple[str | None, str | None], int]:
        """How many clients moved from one segment to another."""
        out: dict[tuple[str | None, str | None], int] = {}
        for change in self.changes:
            if change.moved:
                out[(change.before, change.after)] = out.get((change.before, change.after), 0) + 1
        return out


def rescore_all(store: Path, config: SegmentsConfig, now: datetime, tz: Any, ectx: EvalContext,
                limits: Limits | None = None) -> Rescoring:
    """Every client's segment and scores as of `now`, from the store's file (read-only: the daemon goes on)."""
    started = time.perf_counter()
    limits = limits or Limits.beside(store)
    with Snapshot(store, limits) as snap:
        cuts, population = scored_table(snap, config, now, tz, ectx, limits.threads or os.cpu_count() or 1)
        computed = time.perf_counter()
        sizes = {name: int(n) for name, n in snap.duck.execute(
            "select new_segment, count(*) from scored group by 1").fetchall()}
        changed = snap.duck.execute("""
            select client, segment, new_segment, r, f, m, r0, f0, m0 from scored
            where segment is distinct from new_segment or r0 is distinct from r or f0 is distinct from f
               or m0 is distinct from m order by client""").fetchall()
        read = snap.read_seconds
        listed = time.perf_counter()
    changes = [Change(str(c), b, a, {"r": int(r), "f": int(f), "m": int(m)}, (r0, f0, m0))
               for c, b, a, r, f, m, r0, f0, m0 in changed]
    done = time.perf_counter()
    return Rescoring(cuts=cuts, population=population, clients=sum(sizes.values()), sizes=sizes, changes=changes,
                     seconds={"read": read, "score": computed - started - read, "changes": done - computed,
                              "close": done - listed, "total": done - started})


def context(project: Project, now: datetime) -> EvalContext:
    """The expression context segments are decided in: segments.yaml's expressions read the scores and the values
    only, never a store, so an empty one in memory serves (the bulk runs outside the engine's store thread)."""
    from automator.core.scope import eval_context
    from automator.store.sqlite import SqliteStore

    return eval_context(project, SqliteStore(), now)


def scored_table(snap: Snapshot, config: SegmentsConfig, now: datetime, tz: Any, ectx: EvalContext,
                 threads: int = 1) -> tuple[Cuts, int]:
    """Make DuckDB's table `scored` of every client with a visit, ever: `client`, their stored `segment` and scores
    (`r0`, `f0`, `m0`), the window's `visits`, `total` and `paid` (kopecks; visits and purchases), `days` since the
    latest visit, `money` (M), the scores `r`, `f`, `m` and `new_segment`. The cut points and the population."""
    since = config.window_start(now, tz)
    window = f"at >= {literal(_utc(since))}" if since is not None else "1"
    # Each client's visits in the window grouped by SQLite itself, through the index that holds every column read
    # (store.schema's visits_by_client: no sort, no row read): a million rows out instead of ten. The clients are
    # split in ranges read at once, a connection and a core each, beside the clients' stored segments.
    parts = [f"{window} and {bounds} group by client" for bounds in _client_ranges(snap, threads)]
    snap.read_at_once([
        Read("agg_raw", "visits indexed by visits_by_client", {
            "client": "text", "max(case when kind = 'visit' then at end) as last_at": "text",
            "sum(kind = 'visit') as visits": "int", "sum(amount) as total": "int", "count(*) as paid": "int"},
             tuple(parts)),
        Read("clients", "entities", {
            "id": "text", "json_extract(fields, '$.segment') as segment": "text",
            "json_extract(fields, '$.rfm.r') as r0": "int", "json_extract(fields, '$.rfm.f') as f0": "int",
            "json_extract(fields, '$.rfm.m') as m0": "int",
            "coalesce(json_extract(fields, '$.visit_count'), 0) as ever": "int"}, ("kind = 'client'",))])
    now_us = int(now.timestamp() * 1_000_000)
    money = ("total" if config.monetary_of == "total" else
             "case when paid > 0 then (2 * total + paid) // (2 * paid) else 0 end")
    # A moment as the store keeps it (UTC, "2026-03-02T12:00:00.000000+00:00") to microseconds: days exact.
    snap.run(f"""create or replace table agg as select client, visits, total, paid,
                     case when last_at is null then null
                          else greatest(({now_us} - epoch_us(cast(substr(last_at, 1, 26) as timestamp)))
                                        // 86400000000, 0) end as days,
                     {money} as money
                 from agg_raw""")
    snap.run("drop table agg_raw")
    population = int(snap.value("select count(*) from agg where visits > 0") or 0)
    counts = {m.name: [(int(v), int(c)) for v, c in snap.duck.execute(
        f"select {_column(m.name)}, count(*) from agg where visits > 0 group by 1 order by 1").fetchall()]
              for m in config.metrics if m.by_quantiles}
    cuts = cuts_of(config, counts)
    scores = ", ".join(f"{_score_sql(_column(m.name), cuts.of(m.name), m.higher_is_better)} as {m.name}"
                       for m in config.metrics)
    # Every client with a visit, ever (`visit_count`): those with none in the window score 0, 0, 0.
    snap.run(f"""create or replace table scored as select c.id as client, c.segment, c.r0, c.f0, c.m0,
                     coalesce(a.visits, 0) as visits, coalesce(a.total, 0) as total, coalesce(a.paid, 0) as paid,
                     a.days, coalesce(a.money, 0) as money, {scores}
                 from clients c left join agg a on a.client = c.id where c.ever > 0""")
    _segments_of(snap, config, cuts, ectx)
    return cuts, population


def _client_ranges(snap: Snapshot, parts: int) -> list[str]:
    """Conditions that split the visits' clients into about `parts` ranges of as many visits (a client is never
    split), found at the index's even offsets."""
    if parts <= 1:
        return ["1"]
    (estimate,), = snap.rows_python("select coalesce(max(rowid), 0) from visits")
    keys = []
    for part in range(1, parts):
        found = snap.rows_python(f"select client from visits indexed by visits_by_client order by client "
                                 f"limit 1 offset {int(estimate) * part // parts}")
        if found and found[0][0] not in keys:
            keys.append(str(found[0][0]))
    bounds = [None, *keys, None]
    return [" and ".join([*([f"client >= {literal(lo)}"] if lo is not None else []),
                          *([f"client < {literal(hi)}"] if hi is not None else [])]) or "1"
            for lo, hi in zip(bounds, bounds[1:])]


def _column(metric: str) -> str:
    return {"r": "days", "f": "visits", "m": "money"}[metric]


def _score_sql(column: str, points: tuple[int | None, ...], higher_is_better: bool) -> str:
    """DuckDB's score of `column` as automator.segments.score gives it (0 with no visit in the window)."""
    op = ">=" if higher_is_better else "<="
    reached = " + ".join(f"({column} {op} {p})::integer" for p in points if p is not None) or "0"
    return f"case when coalesce(visits, 0) = 0 then {NOT_SCORED} else 1 + {reached} end"


def _segments_of(snap: Snapshot, config: SegmentsConfig, cuts: Cuts, ectx: EvalContext) -> None:
    """Adds `new_segment` to `scored`: each distinct combination of what the segments read, decided once."""
    raw = any(s.when is not None and s.when.names & RAW_NAMES for s in config.segments)
    keys = ["r", "f", "m", *(["days", "visits", "total", "paid"] if raw else [])]
    combos = snap.duck.execute(f"select distinct {', '.join(keys)} from scored").fetchall()
    decided = []
    for combo in combos:
        row = dict(zip(keys, combo))
        if raw:
            values = Values(days=row["days"], visits=int(row["visits"]), total=int(row["total"]), paid=int(row["paid"]))
        else:  # no segment reads the values: the scores alone decide
            values = Values(days=None, visits=0, total=0, paid=0)
        scored = classify(values, {k: int(row[k]) for k in METRICS}, config, ectx)
        decided.append((*combo, scored.segment))
    snap.run(f"create table segment_of ({', '.join(f'{k} BIGINT' for k in keys)}, new_segment VARCHAR)")
    if decided:
        snap.duck.executemany(f"insert into segment_of values ({', '.join('?' * (len(keys) + 1))})", decided)
    on = " and ".join(f"s.{k} is not distinct from o.{k}" for k in keys)
    snap.run(f"create or replace table scored as select s.*, o.new_segment from scored s join segment_of o on {on}")


def _utc(at: datetime) -> str:
    return at.astimezone(timezone.utc).isoformat(timespec="microseconds")


# ---- what is done with the changes ----------------------------------------------------------------------------

def write_changes(store: Store, rescoring: Rescoring, config: SegmentsConfig, now: datetime,
                  progress: Callable[[int], None] = lambda n: None) -> None:
    """Write the changed clients' `segment` and `rfm` straight into the store (no rule runs: a first scoring, or
    one after segments.yaml changed, is not news), a batch per transaction, and keep the cut points."""
    written = 0
    for batch in batches(rescoring.changes):
        write_batch(store, batch)
        written += len(batch)
        progress(written)
    keep_cuts(store, rescoring, config, now)


def write_batch(store: Store, batch: list[Change]) -> None:
    """Write one batch of changed clients' `segment` and `rfm`, in one transaction: only where the client is still
    as the rescoring read them (one a visit rescored meanwhile is left as that visit left them)."""
    with store.atomic():
        store.db.conn.executemany(
            "update entities set fields = json_set(fields, '$.segment', ?, '$.rfm', json(?)) "
            "where kind = 'client' and id = ? and json_extract(fields, '$.segment') is ? "
            "and json_extract(fields, '$.rfm.r') is ? and json_extract(fields, '$.rfm.f') is ? "
            "and json_extract(fields, '$.rfm.m') is ?",
            [(c.after, json.dumps(c.rfm), c.client, c.before, *c.scores_before) for c in batch])
    state = getattr(store, "state", None)  # SqliteStore's cache of segment_avg_recency: clients were written
    if state is not None and hasattr(state, "forget_recency"):
        state.forget_recency()


def keep_cuts(store: Store, rescoring: Rescoring, config: SegmentsConfig, now: datetime) -> None:
    """Keep the cut points for rescoring one client later (a visit, segment.recompute)."""
    with store.atomic():
        store.set_meta(CUTS_META, json.dumps(cuts_document(config, rescoring.cuts, now, rescoring.population)))


def rescore_events(changes: Iterable[Change], day: str, now: datetime) -> list[Event]:
    """The daily rescoring's `segment.rescore` for each client whose scores changed: the engine rescores each as
    of deciding it (a visit decided meanwhile is not overwritten by this older read) and emits `segment.changed`
    when they moved. Their ids name the day and the client: journaling them again (a restart mid-way) adds nothing."""
    return [Event(id=f"rescore:{day}:{c.client}", type=RESCORE, at=now, entity=EntityRef("client", c.client),
                  source=ENGINE, data={"day": day}) for c in changes]


def batches(changes: list[Change]) -> Iterator[list[Change]]:
    """The changes a transaction (WRITE_BATCH) at a time."""
    for start in range(0, len(changes), WRITE_BATCH):
        yield changes[start:start + WRITE_BATCH]



# ---- in a child process (the daemon's daily rescoring) -----------------------------------------------------------

EXIT_STALE = 2  # the child's segments.yaml is not the daemon's (changed on disk, a reload to come): try again


def main(argv: list[str] | None = None) -> int:
    """`python -m automator.rescoring --db FILE --root DIR --at ISO --digest D --out FILE`: the full rescoring in
    a process of its own at a report's priority (its memory, hundreds of MB at a million clients, is given back when
    it ends, and its CPU yields to the daemon's), the result written as JSON to `--out`."""
    import argparse

    from automator.config.load import load_project
    from automator.report_delivery import lower_priority

    parser = argparse.ArgumentParser(prog="python -m automator.rescoring")
    for option in ("--db", "--root", "--at", "--digest", "--out"):
        parser.add_argument(option, required=True)
    args = parser.parse_args(argv)
    lower_priority()
    project, problems = load_project(args.root)
    if project is None or project.segments is None or project.segments.digest != args.digest:
        print("segments.yaml on disk is not the one the daemon runs", file=sys.stderr)
        return EXIT_STALE
    now = datetime.fromisoformat(args.at)
    found = rescore_all(Path(args.db), project.segments, now, project.config.timezone, context(project, now))
    Path(args.out).write_text(json.dumps(found.to_json()), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
