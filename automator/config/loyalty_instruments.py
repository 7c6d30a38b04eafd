"""loyalty.yaml's `certificates:` and `abonements:` compiled (gift certificate and abonement types)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from automator.config.context import CompileContext


def compile_certificates(data: Any, ctx: CompileContext) -> dict[str, Any]:
    """`certificates:` into type name -> CertificateType (built on their own branch: none yet)."""
    return {str(name): raw for name, raw in data.items()} if isinstance(data, Mapping) else {}


def compile_abonements(data: Any, ctx: CompileContext) -> dict[str, Any]:
    """`abonements:` into type name -> AbonementType (built on their own branch: none yet)."""
    return {str(name): raw for name, raw in data.items()} if isinstance(data, Mapping) else {}
