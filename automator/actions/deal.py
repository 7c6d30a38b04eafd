"""The deal actions' hooks: what they set (their echo, the fields a stage's `requires:` counts), and the fields
the target stage of a move requires."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from automator.actions.spec import ActionRun
from automator.core.outcome import StepError
from automator.history import money_of
from automator.model import EntityRef


def fields_param(params: Mapping[str, Any]) -> set[str]:
    """The deal fields a deal action sets through its `fields:` param."""
    return set(params.get("fields") or {}) if isinstance(params.get("fields"), Mapping) else set()


def created_fields(params: Mapping[str, Any]) -> set[str]:
    """The fields `deal.create` sets: its `fields:`, every other param but pipeline and stage, and the client."""
    fields = fields_param(params)
    fields |= {str(k) for k in params if k not in ("fields", "pipeline", "stage")}
    fields |= {"client"} if "contact" in params else set()
    return fields


def move_echo(params: Mapping[str, Any]) -> dict[str, Any]:
    """What `deal.move` sets: the stage, and the pipeline when it names one."""
    return {"stage": params["stage"], **({"pipeline": params["pipeline"]} if params.get("pipeline") else {})}


def update_echo(params: Mapping[str, Any]) -> dict[str, Any] | None:
    """What `deal.update` sets: its `fields:`, an `amount` as the exact decimal text the CRMs report it in
    (`amount: 3500` comes back as "3500.00")."""
    if not isinstance(params.get("fields"), Mapping):
        return None
    fields = dict(params["fields"])
    amount = money_of(fields.get("amount"))
    if amount is not None:
        fields["amount"] = amount
    return fields


def check_move(params: dict[str, Any], run: ActionRun) -> dict[str, Any]:
    """A stage is only entered with the fields it requires (Bitrix24 refuses such a move too)."""

    in_scope = run.scope.get("deal")
    deal: Mapping[str, Any] = in_scope if isinstance(in_scope, Mapping) else {}
    if str(deal.get("id")) != str(params.get("deal")):
        entity = run.entity(EntityRef("deal", str(params["deal"])))
        deal = entity.fields if entity else {}
    name = params.get("pipeline") or deal.get("pipeline") or run.rule_pipeline()
    pipeline = run.pipeline(str(name)) if name else None
    if pipeline is None:
        if name:
            raise StepError(f"deal.move: unknown pipeline {name!r}")
        return params
    params.setdefault("pipeline", pipeline.name)
    stage = pipeline.stages.get(str(params["stage"]))
    if stage is None:
        raise StepError(f"deal.move: pipeline {pipeline.name!r} has no stage {params['stage']!r}")
    have = {**deal, **(params.get("fields") or {})}
    missing = [f for f in stage.requires if have.get(f) in (None, "")]
    if missing:
        raise StepError(f"deal.move: stage {stage.name!r} requires {', '.join(missing)}; the deal has no "
                        + ", ".join(missing))
    return params
