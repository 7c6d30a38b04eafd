"""Every command's `--help` has an example, and the example works: run in a shell, in a copy of this project."""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from automator.cli import cli
from automator.store.sqlite import SqliteStore

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = sorted(cli.commands)  # type: ignore[attr-defined]
# Examples that name a run or an effect by id: on a database that never saw it, "no such id" is their answer.
UNKNOWN_ID = ("no run or event with id", "no parked effect", "in the store (give their id or phone)")


def example(command: str) -> str:
    """The `Example:` line of a command's --help, as printed (one line, never wrapped)."""
    result = CliRunner().invoke(cli, [command, "--help"], terminal_width=80)
    assert result.exit_code == 0, result.output
    found = [line.strip()[len("Example: "):] for line in result.output.splitlines()
             if line.strip().startswith("Example: ")]
    assert len(found) == 1, f"`automator {command} --help` has {len(found)} examples:\n{result.output}"
    assert found[0].startswith(f"automator {command}"), found[0]
    return found[0]


@pytest.fixture(scope="module")
def copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This project's files in a folder of their own, with the (empty) database a daemon would have made."""
    target = tmp_path_factory.mktemp("project")
    for name in ("automator.yaml", "segments.yaml", "loyalty.yaml"):
        shutil.copy(ROOT / name, target / name)
    for name in ("rules", "pipelines", "examples"):
        shutil.copytree(ROOT / name, target / name)
    SqliteStore(str(target / "automator.db")).close()
    return target


@pytest.mark.parametrize("command", COMMANDS)
def test_the_example_of_each_command_works(command: str, copy: Path) -> None:
    line = example(command)
    args = shlex.split(line)[1:]
    # A daemon on a fixed port, a fetch from the real system (the example project's secrets are not set): their
    # options are checked, they are not started.
    if command in ("run", "backfill"):
        with cli.make_context("automator", list(args)) as ctx:
            sub = cli.get_command(ctx, args[0])
            assert sub is not None
            sub.make_context(args[0], args[1:], parent=ctx)
        return
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONIOENCODING": "utf-8"}
    done = subprocess.run(["bash", "-c", line], cwd=copy, env=env, capture_output=True, text=True, timeout=300)
    said = done.stdout + done.stderr
    assert "Usage:" not in said and "does not exist" not in said and "no such file" not in said.lower(), said
    if done.returncode == 1 and any(words in said for words in UNKNOWN_ID):
        return
    assert done.returncode == 0, said


def test_every_command_has_help_with_an_example() -> None:
    assert {"validate", "dry-run", "test", "run", "status", "runs", "explain", "timers", "dead", "backup", "schema",
            "connectors"} <= set(COMMANDS)
    for command in COMMANDS:
        assert isinstance(cli.get_command(click.Context(cli), command), click.Command)
        example(command)
