"""`loyalty.grant_discount`, performed by the engine on the product's ledger: a time-limited discount ("−20 % for
14 days") a rule grants a client in a loyalty program, with `loyalty.discount_granted` for the rules that tell
them."""
from __future__ import annotations

from decimal import Decimal, InvalidOperation

from automator.actions.spec import ActionRun
from automator.clock import parse_duration
from automator.core.outcome import StepError
from automator.history import moment_text
from automator.loyalty import made
from automator.loyalty.programs import program_of
from automator.loyalty.rewards import DISCOUNT_GRANTED, discount_grant
from automator.loyalty.terms import end_of_day_after
from automator.model import Effect, EntityRef, Event

ACTION = "loyalty.grant_discount"


def perform(effect: Effect, state: ActionRun) -> list[Event]:
    """A `grant` row on the client's `discount:<program>` (its id the effect's key: performed again, it is kept
    once) lasting to the end of the day `for` after now, and `loyalty.discount_granted`."""
    config = state.loyalty()
    if config is None:
        raise StepError(f"{ACTION}: there is no loyalty.yaml in this project")
    params = effect.params
    client = str(params["client"])
    named = params.get("program")
    program = config.program(str(named)) if named else program_of(config, state.segments(),
                                                                  state.entity(EntityRef("client", client)))
    if program is None:
        raise StepError(f"{ACTION}: " + (f"no program {named!r} in loyalty.yaml" if named else
                                         f"client {client} is in no loyalty program: name one with `program:`"))
    try:
        percent = Decimal(str(params["percent"]))
    except InvalidOperation:
        raise StepError(f"{ACTION}: percent {params['percent']!r} is not a number") from None
    if not Decimal(0) < percent <= Decimal(100):
        raise StepError(f"{ACTION}: percent {percent} is not between 0 and 100")
    try:
        lasts = parse_duration(params["for"])
    except (ValueError, TypeError) as exc:
        raise StepError(f"{ACTION}: for {params['for']!r}: {exc}") from None
    until = end_of_day_after(state.now, lasts, state.ectx.tz)
    cause = Event(id=effect.key, type=ACTION, at=state.now, entity=EntityRef("client", client), source="engine",
                  depth=effect.depth)
    state.keep([discount_grant(program.name, cause, effect.key, client, percent, until, state.now,
                               str(params.get("reason") or "rule"))])
    return [made.event(cause, DISCOUNT_GRANTED, client, state.now,
                       {"program": program.name, "percent": str(percent), "until": moment_text(until),
                        "why": str(params.get("reason") or "rule")})]
