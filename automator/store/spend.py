"""The `spend` table's writes: ad spend per day, channel and campaign (migration m005_reports), replaced by day and
channel, so that importing or pulling the same days again changes nothing, and a corrected figure replaces the old."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# (day as YYYY-MM-DD, channel, campaign, amount in minor units, currency)
SpendTuple = tuple[str, str, str, int, str]


def replace_spend(db: Any, rows: Iterable[SpendTuple], source: str, imported_at: str) -> tuple[int, int]:
    """Store `rows` as the whole spend of each (day, channel) they name: a day and channel whose stored figures
    differ (a campaign a corrected file leaves out among them) has them replaced; one whose figures are the same is
    left as it is, its `imported_at` too. Rows of one day, channel and campaign are summed. Run inside the caller's
    transaction; (figures given, figures of the days and channels that changed)."""
    wanted: dict[tuple[str, str], dict[str, tuple[int, str]]] = {}
    for day, channel, campaign, amount, currency in rows:
        figures = wanted.setdefault((day, channel), {})
        before = figures.get(campaign, (0, currency))[0]
        figures[campaign] = (before + amount, currency)
    changed = 0
    for (day, channel), figures in sorted(wanted.items()):
        stored = {campaign: (amount, currency) for campaign, amount, currency, kept in db.conn.execute(
            "select campaign, amount, currency, source from spend where day = ? and channel = ?", (day, channel))
            if kept == source}
        if stored == figures and _count(db, day, channel) == len(figures):
            continue
        db.conn.execute("delete from spend where day = ? and channel = ?", (day, channel))
        db.conn.executemany("insert into spend (day, channel, campaign, amount, currency, source, imported_at) "
                            "values (?, ?, ?, ?, ?, ?, ?)",
                            [(day, channel, campaign, amount, currency, source, imported_at)
                             for campaign, (amount, currency) in sorted(figures.items())])
        changed += len(figures)
    return sum(len(f) for f in wanted.values()), changed


def _count(db: Any, day: str, channel: str) -> int:
    return int(db.conn.execute("select count(*) from spend where day = ? and channel = ?", (day, channel))
               .fetchone()[0])
