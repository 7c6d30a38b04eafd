"""`automator report` on a real project folder holding the fixed data set: each format, read back; bad input
refused with a usage error."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from automator.cli import cli
from report_sample import fill

DAYS = ["--from", "2026-03-01", "--to", "2026-03-31"]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("project")
    (root / "automator.yaml").write_text("timezone: Europe/Moscow\n")
    fill(root / "automator.db")
    return root


def run(project: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["report", *args, "--config", str(project)], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_table(project: Path) -> None:
    code, out, _ = run(project, "channels", *DAYS)
    assert code == 0
    assert "Период: 01.03.2026 – 31.03.2026" in out
    site = next(line for line in out.splitlines() if line.startswith("site"))
    assert site.split()[:5] == ["site", "Сайт", "5", "3", "1"]
    assert "15 000,00" in site and "-56,7" in site
    aggregator = next(line for line in out.splitlines() if line.startswith("aggregator"))
    assert "—" in aggregator  # no spend: no cost per lead, CAC, ROMI


def test_csv_read_back(project: Path) -> None:
    code, out, _ = run(project, "staff", *DAYS, "--format", "csv")
    assert code == 0
    table = list(csv.DictReader(io.StringIO(out)))
    anna = next(row for row in table if row["who"] == "anna")
    assert (anna["revenue"], anna["check"], anna["nps"], anna["visits"]) == ("6500.00", "2166.67", "100.0", "4")
    assert table[-1]["who"] == "Итого" and table[-1]["nps"] == "16.7"
    code, out, _ = run(project, "retention", *DAYS, "--format", "csv", "--table", "cohorts")
    cohorts = list(csv.DictReader(io.StringIO(out)))
    assert cohorts[0]["cohort"] == "2026-01" and cohorts[0]["m1"] == "50.0" and cohorts[0]["m3"] == ""


def test_json_read_back(project: Path, tmp_path: Path) -> None:
    target = tmp_path / "funnel.json"
    code, _, err = run(project, "funnel", *DAYS, "--format", "json", "-o", str(target))
    assert code == 0 and "written to" in err
    data = json.loads(target.read_text())
    assert (data["report"], data["from"], data["to"]) == ("funnel", "2026-03-01", "2026-03-31")
    stages = {row["stage"]: row for row in data["tables"][0]["rows"]}
    assert stages["in_progress"]["conversion_next"] == "57.1" and stages["new"]["entries"] == 10
    assert data["charts"][0]["kind"] == "funnel"
    assert all(column["doc"] for table in data["tables"] for column in table["columns"])


def test_named_period(project: Path) -> None:
    code, out, _ = run(project, "channels", "--period", "last_month", "--format", "json")
    assert code == 0 and json.loads(out)["report"] == "channels"


@pytest.mark.parametrize("args, message", [
    (["sales", *DAYS], "Invalid value for 'REPORT'"),
    (["channels", "--from", "2026-03-31", "--to", "2026-03-01"], "ends (2026-03-01) before it starts"),
    (["channels", "--from", "2026-02-30", "--to", "2026-03-01"], "--from '2026-02-30' is not a date"),
    (["channels"], "say which days"),
    (["channels", "--period", "fortnight"], "unknown period 'fortnight'"),
    (["staff", *DAYS, "--by", "channel"], "cannot be grouped by 'channel'"),
    (["staff", *DAYS, "--format", "csv", "--table", "nope"], "has no table 'nope'"),
])
def test_bad_input_is_a_usage_error(project: Path, args: list[str], message: str) -> None:
    code, _, err = run(project, *args)
    assert code == 2 and message in err


def test_no_database(tmp_path: Path) -> None:
    (tmp_path / "automator.yaml").write_text("timezone: Europe/Moscow\n")
    code, _, err = run(tmp_path, "staff", *DAYS)
    assert code == 1 and "no database" in err
