"""RFM scoring and named segments (pure): a client's R, F and M from their visits in the window, each scored by
fixed thresholds or by quantile cut points of the population, and the first segment whose conditions hold.

The three values, all integers (exact): R is whole days from the latest visit in the window to now (as
`client.days_since_last_visit` counts them), F the visits in the window (`kind: visit`, as `client.visit_count`
counts them: a purchase is not a visit), M the money of the visits and purchases in the window in kopecks, in
total (`client.total_spent` over the window) or per visit or purchase (`client.average_check`, rounded half up).

A score runs from 1 to `scale`, higher is better (recent, frequent, generous). It is `1 +` the number of cut
points the value reaches: at least the point for F and M, at most it for R (days). A client with no visit in the
window scores 0, 0 and 0 ("not scored": below every score), so a segment can say `f: 0`; a client with no visit at
all has no segment.

Quantile cut points (`quantiles: 5`) come from the clients with a visit in the window: the score of a value is
`1 + ⌊scale × share⌋`, the share being the part of that population strictly worse than the value (fewer visits,
less money, more days). Equal values so always score the same, the worst value scores 1, and a value most clients
share does not lift them (if 80 % came once, once scores 1). Cut point k is the least good value whose share is at
least k/scale; none when no value reaches it (a score nobody has). The points are computed by a full rescoring and
kept, so a client rescored alone later is scored against the same population.
"""
from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import Any

from automator.clock import Duration
from automator.expr import EvalContext, EvalError, Expr
from automator.model import Visit

METRICS = ("r", "f", "m")
# What a segment's `when` may read: the scores, and the values they were scored from (money as exact roubles).
RFM_NAMES = frozenset({"r", "f", "m", "days", "visits", "money"})
MONETARY_OF = ("total", "average")
NOT_SCORED = 0  # the score of a client with no visit in the window
DEFAULT_RESCORE = time(4, 0)
_MINOR = 100  # kopecks per rouble (automator.history.MINOR_DIGITS is 2)


@dataclass(frozen=True, slots=True)
class Metric:
    """How one of R, F, M is scored: by fixed `thresholds` (the values to reach for scores 2..scale, in that
    order: days at most for R, visits or kopecks at least for F and M), or by quantiles of the population."""

    name: str  # r | f | m
    thresholds: tuple[int, ...] | None = None  # None: by quantiles

    @property
    def higher_is_better(self) -> bool:
        """F and M: more is better; R: fewer days is better."""
        return self.name != "r"

    @property
    def by_quantiles(self) -> bool:
        """True when the cut points come from the population."""
        return self.thresholds is None


@dataclass(frozen=True, slots=True)
class ScoreRange:
    """A segment's condition on one score: `low <= score <= high`."""

    metric: str
    low: int
    high: int

    def holds(self, score: int) -> bool:
        """True when the score is within the range."""
        return self.low <= score <= self.high

    def describe(self) -> str:
        """As an admin reads it: `r 4–5`, `f ≥ 3`, `m = 2`."""
        if self.low == self.high:
            return f"{self.metric} = {self.low}"
        return f"{self.metric} {self.low}–{self.high}"


@dataclass(frozen=True, slots=True)
class Segment:
    """A named segment: who belongs (score ranges and/or `when` over r, f, m and the values), and its CRM category
    and loyalty program."""

    name: str
    when: Expr | None = None
    category: str | None = None
    loyalty: str | None = None
    title: str = ""
    ranges: tuple[ScoreRange, ...] = ()


@dataclass(frozen=True, slots=True)
class SegmentsConfig:
    """segments.yaml compiled."""

    segments: tuple[Segment, ...]
    recency: Metric = Metric("r", (120, 60, 30, 14))
    frequency: Metric = Metric("f", (2, 3, 5, 8))
    monetary: Metric = Metric("m", (500000, 1000000, 2000000, 5000000))
    monetary_of: str = "total"
    scale: int = 5
    window: Duration | None = None
    default_recency: timedelta = timedelta(days=30)
    rescore_at: time = DEFAULT_RESCORE
    digest: str = ""  # of what the cut points depend on (window, scale, metrics): stored cuts of another are stale

    def get(self, name: str | None) -> Segment | None:
        """The segment called `name`."""
        return next((s for s in self.segments if s.name == name), None)

    @property
    def metrics(self) -> tuple[Metric, Metric, Metric]:
        """R, F and M, in that order."""
        return self.recency, self.frequency, self.monetary

    @property
    def by_quantiles(self) -> bool:
        """True when any score's cut points come from the population."""
        return any(m.by_quantiles for m in self.metrics)

    def window_start(self, now: datetime, tz: Any) -> datetime | None:
        """The earliest moment a visit counts from (None: no window, every visit counts)."""
        if self.window is None:
            return None
        back = Duration(months=-self.window.months, days=-self.window.days, seconds=-self.window.seconds)
        return back.add_to(now, tz)


@dataclass(frozen=True, slots=True)
class Values:
    """What a client is scored from, over the window: days since the latest visit (None: no visit), visits, the
    money of visits and purchases (kopecks) and how many paid (visits and purchases)."""

    days: int | None
    visits: int
    total: int
    paid: int

    def money(self, of: str) -> int:
        """M in kopecks: the total, or the average per visit or purchase rounded half up (as history.average)."""
        if of == "total":
            return self.total
        return (2 * self.total + self.paid) // (2 * self.paid) if self.paid else 0

    def raw(self, metric: str, of: str) -> int | None:
        """The value `metric` is scored from."""
        return {"r": self.days, "f": self.visits, "m": self.money(of)}[metric]


@dataclass(frozen=True, slots=True)
class Cuts:
    """The cut points of R, F and M in score order (point k is what scores above k), None where nobody reaches."""

    r: tuple[int | None, ...]
    f: tuple[int | None, ...]
    m: tuple[int | None, ...]

    def of(self, metric: str) -> tuple[int | None, ...]:
        """One metric's points."""
        return {"r": self.r, "f": self.f, "m": self.m}[metric]

    def to_json(self) -> dict[str, list[int | None]]:
        """Plain data, for the store's meta."""
        return {"r": list(self.r), "f": list(self.f), "m": list(self.m)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Cuts:
        """Back from `to_json`."""
        return cls(*(tuple(None if p is None else int(p) for p in data[k]) for k in METRICS))


@dataclass(frozen=True, slots=True)
class Check:
    """One segment's conditions for one client: held or not, and why not (each failed part as the admin wrote
    it, with the client's value)."""

    segment: str
    matched: bool
    failed: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Scored:
    """A client's values, scores, segment and the checks that led to it (the segment's and those before it)."""

    values: Values
    scores: dict[str, int]
    segment: str | None
    checks: tuple[Check, ...] = field(default=())

    @property
    def rfm(self) -> dict[str, int]:
        """The client's `rfm` field: the three scores."""
        return dict(self.scores)


# ---- values ---------------------------------------------------------------------------------------------------

def values_of(visits: Iterable[Visit], now: datetime, since: datetime | None = None) -> Values:
    """The values of a client with these visits and purchases (those before `since` are left out)."""
    last: datetime | None = None
    count = total = paid = 0
    for visit in visits:
        if since is not None and visit.at < since:
            continue
        total += visit.amount
        paid += 1
        if visit.kind == "visit":
            count += 1
            last = visit.at if last is None or visit.at > last else last
    return Values(days=None if last is None else whole_days(now - last), visits=count, total=total, paid=paid)


def whole_days(span: timedelta) -> int:
    """Whole days elapsed (a visit this morning is 0 days ago), never negative (a visit reported ahead of time)."""
    return max(span.days, 0)


# ---- scores ---------------------------------------------------------------------------------------------------

def threshold_cuts(metric: Metric) -> tuple[int | None, ...]:
    """A metric's fixed cut points."""
    assert metric.thresholds is not None
    return tuple(metric.thresholds)


def score(value: int | None, points: Sequence[int | None], higher_is_better: bool) -> int:
    """1 + the number of cut points the value reaches; NOT_SCORED when there is no value."""
    if value is None:
        return NOT_SCORED
    if higher_is_better:
        return 1 + sum(1 for p in points if p is not None and value >= p)
    return 1 + sum(1 for p in points if p is not None and value <= p)


def quantile_cuts(counts: Sequence[tuple[int, int]], scale: int, higher_is_better: bool) -> tuple[int | None, ...]:
    """The cut points of a population given as (value, how many clients have it), sorted by value ascending:
    point k (1..scale-1) is the least good value at least k/scale of the population is strictly worse than (see
    the module's docstring), None when no value is."""
    n = sum(c for _, c in counts)
    ordered = list(counts) if higher_is_better else list(reversed(counts))
    # worse[i]: clients strictly worse than ordered[i] (fewer for F and M, more days for R)
    worse, running = [], 0
    for _, c in ordered:
        worse.append(running)
        running += c
    points: list[int | None] = []
    for k in range(1, scale):
        # The first value whose share of worse clients is at least k/scale, in integers: worse * scale >= k * n.
        index = bisect_left(worse, -(-k * n // scale)) if n else len(worse)
        points.append(ordered[index][0] if index < len(ordered) else None)
    return tuple(points)


def cuts_of(config: SegmentsConfig, population: Mapping[str, Sequence[tuple[int, int]]]) -> Cuts:
    """The cut points of each metric: its thresholds, or its quantiles over `population` (value counts per metric,
    ascending; only the metrics by quantiles need one)."""
    out = []
    for metric in config.metrics:
        if metric.by_quantiles:
            out.append(quantile_cuts(population.get(metric.name, ()), config.scale, metric.higher_is_better))
        else:
            out.append(threshold_cuts(metric))
    return Cuts(*out)


def scores_of(values: Values, config: SegmentsConfig, cuts: Cuts) -> dict[str, int]:
    """R, F and M scores; all NOT_SCORED when there is no visit in the window."""
    if values.visits == 0:
        return {name: NOT_SCORED for name in METRICS}
    return {m.name: score(values.raw(m.name, config.monetary_of), cuts.of(m.name), m.higher_is_better)
            for m in config.metrics}


# ---- segments -------------------------------------------------------------------------------------------------

def scope_of(values: Values, scores: Mapping[str, int], config: SegmentsConfig) -> dict[str, Any]:
    """What a segment's `when` reads: r, f, m, and days, visits, money (exact roubles)."""
    return {**scores, "days": values.days, "visits": values.visits,
            "money": Decimal(values.money(config.monetary_of)) / _MINOR}


def check(segment: Segment, scores: Mapping[str, int], scope: Mapping[str, Any], ectx: EvalContext) -> Check:
    """Whether the client is in `segment`, with every part that failed."""
    failed = [f"{r.describe()}: {r.metric} is {scores[r.metric]}" for r in segment.ranges
              if not r.holds(scores[r.metric])]
    if segment.when is not None:
        try:
            if not segment.when.evaluate(scope, ectx):
                failed.append(f"when {segment.when.source!r} is false")
        except EvalError as exc:
            failed.append(f"when {segment.when.source!r} failed: {exc}")
    return Check(segment.name, not failed, tuple(failed))


def classify_values(values: Values, config: SegmentsConfig, cuts: Cuts, ectx: EvalContext, *,
                    explain: bool = False) -> Scored:
    """The scores and the first segment whose conditions hold (with `explain`, every segment's check up to it)."""
    return classify(values, scores_of(values, config, cuts), config, ectx, explain=explain)


def classify(values: Values, scores: Mapping[str, int], config: SegmentsConfig, ectx: EvalContext, *,
             explain: bool = False) -> Scored:
    """The first segment whose conditions hold for these values and scores (with `explain`, every segment's check
    up to it)."""
    scores = dict(scores)
    scope = scope_of(values, scores, config)
    checks: list[Check] = []
    for segment in config.segments:
        found = check(segment, scores, scope, ectx)
        if explain:
            checks.append(found)
        if found.matched:
            return Scored(values, scores, segment.name, tuple(checks))
    return Scored(values, scores, None, tuple(checks))


def fixed_cuts(config: SegmentsConfig) -> Cuts | None:
    """The cut points when no metric is by quantiles (None otherwise: they come from the store)."""
    if config.by_quantiles:
        return None
    return Cuts(*(threshold_cuts(m) for m in config.metrics))


# ---- average recency (segment_avg_recency) --------------------------------------------------------------------

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


# ---- a segment's conditions as written ------------------------------------------------------------------------

_RANGE_TEXT = re.compile(r"^(>=|<=|>|<|=)? ?([0-9]{1,2})$")  # as the schema's pattern


def score_range(metric: str, value: Any, scale: int) -> ScoreRange | str:
    """A segment's condition on one score as written (`5`, `[4, 5]`, `">=3"`, `"<2"`) as a ScoreRange, or what is
    wrong with it."""
    low: int
    high: int
    if isinstance(value, bool):
        return f"{metric}: expected a score, a [low, high] range or a comparison such as \">=3\", got {value!r}"
    if isinstance(value, int):
        low = high = value
    elif isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) and not isinstance(v, bool)
                                                            for v in value):
        low, high = value
        if low > high:
            return f"{metric}: the range [{low}, {high}] is empty: write the lower score first"
    elif isinstance(value, str) and (found := _RANGE_TEXT.match(value)):
        op, number = found.group(1) or "=", int(found.group(2))
        low, high = {">=": (number, scale), ">": (number + 1, scale), "<=": (NOT_SCORED, number),
                     "<": (NOT_SCORED, number - 1)}.get(op, (number, number))
    else:
        return (f"{metric}: expected a score, a [low, high] range or a comparison such as \">=3\", got "
                f"{value!r}")
    if not (NOT_SCORED <= low <= scale and NOT_SCORED <= high <= scale) or low > high:
        return (f"{metric}: {value!r} is outside the scores 0..{scale} (0 is a client with no visit in the window, "
                f"1..{scale} the scale)")
    return ScoreRange(metric, low, high)


# ---- one client, rescored (a visit in decide(), segment.recompute) ----------------------------------------------

CUTS_META = "segments.cuts"
RESCORE = "segment.rescore"  # the daily rescoring's event: the engine rescores its client as of deciding it  # the store's meta: the cut points the last full rescoring computed, with its digest


def cuts_for(config: SegmentsConfig, stored: Mapping[str, Any] | None) -> Cuts | None:
    """The cut points to score with: the thresholds, or the quantiles the last full rescoring kept for this very
    configuration (`stored`, the meta's document); None when they are by quantiles and none are kept for it."""
    fixed = fixed_cuts(config)
    if fixed is not None:
        return fixed
    if stored is not None and stored.get("digest") == config.digest and isinstance(stored.get("cuts"), Mapping):
        return Cuts.from_json(stored["cuts"])
    return None


def cuts_document(config: SegmentsConfig, cuts: Cuts, at: datetime, population: int) -> dict[str, Any]:
    """What a full rescoring keeps in the store's meta for later rescorings of one client."""
    return {"digest": config.digest, "cuts": cuts.to_json(), "at": at.isoformat(), "population": population}


def moved(previous: Any, scored: Scored, config: SegmentsConfig) -> dict[str, Any] | None:
    """`segment.changed`'s data when the client left `previous` for another segment, else None."""
    if scored.segment == (previous or None):
        return None
    return move_data(previous or None, scored.segment, config)


def move_data(before: str | None, after: str | None, config: SegmentsConfig) -> dict[str, Any]:
    """`segment.changed`'s data: from, to, and the new segment's CRM category and loyalty program."""
    segment = config.get(after)
    return {"from": before, "to": after, "category": segment.category if segment else None,
            "loyalty": segment.loyalty if segment else None}


def rescored_fields(fields: Mapping[str, Any], scored: Scored) -> dict[str, Any]:
    """The client's fields with their segment and scores as `scored` says."""
    return {**fields, "segment": scored.segment, "rfm": scored.rfm}
