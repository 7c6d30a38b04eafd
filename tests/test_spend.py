"""Ad spend into the store: `automator spend import FILE.csv` on real files (good and bad rows, a second import, a
corrected file, `;` and a BOM), the Python API, and `automator spend pull` from the `local` connector and from a
third-party connector over HTTP against its ad cabinet's emulator."""
from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from automator.channels import DEFAULTS
from automator.config.problems import Problem
from automator.connector import SpendRow
from automator.emulator import serve
from automator.spend import import_csv, pull, read_spend
from automator.store.sqlite import SqliteStore
from tests.cli_support import install_plugin, invoke, plugin_env

RULES = """
    rules:
      - id: noop
        when: {event: deal.created}
        do:
          - notify: {to: admin, text: сделка}
"""
NOW = datetime(2026, 3, 10, 9, 0, tzinfo=timezone.utc)
PLUGIN = Path(__file__).parent / "plugin" / "automator-adspend"


def _spend(db: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("select day, channel, campaign, amount, currency, source from spend "
                            "order by day, channel, campaign").fetchall()


def _imported_at(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [r[0] for r in conn.execute("select imported_at from spend order by day, channel, campaign")]


@pytest.fixture
def project(make_project: Callable[..., Path]) -> Path:
    return make_project(RULES)


def _import(root: Path, name: str, text: str | bytes, *args: str) -> tuple[int, str]:
    path = root / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return invoke("spend", "import", str(path), "--config", str(root / "automator.yaml"), *args)


GOOD = """\
day,channel,campaign,amount,currency
2026-03-02,vk,весна,1500.00,RUB
2026-03-02,vk,весна,250.50,RUB
2026-03-02,yandex_direct,поиск,2300.5,
2026-03-03,ВКонтакте,весна,1200,RUB
2026-03-03,vk,,99.99,
"""


def test_a_file_is_imported_summed_by_day_channel_and_campaign_and_reported(project: Path) -> None:
    code, out = _import(project, "spend.csv", GOOD, "--source", "vk_cabinet")
    assert code == 0, out
    # 1500.00 + 250.50 of one day and campaign (an export by ad) are one figure; a title names its channel.
    assert _spend(project / "automator.db") == [
        ("2026-03-02", "vk", "весна", 175050, "RUB", "vk_cabinet"),
        ("2026-03-02", "yandex_direct", "поиск", 230050, "RUB", "vk_cabinet"),
        ("2026-03-03", "vk", "", 9999, "RUB", "vk_cabinet"),
        ("2026-03-03", "vk", "весна", 120000, "RUB", "vk_cabinet")]
    assert out.splitlines() == [
        "5 rows read: 4 day-channel-campaign figures (4 new or changed), 2 days, 2026-03-02 – 2026-03-03, 0 skipped",
        "  vk (ВКонтакте): 3050.49 RUB",  # 1500.00 + 250.50 + 1200 + 99.99
        "  yandex_direct (Яндекс Директ): 2300.50 RUB"]


def test_importing_the_same_file_again_changes_nothing(project: Path) -> None:
    assert _import(project, "spend.csv", GOOD)[0] == 0
    before, stamps = _spend(project / "automator.db"), _imported_at(project / "automator.db")
    code, out = _import(project, "spend.csv", GOOD)
    assert code == 0 and "(0 new or changed)" in out
    assert _spend(project / "automator.db") == before and _imported_at(project / "automator.db") == stamps


def test_a_corrected_file_replaces_the_days_and_channels_it_lists(project: Path) -> None:
    assert _import(project, "spend.csv", GOOD)[0] == 0
    corrected = "day,channel,campaign,amount\n2026-03-03,vk,весна,1300.00\n"
    code, out = _import(project, "fix.csv", corrected)
    assert code == 0 and "(1 new or changed)" in out
    # 2026-03-03 vk is now the one campaign the correction gives (the campaign-less 99.99 is gone); the other days
    # and channels stay as they were.
    assert _spend(project / "automator.db") == [
        ("2026-03-02", "vk", "весна", 175050, "RUB", "csv"),
        ("2026-03-02", "yandex_direct", "поиск", 230050, "RUB", "csv"),
        ("2026-03-03", "vk", "весна", 130000, "RUB", "csv")]


def test_bad_rows_are_each_named_at_their_line_and_column_and_the_good_ones_kept(project: Path) -> None:
    text = textwrap.dedent("""\
        day;channel;campaign;amount;currency
        2026-03-02;vk;весна;1500,50;RUB
        02.03.2026;vk;весна;100;RUB
        2026-03-02;vkontakte_ads;весна;100;RUB
        2026-03-02;instagramm;;100;RUB
        2026-03-02;vk;лето;1 500;RUB
        2026-03-02;vk;лето;-5;RUB
        2026-03-02;vk;осень;12.345;RUB
        2026-03-02;vk;зима;;RUB
        2026-03-02;vk;весна;10;рубли
        2026-03-02;vk;весна;10;USD
        2026-03-02;vk;весна
        2026-03-04;facebook;;700;RUB
        """)
    code, out = _import(project, "spend.csv", text)
    assert code == 1, out
    shown = project / "spend.csv"
    lines = out.splitlines()
    assert f"{shown}:3:1: error: day '02.03.2026' is not a date written YYYY-MM-DD (2026-03-02)" in lines
    assert f"{shown}:4:2: error: unknown channel 'vkontakte_ads': not one of automator.yaml's channels:" in lines
    assert f"{shown}:5:2: error: unknown channel 'instagramm': not one of automator.yaml's channels:" in lines
    assert lines[lines.index(f"{shown}:5:2: error: unknown channel 'instagramm': not one of automator.yaml's "
                             "channels:") + 1] == "    hint: did you mean 'instagram'?"
    assert any(line.startswith(f"{shown}:6:4: error: amount '1 500' is not an amount") for line in lines)
    assert any(line.startswith(f"{shown}:7:4: error: amount '-5' is not an amount") for line in lines)
    assert any(line.startswith(f"{shown}:8:4: error: amount '12.345' is not an amount") for line in lines)
    assert f"{shown}:9:4: error: the amount is empty: write what was spent, 0 for nothing" in lines
    assert f"{shown}:10:5: error: currency 'рубли' is not a three-letter code such as RUB" in lines
    assert f"{shown}:11:5: error: currency USD where line 2 gave the same day, channel and campaign in RUB" in lines
    assert f"{shown}:12:1: error: 3 fields where the header names 5" in lines
    assert lines[-3] == ("12 rows read: 2 day-channel-campaign figures (2 new or changed), 2 days, "
                         "2026-03-02 – 2026-03-04, 10 skipped")
    # `;` between fields, and the decimal comma it allows: 1500,50 is 1500.50.
    assert _spend(project / "automator.db") == [("2026-03-02", "vk", "весна", 150050, "RUB", "csv"),
                                                ("2026-03-04", "facebook", "", 70000, "RUB", "csv")]


def test_a_bom_and_crlf_lines_as_spreadsheets_save_them_are_read(project: Path) -> None:
    text = "\ufeffDay,Channel,Amount\r\n2026-03-02,telegram,500\r\n".encode("utf-8")
    code, out = _import(project, "excel.csv", text)
    assert code == 0, out
    assert _spend(project / "automator.db") == [("2026-03-02", "telegram", "", 50000, "RUB", "csv")]


@pytest.mark.parametrize(("text", "expected"), [
    ("", "1:1: error: the file is empty: a header row naming the columns is needed"),
    ("day,channel,cost\n", "1:3: error: unknown column 'cost'"),
    ("day,channel,campaign\n", "1:1: error: the column 'amount' is missing"),
], ids=["empty", "unknown-column", "missing-column"])
def test_a_header_that_cannot_be_used_is_named_and_nothing_is_imported(project: Path, text: str,
                                                                       expected: str) -> None:
    code, out = _import(project, "spend.csv", text)
    assert code == 1 and f"{project / 'spend.csv'}:{expected}" in out


def test_the_channels_are_the_projects_own(make_project: Callable[..., Path]) -> None:
    root = make_project(RULES)
    config = root / "automator.yaml"
    config.write_text(config.read_text() + textwrap.dedent("""\
        channels:
          avito: {title: Авито, match: {utm_source: [avito]}}
          prodoctorov: {title: ПроДокторов, aggregator: true}
        """))
    code, out = _import(root, "spend.csv", "day,channel,amount\n2026-03-02,avito,100\n2026-03-02,vk,100\n")
    assert code == 1
    assert f"{root / 'spend.csv'}:3:2: error: unknown channel 'vk'" in out
    assert "    hint: the channels: avito, prodoctorov" in out
    assert _spend(root / "automator.db") == [("2026-03-02", "avito", "", 10000, "RUB", "csv")]


def test_the_python_api_imports_a_file_and_reads_one(tmp_path: Path) -> None:
    path = tmp_path / "spend.csv"
    path.write_text("day,channel,campaign,amount\n2026-03-02,vk,a,10.10\n2026-03-02,zz,,1\n", encoding="utf-8")
    rows = list(read_spend(path, DEFAULTS))
    assert rows[0] == SpendRow(date(2026, 3, 2), "vk", "a", 1010, "RUB")
    assert isinstance(rows[1], Problem) and (rows[1].line, rows[1].col) == (3, 2)
    store = SqliteStore(str(tmp_path / "a.db"))
    result = import_csv(store, path, DEFAULTS, NOW, source="api")
    assert (result.read, result.stored, result.changed, len(result.problems)) == (2, 1, 1, 1)
    assert result.totals == {("vk", "RUB"): 1010}
    store.close()
    assert _spend(tmp_path / "a.db") == [("2026-03-02", "vk", "a", 1010, "RUB", "api")]


# ---- automator spend pull ------------------------------------------------------------------------------------

def test_pull_stores_the_local_connectors_spend_for_the_days_asked(project: Path) -> None:
    store = SqliteStore(str(project / "automator.db"))
    store.close()
    invoke("spend", "import", "--help")  # the store exists; the local connector makes its table when built
    from automator_connectors.local import LocalConnector
    import sqlite_utils

    db = sqlite_utils.Database(project / "automator.db")
    LocalConnector("sms", {"type": "local"}, db=db, now=lambda: NOW)
    db["local_spend"].insert_all([
        {"day": "2026-02-28", "channel": "vk", "campaign": "", "amount_minor": 100, "currency": "RUB"},
        {"day": "2026-03-01", "channel": "vk", "campaign": "весна", "amount_minor": 150000, "currency": "RUB"},
        {"day": "2026-03-02", "channel": "site", "campaign": "", "amount_minor": 5000, "currency": "RUB"},
        {"day": "2026-03-02", "channel": "nowhere", "campaign": "", "amount_minor": 1, "currency": "RUB"}])
    db.conn.commit()
    db.conn.close()
    code, out = invoke("spend", "pull", "sms", "--since", "2026-03-01", "--until", "2026-03-02",
                       "--config", str(project / "automator.yaml"))
    assert code == 1, out  # the row of a channel the project has not is refused, the others stored
    # Rows come by day and channel: the refused one is the second.
    assert "sms spend:2:1: error: 2026-03-02 -: unknown channel 'nowhere'" in out
    assert _spend(project / "automator.db") == [("2026-03-01", "vk", "весна", 150000, "RUB", "sms"),
                                                ("2026-03-02", "site", "", 5000, "RUB", "sms")]


def test_connectors_says_which_types_report_spend() -> None:
    code, out = invoke("connectors")
    blocks: dict[str, list[str]] = {}
    for line in out.splitlines():
        if not line.startswith(" "):
            blocks[line.split()[0]] = []
        else:
            blocks[list(blocks)[-1]].append(line.split()[0] + " " + line.split()[1])
    assert code == 0 and "ad spend" in blocks["local"] and "ad spend" not in blocks["http"]
    assert "history automator" in blocks["yclients"] and "history automator" not in blocks["local"]


def test_pull_refuses_a_connector_that_reports_no_spend_and_bad_days(project: Path) -> None:
    config = project / "automator.yaml"
    config.write_text(config.read_text().replace("  sms: {type: local}\n",
                                                 "  sms: {type: local}\n  hook: {type: http, allow: [example.com]}\n"))
    code, out = invoke("spend", "pull", "hook", "--since", "2026-03-01", "--config", str(config))
    assert code == 1 and "connector 'hook' (http) reports no ad spend" in out
    code, out = invoke("spend", "pull", "sms", "--since", "March", "--config", str(config))
    assert code == 2 and "not a date written YYYY-MM-DD" in out
    code, out = invoke("spend", "pull", "sms", "--since", "2026-03-02", "--until", "2026-03-01", "--config",
                       str(config))
    assert code == 2 and "--until 2026-03-01 is before --since 2026-03-02" in out
    code, out = invoke("spend", "pull", "ads", "--since", "2026-03-01", "--config", str(config))
    assert code == 2 and "no connector 'ads' in automator.yaml" in out


def test_the_python_api_pulls_from_any_async_source(tmp_path: Path) -> None:
    async def rows() -> Any:
        yield SpendRow(date(2026, 3, 1), "vk", "", 100, "RUB")
        yield SpendRow(date(2026, 3, 1), "vk", "", -1, "RUB")

    store = SqliteStore(str(tmp_path / "a.db"))
    result = asyncio.run(pull(store, rows(), DEFAULTS, NOW, source="ads"))
    store.close()
    assert (result.stored, [p.message for p in result.problems]) == (1, ["2026-03-01 vk: a negative amount -1"])


@pytest.fixture(scope="module")
def adspend_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The third-party ad cabinet connector installed with pip into a folder of its own, as a plugin is."""
    return install_plugin(PLUGIN, tmp_path_factory.mktemp("adspend-site"))


def _pull(site: Path, root: Path, *args: str, token: str = "cabinet-token") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "automator", "spend", "pull", "ads", *args], cwd=root,
                          env=plugin_env(site, ADS_TOKEN=token), capture_output=True, text=True, timeout=60)


def test_a_plugin_connector_reports_spend_over_http_page_by_page(adspend_site: Path, project: Path) -> None:
    sys.path.insert(0, str(adspend_site))
    try:
        from automator_adspend.emulator import CabinetEmulator  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(adspend_site))
    cabinet = CabinetEmulator("cabinet-token")
    cabinet.stats = [{"date": "2026-03-01", "campaign": "весна", "spent": "1500.50", "currency": "RUB"},
                     {"date": "2026-03-01", "campaign": "лето", "spent": "99.99", "currency": "RUB"},
                     {"date": "2026-03-02", "campaign": "весна", "spent": "700", "currency": "RUB"},
                     {"date": "2026-03-05", "campaign": "весна", "spent": "1", "currency": "RUB"}]
    config = project / "automator.yaml"
    with serve(cabinet) as served:
        config.write_text(config.read_text().replace(
            "  sms: {type: local}\n",
            f'  sms: {{type: local}}\n  ads: {{type: adspend, base_url: "{served.url}", token: "${{env:ADS_TOKEN}}", '
            'channel: vk}\n'))
        done = _pull(adspend_site, project, "--since", "2026-03-01", "--until", "2026-03-02")
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.splitlines() == [
            "3 rows read: 3 day-channel-campaign figures (3 new or changed), 2 days, 2026-03-01 – 2026-03-02, "
            "0 skipped", "  vk (ВКонтакте): 2300.49 RUB"]
        pages = [c.query["offset"] for c in cabinet.calls if c.path == "/api/v1/statistics/day"]
        assert pages == ["0", "2"]  # two rows a page
        assert _spend(project / "automator.db") == [("2026-03-01", "vk", "весна", 150050, "RUB", "ads"),
                                                    ("2026-03-01", "vk", "лето", 9999, "RUB", "ads"),
                                                    ("2026-03-02", "vk", "весна", 70000, "RUB", "ads")]
        again = _pull(adspend_site, project, "--since", "2026-03-01", "--until", "2026-03-02")
        assert again.returncode == 0 and "(0 new or changed)" in again.stdout
        cabinet.stats[1]["spent"] = "199.99"  # the cabinet corrected a figure: the next pull replaces it
        fixed = _pull(adspend_site, project, "--since", "2026-03-01", "--until", "2026-03-01")
        assert fixed.returncode == 0 and "(2 new or changed)" in fixed.stdout
        assert _spend(project / "automator.db")[1] == ("2026-03-01", "vk", "лето", 19999, "RUB", "ads")
        refused = _pull(adspend_site, project, "--since", "2026-03-01", token="wrong")
        assert refused.returncode == 1 and "the ad cabinet refused the token (401)" in refused.stdout + refused.stderr
