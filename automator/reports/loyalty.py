"""The loyalty report: bonus points as a liability. Per program, what clients hold now (the points they can still
spend: the business owes them), and per month what was accrued, spent, expired and reversed (refunds) in the
period, and what will lapse in each month ahead if not spent.

What lapses when is folded from the ledger's rows by `automator.loyalty.ledger` (the same fold the engine spends
and expires by), so the report's figures are the ledger's own: a lot already spent is not counted as expiring, and
points past their moment but not yet written off are not outstanding.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from automator.channels import ChannelMap
from automator.loyalty.ledger import Entry, balance
from automator.reports.figures import money
from automator.reports.model import Chart, Column, Report, Table
from automator.reports.period import Period
from automator.reports.snapshot import Snapshot

# How many months ahead the expiring points are shown (a lot lapsing later is still outstanding).
MONTHS_AHEAD = 24
FLOWS = ("accrued", "spent", "expired", "reversed")


def read(snapshot: Snapshot) -> list[Entry]:
    """Every points row of the ledger (points accounts only), as Entries the fold reads."""
    snapshot.read("lg", "ledger", {"id": "text", "client": "text", "account": "text", "kind": "text",
                                   "amount": "int", "at": "text", "expires_at": "text",
                                   "json_extract(detail, '$.lot') as lot": "text"}, "account like 'points:%'")
    return [Entry(id=r["id"], client=r["client"], account=r["account"], kind=r["kind"], amount=int(r["amount"]),
                  at=_moment(r["at"]), expires_at=_moment(r["expires_at"]) if r["expires_at"] else None,
                  detail={"lot": r["lot"]} if r["lot"] else {})
            for r in snapshot.rows("select * from lg")]


def figures(entries: list[Entry], period: Period, now: datetime) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per program (clients holding points, outstanding now, the period's flows) and per (month, program) (the
    period's flows in its months, and what lapses in each month from now's on), all in kopecks."""
    tz = period.tz
    start = datetime.fromtimestamp(period.start_at, timezone.utc)
    end = datetime.fromtimestamp(period.end_at, timezone.utc)
    programs: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(("clients", "outstanding", *FLOWS), 0))
    months: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: dict.fromkeys((*FLOWS, "expiring"), 0))
    by_account: dict[tuple[str, str], list[Entry]] = defaultdict(list)
    for entry in entries:
        by_account[(entry.client, entry.account)].append(entry)
        program = entry.account.split(":", 1)[1]
        if start <= entry.at < end:
            flow = _flow(entry)
            if flow is not None:
                programs[program][flow] += abs(entry.amount)
                months[(_month(entry.at, tz), program)][flow] += abs(entry.amount)
    horizon = _month(now, tz)
    last = _add_months(horizon, MONTHS_AHEAD - 1)
    for (client, account_name), rows in by_account.items():
        program = account_name.split(":", 1)[1]
        found = balance(rows, account_name)
        held = found.available(now)
        programs[program]["outstanding"] += held
        programs[program]["clients"] += 1 if held > 0 else 0
        for lot in found.lots:
            if lot.alive(now) and lot.expires_at is not None and _month(lot.expires_at, tz) <= last:
                months[(_month(lot.expires_at, tz), program)]["expiring"] += lot.left
    per_program = [{"program": name, **values} for name, values in sorted(programs.items())]
    per_month = [{"month": month, "program": program, **values}
                 for (month, program), values in sorted(months.items()) if any(values.values())]
    return per_program, per_month


def report(snapshot: Snapshot, period: Period, options: Mapping[str, Any], channels: ChannelMap,
           now: datetime) -> Report:
    """The loyalty report of the period (flows) and as of `now` (outstanding, expiring ahead)."""
    per_program, per_month = figures(read(snapshot), period, now)
    flows = (Column("accrued", "Начислено", "money", "начисления и положительные корректировки за период"),
             Column("spent", "Списано", "money", "оплата баллами и отрицательные корректировки за период"),
             Column("expired", "Сгорело", "money", "баллы, сгоревшие за период"),
             Column("reversed", "Возвращено", "money", "начисления, отменённые возвратом визита"))
    programs = Table("programs", "Программы", (
        Column("program", "Программа", "text", "программа loyalty.yaml"),
        Column("clients", "Клиентов с баллами", "int", "клиенты, у которых сейчас есть баллы"),
        Column("outstanding", "Остаток баллов", "money", "баллы, которые клиенты могут потратить сейчас: "
                                                         "обязательство бизнеса"), *flows),
        tuple(_shown(r) for r in per_program), _shown(_total(per_program, "program")) if per_program else None)
    months = Table("months", "По месяцам", (
        Column("month", "Месяц", "month"), Column("program", "Программа", "text"), *flows,
        Column("expiring", "Сгорит", "money", "сгорит в этом месяце, если не потратить (с текущего месяца)")),
        tuple(_shown(r) for r in per_month))
    outstanding = sum(r["outstanding"] for r in per_program)
    soon = sum(r["expiring"] for r in per_month if r["month"] == _month(now, period.tz))
    headline = (("Остаток баллов", money(outstanding), "money"),
                ("Сгорит в этом месяце", money(soon), "money"),
                ("Начислено за период", money(sum(r["accrued"] for r in per_program)), "money"))
    notes = () if per_program else ("В ledger нет ни одного начисления баллов.",)
    charts = (Chart("months", "Баллы по месяцам", "bars", "months", "month", ("accrued", "spent", "expiring"),
                    series="program"),)
    return Report("loyalty", "Баллы: остаток и сгорание", period.start, period.end, now, (programs, months),
                  charts, headline, {}, notes=notes)


def _flow(entry: Entry) -> str | None:
    if entry.kind == "expire":
        return "expired"
    if entry.kind == "reverse":
        return "reversed"
    if entry.amount > 0:
        return "accrued"
    return "spent" if entry.amount < 0 else None


def _shown(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (money(v) if k in (*FLOWS, "outstanding", "expiring") else v) for k, v in row.items()}


def _total(rows: list[dict[str, Any]], label: str) -> dict[str, Any]:
    return {label: "Итого", **{k: sum(r[k] for r in rows) for k in ("clients", "outstanding", *FLOWS)}}


def _month(at: datetime, tz: Any) -> str:
    return at.astimezone(tz).strftime("%Y-%m")


def _add_months(month: str, count: int) -> str:
    year, number = int(month[:4]), int(month[5:7]) - 1 + count
    return f"{year + number // 12:04d}-{number % 12 + 1:02d}"


def _moment(text: str) -> datetime:
    found = datetime.fromisoformat(text)
    return found if found.tzinfo is not None else found.replace(tzinfo=timezone.utc)
