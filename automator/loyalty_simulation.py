"""`automator loyalty simulate`'s input and output: the visit history read from the store with the refunds its
journal holds (or a visits CSV in `automator import visits`'s format), the replay of each program over it
(`loyalty/simulate`, pure), rendered as a table, CSV or JSON. Nothing is written: the store is opened read-only."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from automator.clock import localize
from automator.config.problems import Problem
from automator.identity import PHONE
from automator.ingest import read_visits
from automator.loyalty.config import LoyaltyConfig
from automator.loyalty.refunds import REFUNDED
from automator.loyalty.simulate import report, simulate
from automator.model import Entity, EntityRef, Event, Visit
from automator.reports.text import render
from automator.store.base import Store
from automator.store.codec import VISIT_COLUMNS, utc, visit_of
from automator.store.journal import event_from_body


@dataclass(frozen=True)
class Replayed:
    """What a simulation made: the rendered figures, and the rows of a visits file it could not read."""

    text: str
    problems: tuple[Problem, ...] = ()


def run(config: LoyaltyConfig, names: Sequence[str], *, store: Store | None, visits_file: Path | None,
        first: date | None, last: date | None, fmt: str, tz: ZoneInfo, now: datetime) -> Replayed:
    """Each program of `names` (all, when empty) replayed over the history from `first` to `last` (days in `tz`,
    inclusive; all of it when not given), rendered in `fmt` (table, csv or json)."""
    unknown = [n for n in names if n not in config.programs]
    if unknown:
        raise ValueError(f"no program {', '.join(unknown)} in loyalty.yaml (there are: "
                         f"{', '.join(config.programs) or 'none'})")
    start = localize(datetime.combine(first, time()), tz) if first else None
    end = localize(datetime.combine(last + timedelta(days=1), time()), tz) if last else now
    problems: list[Problem] = []
    refunds: list[Event] = []
    if visits_file is not None:
        visits, clients, phones = _from_file(visits_file, tz, problems)
    elif store is not None:
        visits, clients, phones = _from_store(store, start, end)
        refunds = _refunds(store, start, end)
    else:
        raise ValueError("no history to replay: give --visits FILE.csv, or a store")
    kept = [v for v in visits if (start is None or v.at >= start) and v.at < end]
    figures = simulate(config, list(names) or list(config.programs), kept, clients, phones, end, tz, refunds)
    shown_from = start or (min(v.at for v in kept) if kept else end)
    return Replayed(render(report(figures, shown_from.astimezone(tz), (end - timedelta(microseconds=1)).astimezone(tz),
                                  now), fmt), tuple(problems))


def _from_store(store: Store, start: datetime | None, end: datetime
                ) -> tuple[list[Visit], dict[str, Entity], dict[str, str]]:
    conn = store.db.conn
    rows = conn.execute(f"select {', '.join(VISIT_COLUMNS)} from visits where at >= ? and at < ? order by at, id",
                        [utc(start) if start else "", utc(end)])
    visits = [visit_of(row) for row in rows]
    clients = {e.ref.id: e for e in store.entities("client")}
    phones = {str(p): str(c) for p, c in conn.execute("select ext_id, client from links where system = ?", [PHONE])}
    return visits, clients, phones


def _refunds(store: Store, start: datetime | None, end: datetime) -> list[Event]:
    """The `visit.refunded` events the journal still holds (it forgets decided events after a while)."""
    rows = store.db.conn.execute("select body from journal where type = ? and at >= ? and at < ? order by seq",
                                 [REFUNDED, utc(start) if start else "", utc(end)])
    return [e for e in (event_from_body(body) for (body,) in rows) if e.entity is not None]


def _from_file(path: Path, tz: ZoneInfo, problems: list[Problem]
               ) -> tuple[list[Visit], dict[str, Entity], dict[str, str]]:
    """A visits file's rows as visits, each client named by the file's `client` column (or its phone alone)."""
    visits: list[Visit] = []
    for item in read_visits(path, "import", tz):
        if isinstance(item, Problem):
            problems.append(item)
            continue
        item.stored[1] = item.ext_id
        visits.append(visit_of(tuple(item.stored)))
    clients = {v.client: Entity(EntityRef("client", v.client), {}, None) for v in visits}
    return visits, clients, {}
