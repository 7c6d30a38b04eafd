"""`<kind>.<verb>: params`: render params, check them against the action's schema, plan an Effect."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from automator.actions import CANONICAL, ENGINE_ACTIONS, ActionSpec, deal_fields
from automator.actions.people import to_system
from automator.checks import CheckContext, literal
from automator.core.scope import learn, sendable
from automator.core.outcome import Outcome, StepError
from automator.core.state import RunState
from automator.config.context import CompileContext, did_you_mean
from automator.config.settings import choose_connector
from automator.model import ENGINE, ActionStep, Effect


def compile(raw: Mapping[str, Any], path: Sequence[str | int], ctx: CompileContext) -> ActionStep | None:
    """Check the action exists, its connector can perform it, its params fit its schema and its stages exist."""
    names = [k for k in raw if k != "via"]
    if len(names) != 1:
        ctx.error(path, "an action step has exactly one action key (plus an optional `via`), got "
                        + (", ".join(repr(n) for n in names) or "none"))
        return None
    name = str(names[0])
    params = raw[name] if raw[name] is not None else {}
    reported = len(ctx.problems)
    known = known_actions(ctx)
    if name not in known and name in CANONICAL:  # a real action, but nothing configured performs it
        ctx.error((*path, name), f"no configured connector can perform '{name}'",
                  "add a connector that performs it under `connectors:` in automator.yaml "
                  "(`automator connectors` lists them)", key=True)
        return None
    if name not in known:
        ctx.error((*path, name), f"unknown action '{name}'", did_you_mean(name, known) or
                  "actions are deal.create, deal.move, task.create, sms.send, … (see `automator connectors`)",
                  key=True)
        return None
    via = raw.get("via")
    if via is not None and name in ENGINE_ACTIONS:
        # Performed by the product itself: a `via:` would be ignored, and the author believe the system was told.
        ctx.error((*path, "via"), f"'{name}' is performed by automator itself: `via:` does not apply",
                  "loyalty.yaml's `sync:` names the booking system the ledger's moves are mirrored to"
                  if name.split(".")[0] in ("loyalty", "certificate", "abonement") else "remove `via:`")
        via = None
    elif via is not None and ctx.config is not None and not ctx.is_broken((*path, "via")):
        connector = ctx.config.connectors.get(via)
        if connector is None:
            ctx.error((*path, "via"), f"unknown connector '{via}'", did_you_mean(str(via), ctx.config.connectors)
                      or "define it under `connectors:` in automator.yaml")
        elif name not in connector.actions:
            ctx.error((*path, "via"), f"connector '{via}' ({connector.type}) cannot perform '{name}'")
    if isinstance(params, Mapping):
        _check_stages(name, params, (*path, name), ctx)
        _check_channel(name, params, (*path, name), ctx)
        _check_instrument_type(name, params, (*path, name), ctx)
    _check_no_env(params, (*path, name), ctx)
    ctx.deal_fields |= deal_fields(name, params)
    compiled = ctx.templates(params, (*path, name))
    # One mistake, one problem: a step already reported (its `via:`, a stage, a template) is not asked about again;
    # a param the schema has reported is left out below.
    if len(ctx.problems) == reported and isinstance(compiled, Mapping):
        _check_by_connector(name, compiled, via, (*path, name), ctx)
    return ActionStep(action=name, params=compiled, via=via, location=ctx.location(path))


def known_actions(ctx: CompileContext) -> dict[str, str]:
    """Action name -> params schema id, for every action some configured connector (or the engine) performs."""
    found = {name: f"actions/{name}.json" for name in ENGINE_ACTIONS}
    if ctx.config is not None:
        for connector in ctx.config.connectors.values():
            for name, spec in connector.actions.items():
                found[name] = spec.schema_id
    return found


def _check_by_connector(name: str, params: Mapping[str, Any], via: str | None, path: tuple[Any, ...],
                        ctx: CompileContext) -> None:
    """Ask the connector the step goes to what it would refuse in these params (`Connector.check_params`), and
    report each answer at the param it names."""
    if ctx.config is None or name in ENGINE_ACTIONS:
        return
    connectors = ctx.config.connectors
    for target in _destinations(name, params, via, ctx):
        conf = connectors.get(target)
        cls = ctx.types.get(conf.type) if conf is not None else None
        if conf is None or cls is None:
            continue
        context = CheckContext(target, {n: c.type for n, c in connectors.items()}, ctx.pipelines,
                               ctx.config.catalogue, ctx.rule_kind, ctx.rule_sources, ctx.rule_pipeline,
                               ctx.config.settings)
        try:
            found = cls.check_params(name, params, conf.options, context)
        except Exception as exc:  # a broken third-party check must not hide the other problems
            ctx.error(path, f"connector '{target}' ({conf.type}) failed to check '{name}': "
                            f"{type(exc).__name__}: {exc}", "report it to the connector's authors", key=True)
            continue
        for problem in found:
            where = (*path, *problem.path)
            if problem.path and ctx.is_broken(where):
                continue  # the schema has said what is wrong there
            reported = ctx.doc.problem(where if problem.path else path, problem.message, problem.hint,
                                       key=problem.key or not problem.path)
            ctx.problems.append(replace(reported, severity=problem.severity))


def _destinations(name: str, params: Mapping[str, Any], via: str | None, ctx: CompileContext) -> list[str]:
    """The connector the daemon will send the step to, chosen as it chooses (`choose_connector`). A deal action
    goes where the deal's pipeline says: a literal `pipeline:` or the trigger's decide it; when only the run's deal
    can, the step is checked only if every pipeline would send it to the same connector."""
    assert ctx.config is not None
    connectors, pipelines = ctx.config.connectors, ctx.pipelines
    pipeline = literal(params.get("pipeline"))
    if name.startswith("deal.") and not via and pipeline is None:
        pipeline = ctx.rule_pipeline
    if via or not name.startswith("deal.") or isinstance(pipeline, str):
        found = choose_connector(name, via, pipeline if isinstance(pipeline, str) else None, pipelines, connectors)
        return [found] if found else []
    possible = {choose_connector(name, None, p, pipelines, connectors) for p in (*pipelines, None)}
    only = next(iter(possible)) if len(possible) == 1 else None
    return [only] if only is not None else []


def _check_stages(name: str, params: Mapping[str, Any], path: tuple[Any, ...], ctx: CompileContext) -> None:
    if name not in ("deal.create", "deal.move"):
        return
    pipeline_name = params.get("pipeline")
    pipeline = None
    if pipeline_name is None and name == "deal.move" and ctx.rule_pipeline is not None:
        # The trigger's pipeline: an unknown one is reported there, once, not at every deal.move.
        pipeline = ctx.pipelines.get(str(ctx.rule_pipeline))
    elif isinstance(pipeline_name, str) and "{{" not in pipeline_name and not ctx.is_broken((*path, "pipeline")):
        pipeline = ctx.pipeline(pipeline_name, (*path, "pipeline"))
        if pipeline is None:
            return
    if "stage" in params and not ctx.is_broken((*path, "stage")):
        ctx.stage(pipeline, params["stage"], (*path, "stage"))


def _check_channel(name: str, params: Mapping[str, Any], path: tuple[Any, ...], ctx: CompileContext) -> None:
    """set_source names a channel the reports know: a name under automator.yaml's `channels:` (or a built-in one)."""
    channel = params.get("channel")
    if name != "set_source" or ctx.config is None or not isinstance(channel, str) or "{{" in channel \
            or ctx.is_broken((*path, "channel")):
        return
    known = ctx.config.channels.names()
    if channel not in known:
        ctx.error((*path, "channel"), f"unknown channel '{channel}'",
                  did_you_mean(channel, known) or "the channels are " + ", ".join(known)
                  + " (`channels:` in automator.yaml names them)")


# The actions that sell a certificate or an abonement, and the part of loyalty.yaml their `type:` names.
INSTRUMENT_TYPES = {"certificate.issue": "certificates", "abonement.issue": "abonements"}


def _check_instrument_type(name: str, params: Mapping[str, Any], path: tuple[Any, ...], ctx: CompileContext) -> None:
    """certificate.issue and abonement.issue name a type of loyalty.yaml: a misspelt one is found now, not when a
    client's sale fails."""
    key = INSTRUMENT_TYPES.get(name)
    kind = params.get("type")
    if key is None or not isinstance(kind, str) or "{{" in kind or ctx.is_broken((*path, "type")):
        return
    if ctx.loyalty is None:
        ctx.error((*path, "type"), f"{name} needs loyalty.yaml, and there is none",
                  f"add loyalty.yaml beside automator.yaml with `{key}:` naming {kind}")
        return
    known = getattr(ctx.loyalty, key)
    if kind not in known:
        ctx.error((*path, "type"), f"unknown {key[:-1]} type '{kind}'",
                  did_you_mean(kind, known) or (f"the types are {', '.join(known)}" if known else
                                                f"add it under `{key}:` in loyalty.yaml"))


def _check_no_env(value: Any, path: tuple[Any, ...], ctx: CompileContext) -> None:
    """Refuse `${env:NAME}` in an action's params. Params are rendered with webhook data and sent out as they
    are: the environment is read in automator.yaml's connector settings only, once, when the daemon starts, so
    that no rule, and nothing a webhook carries, can name a variable and have it sent (and stored with the
    effect)."""
    if isinstance(value, str):
        if "${env:" in value:
            ctx.error(path, "`${env:…}` is not read in a rule: a rule's params are sent as written",
                      "put the secret in the connector's settings in automator.yaml (the http connector: "
                      "`headers: {Authorization: \"Bearer ${env:API_TOKEN}\"}`) and call it with `via:`")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _check_no_env(item, (*path, key), ctx)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_no_env(item, (*path, index), ctx)


def execute(step: ActionStep, path: str, state: RunState) -> Outcome:
    """Render the params, fill the default target, resolve the connector and plan the Effect."""
    params = sendable(state.render(step.params), state.ectx.tz)
    if not isinstance(params, dict):
        params = {}
    canonical = CANONICAL.get(step.action)
    if canonical is not None:
        params = prepare(canonical, params, state)
    if state.project.schemas is not None:
        errors = state.project.schemas.errors(state.project.action_schema_id(step.action), params)
        if errors:
            raise StepError(f"{step.action}: " + "; ".join(errors))
    perform = canonical.perform if canonical is not None else None
    connector = ENGINE if perform is not None else state.project.connector_for(step.action, params, step.via,
                                                                              state.scope)
    if canonical is not None and connector in state.project.config.systems:
        # Checked as the rule wrote them above; sent as the system knows the persons they name.
        params = to_system(canonical, params, connector, state)
    spec = canonical or state.project.action_spec(step.action)
    effect = Effect(key=f"{state.run.id}/{path}", run_id=state.run.id, rule_id=state.rule.id, action=step.action,
                    connector=connector, params=params, delivery=spec.delivery if spec else "at_least_once",
                    at=state.now, entity=state.run.entity, depth=state.run.depth)
    state.record(path, "action", step.action, params)
    if perform is not None:
        # Performed first: an action the engine refuses (a spending over the balance) fails the run and leaves no
        # effect recorded as done.
        events = perform(effect, state)
        state.events.extend(events)
        learn(state.scope, events, state.project)
    state.effects.append(effect)
    return None


def prepare(spec: ActionSpec, params: dict[str, Any], state: RunState) -> dict[str, Any]:
    """Complete rendered params: the deal, booking or client a step works on defaults to the one in scope; then
    the action's own hook checks or completes them."""
    target = spec.target
    if target and params.get(target) in (None, ""):
        fields = state.scope.get(target)
        if not isinstance(fields, Mapping) or fields.get("id") is None:
            raise StepError(f"{spec.name}: no {target} in this run; name one with `{target}:`")
        params[target] = str(fields["id"])
    return spec.prepare(params, state) if spec.prepare is not None else params
