"""loyalty.yaml's programs as `automator validate` reports them: each mistake at its file:line:col with a hint."""
from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from programs_support import RULES, compiled

from automator.cli import cli
from automator.loyalty.terms import Accrual, Tier

SEGMENTS = """\
rfm: {recency: [14, 30, 60, 120], frequency: [8, 5, 3, 2], monetary: [50000, 20000, 10000, 5000]}
segments:
  champions: {when: "r >= 4", loyalty: gold}
  others: {when: "true"}
"""


def validate(make_project: Callable[..., Path], loyalty: str, segments: str = SEGMENTS,
             monkeypatch: pytest.MonkeyPatch | None = None) -> tuple[int, str]:
    root = make_project(RULES, segments=segments)
    (root / "loyalty.yaml").write_text(textwrap.dedent(loyalty))
    if monkeypatch is not None:
        monkeypatch.chdir(root)
    result = CliRunner().invoke(cli, ["validate", str(root)])
    return result.exit_code, result.output


def test_the_programs_compile_into_exact_terms(make_project) -> None:  # type: ignore[no-untyped-def]
    config, problems = compiled(make_project, """
        programs:
          gold:
            tiers: {by: spend, levels: {silver: {from: "20000.50", discount: 5, category: Серебро}}}
            points: {percent: 2.5, categories: {Косметология: 7}, expires: 365d}
            referral: {referrer: 500, referred: "300,5"}
        """, segments=SEGMENTS)
    assert config is not None, problems
    gold = config.programs["gold"]
    assert gold.tiers is not None and gold.tiers.levels == (Tier("silver", 2000050, gold.tiers.levels[0].discount,
                                                                 "Серебро"),)
    assert str(gold.tiers.levels[0].discount) == "5"
    assert isinstance(gold.points, Accrual) and str(gold.points.percent) == "2.5"  # read as text, never binary
    assert gold.referral is not None and (gold.referral.referrer, gold.referral.referred) == (50000, 30050)


def test_tiers_not_ascending_are_reported_where_the_tier_starts(make_project, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    code, out = validate(make_project, """\
        programs:
          gold:
            tiers:
              by: visits
              levels:
                silver: {from: 5, discount: 5}
                bronze: {from: 2, discount: 3}
        """, monkeypatch=monkeypatch)
    assert code == 1
    assert "loyalty.yaml:7:24: error: tier bronze starts at 2 (by visits), not above tier silver" in out
    assert "list the tiers from the lowest `from` up" in out


def test_a_percentage_over_100_and_visits_given_as_money_are_refused(make_project, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    code, out = validate(make_project, """\
        programs:
          gold:
            points: {percent: 120}
            tiers: {by: visits, levels: {silver: {from: "2.5", discount: 5}}}
        """, monkeypatch=monkeypatch)
    assert code == 1
    assert "loyalty.yaml:3:23: error:" in out and "100" in out
    assert "loyalty.yaml:4:49: error: tier silver starts at '2.5': tiers by visits start at a whole number" in out


def test_a_segment_naming_no_program_is_reported_in_segments_yaml(make_project, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    code, out = validate(make_project, """\
        programs:
          golden: {points: {percent: 5}}
        """, monkeypatch=monkeypatch)
    assert code == 1
    assert ("segments.yaml:3:40: error: segment champions names loyalty program 'gold', which loyalty.yaml does not "
            "define") in out
    assert "did you mean 'golden'?" in out


def test_a_program_listing_an_unknown_segment_or_one_listed_twice_is_reported(make_project, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    code, out = validate(make_project, """\
        programs:
          gold: {segments: [champion]}
          silver: {segments: [others]}
          base: {segments: [others], default: true}
        """, monkeypatch=monkeypatch)
    assert code == 1
    assert ("loyalty.yaml:2:21: error: program gold lists segment 'champion', which segments.yaml does not define"
            in out)
    assert "did you mean 'champions'?" in out
    assert "loyalty.yaml:4:21: error: segment others is listed by programs silver and base" in out


def test_two_default_programs_are_refused(make_project, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    code, out = validate(make_project, """\
        programs:
          gold: {default: true}
          base: {default: true}
        """, monkeypatch=monkeypatch)
    assert code == 1
    assert "loyalty.yaml:3:19: error: programs gold and base are both `default: true`" in out


def test_the_example_projects_loyalty_yaml_is_valid() -> None:
    result = CliRunner().invoke(cli, ["validate", str(Path(__file__).resolve().parents[2])])
    assert result.exit_code == 0, result.output
