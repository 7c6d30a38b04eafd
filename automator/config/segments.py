"""segments.yaml compiled into a SegmentsConfig: the scale and each score's thresholds or quantiles checked (money
exact, in kopecks), each segment's score ranges and `when` compiled, its loyalty program checked against
loyalty.yaml's when the project has one."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import time, timedelta
from typing import Any

from automator.config.context import CompileContext, did_you_mean
from automator.history import minor_units, money_of
from automator.segments import (DEFAULT_RESCORE, METRICS, RFM_NAMES, Metric, ScoreRange, Segment, SegmentsConfig,
                                score_range)

DEFAULT_SCALE = 5
_KEYS = {"r": "recency", "f": "frequency", "m": "monetary"}


def compile_segments(data: Any, ctx: CompileContext) -> SegmentsConfig | None:
    """segments.yaml (already schema-checked) into a SegmentsConfig."""
    if not isinstance(data, Mapping):
        return None
    rfm_raw = data.get("rfm") or {}
    scale = int(rfm_raw.get("scale") or DEFAULT_SCALE)
    metrics = {name: _metric(name, rfm_raw.get(_KEYS[name]), scale, ctx) for name in METRICS}
    monetary_raw = rfm_raw.get("monetary")
    monetary_of = str(monetary_raw.get("of") or "total") if isinstance(monetary_raw, Mapping) else "total"
    segments = []
    for name, raw in (data.get("segments") or {}).items():
        if not isinstance(raw, Mapping):
            continue
        segment = _segment(str(name), raw, scale, ctx)
        if segment is not None:
            segments.append(segment)
    window = ctx.duration(rfm_raw["window"], ("rfm", "window")) if "window" in rfm_raw else None
    default = ctx.duration(data["default_recency"], ("default_recency",)) if "default_recency" in data else None
    rescore = _time(data.get("rescore"))
    digest = hashlib.sha1(json.dumps({
        "window": [window.months, window.days, window.seconds] if window else None, "scale": scale,
        "of": monetary_of, **{n: list(m.thresholds) if m.thresholds is not None else None
                              for n, m in metrics.items()}}, sort_keys=True).encode()).hexdigest()[:16]
    return SegmentsConfig(segments=tuple(segments), recency=metrics["r"], frequency=metrics["f"],
                          monetary=metrics["m"], monetary_of=monetary_of, scale=scale, window=window,
                          default_recency=default.approx() if default else timedelta(days=30), rescore_at=rescore,
                          digest=digest)


def _metric(name: str, raw: Any, scale: int, ctx: CompileContext) -> Metric:
    """One of recency, frequency, monetary: a list of thresholds, or `{thresholds: [...]}`, or `{quantiles: N}`."""
    key = _KEYS[name]
    path: tuple[str | int, ...] = ("rfm", key)
    thresholds: Any = raw
    if isinstance(raw, Mapping):
        if ("thresholds" in raw) == ("quantiles" in raw):
            ctx.error(path, f"rfm.{key} needs thresholds or quantiles (one of them)",
                      f"such as {key}: {{quantiles: {scale}}}")
            return Metric(name, None)
        if "quantiles" in raw:
            if raw["quantiles"] != scale:
                ctx.error((*path, "quantiles"), f"rfm.{key}: quantiles {raw['quantiles']} is not the scale {scale}",
                          f"scores run 1..{scale} (rfm.scale): write quantiles: {scale}")
            return Metric(name, None)
        thresholds, path = raw["thresholds"], (*path, "thresholds")
    if not isinstance(thresholds, list):
        return Metric(name, None)
    units = [_unit(name, v, (*path, i), ctx) for i, v in enumerate(thresholds)]
    values = [v for v in units if v is not None]
    if len(values) != len(units):
        return Metric(name, None)  # reported at its place; the order of what is left would mislead
    if len(values) != scale - 1:
        ctx.error(path, f"rfm.{key} has {len(values)} thresholds; a scale of {scale} needs {scale - 1}",
                  f"one number for each score from {scale} down to 2 (rfm.scale is {scale})")
    # As written: R ascending (days within), F and M descending (at least); kept in score order (2..scale).
    ascending = name == "r"
    if values != sorted(values, reverse=not ascending) or len(set(values)) != len(values):
        ctx.error(path, f"rfm.{key} thresholds must be in strictly {'ascending' if ascending else 'descending'} "
                        "order", "the first number is the top score's")
    return Metric(name, tuple(reversed(values)))


def _unit(name: str, value: Any, path: tuple[str | int, ...], ctx: CompileContext) -> int | None:
    """A threshold in the unit it is scored in: days and visits are whole, money roubles exact to a kopeck."""
    if name == "m":
        text = money_of(value)
        if text is None:
            ctx.error(path, f"{value!r} is not an amount in roubles with at most two decimal places")
            return None
        return minor_units(text)
    if isinstance(value, float) and not value.is_integer():
        ctx.error(path, f"{value!r} is not a whole number of {'days' if name == 'r' else 'visits'}")
        return None
    return int(value)


def _segment(name: str, raw: Mapping[str, Any], scale: int, ctx: CompileContext) -> Segment | None:
    ranges: list[ScoreRange] = []
    for metric in METRICS:
        if metric in raw:
            found = score_range(metric, raw[metric], scale)
            if isinstance(found, str):
                ctx.error(("segments", name, metric), found, "such as r: [4, 5], f: \">=3\" or m: 5")
                continue
            ranges.append(found)
    expr = None
    if "when" in raw:
        expr = ctx.expr(raw["when"], ("segments", name, "when"), RFM_NAMES)
        if expr is None:
            return None
    return Segment(name=name, when=expr, category=raw.get("category"), loyalty=raw.get("loyalty"),
                   title=str(raw.get("title") or ""), ranges=tuple(ranges))


def _time(value: Any) -> time:
    if not isinstance(value, str) or ":" not in value:
        return DEFAULT_RESCORE
    hours, minutes = value.split(":", 1)
    return time(int(hours), int(minutes))
