"""RFM scoring (automator/segments.py): values over the window, scores by thresholds and by quantile cut points
(edges, ties, one client, no visit in the window), M as a total or an average check, segments by score ranges and
expressions with their why-not, and segments.yaml compiled with its problems at their places."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from automator.config.load import load_project
from automator.core.scope import eval_context
from automator.model import Visit
from automator.segments import (Cuts, Metric, ScoreRange, SegmentsConfig, Values, classify_values, cuts_for,
                                cuts_of, quantile_cuts, score, score_range, scores_of, values_of)
from automator.store.sqlite import SqliteStore

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc)
TZ = ZoneInfo("Europe/Moscow")


def visit(days_ago: float, amount: int, kind: str = "visit", ident: str = "") -> Visit:
    return Visit(id=ident or f"v{days_ago}-{amount}-{kind}", client="1", at=NOW - timedelta(days=days_ago),
                 kind=kind, amount=amount)


# ---- values -----------------------------------------------------------------------------------------------------

def test_values_count_visits_in_the_window_and_money_of_visits_and_purchases() -> None:
    since = NOW - timedelta(days=365)
    visits = [visit(400, 100_000), visit(30.5, 150_000), visit(10.2, 250_050), visit(3, 45_000, "purchase")]
    values = values_of(visits, NOW, since)
    # The visit 400 days ago is outside; 10.2 days ago is 10 whole days; the purchase is money, not a visit.
    assert values == Values(days=10, visits=2, total=445_050, paid=3)
    assert values.money("total") == 445_050
    assert values.money("average") == 148_350  # 445050 / 3 = 148350 exactly


def test_the_average_check_is_rounded_half_up_to_a_kopeck() -> None:
    assert Values(days=1, visits=2, total=1001, paid=2).money("average") == 501  # 500.5 → 501
    assert Values(days=1, visits=3, total=1000, paid=3).money("average") == 333  # 333.33 → 333
    assert Values(days=1, visits=3, total=1001, paid=6).money("average") == 167  # 166.83 → 167


def test_no_visit_in_the_window_scores_zero_and_a_purchase_alone_is_not_a_visit() -> None:
    config = SegmentsConfig(segments=())
    cuts = cuts_of(config, {})
    purchase_only = values_of([visit(5, 90_000, "purchase")], NOW, NOW - timedelta(days=365))
    assert purchase_only.days is None and purchase_only.visits == 0
    assert scores_of(purchase_only, config, cuts) == {"r": 0, "f": 0, "m": 0}
    old = values_of([visit(500, 90_000)], NOW, NOW - timedelta(days=365))
    assert scores_of(old, config, cuts) == {"r": 0, "f": 0, "m": 0}


# ---- scores by thresholds ---------------------------------------------------------------------------------------

def test_threshold_edges_are_inclusive() -> None:
    # recency [14, 30, 60, 120] as written: within 14 days r=5, within 30 r=4, ..., beyond 120 r=1
    points = (120, 60, 30, 14)
    assert [score(d, points, False) for d in (0, 14, 15, 30, 31, 60, 61, 120, 121)] == [5, 5, 4, 4, 3, 3, 2, 2, 1]
    # frequency [8, 5, 3, 2]: at least 8 f=5, ..., below 2 f=1
    points = (2, 3, 5, 8)
    assert [score(f, points, True) for f in (1, 2, 3, 4, 5, 7, 8, 20)] == [1, 2, 3, 3, 4, 4, 5, 5]
    assert score(None, points, True) == 0


# ---- scores by quantiles ----------------------------------------------------------------------------------------

def test_quantiles_of_distinct_values_split_the_population_evenly() -> None:
    counts = [(v, 1) for v in range(1, 11)]  # ten clients with 1..10 visits
    points = quantile_cuts(counts, 5, True)
    assert points == (3, 5, 7, 9)
    assert [score(v, points, True) for v in range(1, 11)] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]


def test_quantile_ties_score_the_same_and_a_common_value_does_not_lift_its_clients() -> None:
    # 80 came once, 10 twice, 10 three times: once is the worst (scores 1); no one is strictly worse than it.
    counts = [(1, 80), (2, 10), (3, 10)]
    points = quantile_cuts(counts, 5, True)
    assert points == (2, 2, 2, 2)  # 80 % are strictly worse than 2 visits: it reaches every cut point
    assert [score(v, points, True) for v in (1, 2, 3)] == [1, 5, 5]


def test_quantile_edges_share_exactly_k_over_scale() -> None:
    # 5 clients: values 10, 20, 20, 30, 40. Strictly worse: 10→0, 20→1, 30→3, 40→4 (shares 0, .2, .6, .8).
    counts = [(10, 1), (20, 2), (30, 1), (40, 1)]
    points = quantile_cuts(counts, 5, True)
    # point 1 needs a share ≥ 1/5 (20), point 2 ≥ 2/5 and point 3 ≥ 3/5 (30), point 4 ≥ 4/5 (40)
    assert points == (20, 30, 30, 40)
    assert [score(v, points, True) for v in (10, 20, 30, 40)] == [1, 2, 4, 5]  # 1 + ⌊5 × share⌋


def test_quantiles_for_recency_count_more_days_as_worse() -> None:
    counts = [(3, 1), (10, 1), (40, 1), (90, 1), (200, 1)]  # days since the latest visit, ascending
    points = quantile_cuts(counts, 5, False)
    assert points == (90, 40, 10, 3)
    assert [score(d, points, False) for d in (3, 10, 40, 90, 200)] == [5, 4, 3, 2, 1]


def test_one_client_and_an_empty_population() -> None:
    assert quantile_cuts([(4, 1)], 5, True) == (None, None, None, None)  # no one is worse: nobody reaches
    assert score(4, (None, None, None, None), True) == 1
    assert quantile_cuts([], 3, True) == (None, None)


def test_any_scale() -> None:
    counts = [(v, 1) for v in range(1, 10)]
    assert quantile_cuts(counts, 3, True) == (4, 7)
    points = quantile_cuts([(v, 1) for v in range(1, 21)], 10, True)
    assert [score(v, points, True) for v in range(1, 21)] == [1 + (v - 1) // 2 for v in range(1, 21)]


# ---- segments ---------------------------------------------------------------------------------------------------

def test_score_ranges_as_written() -> None:
    assert score_range("r", 4, 5) == ScoreRange("r", 4, 4)
    assert score_range("r", [3, 5], 5) == ScoreRange("r", 3, 5)
    assert score_range("f", ">=3", 5) == ScoreRange("f", 3, 5)
    assert score_range("f", ">3", 5) == ScoreRange("f", 4, 5)
    assert score_range("m", "<=1", 5) == ScoreRange("m", 0, 1)
    assert score_range("m", "<2", 3) == ScoreRange("m", 0, 1)
    assert "outside the scores 0..3" in str(score_range("r", 4, 3))
    assert "empty" in str(score_range("r", [5, 4], 5))


PROJECT = """\
timezone: Europe/Moscow
"""
SEGMENTS = """\
rfm:
  window: 365d
  scale: 3
  recency: [30, 90]
  frequency: {quantiles: 3}
  monetary: {of: average, thresholds: [2500.50, 1000]}
segments:
  vip: {r: 3, f: ">=2", m: 3, category: VIP, loyalty: gold}
  big: {when: "money >= 5000 and days < 60"}
  sleeping: {r: "<=1"}
  others: {category: Прочие}
"""


def _project(tmp_path: Path, segments: str = SEGMENTS) -> tuple[SegmentsConfig, object]:
    (tmp_path / "automator.yaml").write_text(PROJECT)
    (tmp_path / "segments.yaml").write_text(segments)
    project, problems = load_project(tmp_path)
    assert project is not None and project.segments is not None, problems
    return project.segments, project


def test_segments_yaml_compiles_money_exactly_and_keeps_the_file_order(tmp_path: Path) -> None:
    config, _ = _project(tmp_path)
    assert config.scale == 3 and config.monetary_of == "average"
    assert config.monetary == Metric("m", (100_000, 250_050))  # roubles to kopecks, in score order
    assert config.frequency.by_quantiles and not config.recency.by_quantiles
    assert [s.name for s in config.segments] == ["vip", "big", "sleeping", "others"]
    assert config.rescore_at.hour == 4


def test_the_first_segment_that_holds_and_why_the_ones_before_did_not(tmp_path: Path) -> None:
    config, project = _project(tmp_path)
    cuts = Cuts(r=(90, 30), f=(2, 4), m=(100_000, 250_050))
    ectx = eval_context(project, SqliteStore(), NOW)  # type: ignore[arg-type]
    # 10 days, 3 visits, 600000 kopecks over 3 paid: average 2000.00 → m=2; f: 3 ≥ 2 → 2; r: 10 ≤ 30 → 3
    values = Values(days=10, visits=3, total=600_000, paid=3)
    found = classify_values(values, config, cuts, ectx, explain=True)
    assert found.scores == {"r": 3, "f": 2, "m": 2}
    assert found.segment == "others"
    assert [(c.segment, c.matched, c.failed) for c in found.checks] == [
        ("vip", False, ("m = 3: m is 2",)),
        ("big", False, ("when 'money >= 5000 and days < 60' is false",)),
        ("sleeping", False, ("r 0–1: r is 3",)),
        ("others", True, ())]
    rich = classify_values(Values(days=10, visits=1, total=600_000, paid=1), config, cuts, ectx)
    assert rich.segment == "big" and rich.scores == {"r": 3, "f": 1, "m": 3}


def test_kept_cut_points_are_used_only_for_the_configuration_they_were_computed_for(tmp_path: Path) -> None:
    config, _ = _project(tmp_path)
    kept = {"digest": config.digest, "cuts": {"r": [90, 30], "f": [2, None], "m": [100000, 250050]}}
    assert cuts_for(config, kept) == Cuts(r=(90, 30), f=(2, None), m=(100_000, 250_050))
    assert cuts_for(config, {**kept, "digest": "another"}) is None
    assert cuts_for(config, None) is None
    other, _ = _project(tmp_path, SEGMENTS.replace("window: 365d", "window: 180d"))
    assert other.digest != config.digest


@pytest.mark.parametrize(("text", "where", "message"), [
    ("  recency: [30, 90, 120]\n", "segments.yaml:4:12", "rfm.recency has 3 thresholds; a scale of 3 needs 2"),
    ("  recency: [90, 30]\n", "segments.yaml:4:12", "rfm.recency thresholds must be in strictly ascending order"),
    ("  recency: {quantiles: 5}\n", "segments.yaml:4:24", "rfm.recency: quantiles 5 is not the scale 3"),
])
def test_bad_thresholds_are_reported_at_their_place(tmp_path: Path, text: str, where: str, message: str) -> None:
    (tmp_path / "automator.yaml").write_text(PROJECT)
    (tmp_path / "segments.yaml").write_text(SEGMENTS.replace("  recency: [30, 90]\n", text))
    project, problems = load_project(tmp_path)
    assert project is None
    assert any(p.format().split("/")[-1].startswith(f"{where}: error: {message}") for p in problems), \
        [p.format() for p in problems]


def test_a_segment_range_outside_the_scale_and_an_unknown_name_are_reported(tmp_path: Path) -> None:
    (tmp_path / "automator.yaml").write_text(PROJECT)
    (tmp_path / "segments.yaml").write_text(SEGMENTS.replace('vip: {r: 3,', 'vip: {r: 4,').replace(
        "money >= 5000", "monney >= 5000"))
    project, problems = load_project(tmp_path)
    texts = [p.format().split("/")[-1] for p in problems]
    assert project is None
    assert any(t.startswith("segments.yaml:8:12: error: r: 4 is outside the scores 0..3") for t in texts), texts
    assert any(t.startswith("segments.yaml:9:15: error:") and "monney" in t for t in texts), texts


def test_money_in_the_scope_is_exact_roubles(tmp_path: Path) -> None:
    from automator.segments import scope_of

    config, _ = _project(tmp_path)
    scope = scope_of(Values(days=1, visits=2, total=100_001, paid=2), {"r": 3, "f": 1, "m": 1}, config)
    assert scope["money"] == Decimal("500.01")  # average of 1000.01 over 2, half up: 500.005 → 500.01


def test_a_segments_loyalty_program_must_be_one_of_loyalty_yaml(tmp_path: Path) -> None:
    (tmp_path / "automator.yaml").write_text(PROJECT)
    (tmp_path / "segments.yaml").write_text(SEGMENTS)
    (tmp_path / "loyalty.yaml").write_text("programs:\n  silver: {}\n  gold: {}\n")
    project, problems = load_project(tmp_path)
    assert project is not None, [p.format() for p in problems]  # gold is a program: the file loads
    (tmp_path / "loyalty.yaml").write_text("programs:\n  silver: {}\n  golden: {}\n")
    project, problems = load_project(tmp_path)
    assert project is None
    assert [p.format().split("/")[-1] for p in problems if "loyalty" in p.message] == [
        "segments.yaml:8:55: error: segment vip names loyalty program 'gold', which loyalty.yaml does not define\n"
        "    hint: did you mean 'golden'?"]
