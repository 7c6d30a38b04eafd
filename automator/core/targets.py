"""Fills an action's default target from the run's scope and checks what the target stage requires."""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from automator.core.outcome import StepError
from automator.model import EntityRef
from automator.steps.action import DEFAULT_TARGET

if TYPE_CHECKING:
    from automator.core.runner import RunState


def prepare(action: str, params: dict[str, Any], state: RunState) -> dict[str, Any]:
    """Complete rendered params: the deal, booking or client a step works on defaults to the one in scope."""

    target = DEFAULT_TARGET.get(action)
    if target and params.get(target) in (None, ""):
        fields = state.scope.get(target)
        if not isinstance(fields, Mapping) or fields.get("id") is None:
            raise StepError(f"{action}: no {target} in this run; name one with `{target}:`")
        params[target] = str(fields["id"])
    if action == "deal.create" and "contact" not in params:
        client = state.scope.get("client")
        if isinstance(client, Mapping) and client.get("id") is not None:
            params["contact"] = str(client["id"])
    if action == "deal.move":
        _check_move(params, state)
    return params


def _check_move(params: dict[str, Any], state: RunState) -> None:
    """A stage is only entered with the fields it requires (Bitrix24 refuses such a move too)."""

    deal = state.scope.get("deal") if isinstance(state.scope.get("deal"), Mapping) else {}
    if str(deal.get("id")) != str(params.get("deal")):
        deal = _lookup(state, str(params["deal"]))
    name = params.get("pipeline") or deal.get("pipeline") or state.rule_pipeline()
    pipeline = state.project.pipelines.get(str(name)) if name else None
    if pipeline is None:
        if name:
            raise StepError(f"deal.move: unknown pipeline {name!r}")
        return
    params.setdefault("pipeline", pipeline.name)
    stage = pipeline.stages.get(str(params["stage"]))
    if stage is None:
        raise StepError(f"deal.move: pipeline {pipeline.name!r} has no stage {params['stage']!r}")
    have = {**deal, **(params.get("fields") or {})}
    missing = [f for f in stage.requires if have.get(f) in (None, "")]
    if missing:
        raise StepError(f"deal.move: stage {stage.name!r} requires {', '.join(missing)}; the deal has no "
                        + ", ".join(missing))


def _lookup(state: RunState, deal_id: str) -> Mapping[str, Any]:
    entity = state.snapshot.entity(EntityRef("deal", deal_id))
    return entity.fields if entity else {}
