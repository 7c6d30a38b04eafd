"""`loyalty.accrue`, `loyalty.spend`, `loyalty.set_tier`: actions the engine performs itself, on the product's own
ledger, inside the core (the rows are written with the decision, once, by the effect's key). Their mirror in a
booking system is the ledger's (`automator.loyalty.mirror`), like every other row's.

Amounts are roubles as decimal text (or a whole number); an amount computed with more than two decimal places
(`{{ visit.amount * 0.035 }}`) is rounded half up to the kopeck, once, here. Spending is refused, with the
balance named, when it would take more than the client's points alive at that moment: the run fails visibly and
the ledger never goes below zero.
"""
from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import replace
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from automator.actions.spec import ActionRun
from automator.clock import Duration, parse_duration
from automator.core.outcome import StepError
from automator.expr.suggest import suggest
from automator.history import MINOR_DIGITS, VISIT_EVENTS, money_text
from automator.identity import PHONE, phone_of
from automator.loyalty.config import LoyaltyConfig
from automator.loyalty import programs
from automator.loyalty.ledger import Entry, account, balance, end_of
from automator.loyalty.terms import Program, spend_limit
from automator.loyalty.tiers import held
from automator.model import ENGINE, Effect, Entity, EntityRef, Event

_KOPECK = Decimal(1).scaleb(-MINOR_DIGITS)


def prepare_accrue(params: dict[str, Any], run: ActionRun) -> dict[str, Any]:
    """Complete `loyalty.accrue`: the client's program by default, the amount as exact decimal text, `expires`
    made a moment (from a duration such as 365d, a last day such as 2027-03-31, or a moment as it is)."""
    _program(params, run, "loyalty.accrue")
    params["amount"] = money_text(minor_units_rounded(params.get("amount"), "loyalty.accrue"))
    if params.get("expires") not in (None, ""):
        # The moment, once: what the effect records and the row keeps (365d from when it was decided).
        params["expires"] = expires_at(params["expires"], run).astimezone(run.ectx.tz).isoformat()
    return params


def prepare_spend(params: dict[str, Any], run: ActionRun) -> dict[str, Any]:
    """Complete `loyalty.spend`: the client's program by default, the amount as exact decimal text (whether the
    balance allows it is `spend`'s to say, knowing its own row)."""
    _program(params, run, "loyalty.spend")
    params["amount"] = money_text(minor_units_rounded(params.get("amount"), "loyalty.spend"))
    if params.get("check") not in (None, ""):
        params["check"] = money_text(minor_units_rounded(params["check"], "loyalty.spend"))
    return params


def prepare_set_tier(params: dict[str, Any], run: ActionRun) -> dict[str, Any]:
    """Complete `loyalty.set_tier`: the client's program by default; the tier must be one of the program's when it
    lists its tiers."""
    program = _program(params, run, "loyalty.set_tier")
    tier = str(params.get("tier") or "").strip()
    if not tier:
        raise StepError("loyalty.set_tier: `tier` is empty")
    tiers = tier_names(_config(run, "loyalty.set_tier").program(program))
    if tiers and tier not in tiers:
        hint = suggest(tier, tiers)
        raise StepError(f"loyalty.set_tier: program {program} has no tier {tier!r}"
                        + (f"; did you mean '{hint}'?" if hint else f" (it has {', '.join(tiers)})"))
    params["tier"] = tier
    return params


def accrue(effect: Effect, run: ActionRun) -> list[Event]:
    """Add the points: one `accrue` row, its id the effect's key, expiring when `expires` says."""
    params = effect.params
    amount = minor_units_rounded(params["amount"], "loyalty.accrue")
    expiry = expires_at(params["expires"], run) if params.get("expires") not in (None, "") else None
    run.keep([_row(effect, run, "accrue", amount, expiry, str(params.get("reason") or "Начисление баллов"))])
    return []


def spend(effect: Effect, run: ActionRun) -> list[Event]:
    """Take the points: one `spend` row, its id the effect's key; refused, naming the balance, when the client has
    fewer points alive now. The same event decided again finds its own row and takes nothing more."""
    client, program = str(effect.params["client"]), str(effect.params["program"])
    amount = minor_units_rounded(effect.params["amount"], "loyalty.spend")
    rows = [row for row in run.ledger_of(client) if row.id != effect.key]
    available = balance(rows, account("points", program)).available(run.now)
    if amount > available:
        raise StepError(f"loyalty.spend: client {client} has {money_text(available)} points of program {program} "
                        f"to spend, {money_text(amount)} asked")
    terms = _config(run, "loyalty.spend").program(program)
    if effect.params.get("check") not in (None, "") and isinstance(terms, Program):
        check = minor_units_rounded(effect.params["check"], "loyalty.spend")
        limit = spend_limit(terms, check, available)
        if amount > limit:
            raise StepError(f"loyalty.spend: points pay at most {terms.spend_cap} % of a check in program {program}: "
                            f"{money_text(limit)} of {money_text(check)}, {money_text(amount)} asked")
    run.keep([_row(effect, run, "spend", -amount, None, str(effect.params.get("reason") or "Списание баллов"))])
    return []


def set_tier(effect: Effect, run: ActionRun) -> list[Event]:
    """Set the tier: a `tier` row and `loyalty.tier_changed`, unless the client is at that tier already."""
    params = effect.params
    client, program, tier = str(params["client"]), str(params["program"]), str(params["tier"])
    tier_account = account("tier", program)
    previous = current_tier([row for row in run.ledger_of(client) if row.id != effect.key], program)
    if previous == tier:
        return []
    config = _config(run, "loyalty.set_tier")
    info = tier_info(config.program(program), tier)
    category = str(params.get("category") or info.get("category") or tier)
    detail = {"tier": tier, "from": previous, "category": category, "discount": info.get("discount")}
    row = _row(effect, run, "tier", 0, None, str(params.get("reason") or f"Уровень {tier}"))
    run.keep([replace(row, account=tier_account, detail=detail)])
    tiers = tier_names(config.program(program))
    direction = ("up" if tiers.index(tier) > tiers.index(previous) else "down") \
        if previous in tiers and tier in tiers else "set"
    data = {"program": program, "from": previous, "to": tier, "direction": direction,
            "discount": detail["discount"], "category": category}
    ref = EntityRef("client", client)
    return [Event(id=f"{effect.key}>loyalty.tier_changed", type="loyalty.tier_changed", at=run.now, entity=ref,
                  source=ENGINE, depth=effect.depth + 1, caused_by=effect.key, data=data)]


def minor_units_rounded(value: Any, what: str) -> int:
    """Roubles (decimal text, a whole number or a Decimal) as kopecks, rounded half up to the kopeck: "12.345" →
    1235. A float, a negative, zero or non-number amount is a StepError (money is exact text)."""
    if isinstance(value, bool) or isinstance(value, float) or value in (None, ""):
        raise StepError(f"{what}: amount {value!r} is not an amount: write decimal text such as \"150.00\"")
    try:
        exact = value if isinstance(value, Decimal) else Decimal(str(value).strip().replace(",", "."))
    except InvalidOperation:
        raise StepError(f"{what}: amount {value!r} is not an amount: write decimal text such as \"150.00\"") from None
    if not exact.is_finite() or exact <= 0:
        raise StepError(f"{what}: amount {value!r} must be more than zero")
    return int(exact.quantize(_KOPECK, rounding=ROUND_HALF_UP).scaleb(MINOR_DIGITS))


def expires_at(value: Any, run: ActionRun) -> datetime:
    """When accrued points lapse: after a duration from now (`365d`, `12mo`), at the end of a last day
    (`2027-03-31`: spendable through that day, in the project's time zone), or at a moment (ISO 8601)."""
    tz = run.ectx.tz
    text = str(value).strip()
    moment: datetime | None = None
    try:
        if len(text) == 10 and text[4] == "-":
            moment = end_of(date.fromisoformat(text), tz)
        elif "T" in text:
            found = datetime.fromisoformat(text)
            moment = found if found.tzinfo is not None else found.replace(tzinfo=tz)
        else:
            moment = _duration(text).add_to(run.now, tz)
    except ValueError as exc:
        raise StepError(f"loyalty.accrue: expires {text!r} is neither a duration (365d), a last day (2027-03-31) "
                        f"nor a moment: {exc}") from None
    if moment <= run.now:
        raise StepError(f"loyalty.accrue: expires {text!r} is not after now ({run.now.isoformat()})")
    return moment


@functools.lru_cache(maxsize=256)
def _duration(text: str) -> Duration:
    """A rule's `expires:` duration, parsed once (every accrual of a rule writes the same text)."""
    return parse_duration(text)


def current_tier(rows: list[Entry], program: str) -> str | None:
    """The tier the latest tier row of the program set, or None."""
    return held(rows, program)


def tier_names(program: Program | None) -> list[str]:
    """A program's tiers in their order, lowest first (none when it has no tiers)."""
    return [tier.name for tier in program.tiers.levels] if program is not None and program.tiers else []


def tier_info(program: Program | None, name: str) -> dict[str, Any]:
    """What a program says of one tier: its `category` and `discount` (decimal text, as the programs' own tier
    rows and events carry it)."""
    tier = program.tiers.get(name) if program is not None and program.tiers else None
    if tier is None:
        return {}
    return {"discount": str(tier.discount), **({"category": tier.category} if tier.category else {})}


def program_of(config: LoyaltyConfig, run: ActionRun, client: str) -> str | None:
    """A client's program, as the programs choose it (`automator.loyalty.programs.program_of`)."""
    fields = _client_fields(run, client)
    found = programs.program_of(config, run.segments(), Entity(EntityRef("client", client), fields or {}))
    return found.name if found is not None else None


def _program(params: dict[str, Any], run: ActionRun, what: str) -> str:
    """Fill in and check `client` (a person, or their phone) and `program` (default: the client's)."""
    config = _config(run, what)
    params["client"] = _person(str(params.get("client") or ""), run, what)
    program = str(params.get("program") or "") or program_of(config, run, params["client"])
    if not program:
        raise StepError(f"{what}: client {params['client']} is in no program (name one with `program:`, or mark "
                        "one `default: true` in loyalty.yaml)")
    if program not in config.programs:
        hint = suggest(program, config.programs)
        known = ", ".join(config.programs) or "none"
        raise StepError(f"{what}: loyalty.yaml has no program {program!r}"
                        + (f"; did you mean '{hint}'?" if hint else f" (it has {known})"))
    params["program"] = program
    return program


def _person(text: str, run: ActionRun, what: str) -> str:
    if _client_fields(run, text) is not None:
        return text
    phone = phone_of(text)
    found = run.client_of(PHONE, phone) if phone is not None else None
    if found is None:
        raise StepError(f"{what}: no client {text!r} is known (name a client's id or phone)")
    return found


def _client_fields(run: ActionRun, client: str) -> Mapping[str, Any] | None:
    """A client's fields: the run's client as the event leaves them (a first visit makes them), else as stored."""
    own = run.scope.get("client")
    if isinstance(own, Mapping) and str(own.get("id")) == client:
        return own
    entity = run.entity(EntityRef("client", client))
    return entity.fields if entity is not None else None


def _config(run: ActionRun, what: str) -> LoyaltyConfig:
    config = run.loyalty()
    if config is None:
        raise StepError(f"{what}: there is no loyalty.yaml in this project")
    return config


def _row(effect: Effect, run: ActionRun, kind: str, amount: int, expiry: datetime | None, reason: str) -> Entry:
    """A row made by an action: its id the effect's key; the run's event and rule its cause; the visit of that
    event, when it is one, so that a refund of the visit reverses it."""
    program = str(effect.params["program"])
    event_id = str(run.scope.get("event", {}).get("id") or "") if isinstance(run.scope.get("event"), Mapping) else ""
    card = effect.params.get("card_type")  # YCLIENTS' card type, kept so that the mirror tells that card
    return Entry(id=effect.key, client=str(effect.params["client"]), account=account("points", program), kind=kind,
                 amount=amount, at=run.now, expires_at=expiry, reason=reason, event=event_id, rule=effect.rule_id,
                 visit=_visit(run), detail={"card_type": card} if card not in (None, "") else {})


def _visit(run: ActionRun) -> str:
    """The run's visit as history names it (`<source>:<visit>`), when its event reports one."""
    event = run.scope.get("event")
    if not isinstance(event, Mapping) or event.get("type") not in VISIT_EVENTS or event.get("source") == ENGINE:
        return ""
    data = event.get("data")
    ident = data.get("visit") if isinstance(data, Mapping) else None
    return f"{event.get('source')}:{ident}" if ident not in (None, "") else ""
