"""What an owner and an operator see of the segments: each segment's size and what it brings (`automator segments
show`, a Report rendered as every report is), and one client's scoring explained (`automator segments explain`):
the values, the cut points, the scores, the segment whose conditions held and why each one before did not."""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from automator.client_segment import NO_CUTS, Unscorable
from automator.expr import EvalContext
from automator.model import EntityRef
from automator.phone import Policy, to_e164
from automator.reports.figures import money, per, percent, rounded
from automator.reports.model import Column, Report, Table
from automator.reports.snapshot import Limits, Snapshot
from automator.rescoring import scored_table
from automator.segments import METRICS, Cuts, Scored, SegmentsConfig, classify_values, cuts_for, values_of
from automator.store.base import Snapshot as StoreSnapshot

NO_SEGMENT = "—"
COLUMNS = (
    Column("segment", "Сегмент"), Column("title", "Название"),
    Column("clients", "Клиентов", "int", "clients in the segment as the store has it now"),
    Column("share", "Доля, %", "percent", "of every client with a visit"),
    Column("average_check", "Средний чек", "money", "revenue over visits and purchases in the window"),
    Column("recency", "Давность, дн.", "days", "days since the latest visit in the window, on average"),
    Column("revenue", "Выручка", "money", "paid for visits and purchases in the window"),
)


def show(store: Path, config: SegmentsConfig, now: datetime, tz: Any, ectx: EvalContext,
         limits: Limits | None = None) -> Report:
    """Each segment (in the file's order, then clients in none) with its clients, share, average check, average
    recency and revenue over the window, grouped by the segment each client has in the store now."""
    limits = limits or Limits.beside(store)
    with Snapshot(store, limits) as snap:
        scored_table(snap, config, now, tz, ectx, limits.threads or os.cpu_count() or 1)
        found = {name: row for name, *row in snap.duck.execute(
            "select segment, count(*), sum(total)::bigint, sum(paid)::bigint, sum(days)::bigint, count(days) "
            "from scored group by segment").fetchall()}
    everyone = sum(int(row[0]) for row in found.values())
    rows = []
    for name, title in [*((s.name, s.title) for s in config.segments), *((n, "") for n in found
                                                                        if config.get(n) is None)]:
        clients, revenue, paid, days, dated = (int(v or 0) for v in found.get(name, (0, 0, 0, 0, 0)))
        rows.append({"segment": name or NO_SEGMENT, "title": title if name else "не посчитан", "clients": clients,
                     "share": percent(clients, everyone), "average_check": per(revenue, paid),
                     "recency": rounded(days, dated, 1), "revenue": money(revenue)})
    start = config.window_start(now, tz)
    notes = ("clients in no segment have not been scored yet: run `automator segments compute`",) \
        if found.get(None) else ()
    return Report(name="segments", title="Сегменты клиентов", period_from=(start or now).astimezone(tz).date(),
                  period_to=now.astimezone(tz).date(), generated_at=now,
                  tables=(Table("segments", "Сегменты", COLUMNS, tuple(rows)),), notes=notes)


# ---- one client -----------------------------------------------------------------------------------------------

class ClientNotFound(LookupError):
    """No stored client has that id or phone."""


@dataclass(frozen=True, slots=True)
class Explained:
    """One client's scoring: who, the values and scores, the cut points, every segment's check up to the match."""

    client: str
    name: str | None
    stored: str | None  # the segment the store has now
    scored: Scored
    cuts: Cuts
    config: SegmentsConfig

    def to_data(self) -> dict[str, Any]:
        """Plain data for `--format json`."""
        values = self.scored.values
        return {"client": self.client, "name": self.name, "segment": self.scored.segment, "stored": self.stored,
                "values": {"days": values.days, "visits": values.visits,
                           "money": str(money(values.money(self.config.monetary_of))),
                           "total": str(money(values.total)), "paid": values.paid},
                "scores": self.scored.scores, "cuts": self.cuts.to_json(),
                "checks": [{"segment": c.segment, "matched": c.matched, "failed": list(c.failed)}
                           for c in self.scored.checks]}

    def lines(self) -> list[str]:
        """As an operator reads it."""
        values, scores, config = self.scored.values, self.scored.scores, self.config
        m_of = "средний чек" if config.monetary_of == "average" else "сумма"
        out = [f"client {self.client}" + (f" ({self.name})" if self.name else ""),
               f"  R = {scores['r']}: {'no visit in the window' if values.days is None else f'{values.days} days since the latest visit'}",
               f"  F = {scores['f']}: {values.visits} visits in the window",
               f"  M = {scores['m']}: {money(values.money(config.monetary_of))} ₽ ({m_of}; "
               f"{money(values.total)} ₽ over {values.paid} visits and purchases)"]
        for metric in METRICS:
            points = self.cuts.of(metric)
            shown = ", ".join("—" if p is None else (str(money(p)) if metric == "m" else str(p)) for p in points)
            how = "at most" if metric == "r" else "at least"
            out.append(f"  cuts {metric}: {how} [{shown}] for scores 2..{config.scale}")
        for check in self.scored.checks:
            mark = "✔" if check.matched else "✘"
            out.append(f"  {mark} {check.segment}" + ("" if check.matched else ": " + "; ".join(check.failed)))
        segment = self.scored.segment
        out.append(f"segment: {segment or 'none'}" + ("" if segment == self.stored else
                                                      f" (the store has {self.stored or 'none'}: rescored at the next "
                                                      "visit or the daily rescoring)"))
        return out


def find_client(snapshot: StoreSnapshot, who: str) -> str:
    """The person `who` names: the product's client id, or a phone in any spelling."""
    if snapshot.entity(EntityRef("client", who)) is not None:
        return who
    phone = to_e164(who, policy=Policy.POSSIBLE)
    if phone is not None:
        person = snapshot.client_of("phone", phone)
        if person is not None:
            return person
        found = snapshot.clients_with_phone(phone)
        if found:
            return found[0].ref.id
    raise ClientNotFound(f"no client has the id or phone {who!r}")


def explain(snapshot: StoreSnapshot, config: SegmentsConfig, who: str, now: datetime, tz: Any,
            ectx: EvalContext) -> Explained:
    """One client's scoring as the product does it now, every segment's check up to the match."""
    client = find_client(snapshot, who)
    entity = snapshot.entity(EntityRef("client", client))
    fields = entity.fields if entity else {}
    if not fields.get("visit_count"):
        raise ClientNotFound(f"client {client} has no visit (a purchase alone, or none): the product scores the "
                             "clients who came")
    cuts = cuts_for(config, snapshot.segment_cuts())
    if cuts is None:
        raise Unscorable(NO_CUTS)
    since = config.window_start(now, tz)
    values = values_of(snapshot.visits_of(client, since), now, since)
    return Explained(client, fields.get("name"), fields.get("segment"),
                     classify_values(values, config, cuts, ectx, explain=True), cuts, config)

