"""The sandbox and the simulator agree: every example rule test, run with every connector played by `local` and
run against the real connectors and their emulators, performs the same effects (action, rendered params, count)."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from e2e_support import REPO

from automator import run_tests


def effects_by_case(path: Path, *, sandbox: bool) -> dict[str, Counter[str]]:
    """Each case's effects, as `action {params}` (rendered, keys sorted) with a mark on those that failed."""
    out: dict[str, Counter[str]] = {}
    for result in run_tests(path, sandbox=sandbox):
        out[f"{result.file}::{result.name}"] = Counter(
            f"{p.effect.action} {json.dumps(_person_named(p.effect.params), ensure_ascii=False, sort_keys=True, default=str)}"
            + ("" if p.ok else " (failed)") for p in result.performed)
    return out


def _person_named(params: Mapping[str, Any]) -> dict[str, Any]:
    """The params with the client they act on named alike both ways: a booking system is told a person by its own
    id once an answer of it linked them (the emulated YCLIENTS does; `local` keeps no ids of its own), else by
    phone, so the same person is `77` one way and `+79161234567` the other."""
    return {k: ("<client>" if k == "client" and v not in (None, "") else v) for k, v in params.items()}


def differences(path: Path) -> list[str]:
    """One line per effect whose count differs between the two ways, naming its test."""
    local, sandbox = effects_by_case(path, sandbox=False), effects_by_case(path, sandbox=True)
    lines = [f"{case}: only one way ran it" for case in sorted(local.keys() ^ sandbox.keys())]
    for case in sorted(local.keys() & sandbox.keys()):
        for effect in sorted(local[case].keys() | sandbox[case].keys()):
            if local[case][effect] != sandbox[case][effect]:
                lines.append(f"{case}: {effect}: {local[case][effect]} with local, {sandbox[case][effect]} "
                             "in the sandbox")
    return lines


def test_every_example_rule_test_performs_the_same_effects_both_ways() -> None:
    rules = REPO / "rules"
    assert sorted(rules.glob("*/*.test.yaml")), "the example rule packs have tests"
    assert differences(rules) == []
    cases = len(run_tests(rules))
    for args in ((), ("--sandbox",)):
        proc = subprocess.run([sys.executable, "-m", "automator", "test", "rules", *args], cwd=REPO,
                              capture_output=True, text=True, timeout=120)
        assert (proc.returncode, proc.stdout.strip()) == (0, f"{cases} passed, 0 failed"), proc.stdout + proc.stderr


def test_what_the_real_connector_refuses_is_a_difference_and_fails_the_sandbox_test(tmp_path: Path) -> None:
    # The assignee comes with the event, so validate cannot see that Bitrix24 has no such user: only the sandbox.
    (tmp_path / "automator.yaml").write_text(textwrap.dedent("""\
        timezone: Europe/Moscow
        connectors:
          crm: {type: bitrix24, webhook_url: "${env:B24_URL}", application_token: "${env:B24_TOKEN}",
                roles: {admin: 1}}
          forms: {type: local, events: {nps.received: {entity: client, data: {score: number, who: text}}}}
        """))
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "nps.yaml").write_text(textwrap.dedent("""\
        rules:
          - id: low-score
            when: {event: nps.received}
            do:
              - task.create: {assignee: "{{ event.who }}", title: "NPS {{ event.score }}"}
        """))
    (tmp_path / "rules" / "nps.test.yaml").write_text(textwrap.dedent("""\
        load: ..
        now: 2026-03-02T18:00:00+03:00
        when:
          - {event: nps.received, entity: {kind: client, id: 77}, data: {score: 6, who: quality}}
        expect:
          - {action: task.create, params: {assignee: quality}, count: 1}
        """))
    case, effect = f"{tmp_path}/rules/nps.test.yaml::nps.test", 'task.create {"assignee": "quality", "title": "NPS 6"}'
    assert differences(tmp_path / "rules") == [f"{case}: {effect}: 1 with local, 0 in the sandbox",
                                               f"{case}: {effect} (failed): 0 with local, 1 in the sandbox"]
    proc = subprocess.run([sys.executable, "-m", "automator", "test", "rules", "--sandbox"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert ("    task.create {assignee: 'quality', title: 'NPS 6'} at 2026-03-02 18:00 failed in connector 'crm': "
            "'quality' is not a Bitrix24 user id nor a role under `roles:` in the connector's settings") in proc.stdout
