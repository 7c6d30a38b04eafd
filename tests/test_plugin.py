"""An external connector package, installed as a third party would, is found, validated and used from a rule."""
from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from tests.cli_support import install_plugin, plugin_env

PACKAGE = Path(__file__).parent / "plugin" / "automator-example"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example package installed with pip into a folder of its own (not into the project's environment)."""
    return install_plugin(PACKAGE, tmp_path_factory.mktemp("site"))


def _env(site: Path, **extra: str) -> dict[str, str]:
    return plugin_env(site, **extra)


def _automator(site: Path, *args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "automator", *args], cwd=cwd, env=_env(site, **env),
                          capture_output=True, text=True, timeout=60)


def _project(tmp_path: Path, line: str = "Спасибо, {{ event.guest }}!") -> Path:
    (tmp_path / "automator.yaml").write_text(textwrap.dedent(f"""\
        timezone: Europe/Moscow
        connectors:
          book: {{type: guestbook, file: "{tmp_path / 'book.txt'}", secret: "${{env:BOOK_SECRET}}"}}
        """))
    (tmp_path / "rules").mkdir(exist_ok=True)
    (tmp_path / "rules" / "guests.yaml").write_text(textwrap.dedent(f"""\
        rules:
          - id: thank-guests
            when: {{event: guest.arrived}}
            do:
              - guestbook.write: {{line: {json.dumps(line, ensure_ascii=False)}}}
        """))
    return tmp_path


def test_the_installed_connector_is_listed(site: Path, tmp_path: Path) -> None:
    result = _automator(site, "connectors", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "guestbook  (automator_example)" in result.stdout
    assert "guestbook.write" in result.stdout


def test_its_catalogue_ships_in_the_package(site: Path, tmp_path: Path) -> None:
    """The package's catalogue.yaml, installed beside its module, is what `automator events` shows for it."""
    _project(tmp_path)
    result = _automator(site, "events", "book", "--format", "json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"events": [{
        "type": "guest.arrived", "entity": "client", "doc": "a guest signed the guest book", "producers": ["guestbook"],
        "with_fields": False, "data": [{"name": "guest", "type": "text", "doc": "the name the guest wrote"}]}],
        "entities": {}}
    whole = _automator(site, "events", cwd=tmp_path)
    # Columns are as wide as the longest name of the whole catalogue: compared with single spaces between them.
    assert "guest.arrived client a guest signed the guest book (guestbook)" in [
        " ".join(line.split()) for line in whole.stdout.splitlines()]


def test_its_vendor_action_is_validated_against_its_own_schema(site: Path, tmp_path: Path) -> None:
    project = _project(tmp_path)
    assert _automator(site, "validate", ".", cwd=project).returncode == 0
    (project / "rules" / "guests.yaml").write_text(
        "rules:\n  - id: thank-guests\n    when: {event: guest.arrived}\n    do:\n      - guestbook.write: {text: hi}\n")
    result = _automator(site, "validate", ".", cwd=project)
    assert result.returncode == 1
    assert "rules/guests.yaml:5:" in result.stdout and "line" in result.stdout


def test_its_own_check_of_the_params_is_a_validate_error_at_the_param(site: Path, tmp_path: Path) -> None:
    # A blank line is refused by guestbook.write when performed: the package's check_params says so at validate,
    # also when the blank is a template that reads nothing (a literal in disguise); a real template passes.
    project = _project(tmp_path, line="{{ '  ' }}")
    result = _automator(site, "validate", ".", cwd=project)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.splitlines()[:2] == [
        "rules/guests.yaml:5:33: error: connector 'book' writes no empty line",
        '    hint: write what the guest book should say, such as "Спасибо, {{ event.guest }}!"']
    assert _automator(site, "validate", ".", cwd=_project(tmp_path, line="{{ event.guest }}")).returncode == 0


def test_it_keeps_the_connector_contract(site: Path) -> None:
    """automator's connector contract suite, imported by the package's own tests from the installed automator (no
    folder of automator's tests on the path), passes against the installed package (found through its entry point)."""
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-o", "addopts=", "-p", "no:cacheprovider", "--rootdir",
                             str(PACKAGE), str(PACKAGE / "tests")], cwd=PACKAGE, capture_output=True, text=True,
                            timeout=120, env={**_env(site), "PYTHONPATH": str(site)})
    assert result.returncode == 0, result.stdout + result.stderr
    # Every check runs but the six about a remote system, which the guest book has not, and the one about ad spend,
    # which it does not report.
    assert re.search(r"^\d+ passed, 7 skipped in", result.stdout, re.M), result.stdout


def test_the_shipped_types_are_automators_own_not_a_plugins(site: Path, tmp_path: Path) -> None:
    """`python -m automator.docs` documents the types automator's distribution registers: not the plugin's."""
    found = subprocess.run([sys.executable, "-c", "from automator.config.load import builtin_connectors;"
                            "from automator.docs import shipped_types; print(sorted(builtin_connectors()));"
                            "print(sorted(shipped_types()))"], cwd=tmp_path, env=_env(site), capture_output=True,
                           text=True, timeout=60)
    installed, shipped = found.stdout.splitlines()
    assert "'guestbook'" in installed and "'local'" in installed, found.stderr
    assert "'guestbook'" not in shipped and "'local'" in shipped and "'bitrix24'" in shipped


def test_a_rule_uses_it_in_the_daemon(site: Path, tmp_path: Path) -> None:
    project = _project(tmp_path)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = (tmp_path / "daemon.log").open("w")
    daemon = subprocess.Popen([sys.executable, "-m", "automator", "run", "--port", str(port), "--no-reload"],
                              cwd=project, env=_env(site, BOOK_SECRET="s3cret"), stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except OSError:
                assert daemon.poll() is None and time.monotonic() < deadline, (tmp_path / "daemon.log").read_text()
                time.sleep(0.1)

        def post(secret: str) -> tuple[int, dict[str, int]]:
            request = urllib.request.Request(f"http://127.0.0.1:{port}/hooks/book", method="POST",
                                             data=json.dumps({"guest": "Анна", "id": "g1"}).encode(),
                                             headers={"X-Guestbook-Secret": secret})
            try:
                with urllib.request.urlopen(request, timeout=5) as answer:
                    return answer.status, json.loads(answer.read())
            except urllib.error.HTTPError as exc:
                return exc.code, {}

        assert post("wrong")[0] == 401
        assert post("s3cret") == (200, {"accepted": 1, "duplicates": 0})
        book = tmp_path / "book.txt"
        deadline = time.monotonic() + 10
        while not (book.exists() and "Спасибо, Анна!" in book.read_text(encoding="utf-8")):
            assert time.monotonic() < deadline, (tmp_path / "daemon.log").read_text()
            time.sleep(0.05)
        # The same delivery again: acknowledged as a duplicate, so journaled once and no second run is started.
        assert post("s3cret") == (200, {"accepted": 0, "duplicates": 1})
        assert book.read_text(encoding="utf-8").count("Спасибо, Анна!") == 1
    finally:
        daemon.terminate()
        assert daemon.wait(timeout=15) == 0
        log.close()
