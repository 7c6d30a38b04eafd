"""A client's loyalty as an operator reads it (pure): per program the tier and the points (what is spendable, what
lapses within the notice period and when), the certificates and abonements with what is left, the discounts in
force, and the history — every row with its kind, amount, reason and cause. Read from the rows alone (each row
says what it is), so it shows what the ledger holds whatever loyalty.yaml says today. `automator loyalty show`
prints it.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo
from typing import Any

from automator.history import money_text
from automator.identity import PHONE, phone_of
from automator.loyalty.decision import Reading
from automator.loyalty.abonements import fold as fold_abonement
from automator.loyalty.ledger import Entry, account_kind, accounts, balance, ordered
from automator.model import EntityRef
from automator.phone import Policy, to_e164

# Accounts whose amounts are money (kopecks): shown as decimal text; an abonement's are visits, a counter's counts.
MONEY_KINDS = ("points", "certificate")


@dataclass(frozen=True, slots=True)
class Statement:
    """One client's loyalty at a moment, as plain data (`to_json`) and as text (`text`)."""

    client: str
    at: datetime
    tiers: tuple[Mapping[str, Any], ...]
    points: tuple[Mapping[str, Any], ...]
    certificates: tuple[Mapping[str, Any], ...]
    abonements: tuple[Mapping[str, Any], ...]
    discounts: tuple[Mapping[str, Any], ...]
    history: tuple[Mapping[str, Any], ...]

    def to_json(self) -> dict[str, Any]:
        """Plain data for `--format json`."""
        return {"client": self.client, "at": self.at.isoformat(), "tiers": list(self.tiers),
                "points": list(self.points), "certificates": list(self.certificates),
                "abonements": list(self.abonements), "discounts": list(self.discounts), "history": list(self.history)}


def statement(client: str, rows: Iterable[Entry], now: datetime, notice: timedelta, tz: tzinfo) -> Statement:
    """Fold a client's rows into what `loyalty show` prints: balances at `now`, points lapsing before
    `now + notice` (grouped by the moment they lapse), moments in `tz`."""
    entries = ordered(rows)
    tiers, points, certificates, abonements, discounts = [], [], [], [], []
    for name in accounts(entries):
        kind, label = account_kind(name), name.split(":", 1)[-1]
        mine = [e for e in entries if e.account == name]
        if kind == "tier":
            last = [e for e in mine if e.kind == "tier"][-1:]
            if last:
                detail = last[0].detail
                tiers.append({"program": label, "tier": detail.get("tier"), "since": _local(last[0].at, tz),
                              "discount": detail.get("discount"), "category": detail.get("category")})
        elif kind == "points":
            found = balance(mine, name)
            soon: dict[datetime, int] = {}
            for lot in found.expiring(now, now + notice):
                if lot.alive(now) and lot.expires_at is not None:
                    soon[lot.expires_at] = soon.get(lot.expires_at, 0) + lot.left
            points.append({"program": label, "balance": money_text(found.available(now)),
                           "expiring": [{"expires_at": _local(at, tz), "amount": money_text(left)}
                                        for at, left in sorted(soon.items())]})
        elif kind in ("certificate", "abonement"):
            issued = next((e for e in mine if e.kind == "issue"), None)
            found = balance(mine, name)
            left = found.available(now)
            expires = issued.expires_at if issued is not None else None
            item: dict[str, Any] = {"number": label, "type": (issued.detail.get("type") if issued else None),
                                    "expires_at": _local(expires, tz) if expires else None,
                                    "expired": expires is not None and expires <= now}
            if kind == "certificate":
                item.update(nominal=money_text(issued.amount if issued else 0), balance=money_text(left))
                certificates.append(item)
            else:
                # An abonement's last day is its issue's plus the days frozen (automator/loyalty/abonements.py):
                # its own fold says it, not a lot's expiry.
                held = fold_abonement(mine, label)
                if held is not None:
                    abonements.append(held.describe(now, tz if isinstance(tz, ZoneInfo) else ZoneInfo("UTC")))
        elif kind == "discount":
            for grant in (e for e in mine if e.kind == "grant"):
                until = _moment(grant.detail.get("until"))
                if until is None or until > now:
                    discounts.append({"program": label, "percent": grant.detail.get("percent"),
                                      "until": _local(until, tz) if until else None})
    history = tuple({"at": _local(e.at, tz), "account": e.account, "kind": e.kind, "amount": amount_text(e),
                     "reason": e.reason, "expires_at": _local(e.expires_at, tz) if e.expires_at else None,
                     "cause": _cause(e), "id": e.id} for e in entries)
    return Statement(client, now, tuple(tiers), tuple(points), tuple(certificates), tuple(abonements),
                     tuple(discounts), history)


def person_of(reading: Reading, ident: str) -> str | None:
    """The client an operator names: their id, or their phone in any spelling `phone()` reads; None when the store
    knows neither."""
    if reading.entity(EntityRef("client", ident)) is not None:
        return ident
    phone = phone_of(ident) or to_e164(ident, policy=Policy.POSSIBLE)
    return reading.client_of(PHONE, phone) if phone is not None else None


def amount_text(entry: Entry) -> str:
    """A row's amount as an operator reads it: money as signed decimal text, visits and counts as numbers, nothing
    for a tier or a grant."""
    kind = account_kind(entry.account)
    if kind in MONEY_KINDS:
        return ("+" if entry.amount > 0 else "") + money_text(entry.amount)
    if entry.amount == 0:
        return ""
    return f"{entry.amount:+d}"


def text(found: Statement) -> str:
    """The statement as an operator reads it in a terminal."""
    lines = [f"client {found.client} at {found.at.isoformat(timespec='minutes')}"]
    for tier in found.tiers:
        extra = ", ".join(f"{k} {tier[k]}" for k in ("discount", "category") if tier.get(k) not in (None, ""))
        lines.append(f"tier        {tier['program']}: {tier['tier']} since {tier['since'][:10]}"
                     + (f" ({extra})" if extra else ""))
    for item in found.points:
        lines.append(f"points      {item['program']}: {item['balance']}")
        lines.extend(f"              {soon['amount']} lapse at {soon['expires_at'][:16]}" for soon in item["expiring"])
    for cert in found.certificates:
        lines.append(f"certificate {cert['number']} ({cert['type'] or '—'}): {cert['balance']} of {cert['nominal']}"
                     + _until(cert))
    for abon in found.abonements:
        lines.append(f"abonement   {abon['number']} ({abon['type'] or '—'}): {abon['left']} of {abon['visits']} visits"
                     + (f" frozen through {abon['frozen_until']}" if abon["frozen_until"] else "") + _until(abon))
    for discount in found.discounts:
        lines.append(f"discount    {discount['program']}: {discount['percent']} %"
                     + (f" until {discount['until'][:16]}" if discount["until"] else ""))
    if not found.history:
        lines.append("no loyalty rows yet")
        return "\n".join(lines)
    lines.append("")
    lines.append(f"{'when':<17} {'account':<20} {'kind':<8} {'amount':>11}  reason / cause")
    for row in found.history:
        lines.append(f"{row['at'][:16].replace('T', ' '):<17} {row['account']:<20} {row['kind']:<8} "
                     f"{row['amount']:>11}  {row['reason'] or '—'} / {row['cause']}")
    return "\n".join(lines)


def _until(item: Mapping[str, Any]) -> str:
    if not item.get("expires_at"):
        return ""
    return (" expired " if item["expired"] else " until ") + str(item["expires_at"])[:16]


def _cause(entry: Entry) -> str:
    if entry.rule and entry.event:
        return f"rule {entry.rule} on {entry.event}" if not entry.rule.startswith("program:") \
            else f"{entry.rule} on {entry.event}"
    return entry.rule or entry.event or "—"


def _moment(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value)) if value not in (None, "") else None
    except ValueError:
        return None


def _local(at: datetime | None, tz: tzinfo) -> str:
    return at.astimezone(tz).isoformat() if at is not None else ""
