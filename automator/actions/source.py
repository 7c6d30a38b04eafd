"""`set_source`, an action the engine performs itself: a rule says (or corrects) where a deal, a lead or a client
came from, and the reports count it there (automator/facts.py reads the event it emits)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from automator.actions.spec import ActionRun
from automator.core.outcome import StepError
from automator.facts import TOUCH_FIELD
from automator.model import Effect, EntityRef, Event

TARGETS = ("deal", "lead", "client")


def target(params: dict[str, Any], run: ActionRun) -> dict[str, Any]:
    """The record whose source is set: the one the params name (`deal:`, `lead:` or `client:`), else the run's
    deal, else the lead its event reports (`lead.created`: the lead's connector with it), else the run's client."""
    channels = run.channels()
    if channels.get(str(params.get("channel"))) is None:
        raise StepError(f"set_source: unknown channel {params.get('channel')!r} (the channels are "
                        f"{', '.join(channels.names())})")
    named = [name for name in TARGETS if params.get(name) not in (None, "")]
    if len(named) > 1:
        raise StepError(f"set_source: name one record, not {' and '.join(named)}")
    params.setdefault("touch", "both")
    if named:
        return params
    event = run.scope.get("event")
    deal = run.scope.get("deal")
    if isinstance(deal, Mapping) and deal.get("id") is not None:
        params["deal"] = str(deal["id"])
    elif isinstance(event, Mapping) and str(event.get("type", "")).startswith("lead.") \
            and event.get("data", {}).get("lead_id") not in (None, ""):
        params["lead"] = str(event["data"]["lead_id"])
        params["connector"] = str(event.get("source") or "")
    elif isinstance(run.scope.get("client"), Mapping) and run.scope["client"].get("id") is not None:
        params["client"] = str(run.scope["client"]["id"])
    else:
        raise StepError("set_source: no deal, lead or client in this run; name one with `deal:`, `lead:` or "
                        "`client:`")
    return params


def perform(effect: Effect, run: ActionRun) -> list[Event]:
    """The record's `<kind>.updated` with `channel`, `campaign` and the touch corrected: the reports' tables take
    it as they take any event (a deal's first and last touch, a client's first channel)."""
    params = effect.params
    data: dict[str, Any] = {"channel": params["channel"], TOUCH_FIELD: params.get("touch") or "both"}
    if params.get("campaign") not in (None, ""):
        data["campaign"] = str(params["campaign"])
    base: dict[str, Any] = dict(id=effect.key, at=run.now, source="engine", depth=effect.depth + 1,
                                caused_by=effect.key, echo_of=effect.rule_id)
    if params.get("lead") not in (None, ""):
        data.update(lead_id=str(params["lead"]), connector=str(params.get("connector") or ""))
        return [Event(type="lead.updated", data=data, **base)]
    kind = "deal" if params.get("deal") not in (None, "") else "client"
    return [Event(type=f"{kind}.updated", entity=EntityRef(kind, str(params[kind])), data=data, **base)]
