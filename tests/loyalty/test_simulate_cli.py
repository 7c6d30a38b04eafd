"""`automator loyalty simulate` on real files: two programs over one visits file and over the store's history (after
`automator import visits`), each figure against a hand computation; nothing is written."""
from __future__ import annotations

import csv
import io
import json
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from automator.cli import cli

CONFIG = """\
timezone: Europe/Moscow
store: automator.db
connectors:
  sms: {type: local}
"""
LOYALTY = """\
programs:
  points:
    points: {percent: 5, expires: 30d}
  club:
    first_visit: 20
    every_nth: {every: 2, services: [Массаж]}
    tiers:
      by: visits
      levels:
        bronze: {from: 0, discount: 0}
        silver: {from: 2, discount: 10}
"""
VISITS = """\
client,at,amount,visit,services
1,2026-01-10T10:00:00+03:00,1000.00,v1,Массаж
1,2026-01-20T10:00:00+03:00,2000.00,v2,Массаж
2,2026-02-01T10:00:00+03:00,999.99,v3,Стрижка
1,2026-03-01T10:00:00+03:00,500.00,v4,Массаж
1,2026-03-20T10:00:00+03:00,700.00,v5,Массаж
"""
# By hand, to 10 March:
# points: 5 % of 1 000,00 / 2 000,00 / 999,99 / 500,00 = 50,00 + 100,00 + 50,00 (49,9995) + 25,00 = 225,00; each lasts
#   30 days to the end of its day: the first three lapsed by 11 March 00:00 (200,00), 25,00 is outstanding; the cost
#   is 25,00 of 4 499,99 revenue = 0,6 %.
# club: client 1's first visit −20 % (200,00), v2 at bronze (0 %) makes silver and earns a free massage, v4 at
#   silver −10 % (50,00) uses it; client 2's first visit −20 % of 999,99 = 200,00. Discounts 450,00 = 10,0 %.


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "automator.yaml").write_text(CONFIG)
    (tmp_path / "loyalty.yaml").write_text(LOYALTY)
    (tmp_path / "visits.csv").write_text(VISITS)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def rows(output: str) -> dict[str, dict[str, str]]:
    return {row["program"]: row for row in csv.DictReader(io.StringIO(output))}


EXPECTED = {
    "points": {"program": "points", "clients": "2", "revenue": "4499.99", "accrued": "225.00", "referral": "0.00",
               "reversed": "0.00", "expired": "200.00", "outstanding": "25.00", "discounts": "0.00",
               "free_visits": "0", "cost": "25.00", "cost_share": "0.6"},
    "club": {"program": "club", "clients": "2", "revenue": "4499.99", "accrued": "0.00", "referral": "0.00",
             "reversed": "0.00", "expired": "0.00", "outstanding": "0.00", "discounts": "450.00", "free_visits": "1",
             "cost": "450.00", "cost_share": "10.0"}}


def test_simulate_a_visits_file_side_by_side(folder: Path) -> None:
    result = CliRunner().invoke(cli, ["loyalty", "simulate", "--visits", "visits.csv", "--to", "2026-03-10",
                                      "--format", "csv"])
    assert result.exit_code == 0, result.output
    assert rows(result.output) == EXPECTED
    assert not (folder / "automator.db").exists()  # nothing was written


def test_simulate_the_stores_history_picks_programs_and_a_period(folder: Path) -> None:
    imported = CliRunner().invoke(cli, ["import", "visits", "visits.csv"])
    assert imported.exit_code == 0, imported.output
    result = CliRunner().invoke(cli, ["loyalty", "simulate", "--programs", "club", "--from", "2026-01-01", "--to",
                                      "2026-03-10", "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    programs, tiers = data["tables"]
    assert [row["program"] for row in programs["rows"]] == ["club"]
    assert {k: str(v) for k, v in programs["rows"][0].items()} == EXPECTED["club"]
    assert [(row["tier"], row["clients"]) for row in tiers["rows"]] == [("bronze", 1), ("silver", 1)]
    assert (data["from"], data["to"]) == ("2026-01-01", "2026-03-10")
    table = CliRunner().invoke(cli, ["loyalty", "simulate", "--to", "2026-03-10"])
    assert table.exit_code == 0 and "Программа" in table.output and "450,00" in table.output


def test_an_unknown_program_and_a_bad_row_are_said_plainly(folder: Path) -> None:
    unknown = CliRunner().invoke(cli, ["loyalty", "simulate", "--programs", "gold", "--visits", "visits.csv"])
    assert unknown.exit_code == 2 and "no program gold in loyalty.yaml (there are: points, club)" in unknown.output
    (folder / "bad.csv").write_text(VISITS + textwrap.dedent("""\
        3,2026-03-02T10:00:00+03:00,12.345,v6,Массаж
        """))
    bad = CliRunner().invoke(cli, ["loyalty", "simulate", "--visits", "bad.csv", "--to", "2026-03-10", "--format",
                                   "csv"])
    assert bad.exit_code == 1
    assert "bad.csv:7:3: error:" in bad.output
    assert rows(bad.output.split("bad.csv:")[0]) == EXPECTED  # the good rows replayed all the same


def test_a_refund_the_journal_holds_is_replayed_and_reverses_its_points(folder: Path) -> None:
    from datetime import datetime, timezone

    from automator.model import EntityRef, Event
    from automator.store.sqlite import SqliteStore

    assert CliRunner().invoke(cli, ["import", "visits", "visits.csv"]).exit_code == 0
    store = SqliteStore(str(folder / "automator.db"))
    person = store.client_of("import", "1")
    assert person is not None
    # Client 1's visit of 1 March (25,00 points) refunded on 5 March, as the journal received it.
    store.append([Event(id="r-v4", type="visit.refunded", at=datetime(2026, 3, 5, 9, tzinfo=timezone.utc),
                        entity=EntityRef("client", person), data={"visit": "v4"}, source="import")],
                 datetime(2026, 3, 5, 9, tzinfo=timezone.utc))
    store.close()
    result = CliRunner().invoke(cli, ["loyalty", "simulate", "--programs", "points", "--to", "2026-03-10",
                                      "--format", "csv"])
    assert result.exit_code == 0, result.output
    assert rows(result.output)["points"] == {**EXPECTED["points"], "reversed": "25.00", "outstanding": "0.00",
                                             "cost": "0.00", "cost_share": "0.0"}
