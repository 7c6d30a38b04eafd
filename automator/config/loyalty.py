"""loyalty.yaml compiled into a LoyaltyConfig: the top level here, the programs in config/loyalty_programs.py, the
certificate and abonement types in config/loyalty_instruments.py."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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
    return LoyaltyConfig(programs=compile_programs(data.get("programs") or {}, ctx),
                         certificates=compile_certificates(data.get("certificates") or {}, ctx),
                         abonements=compile_abonements(data.get("abonements") or {}, ctx),
                         sync=sync if isinstance(sync, str) else None,
                         sync_actions=frozenset(ctx.config.connectors[sync].actions)
                         if isinstance(sync, str) and ctx.config is not None and sync in ctx.config.connectors
                         else frozenset(),
                         notice=notice.approx() if notice is not None else DEFAULT_NOTICE)
