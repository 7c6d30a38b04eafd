"""The CLI as an admin uses it: click's runner for every command, and real subprocesses."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from cli_support import invoke
from automator.cli import cli

ROOT = Path(__file__).resolve().parents[1]


def test_validate_the_example_project() -> None:
    code, out = invoke("validate", str(ROOT))
    assert code == 0, out
    # `staff` performs notifications only: it has no secret, so it accepts no webhooks, and validate says so.
    warning, hint, ok = out.splitlines()[:3]
    assert warning == ("automator.yaml:37:3: warning: connector 'staff' (local) has no `secret` set: it accepts no "
                       "webhooks (it still performs actions)")
    assert ok.startswith("ok: 26 rules, 3 pipelines, 7 connectors")


def test_validate_reports_every_problem_and_exits_1(make_project) -> None:  # type: ignore[no-untyped-def]
    project = make_project("""\
        rules:
          - id: one
            when: {changed: deal.stage, to: warmd, pipeline: sales}
            do:
              - deal.mvoe: {stage: won}
          - id: one
            when: {schedule: "0 0 30 2 *"}
            do:
              - wait: 14x
        """)
    code, out = invoke("validate", str(project))
    assert code == 1
    lines = out.splitlines()
    errors = [line for line in lines if ": error: " in line]
    assert [e.split(": error: ")[0].rsplit(":", 2)[1:] for e in errors] == [["3", "37"], ["5", "9"], ["6", "9"],
                                                                           ["7", "22"], ["9", "15"]]
    assert "unknown stage 'warmd' in pipeline 'sales'" in errors[0]
    assert "    hint: did you mean 'won'?" in lines or any("hint:" in line for line in lines)
    assert "unknown action 'deal.mvoe'" in out and "did you mean 'deal.move'?" in out
    assert "duplicate rule id 'one'" in out
    assert "never fires: February has no day 30" in out
    assert "14x" in out


def test_dry_run_json_contract() -> None:
    code, out = invoke("dry-run", "--project", str(ROOT), "--event", str(ROOT / "examples/booking-arrived.yaml"),
                       "--state", str(ROOT / "examples/state.yaml"), "--at", "2026-03-02T15:05:00+03:00",
                       "--format", "json")
    assert code == 0, out
    plan = json.loads(out)
    assert plan["event"]["type"] == "booking.updated"
    by_rule = {run["rule"]: run for run in plan["runs"]}
    follow = by_rule["regular-client-follow-up"]
    assert follow["matched"] is True
    assert follow["steps"][0] == {"path": "do/0", "action": "segment.recompute", "params": {"client": "77"},
                                  "at": "2026-03-02T15:05:00+03:00"}
    assert follow["steps"][1]["wait"] and follow["steps"][1]["until"] == "2026-04-05T15:05:00+03:00"
    assert follow["steps"][2]["action"] == "deal.create"
    assert by_rule["no-show-to-rehabilitation"]["matched"] is False
    assert "rule wants 'no_show'" in by_rule["no-show-to-rehabilitation"]["reason"]


def test_dry_run_text_and_conditions(tmp_path: Path) -> None:
    event = tmp_path / "nps.yaml"
    event.write_text("event: nps.received\nentity: {kind: client, id: 77}\ndata: {score: 10}\n")
    state = tmp_path / "state.yaml"
    state.write_text('- {kind: client, id: 77, name: Анна, phone: "+79161234567"}\n')
    code, out = invoke("dry-run", "--project", str(ROOT), "--event", str(event), "--state", str(state),
                       "--at", "2026-03-02T18:00:00+03:00")
    assert code == 0, out
    assert "✔ nps-branches" in out
    assert "sms.send {to: +79161234567, text: \"Спасибо! Оставьте отзыв: https://example.com/review\"}" in out
    assert "other rule(s) do not listen to nps.received" in out


def test_dry_run_shows_every_time_in_the_project_zone_with_its_offset() -> None:
    # The moment given in UTC: the event, the actions, the wait and the timer are all shown in Moscow time.
    code, out = invoke("dry-run", "--project", str(ROOT), "--event", str(ROOT / "examples/booking-arrived.yaml"),
                       "--state", str(ROOT / "examples/state.yaml"), "--at", "2026-03-02T12:05:00Z")
    assert code == 0, out
    assert "at 2026-03-02 15:05 +03:00" in out.splitlines()[0]
    assert "    2026-03-02 15:05 +03:00  segment.recompute {client: 77}" in out
    assert "    wait until 2026-04-05 15:05 +03:00" in out
    assert "    2026-04-05 15:05 +03:00  deal.create" in out
    assert "+00:00" not in out and "12:05" not in out
    plan = json.loads(invoke("dry-run", "--project", str(ROOT), "--event", str(ROOT / "examples/booking-arrived.yaml"),
                             "--state", str(ROOT / "examples/state.yaml"), "--at", "2026-03-02T12:05:00Z",
                             "--format", "json")[1])
    assert plan["event"]["at"] == "2026-03-02T15:05:00+03:00"
    assert plan["runs"][0]["steps"][1]["until"] == "2026-04-05T15:05:00+03:00"


def test_an_unknown_log_level_is_a_usage_error_with_the_choices() -> None:
    done = subprocess.run([sys.executable, "-m", "automator", "run", "--log-level", "bogus"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "Invalid value for '--log-level'" in done.stderr and "one of 'debug', 'info', 'warning', 'error', 'critical'" in done.stderr


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    before = sorted(p.name for p in ROOT.iterdir())
    invoke("dry-run", "--project", str(ROOT), "--event", str(ROOT / "examples/booking-arrived.yaml"))
    assert sorted(p.name for p in ROOT.iterdir()) == before


def test_dry_run_bad_event_is_a_usage_error(tmp_path: Path) -> None:
    event = tmp_path / "bad.yaml"
    event.write_text("entity: {kind: booking}\n")
    result = CliRunner().invoke(cli, ["dry-run", "--project", str(ROOT), "--event", str(event)])
    assert result.exit_code == 2
    assert "needs `event: <kind>.<verb>`" in result.output


def test_test_command_summary_and_exit_code(make_project) -> None:  # type: ignore[no-untyped-def]
    project = make_project("""\
        rules:
          - id: r
            when: {event: nps.received}
            do: [{notify: {to: admin, text: "score {{ event.score }}"}}]
        """)
    (project / "rules" / "ok.test.yaml").write_text(
        "now: 2026-03-02T10:00:00+03:00\nwhen: [{event: nps.received, data: {score: 5}}]\n"
        "expect: [{action: notify, params: {text: score 5}}]\n")
    code, out = invoke("test", str(project))
    assert code == 0 and out.splitlines()[-1] == "1 passed, 0 failed"
    (project / "rules" / "bad.test.yaml").write_text(
        "now: 2026-03-02T10:00:00+03:00\nwhen: [{event: nps.received, data: {score: 5}}]\n"
        "expect: [{no_action: notify}]\n")
    code, out = invoke("test", str(project))
    assert code == 1 and out.splitlines()[-1] == "1 passed, 1 failed"


def test_schema_writes_the_bundle(tmp_path: Path) -> None:
    code, out = invoke("schema", str(tmp_path / "out"))
    assert code == 0
    assert (tmp_path / "out" / "rules.schema.json").is_file()
    assert (tmp_path / "out" / "actions" / "deal.move.json").is_file()


def test_connectors_lists_local_actions() -> None:
    code, out = invoke("connectors")
    assert code == 0
    assert "local" in out and "deal.move" in out and "at_most_once" in out


def test_real_subprocess_validate_and_test() -> None:
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    done = subprocess.run([sys.executable, "-m", "automator", "validate", "."], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    done = subprocess.run([sys.executable, "-m", "automator", "test", "rules/clinic"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1].endswith("passed, 0 failed")


def test_real_subprocess_validate_broken_project(tmp_path: Path) -> None:
    (tmp_path / "automator.yaml").write_text("timezone: Europe/Moskow\n")
    done = subprocess.run([sys.executable, "-m", "automator", "validate", str(tmp_path)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1
    assert "automator.yaml:1:11: error: unknown timezone 'Europe/Moskow'" in done.stdout
    assert "hint: did you mean 'Europe/Moscow'?" in done.stdout


def test_run_refuses_to_start_without_a_secret_it_needs(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "automator.yaml").write_text(
        'timezone: Europe/Moscow\nconnectors:\n  sms: {type: smsru, api_id: "${env:SMSRU_TEST_ID}"}\n')
    monkeypatch.delenv("SMSRU_TEST_ID", raising=False)
    result = CliRunner().invoke(cli, ["run", "--config", str(tmp_path / "automator.yaml"), "--port", "0",
                                      "--no-reload"])
    assert result.exit_code == 1
    assert "connector 'sms': api_id needs the environment variable SMSRU_TEST_ID" in result.output
    assert "nothing was started" in result.output


def test_run_names_every_missing_variable_at_once(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "automator.yaml").write_text(
        'timezone: Europe/Moscow\nconnectors:\n'
        '  crm: {type: bitrix24, webhook_url: "${env:T_B24_URL}", application_token: "${env:T_B24_TOKEN}"}\n'
        '  staff: {type: local, secret: "${env:T_STAFF}"}\n'
        '  sms: {type: smsru, api_id: "${env:T_SMSRU}"}\n')
    for name in ("T_B24_URL", "T_B24_TOKEN", "T_SMSRU"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("T_STAFF", "staff-hook-token")
    result = CliRunner().invoke(cli, ["run", "--config", str(tmp_path / "automator.yaml"), "--port", "0",
                                      "--no-reload"])
    assert result.exit_code == 1
    assert ("3 environment variables are not set:\n"
            "  connector 'crm': webhook_url needs the environment variable T_B24_URL\n"
            "  connector 'crm': application_token needs the environment variable T_B24_TOKEN\n"
            "  connector 'sms': api_id needs the environment variable T_SMSRU (nothing was started)") in result.output
    assert "Traceback" not in result.output
