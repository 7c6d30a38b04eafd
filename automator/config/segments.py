"""segments.yaml compiled into a SegmentsConfig: thresholds checked, each segment's `when` compiled over r, f, m."""
from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from automator.config.context import CompileContext
from automator.segments import RFM_NAMES, Segment, SegmentsConfig


def compile_segments(data: Any, ctx: CompileContext) -> SegmentsConfig | None:
    """segments.yaml (already schema-checked) into a SegmentsConfig; `when` is compiled over r, f and m."""
    if not isinstance(data, Mapping):
        return None
    rfm_raw = data.get("rfm") or {}
    segments = []
    for name, raw in (data.get("segments") or {}).items():
        if not isinstance(raw, Mapping):
            continue
        expr = ctx.expr(raw.get("when", "true"), ("segments", name, "when"), RFM_NAMES)
        if expr is not None:
            segments.append(Segment(name=str(name), when=expr, category=raw.get("category"),
                                    loyalty=raw.get("loyalty"), title=str(raw.get("title") or "")))
    window = ctx.duration(rfm_raw["window"], ("rfm", "window")) if "window" in rfm_raw else None
    default = ctx.duration(data["default_recency"], ("default_recency",)) if "default_recency" in data else None
    for key, ascending in (("recency", True), ("frequency", False), ("monetary", False)):
        values = list(rfm_raw.get(key) or [])
        if values != sorted(values, reverse=not ascending):
            ctx.error(("rfm", key), f"rfm.{key} thresholds must be in {'ascending' if ascending else 'descending'}"
                                    " order")
    return SegmentsConfig(recency=tuple(rfm_raw.get("recency") or (14, 30, 60, 120)),
                          frequency=tuple(rfm_raw.get("frequency") or (8, 5, 3, 2)),
                          monetary=tuple(rfm_raw.get("monetary") or (50000, 20000, 10000, 5000)),
                          segments=tuple(segments), window=window,
                          default_recency=default.approx() if default else timedelta(days=30))
