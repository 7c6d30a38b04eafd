"""Gift certificates on the ledger (pure): issue, spending in parts or whole, what a refund gives back.

A certificate is the account `certificate:<number>` of the client who holds it: its `issue` row is a lot of the
nominal in kopecks with the moment it lapses (`expires_at`), its spendings are `spend` rows. Anyone presenting the
number may pay with it: the spending is a row of the holder's ledger, saying who paid (`detail.by`). The number is
found through the `certificate` entity the issue creates (`certificate.created`, its `client` the holder).

A visit says it was paid by certificate in its own event (`visit.completed` data `certificate`: the number, and
`certificate_amount`: how much of it, the whole amount by default); a rule or an operator spends through
`certificate.redeem`. Either way the spending never takes more than is left: a visit's is refused with
`certificate.refused`, an action's fails its run, each saying what is left. A certificate that is not `partial`
is spent whole by its first payment (what the payment leaves is lost: `detail.lost`). Lapsing is the ledger's
generic expiry of a lot (an `expire` row at `expires_at`; `certificate.expiring` before it).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from automator.history import HistoryError, minor_units, money_text
from automator.loyalty.instrument_types import CERTIFICATE, CertificateType, InstrumentError
from automator.loyalty.ledger import Entry, LedgerError, account, account_kind, balance, take
from automator.model import Entity, EntityRef


SPEND_REASON = "Оплата сертификатом"
PRESENTED = "presented"  # the account kind of a client's payments with a certificate someone else holds
RETURN_REASON = "Возврат на сертификат за возвращённый визит"


class Holdings(Protocol):
    """What finding a certificate reads: the entity its issue made, and a client's ledger (a decision's Reading,
    or a run performing an action)."""

    def entity(self, ref: EntityRef) -> Entity | None:
        """The stored state of an entity."""

    def ledger_of(self, client: str) -> list[Entry]:
        """A person's ledger rows, in the ledger's order."""


def account_of(number: str) -> str:
    """The account a certificate's rows are in."""
    return account(CERTIFICATE, number)


def issue_row(ctype: CertificateType, *, client: str, number: str, nominal: int, expires_at: datetime | None,
              at: datetime, row_id: str, event: str = "", rule: str = "") -> Entry:
    """The `issue` row of a new certificate: a lot of `nominal` kopecks that lapses at `expires_at`. The row says
    what it is (type, nominal, number, whether it is spent in parts) so that views need not read loyalty.yaml."""
    if nominal <= 0:
        raise InstrumentError(f"certificate {number}: the nominal must be above zero")
    return Entry(id=row_id, client=client, account=account_of(number), kind="issue", amount=nominal, at=at,
                 expires_at=expires_at, reason=f"Сертификат «{ctype.title}» на {money_text(nominal)}", event=event,
                 rule=rule, detail={"type": ctype.name, "title": ctype.title, "nominal": money_text(nominal),
                                    "number": number, "partial": ctype.partial})


def nominal_of(ctype: CertificateType, given: Any) -> int:
    """The nominal an issue gives the certificate, in kopecks: the type's, or the one given for a type of `any`
    nominal (and only then, unless it is the type's own)."""
    try:
        amount = minor_units(given, "nominal") if given not in (None, "") else None
    except HistoryError as exc:
        raise InstrumentError(str(exc)) from None
    if ctype.nominal is None:
        if amount is None:
            raise InstrumentError(f"certificate type {ctype.name} has any nominal: give `nominal:`, such as "
                                  f"\"3000.00\"")
        return amount
    if amount is not None and amount != ctype.nominal:
        raise InstrumentError(f"certificate type {ctype.name} is worth {money_text(ctype.nominal)}, not "
                              f"{money_text(amount)}: use a type with `nominal: any` for a free nominal")
    return ctype.nominal


def holder_of(reading: Holdings, number: str, presenter: str | None = None) -> str | None:
    """Who holds certificate `number`: the presenter when it is in their own ledger, else the client its
    `certificate` entity names; None when nobody does."""
    if presenter and issue_of(reading.ledger_of(presenter), number) is not None:
        return presenter
    entity = reading.entity(EntityRef(CERTIFICATE, number))
    holder = entity.fields.get("client") if entity is not None else None
    return str(holder) if holder not in (None, "") else None


def check_unused(reading: Holdings, number: str, client: str) -> None:
    """Refuse a number some certificate already has (the issuing client's, or anyone's through its entity)."""
    owner = holder_of(reading, number, client)
    if owner is not None:
        raise InstrumentError(f"certificate {number} already exists (held by client {owner}): give another "
                              f"`number:`, or none to have one made up")


def issue_of(rows: Sequence[Entry], number: str) -> Entry | None:
    """A certificate's `issue` row among a client's rows."""
    return next((e for e in rows if e.account == account_of(number) and e.kind == "issue"), None)


def spend_row(reading: Holdings, number: str, amount: int, *, presenter: str, at: datetime, row_id: str,
              event: str = "", rule: str = "", visit: str = "") -> Entry:
    """The `spend` row paying `amount` kopecks with certificate `number`, presented by client `presenter`, at
    `at`; an InstrumentError saying what is left when it cannot (unknown, lapsed, spent, too little left)."""
    if amount <= 0:
        raise InstrumentError(f"certificate {number}: the amount to pay must be above zero")
    holder = holder_of(reading, number, presenter)
    if holder is None:
        raise InstrumentError(f"certificate {number} is not known: no certificate was issued with this number")
    rows = reading.ledger_of(holder)
    issued = issue_of(rows, number)
    if issued is None:
        raise InstrumentError(f"certificate {number} is not known: its holder's ledger has no issue of it")
    # A visit that began before the certificate was sold (bought at the checkout) pays when it exists: a row
    # before its lot would take from nothing.
    at = max(at, issued.at)
    if issued.expires_at is not None and at >= issued.expires_at:
        raise InstrumentError(f"certificate {number} lapsed at {issued.expires_at.isoformat()}")
    available = balance(rows, account_of(number)).available(at)
    if amount > available:
        raise InstrumentError(f"certificate {number}: {money_text(amount)} asked, {money_text(available)} left")
    detail: dict[str, Any] = {"number": number, "paid": money_text(amount)}
    taken = amount
    if not issued.detail.get("partial", True) and available > amount:
        taken = available  # spent whole: what the payment leaves of it is lost
        detail["lost"] = money_text(available - amount)
    if presenter != holder:
        detail["by"] = presenter
    entry = Entry(id=row_id, client=holder, account=account_of(number), kind="spend", amount=-taken, at=at,
                  reason=SPEND_REASON, event=event, rule=rule, visit=visit, detail=detail)
    try:
        return take(rows, entry)
    except LedgerError as exc:  # the checks above say it first; the ledger's own rule stands behind them
        raise InstrumentError(str(exc)) from None


def paid_by_visit(data: Mapping[str, Any], visit_amount: int) -> tuple[str, int] | None:
    """The certificate a visit's event says paid for it, and how much of it: (`certificate`,
    `certificate_amount` in kopecks, else the visit's whole amount); None when the event names none."""
    number = data.get("certificate")
    if number in (None, "") or isinstance(number, (Mapping, list, bool)):
        return None
    raw = data.get("certificate_amount")
    try:
        amount = minor_units(raw, "certificate_amount") if raw not in (None, "") else visit_amount
    except HistoryError as exc:
        raise InstrumentError(str(exc)) from None
    return str(number), amount


def presented_row(spent: Entry) -> Entry | None:
    """For a spending by someone other than the holder, a row of their own ledger saying they paid with the
    certificate (amount 0, account `presented:<number>`, naming the holder and the spending): their history shows
    it, and a refund of their visit finds the holder's spending through it. None for the holder's own."""
    presenter = spent.detail.get("by")
    if not presenter:
        return None
    number = str(spent.detail.get("number"))
    return Entry(id=f"{spent.id}/presented", client=str(presenter), account=account(PRESENTED, number),
                 kind="spend", amount=0, at=spent.at, reason=f"Оплата сертификатом {number} клиента {spent.client}",
                 event=spent.event, rule=spent.rule, visit=spent.visit,
                 detail={"number": number, "holder": spent.client, "row": spent.id, "paid": spent.detail.get("paid")})


def refund_rows(reading: Holdings, client: str, visit: str, refunded: int | None, *, at: datetime,
                event: str) -> list[Entry]:
    """What a refunded visit of `client` gives back to the certificates that paid for it (theirs, or another
    holder's they presented): a `reverse` row per spending not reversed yet, on the holder's ledger, lapsing when
    its certificate does. A partial refund (`refunded` kopecks) gives back at most that much, the certificates
    first; a whole one (None) all of it."""
    own = reading.ledger_of(client)
    ledgers = {client: own}
    spendings: list[Entry] = []
    for row in own:
        if row.visit != visit or row.kind != "spend":
            continue
        if account_kind(row.account) == CERTIFICATE:
            spendings.append(row)
        elif account_kind(row.account) == PRESENTED:
            holder = str(row.detail.get("holder"))
            ledgers.setdefault(holder, reading.ledger_of(holder))
            spendings.extend(e for e in ledgers[holder] if e.id == row.detail.get("row"))
    out: list[Entry] = []
    left = refunded
    for spent in spendings:
        rows = ledgers[spent.client]
        if any(e.id == f"reverse/{spent.id}" for e in rows):
            continue
        paid = minor_units(spent.detail.get("paid")) if spent.detail.get("paid") else -spent.amount
        back = paid if left is None else min(paid, left)
        if back <= 0:
            break
        issued = issue_of(rows, str(spent.detail.get("number") or spent.account.split(":", 1)[1]))
        out.append(Entry(id=f"reverse/{spent.id}", client=spent.client, account=spent.account, kind="reverse",
                         amount=back, at=at, expires_at=issued.expires_at if issued else None, reason=RETURN_REASON,
                         event=event, visit=visit, detail={"of": spent.id, "returned": money_text(back)}))
        if left is not None:
            left -= back
    return out
