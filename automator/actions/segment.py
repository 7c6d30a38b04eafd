"""`segment.recompute`, an action the engine performs itself, inside the core: it needs the project's own data."""
from __future__ import annotations

from automator.actions.spec import ActionRun
from automator.core.outcome import StepError
from automator.model import Effect, EntityRef, Event
from automator.segments import classify


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
    scores, name = classify(client, config, state.ectx)
    base = dict(id=effect.key, at=state.now, entity=ref, source="engine", depth=effect.depth + 1,
                caused_by=effect.key)
    events = [Event(type="client.updated", data={"segment": name, "rfm": scores}, **base)]  # type: ignore[arg-type]
    previous = client.get("segment")
    if name != previous:
        segment = config.get(name)
        data = {"from": previous, "to": name, "category": segment.category if segment else None,
                "loyalty": segment.loyalty if segment else None}
        events.append(Event(**{**base, "id": f"{effect.key}>segment.changed"}, type="segment.changed",  # type: ignore[arg-type]
                            data=data))
    return events
