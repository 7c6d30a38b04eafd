"""loyalty.yaml's `programs:` compiled (tiers, points, cashback, discounts, every Nth visit, referral)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from automator.config.context import CompileContext


def compile_programs(data: Any, ctx: CompileContext) -> dict[str, Any]:
    """`programs:` into name -> Program (the mechanics are built on their own branch: none yet)."""
    return {str(name): raw for name, raw in data.items()} if isinstance(data, Mapping) else {}
