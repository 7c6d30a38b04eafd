"""The CLI as the tests call it: `automator ARGS…` in-process, its exit code and output; a plugin package installed
as a third party installs it, and the environment that finds it."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from automator.cli import cli


def invoke(*args: str) -> tuple[int, str]:
    """Run `automator *args` and return (exit code, output); an exception escapes as itself."""
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def install_plugin(package: Path, target: Path) -> Path:
    """A connector package installed with pip into `target`, a folder of its own (not the project's environment)."""
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(package)], check=True, timeout=120,
                   env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    return target


def plugin_env(site: Path, **extra: str) -> dict[str, str]:
    """The environment of a process that finds the packages installed in `site`."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]), **extra}
