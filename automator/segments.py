"""RFM scoring and named segments: pure functions over a client's visits (segments.yaml is compiled in config/segments.py)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from automator.clock import Duration
from automator.expr import EvalContext, EvalError, Expr

RFM_NAMES = frozenset({"r", "f", "m"})


@dataclass(frozen=True, slots=True)
class Segment:
    """A named segment: who belongs (`when` over r, f, m), and its CRM category and loyalty program."""

    name: str
    when: Expr
    category: str | None = None
    loyalty: str | None = None
    title: str = ""


@dataclass(frozen=True, slots=True)
class SegmentsConfig:
    """segments.yaml compiled."""

    recency: tuple[float, ...]
    frequency: tuple[float, ...]
    monetary: tuple[float, ...]
    segments: tuple[Segment, ...]
    window: Duration | None = None
    default_recency: timedelta = timedelta(days=30)

    def get(self, name: str | None) -> Segment | None:
        """The segment called `name`."""
        return next((s for s in self.segments if s.name == name), None)


def _days_since(value: Any, now: datetime) -> float | None:
    if value in (None, ""):
        return None
    at = datetime.fromisoformat(str(value)) if not isinstance(value, datetime) else value
    if at.tzinfo is None:
        at = at.replace(tzinfo=now.tzinfo)
    return (now - at).total_seconds() / 86400


def _score_up(value: float | None, thresholds: Sequence[float]) -> int:
    """Lower is better (recency in days): <= the first threshold scores 5."""
    if value is None:
        return 1
    for index, limit in enumerate(thresholds):
        if value <= limit:
            return 5 - index
    return 1


def _score_down(value: float, thresholds: Sequence[float]) -> int:
    """Higher is better (visits, money): >= the first threshold scores 5."""
    for index, limit in enumerate(thresholds):
        if value >= limit:
            return 5 - index
    return 1


def rfm(client: Mapping[str, Any], config: SegmentsConfig, now: datetime) -> dict[str, int]:
    """R, F and M scores (1–5) from the history the product keeps: `last_visit_at`, `visit_count` and
    `total_spent` (automator.history), all three from the same visits."""
    recency = _days_since(client.get("last_visit_at"), now)
    visits = float(client.get("visit_count") or 0)
    spent = float(Decimal(str(client.get("total_spent") or 0)))  # a score's threshold: exact to a kopeck is moot
    return {"r": _score_up(recency, config.recency), "f": _score_down(visits, config.frequency),
            "m": _score_down(spent, config.monetary)}


def classify(client: Mapping[str, Any], config: SegmentsConfig, ectx: EvalContext) -> tuple[dict[str, int], str | None]:
    """The scores and the first segment whose `when` holds."""
    scores = rfm(client, config, ectx.now)
    for segment in config.segments:
        try:
            if segment.when.evaluate(scores, ectx):
                return scores, segment.name
        except EvalError:
            continue
    return scores, None


def visit_interval(client: Mapping[str, Any]) -> timedelta | None:
    """A client's average time between visits, from the first and last visit and the count: one history, so
    the count is of the visits between those two moments (not a lifetime count over a span first seen lately)."""
    visits = int(client.get("visit_count") or 0)
    first, last = client.get("first_visit_at"), client.get("last_visit_at")
    if visits < 2 or not first or not last:
        return None
    span = _moment(last) - _moment(first)
    return span / (visits - 1) if span.total_seconds() > 0 else None


def _moment(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def average_recency(clients: Iterable[Mapping[str, Any]]) -> dict[str, timedelta]:
    """Per segment, the average time between visits of its clients (what `segment_avg_recency` returns)."""
    sums: dict[str, list[timedelta]] = {}
    for client in clients:
        interval = visit_interval(client)
        if client.get("segment") and interval is not None:
            sums.setdefault(str(client["segment"]), []).append(interval)
    return {name: sum(spans, timedelta()) / len(spans) for name, spans in sums.items()}
