"""`certificate.issue`, `certificate.redeem`, `abonement.issue`, `abonement.freeze`, `abonement.unfreeze`: actions
the engine performs itself on the product's ledger (automator/loyalty/certificates.py and abonements.py say what
each row means). Each row's id is the effect's key, so deciding the same event again adds nothing.

YCLIENTS has no API to issue a certificate or an abonement: they are the product's own. A freeze of an abonement of
a `synced` type (sold in the booking system loyalty.yaml's `sync:` names) is mirrored there as
`yclients.abonement_freeze` / `yclients.abonement_unfreeze` when that connector performs them.
"""
from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from automator.actions.spec import ActionRun
from automator.core.outcome import StepError
from automator.history import HistoryError, minor_units, money_text
from automator.loyalty import abonements, certificates
from automator.loyalty.config import LoyaltyConfig
from automator.loyalty.instrument_types import (CERTIFICATE, InstrumentError, given_last_day, lapse_moment,
                                                made_up_number)
from automator.model import Effect, EntityRef, Event

FREEZE_MIRROR = "yclients.abonement_freeze"
UNFREEZE_MIRROR = "yclients.abonement_unfreeze"


def _loyalty(action: str, run: ActionRun) -> LoyaltyConfig:
    config = run.loyalty()
    if config is None:
        raise StepError(f"{action}: there is no loyalty.yaml in this project")
    return config


def _kind(action: str, types: Mapping[str, Any], name: Any, key: str) -> Any:
    found = types.get(str(name))
    if found is None:
        hint = f"the types are {', '.join(types)}" if types else f"add one under `{key}:` in loyalty.yaml"
        raise StepError(f"{action}: unknown {key[:-1]} type {name!r} ({hint})")
    return found


def _cause(run: ActionRun) -> str:
    """The journal event the run's action was made for (a row names it)."""
    event = run.scope.get("event")
    return str(event.get("id") or "") if isinstance(event, Mapping) else ""


def issue_certificate(effect: Effect, run: ActionRun) -> list[Event]:
    """Issue a gift certificate to a client: its `issue` row, and `certificate.created` (the `certificate` entity
    that finds its holder by number; rules send the client its number)."""
    params, tz = effect.params, run.ectx.tz
    ctype = _kind(effect.action, _loyalty(effect.action, run).certificates, params.get("type"), "certificates")
    client = str(params["client"])
    number = str(params.get("number") or made_up_number(effect.key, ctype.prefix))
    try:
        nominal = certificates.nominal_of(ctype, params.get("nominal"))
        certificates.check_unused(run, number, client)
        last = given_last_day(params.get("expires"), run.now, ctype.expires, tz)
        expires_at = lapse_moment(last, tz)
        row = certificates.issue_row(ctype, client=client, number=number, nominal=nominal, expires_at=expires_at,
                                     at=run.now, row_id=effect.key, event=_cause(run), rule=effect.rule_id)
    except InstrumentError as exc:
        raise StepError(f"{effect.action}: {exc}") from None
    run.keep([row])
    data = {"client": client, "number": number, "certificate_type": ctype.name, "title": ctype.title,
            "nominal": money_text(nominal), "last_day": last.isoformat() if last else None,
            "expires_at": expires_at.isoformat() if expires_at else None}
    return [Event(id=f"{effect.key}>certificate.created", type="certificate.created", at=run.now,
                  entity=EntityRef(CERTIFICATE, number), source="engine", depth=effect.depth + 1,
                  caused_by=effect.key, data=data)]


def redeem_certificate(effect: Effect, run: ActionRun) -> list[Event]:
    """Pay with a gift certificate: a `spend` row on its holder's ledger, presented by the client the params name,
    else the run's, else its holder (one presenting another's certificate gets a `presented` row of their own);
    refused, failing the run, when it asks more than is left or the certificate has lapsed."""
    params = effect.params
    number = str(params["number"])
    try:
        amount = minor_units(params.get("amount"), "amount")
    except HistoryError as exc:
        raise StepError(f"{effect.action}: {exc}") from None
    scoped = run.scope.get("client")
    presenter = str(params.get("client") or (scoped.get("id") if isinstance(scoped, Mapping) else "") or "") \
        or certificates.holder_of(run, number) or ""
    try:
        row = certificates.spend_row(run, number, amount, presenter=presenter, at=run.now, row_id=effect.key,
                                     event=_cause(run), rule=effect.rule_id)
    except InstrumentError as exc:
        raise StepError(f"{effect.action}: {exc}") from None
    run.keep([r for r in (row, certificates.presented_row(row)) if r is not None])
    return []


def issue_abonement(effect: Effect, run: ActionRun) -> list[Event]:
    """Issue an abonement to a client: its `issue` row (visits, services, last day from the type unless the params
    say otherwise) and the timers of its expiry and of the notice before it."""
    params, tz = effect.params, run.ectx.tz
    config = _loyalty(effect.action, run)
    atype = _kind(effect.action, config.abonements, params.get("type"), "abonements")
    client = str(params["client"])
    number = str(params.get("number") or made_up_number(effect.key, atype.prefix))
    rows = run.ledger_of(client)
    if abonements.fold(rows, number) is not None:
        raise StepError(f"{effect.action}: abonement {number} already exists: give another `number:`, or none")
    given = params.get("services") or ()
    services = [str(s) for s in ([given] if isinstance(given, str) else given)]
    try:
        visits = int(str(params.get("visits") or atype.visits).strip())
    except ValueError:
        raise StepError(f"{effect.action}: visits {params.get('visits')!r} is not a whole number") from None
    try:
        row = abonements.issue_row(atype, client=client, number=number, visits=visits,
                                   services=services or atype.services, categories=() if services else
                                   atype.categories, last=given_last_day(params.get("expires"), run.now,
                                                                         atype.expires, tz),
                                   at=run.now, row_id=effect.key, event=_cause(run), rule=effect.rule_id)
    except InstrumentError as exc:
        raise StepError(f"{effect.action}: {exc}") from None
    run.keep([row])
    issued = abonements.fold([*rows, row], number)
    assert issued is not None
    run.timers.extend(abonements.timers(issued, now=run.now, notice=config.notice, tz=tz))
    return []


def freeze_abonement(effect: Effect, run: ActionRun) -> list[Event]:
    """Freeze a client's abonement from today through `until`: a `freeze` row, its expiry moved by the days
    frozen (new timers: the old ones find nothing to do), mirrored to the booking system it was sold in."""
    params = effect.params
    try:
        until = date.fromisoformat(str(params.get("until")))
    except ValueError:
        raise StepError(f"{effect.action}: until {params.get('until')!r} is not a date such as 2026-04-15") from None
    return _moved(effect, run, lambda ab: abonements.freeze_row(ab, until, at=run.now, tz=run.ectx.tz,
                                                                row_id=effect.key, event=_cause(run),
                                                                rule=effect.rule_id),
                  FREEZE_MIRROR, {"till": until.isoformat()})


def unfreeze_abonement(effect: Effect, run: ActionRun) -> list[Event]:
    """Lift the freeze of a client's abonement today: an `unfreeze` row giving back the days not frozen."""
    return _moved(effect, run, lambda ab: abonements.unfreeze_row(ab, at=run.now, tz=run.ectx.tz, row_id=effect.key,
                                                                  event=_cause(run), rule=effect.rule_id),
                  UNFREEZE_MIRROR, {})


def _moved(effect: Effect, run: ActionRun, make: Any, mirror: str, extra: dict[str, Any]) -> list[Event]:
    """A freeze or an unfreeze: its row, the timers for the abonement's new last day, and its mirror."""
    config = _loyalty(effect.action, run)
    client, number = str(effect.params["client"]), str(effect.params["number"])
    rows = run.ledger_of(client)
    ab = abonements.fold(rows, number)
    if ab is None:
        raise StepError(f"{effect.action}: client {client} has no abonement {number}")
    try:
        row = make(ab)
    except InstrumentError as exc:
        raise StepError(f"{effect.action}: {exc}") from None
    run.keep([row])
    moved = abonements.fold([*rows, row], number)
    assert moved is not None
    run.timers.extend(abonements.timers(moved, now=run.now, notice=config.notice, tz=run.ectx.tz))
    connector = config.mirrors(mirror)
    if connector is not None and ab.issued.detail.get("synced"):
        run.effects.append(Effect(key=f"{effect.key}>sync", run_id=effect.run_id, rule_id=effect.rule_id,
                                  action=mirror, connector=connector, params={"abonement": number, **extra},
                                  delivery="at_least_once", at=run.now, entity=effect.entity, depth=effect.depth))
    return []
