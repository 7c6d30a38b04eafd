"""A client's loyalty ledger (pure): the rows, the accounts they belong to, and the fold that says what is left.

The ledger is append-only. A row never changes: a correction is a row of its own (`adjust`, `reverse`). Each row
has an id made from what caused it (an event, an effect, a timer), so writing it again adds nothing: the store
inserts rows with `insert or ignore`. Amounts are signed integers in minor units (kopecks: a point is a rouble,
100), or visits for an abonement. A row belongs to one *account* of the client (`points:gold`,
`certificate:A-1001`, ...): an account's balance is the sum of its rows.

What expires when is not kept: it is folded from the rows. Every positive row opens a *lot* (with the moment it
expires, if it does); every negative row takes from lots. An `expire` row takes what is left of the lot it names;
any other negative row takes from the lots alive at its moment, the one expiring first first (a lot that never
expires last), so that points about to lapse are the ones spent. A row may never take more than is left:
`take` refuses it (`LedgerError`), so no balance is ever negative.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from automator.clock import localize

# The kinds of row. Positive: accrue (points earned), issue (a certificate's nominal, an abonement's visits),
# grant (a discount or a tier granted: amount 0). Negative: spend, use (an abonement visit), expire. Either sign:
# adjust (an operator's or a rule's correction), reverse (undoing rows of a refunded visit).
KINDS = frozenset({"accrue", "issue", "grant", "tier", "spend", "use", "expire", "adjust", "reverse", "freeze",
                   "unfreeze"})
NEVER = datetime.max  # the sort key of a lot that never expires (compared as naive: see `_expiry_key`)


class LedgerError(ValueError):
    """A row the ledger cannot take: more than is left, or an unknown lot."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One row of a client's ledger."""

    id: str  # made from its cause: "<event id>/<program>/accrue", "<effect key>", "expire/<lot id>"
    client: str  # the person (the `client` entity's id)
    account: str  # see `account`: "points:gold", "tier:gold", "certificate:A-1001", "abonement:77-3"
    kind: str  # one of KINDS
    amount: int  # signed minor units (points, money), or visits (an abonement)
    at: datetime
    expires_at: datetime | None = None  # a positive row's lot expires then (spendable while at < expires_at)
    reason: str = ""  # what an admin reads: "Начисление 5 % за визит", "Списание просроченных баллов"
    event: str = ""  # the journal event that caused it (a visit's, a timer's, the run's event)
    rule: str = ""  # the rule whose action made it, or "program:<name>" for a program's own row
    visit: str = ""  # the visit (history's `<source>:<id>`) it was made for: a refund reverses these
    detail: Mapping[str, Any] = field(default_factory=dict)  # kind-specific: {"lot": id}, {"tier": "gold"}, ...


def end_of(day: date, tz: ZoneInfo) -> datetime:
    """The moment a lot good through `day` lapses: the local midnight that ends that day (UTC). Points, discounts,
    certificates and abonements all lapse so: spendable the whole of their last day."""
    return localize(datetime.combine(day + timedelta(days=1), time()), tz)


def account(kind: str, name: str) -> str:
    """An account's name: `account("points", "gold")` → "points:gold"."""
    return f"{kind}:{name}"


def account_kind(name: str) -> str:
    """The kind of an account: "points:gold" → "points"."""
    return name.split(":", 1)[0]


@dataclass(frozen=True, slots=True)
class Lot:
    """What is left of one positive row."""

    entry: str  # the row that opened it
    at: datetime
    expires_at: datetime | None
    amount: int  # as opened
    left: int  # not yet taken

    def alive(self, at: datetime) -> bool:
        """Still spendable at `at` (expiry is exclusive: a lot expiring at midnight is spendable until then)."""
        return self.left > 0 and (self.expires_at is None or at < self.expires_at)


@dataclass(frozen=True, slots=True)
class Balance:
    """An account as its rows leave it at a moment."""

    account: str
    total: int  # the sum of its rows (what expired is already taken by its `expire` row)
    lots: tuple[Lot, ...]  # lots with something left, the one expiring first first

    def available(self, at: datetime) -> int:
        """What can be spent at `at`: the lots alive then (a lapsed lot not yet written off is not spendable)."""
        return sum(lot.left for lot in self.lots if lot.alive(at))

    def lapsed(self, at: datetime) -> tuple[Lot, ...]:
        """Lots expired by `at` with something left: each needs its `expire` row (see `expiry_rows`)."""
        return tuple(lot for lot in self.lots if lot.left > 0 and lot.expires_at is not None and lot.expires_at <= at)

    def expiring(self, since: datetime, until: datetime) -> tuple[Lot, ...]:
        """Lots with something left that expire in [since, until): what an "expiring soon" notice names."""
        return tuple(lot for lot in self.lots
                     if lot.left > 0 and lot.expires_at is not None and since <= lot.expires_at < until)


def ordered(entries: Iterable[Entry]) -> list[Entry]:
    """Rows in the ledger's order: by moment, then id (deterministic, whatever order they were read in)."""
    return sorted(entries, key=lambda e: (e.at, e.id))


def _expiry_key(lot: Lot) -> tuple[int, float, float, str]:
    # Expiring lots first, soonest first; then the never-expiring ones; oldest first within each.
    if lot.expires_at is None:
        return (1, 0.0, lot.at.timestamp(), lot.entry)
    return (0, lot.expires_at.timestamp(), lot.at.timestamp(), lot.entry)


def balance(entries: Iterable[Entry], account_name: str) -> Balance:
    """Fold one account's rows (others are skipped) into its total and lots. A LedgerError when the rows take
    more than was there (they were not made through `take`)."""
    lots: dict[str, Lot] = {}
    total = 0
    for entry in ordered(e for e in entries if e.account == account_name):
        total += entry.amount
        if entry.amount > 0:
            lots[entry.id] = Lot(entry.id, entry.at, entry.expires_at, entry.amount, entry.amount)
        elif entry.amount < 0:
            for taken in _taking(list(lots.values()), entry):
                lot = lots[taken[0]]
                lots[lot.entry] = Lot(lot.entry, lot.at, lot.expires_at, lot.amount, lot.left - taken[1])
    return Balance(account_name, total, tuple(sorted((lot for lot in lots.values() if lot.left > 0),
                                                     key=_expiry_key)))


def _taking(lots: Sequence[Lot], entry: Entry) -> list[tuple[str, int]]:
    """Which lots a negative row takes from, and how much of each."""
    want = -entry.amount
    named = entry.detail.get("lot") if entry.kind == "expire" else None
    if named is not None:
        lot = next((lot for lot in lots if lot.entry == named), None)
        if lot is None or lot.left < want:
            raise LedgerError(f"{entry.id}: expires {want} of lot {named}, which has "
                              f"{lot.left if lot else 'nothing'} left")
        return [(lot.entry, want)]
    taken: list[tuple[str, int]] = []
    for lot in sorted((lot for lot in lots if lot.alive(entry.at)), key=_expiry_key):
        if want == 0:
            break
        part = min(want, lot.left)
        taken.append((lot.entry, part))
        want -= part
    if want > 0:
        raise LedgerError(f"{entry.id}: takes {-entry.amount} from {entry.account}, "
                          f"{-entry.amount - want} is available")
    return taken


def take(entries: Iterable[Entry], entry: Entry) -> Entry:
    """`entry` (a negative row) when the account can give it, else a LedgerError saying what is available: the
    check every spending, use or negative adjustment goes through, so that no balance goes below zero."""
    if entry.amount >= 0:
        return entry
    current = balance(entries, entry.account)
    available = current.available(entry.at)
    if -entry.amount > available:
        raise LedgerError(f"{entry.account}: {-entry.amount} asked, {available} available")
    return entry


def expiry_rows(entries: Iterable[Entry], account_name: str, client: str, at: datetime, *, event: str = "",
                reason: str = "Списание просроченных баллов") -> list[Entry]:
    """The `expire` rows due by `at`: one per lapsed lot, for what is left of it, each at the lot's own expiry
    moment and with an id made from the lot (written twice, it is kept once)."""
    current = balance(entries, account_name)
    return [Entry(id=f"expire/{lot.entry}", client=client, account=account_name, kind="expire", amount=-lot.left,
                  at=lot.expires_at or at, reason=reason, event=event, detail={"lot": lot.entry})
            for lot in current.lapsed(at)]


def accounts(entries: Iterable[Entry]) -> list[str]:
    """The accounts the rows touch, in the order first seen."""
    return list(dict.fromkeys(e.account for e in entries))
