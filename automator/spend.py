"""Ad spend brought into the store for the channels report: `automator spend import FILE.csv` and
`automator spend pull CONNECTOR` (a connector's `spend(since, until)`).

The CSV's columns (a header row names them, in any order; `,` or `;` between fields, UTF-8 with or without BOM):
`day` (YYYY-MM-DD), `channel` (a name of automator.yaml's `channels:`, or its title), `amount` (decimal text in
major units, `1500.00`), and optionally `campaign` and `currency` (RUB). A row that cannot be read is reported as
`FILE:LINE:COL: error: …` and skipped; every good row is imported all the same.

Both store through one writer (`store/spend.py`): the rows given are the whole spend of each day and channel they
name, so importing the same file again changes nothing, a corrected file replaces those days' figures, and rows of
one day, channel and campaign are added up (an export by ad, several rows per campaign).
"""
from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from automator import history
from automator.channels import ChannelMap
from automator.config.problems import Problem
from automator.connector import SpendRow
from automator.csvtable import CsvRow, read_table
from automator.expr.suggest import suggest
from automator.store.base import Store
from automator.store.spend import replace_spend

COLUMNS = ("day", "channel", "campaign", "amount", "currency")
REQUIRED = ("day", "channel", "amount")
DEFAULT_CURRENCY = "RUB"
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_CURRENCY = re.compile(r"[A-Z]{3}")


@dataclass
class SpendImport:
    """What an import or a pull stored: the rows read and stored, the days, the total per (channel, currency) in
    minor units, and the rows refused (each a Problem)."""

    read: int = 0
    stored: int = 0  # day-channel-campaign figures given
    changed: int = 0  # of them, the ones that were not stored so before (0 for a file imported again)
    days: set[date] = field(default_factory=set)
    totals: dict[tuple[str, str], int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def add(self, row: SpendRow) -> None:
        """Count a good row in the days and totals."""
        self.days.add(row.day)
        key = (row.channel, row.currency)
        self.totals[key] = self.totals.get(key, 0) + row.amount_minor

    def summary(self, channels: ChannelMap) -> list[str]:
        """The lines an operator reads: what was stored, the days it covers, the total of each channel."""
        span = f", {min(self.days)} – {max(self.days)}" if self.days else ""
        lines = [f"{self.read} rows read: {self.stored} day-channel-campaign figures ({self.changed} new or "
                 f"changed), {len(self.days)} days{span}, {len(self.problems)} skipped"]
        for (channel, currency), minor in sorted(self.totals.items()):
            lines.append(f"  {channel} ({channels.title(channel)}): {history.money_text(minor)} {currency}")
        return lines


class _CellError(ValueError):
    def __init__(self, column: str, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.column, self.hint = column, hint


def read_spend(path: Path, channels: ChannelMap) -> Iterator[SpendRow | Problem]:
    """The rows of a spend file, each a SpendRow or a Problem at its line and column."""
    currencies: dict[tuple[date, str, str], tuple[str, int]] = {}  # (day, channel, campaign) → (currency, line)
    names = channel_names(channels)
    for item in read_table(path, COLUMNS, REQUIRED):
        if isinstance(item, Problem):
            yield item
            continue
        try:
            row = _spend_row(item, channels, names)
            key = (row.day, row.channel, row.campaign)
            known = currencies.setdefault(key, (row.currency, item.line))
            if known[0] != row.currency:
                raise _CellError("currency", f"currency {row.currency} where line {known[1]} gave the same day, "
                                             f"channel and campaign in {known[0]}",
                                 "a day's spend in one channel and campaign is in one currency")
        except _CellError as exc:
            yield Problem(str(path), item.line, item.column(exc.column), str(exc), exc.hint)
        else:
            yield row


def _spend_row(item: CsvRow, channels: ChannelMap, names: dict[str, str]) -> SpendRow:
    cells = item.cells
    text = cells["day"]
    try:
        if not _DAY.fullmatch(text):
            raise ValueError
        day = date.fromisoformat(text)
    except ValueError:
        raise _CellError("day", f"day {text!r} is not a date written YYYY-MM-DD (2026-03-02)") from None
    channel = names.get(cells["channel"].casefold())
    if channel is None:
        given = cells["channel"]
        guess = suggest(given, channels.names())
        hint = f"did you mean '{guess}'?" if guess else f"the channels: {', '.join(channels.names())}"
        raise _CellError("channel", f"unknown channel {given!r}: not one of automator.yaml's channels:", hint)
    if not cells["amount"]:
        raise _CellError("amount", "the amount is empty: write what was spent, 0 for nothing")
    try:
        amount = history.minor_units(cells["amount"])
    except history.HistoryError as exc:
        raise _CellError("amount", str(exc)) from None
    currency = (cells.get("currency") or DEFAULT_CURRENCY).upper()
    if not _CURRENCY.fullmatch(currency):
        raise _CellError("currency", f"currency {cells['currency']!r} is not a three-letter code such as RUB")
    return SpendRow(day, channel, cells.get("campaign") or "", amount, currency)


def channel_names(channels: ChannelMap) -> dict[str, str]:
    """What a file's cell may name a channel by, case-folded: its name or its title (a name wins a clash)."""
    names = {c.title.casefold(): c.name for c in reversed(channels.channels)}
    names.update({c.name.casefold(): c.name for c in reversed(channels.channels)})
    return names


def store_rows(store: Store, rows: Iterable[SpendRow], source: str, now: datetime) -> tuple[int, int]:
    """Store rows as the whole spend of each day and channel they name (one transaction): (figures given, figures
    new or changed)."""
    with store.atomic():
        return replace_spend(store.db, ((r.day.isoformat(), r.channel, r.campaign, r.amount_minor, r.currency)
                                        for r in rows), source, now.isoformat())


def import_csv(store: Store, path: Path, channels: ChannelMap, now: datetime, *, source: str = "csv"
               ) -> SpendImport:
    """Import a spend file into the store (see the module's docstring); the rows refused are in the result's
    problems, the good ones are stored."""
    result, good = SpendImport(), []
    for item in read_spend(path, channels):
        if isinstance(item, Problem):
            result.problems.append(item)
            if item.line > 1:
                result.read += 1
            continue
        result.read += 1
        result.add(item)
        good.append(item)
    result.stored, result.changed = store_rows(store, good, source, now) if good else (0, 0)
    return result


async def pull(store: Store, rows: AsyncIterator[SpendRow], channels: ChannelMap, now: datetime, *, source: str
               ) -> SpendImport:
    """Store what a connector's `spend(since, until)` yields; a row naming no channel of the map, or a negative
    amount, is refused (a problem) and the others are stored."""
    result, good = SpendImport(), []
    async for row in rows:
        result.read += 1
        if channels.get(row.channel) is None:
            result.problems.append(Problem(f"{source} spend", result.read, 1,
                                           f"{row.day} {row.campaign or '-'}: unknown channel {row.channel!r}",
                                           f"the channels: {', '.join(channels.names())}"))
        elif row.amount_minor < 0:
            result.problems.append(Problem(f"{source} spend", result.read, 1,
                                           f"{row.day} {row.channel}: a negative amount {row.amount_minor}"))
        else:
            result.add(row)
            good.append(row)
    result.stored, result.changed = store_rows(store, good, source, now) if good else (0, 0)
    return result
