"""The click CLI: each command parses options, calls one API function, formats, and sets the exit code."""
from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click

from automator.config.load import builtin_connectors, load_project
from automator.config.problems import Problem
from automator.config.source import load_document


def _fail_problems(problems: list[Problem]) -> None:
    for problem in problems:
        click.echo(problem.format())
    click.echo(f"{_plural(len(problems), 'problem')} found", err=True)
    sys.exit(1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="automator")
def cli() -> None:
    """automator: CRM funnels and automations for service businesses, written in YAML."""


@cli.command()
@click.argument("path", default=".", type=click.Path(exists=True, path_type=Path))
def validate(path: Path) -> None:
    """Check a project's files: schemas, names, expressions, cron, durations.

    Prints `path:line:col: error: message` per problem and exits 1, or a one-line summary and exits 0.

    Example: automator validate rules/clinic
    """
    project, problems = load_project(path, only_rules_under=path)
    if project is None:
        _fail_problems(problems)
    assert project is not None
    counts = [(len(project.rules), "rule"), (len(project.pipelines), "pipeline"),
              (len(project.config.connectors), "connector")]
    click.echo("ok: " + ", ".join(_plural(n, word) for n, word in counts) + f" in {_plural(len(project.files), 'file')}")


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _load_data(path: Path, what: str) -> Any:
    doc, problems = load_document(path)
    if problems or doc is None:
        _fail_problems(problems or [Problem(str(path), 1, 1, f"the {what} file is empty")])
    assert doc is not None
    return doc.data


@cli.command("dry-run")
@click.option("--event", "event_file", required=True, type=click.Path(exists=True, path_type=Path),
              help="YAML or JSON file with one event, as in a test's `when:` list.")
@click.option("--state", "state_file", type=click.Path(exists=True, path_type=Path),
              help="YAML or JSON list of entities the store knows, as in a test's `given:`.")
@click.option("--at", "at", help="The moment to decide at (ISO 8601); default: now.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--project", "project_path", default=".", type=click.Path(exists=True, path_type=Path),
              help="The project folder (or any folder inside it).")
def dry_run_cmd(event_file: Path, state_file: Path | None, at: str | None, fmt: str, project_path: Path) -> None:
    """Show what one event would do, changing nothing outside.

    Example: automator dry-run --event examples/no-show.yaml --state examples/state.yaml --at 2026-03-02T21:00:00+03:00
    """
    from automator.dryrun import dry_run, format_text

    project, problems = load_project(project_path)
    if project is None:
        _fail_problems(problems)
    assert project is not None
    event = _load_data(event_file, "event")
    state = _load_data(state_file, "state") if state_file else []
    try:
        moment = _moment(at, event, project.config.timezone)
        plan = dry_run(project, event, state or [], moment)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    if fmt == "json":
        click.echo(json.dumps(plan, ensure_ascii=False, indent=2, default=str))
    else:
        click.echo(format_text(plan, project))


def _moment(at: str | None, event: Any, tz: Any) -> datetime:
    text = at or (event.get("at") if isinstance(event, dict) else None)
    if not text:
        return datetime.now(timezone.utc)
    try:
        moment = datetime.fromisoformat(str(text))
    except ValueError as exc:
        raise ValueError(f"--at: not an ISO 8601 moment: {text!r}") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=tz)


@cli.command()
@click.argument("path", default=".", type=click.Path(exists=True, path_type=Path))
@click.option("-v", "--verbose", is_flag=True, help="List passing cases too.")
def test(path: Path, verbose: bool) -> None:
    """Run *.test.yaml rule tests on a simulated clock; ends with `N passed, N failed`.

    Example: automator test rules/clinic
    """
    from automator.testing import report, run_tests

    text, ok = report(run_tests(path), verbose=verbose)
    click.echo(text)
    sys.exit(0 if ok else 1)


@cli.command()
@click.argument("directory", default="schemas", type=click.Path(file_okay=False, path_type=Path))
def schema(directory: Path) -> None:
    """Write the JSON Schemas of every file kind (and every installed connector's actions) for editors.

    Example: automator schema .vscode/schemas
    """
    from automator.config.schemas import SchemaSet

    written = SchemaSet().write_bundle(directory)
    click.echo(f"wrote {len(written)} schemas to {directory}")


@cli.command()
def connectors() -> None:
    """List installed connector types and the actions each performs.

    Example: automator connectors
    """
    for name, cls in sorted(builtin_connectors().items()):
        click.echo(f"{name}  ({cls.__module__})")
        for action_name, spec in sorted(cls.actions.items()):
            click.echo(f"    {action_name:<22} {spec.delivery:<14} {spec.description}")


def main() -> None:
    """Console-script entry point."""
    cli()
