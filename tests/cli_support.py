"""The CLI as the tests call it: `automator ARGS…` in-process, its exit code and output."""
from __future__ import annotations

from click.testing import CliRunner

from automator.cli import cli


def invoke(*args: str) -> tuple[int, str]:
    """Run `automator *args` and return (exit code, output); an exception escapes as itself."""
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output
