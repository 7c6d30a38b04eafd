"""loyalty.yaml compiled into a LoyaltyConfig: the top level here, the programs in config/loyalty_programs.py, the
certificate and abonement types in config/loyalty_instruments.py."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from automator.checks import CheckContext
from automator.config.context import CompileContext, did_you_mean
from automator.config.loyalty_instruments import compile_abonements, compile_certificates
from automator.config.loyalty_programs import compile_programs
from automator.loyalty.config import DEFAULT_NOTICE, LoyaltyConfig


def compile_loyalty(data: Any, ctx: CompileContext) -> LoyaltyConfig | None:
    """loyalty.yaml (already schema-checked) into a LoyaltyConfig; each problem is reported at its file:line:col."""
    if not isinstance(data, Mapping):
        return None
    sync = data.get("sync")
    if isinstance(sync, str) and ctx.config is not None and sync not in ctx.config.connectors:
        ctx.error(("sync",), f"unknown connector '{sync}'", did_you_mean(sync, ctx.config.connectors)
                  or "name a connector defined under `connectors:` in automator.yaml")
    notice = ctx.duration(data["notice"], ("notice",)) if "notice" in data else None
    loyalty = LoyaltyConfig(programs=compile_programs(data.get("programs") or {}, ctx),
                         certificates=compile_certificates(data.get("certificates") or {}, ctx),
                         abonements=compile_abonements(data.get("abonements") or {}, ctx),
                         sync=sync if isinstance(sync, str) else None,
                         sync_actions=frozenset(ctx.config.connectors[sync].actions)
                         if isinstance(sync, str) and ctx.config is not None and sync in ctx.config.connectors
                         else frozenset(),
                         notice=notice.approx() if notice is not None else DEFAULT_NOTICE)
    _check_sync(loyalty, data, ctx)
    return loyalty


def _check_sync(loyalty: LoyaltyConfig, data: Mapping[str, Any], ctx: CompileContext) -> None:
    """Ask the `sync:` connector what it would refuse of the mirror it is to be sent (`Connector.check_params`):
    a points move (its settings: a card type), and each tier's category (declared, in a group). Each answer is
    reported where loyalty.yaml says what is sent: the tier's category, or `sync:`."""
    conf = ctx.config.connectors.get(loyalty.sync) if ctx.config is not None and loyalty.sync else None
    cls = ctx.types.get(conf.type) if conf is not None else None
    if conf is None or cls is None or ctx.config is None:
        return
    context = CheckContext(str(loyalty.sync), {n: c.type for n, c in ctx.config.connectors.items()}, ctx.pipelines,
                           ctx.config.catalogue, settings=ctx.config.settings)
    asks: list[tuple[tuple[str | int, ...], str, dict[str, Any]]] = []
    if "loyalty.accrue" in conf.actions and any(p.points or p.cashback or p.referral
                                                 for p in loyalty.programs.values()):
        asks.append((("sync",), "loyalty.accrue", {"amount": "1.00", "reason": "mirror"}))
    for name, program in loyalty.programs.items():
        if program.tiers is None or "loyalty.set_tier" not in conf.actions:
            continue
        levels = (((data.get("programs") or {}).get(name) or {}).get("tiers") or {}).get("levels") or {}
        for tier in program.tiers.levels:
            path: tuple[str | int, ...] = ("programs", name, "tiers", "levels", tier.name)
            asks.append(((*path, "category") if "category" in (levels.get(tier.name) or {}) else path,
                         "loyalty.set_tier", {"tier": tier.name, "category": tier.category or tier.name}))
    for path, action, params in asks:
        try:
            found = cls.check_params(action, params, conf.options, context)
        except Exception as exc:  # a broken third-party check must not hide the other problems
            ctx.error(("sync",), f"connector '{loyalty.sync}' ({conf.type}) failed to check {action}: "
                                 f"{type(exc).__name__}: {exc}", "report it to the connector's authors")
            continue
        for problem in found:
            reported = ctx.doc.problem(path, f"connector '{loyalty.sync}' mirrors {action}: {problem.message}",
                                       problem.hint)
            ctx.problems.append(replace(reported, severity=problem.severity))
