"""`segment.recompute`, an action the engine performs itself, inside the core: it needs the project's own data
(the client's visits in the window and the kept cut points), and rescores as a visit does (automator.client_segment)."""
from __future__ import annotations

from automator.actions.spec import ActionRun
from automator.client_segment import Unscorable, changed_event, rescore
from automator.core.outcome import StepError
from automator.model import ENGINE, Effect, EntityRef, Event


def perform(effect: Effect, state: ActionRun) -> list[Event]:
    """Recompute a client's RFM segment: `client.updated` with the scores, and `segment.changed` when it moved."""
    config = state.segments()
    if config is None:
        raise StepError("segment.recompute: there is no segments.yaml in this project")
    ref = EntityRef("client", str(effect.params["client"]))
    client = state.scope.get("client") if str((state.scope.get("client") or {}).get("id")) == ref.id else None
    if client is None:
        entity = state.entity(ref)
        if entity is None:
            raise StepError(f"segment.recompute: client {ref.id} is not known")
        client = {**entity.fields, "id": ref.id}
    try:
        scored = rescore(config, state.history(), ref.id, state.now, state.ectx.tz, state.ectx)
    except Unscorable as exc:
        raise StepError(f"segment.recompute: {exc}") from None
    events = [Event(id=effect.key, at=state.now, entity=ref, source=ENGINE, depth=effect.depth + 1,
                    caused_by=effect.key, type="client.updated", data={"segment": scored.segment, "rfm": scored.rfm})]
    changed = changed_event(config, client.get("segment"), scored, event_id=effect.key, client=ref.id, now=state.now,
                            depth=effect.depth + 1, caused_by=effect.key)
    return events + ([changed] if changed is not None else [])
