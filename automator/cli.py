"""The click CLI: each command parses options, calls one API function, formats, and sets the exit code."""
from __future__ import annotations

import functools
import json
import sqlite3
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from automator.config.load import builtin_connectors, load_project
from automator.config.problems import Problem, sort_problems
from automator.config.project import TEST_SUFFIX
from automator.config.source import load_document
from automator.store.base import OutdatedStore, Store


def _fail_problems(problems: list[Problem]) -> NoReturn:
    for problem in problems:
        click.echo(problem.format())
    errors = sum(p.severity == "error" for p in problems)
    warnings = len(problems) - errors
    click.echo(f"{_plural(errors, 'problem')} found" + (f" (and {_plural(warnings, 'warning')})" if warnings else ""),
               err=True)
    sys.exit(1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="automator")
def cli() -> None:
    """automator: CRM funnels and automations for service businesses, written in YAML."""


@cli.command()
@click.argument("path", default=".", type=click.Path(exists=True, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="json: one document for editors and CI, every problem with its place and a summary.")
def validate(path: Path, fmt: str) -> None:
    """Check a project's files: schemas, names, expressions, cron, durations.

    Prints `path:line:col: error: message` per problem and exits 1, or a one-line summary and exits 0 (after a
    `warning:` on stderr for what loads but may not do what was meant: a rule file with no rules, a connector that
    accepts no webhooks for want of a secret, an SMS text longer than the connector's `max_parts`). `--format json`
    prints one document instead, same exit codes.

    \b
    Example: automator validate rules/clinic --format json
    """
    from automator.config.webhooks import unauthenticated_webhooks

    types = builtin_connectors()
    project, problems = load_project(path, only_rules_under=path, connector_types=types)
    if project is not None and path.name.endswith(TEST_SUFFIX) and path.is_file():
        problems = _test_file_problems(path, project.schemas)  # a test file named: its own schema, too
        if any(p.severity == "error" for p in problems):
            project = None
    if project is not None:
        problems = sort_problems([*project.warnings, *unauthenticated_webhooks(project, types)])
    if fmt == "json":
        click.echo(json.dumps(_validation_report(project, problems), ensure_ascii=False, indent=2))
        sys.exit(0 if project is not None else 1)
    if project is None:
        _fail_problems(problems)
    assert project is not None
    for warning in problems:
        click.echo(warning.format(), err=True)
    if path.name.endswith(TEST_SUFFIX) and path.is_file():
        click.echo(f"ok: {path} is a well-formed test; run it with `automator test {path}`")
        return
    counts = [(len(project.rules), "rule"), (len(project.pipelines), "pipeline"),
              (len(project.config.connectors), "connector")]
    click.echo("ok: " + ", ".join(_plural(n, word) for n, word in counts) + f" in {_plural(len(project.files), 'file')}")


def _test_file_problems(path: Path, schemas: Any) -> list[Problem]:
    """A test file checked as `automator test` reads it, without running it."""
    from automator.config.project import display

    doc, problems = load_document(path, display_path=display(path))
    if doc is not None and doc.data is not None:
        problems += schemas.validate(doc, "test.schema.json")
    elif doc is not None:
        problems.append(Problem(doc.path, 1, 1, "the test file is empty"))
    return sort_problems(problems)


def _validation_report(project: Any, problems: list[Problem]) -> dict[str, Any]:
    """`validate --format json`: a stable document (`version` changes only if a field changes meaning)."""
    errors = sum(p.severity == "error" for p in problems)
    loaded = project is not None
    return {"version": 1, "ok": loaded, "problems": [p.to_json() for p in problems],
            "summary": {"errors": errors, "warnings": len(problems) - errors,
                        "rules": len(project.rules) if loaded else None,
                        "pipelines": len(project.pipelines) if loaded else None,
                        "connectors": len(project.config.connectors) if loaded else None,
                        "files": len(project.files) if loaded else None}}


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

    \b
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
@click.option("--sandbox", is_flag=True,
              help="Perform through the real connectors and their emulators instead of playing them as local.")
def test(path: Path, verbose: bool, sandbox: bool) -> None:
    """Run *.test.yaml rule tests on a simulated clock; ends with `N passed, N failed`.

    \b
    Example: automator test rules/clinic --sandbox
    """
    from automator.testing import report, run_tests

    _check_test_path(path)
    results = run_tests(path, sandbox=sandbox)
    if not results:  # a folder with no tests: not a pass, and not a silent "0 passed, 0 failed"
        raise click.ClickException(f"no *.test.yaml file at or under {path}")
    text, ok = report(results, verbose=verbose)
    click.echo(text)
    sys.exit(0 if ok else 1)


def _check_test_path(path: Path) -> None:
    """A usage error for a file that is not a test (a rule file, most often), naming the tests beside it."""
    if path.is_dir() or path.name.endswith(TEST_SUFFIX):
        return
    doc, _ = load_document(path)
    rules = doc is not None and isinstance(doc.data, dict) and "rules" in doc.data
    head = f"{path} is {'a rule file, ' if rules else ''}not a test file (test files end in {TEST_SUFFIX})"
    beside = sorted(p for p in path.parent.glob(f"*{TEST_SUFFIX}") if p.is_file())
    own = path.parent / (path.name.rsplit(".", 1)[0] + TEST_SUFFIX)
    folder = f"`automator test {path.parent}`"
    if own in beside:
        more = f", or {folder} for all {len(beside)} beside it" if len(beside) > 1 else ""
        tail = f"its test is {own}: run `automator test {own}`{more}"
    elif beside:
        tail = f"the tests beside it: {', '.join(str(p) for p in beside)}; run {folder}"
    elif rules:
        tail = f"no test file is beside it: write {own} (README, \"A rule in five minutes\", step 4)"
    else:
        tail = f"give a *{TEST_SUFFIX} file or a folder of them"
    raise click.UsageError(f"{head}: {tail}")


@cli.command()
@click.argument("directory", default="schemas", type=click.Path(file_okay=False, path_type=Path))
def schema(directory: Path) -> None:
    """Write the JSON Schemas of every file kind (and every installed connector's actions) for editors.

    \b
    Example: automator schema .vscode/schemas
    """
    from automator.config.schemas import SchemaSet
    from automator.connector import vendor_schemas

    written = SchemaSet(vendor_schemas(builtin_connectors())).write_bundle(directory)
    click.echo(f"wrote {len(written)} schemas to {directory}")


@cli.command()
@click.argument("connector", required=False)
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text", show_default=True)
@click.option("--project", "project_path", default=".", type=click.Path(exists=True, path_type=Path),
              help="The project folder (or any folder inside it).")
def events(connector: str | None, fmt: str, project_path: Path) -> None:
    """List the events rules can start on and the fields of each kind of record, with their types.

    CONNECTOR is a connector's name in automator.yaml (booking) or a connector type (yclients); without it, the
    whole project's: what its connectors produce and the engine's own.

    Example: automator events booking --format json
    """
    from automator.catalogue_text import as_json, as_markdown, as_text, pick

    types = builtin_connectors()
    project, problems = load_project(project_path, connector_types=types)
    if project is None:
        _fail_problems(problems)
    assert project is not None
    try:
        catalogue = pick(project.config.catalogue, project.config.connectors, types, connector)
    except LookupError as exc:
        raise click.UsageError(str(exc)) from None
    shown = {"json": lambda c: json.dumps(as_json(c), ensure_ascii=False, indent=2), "markdown": as_markdown}
    click.echo(shown.get(fmt, as_text)(catalogue))


@cli.command()
def connectors() -> None:
    """List installed connector types, the actions each performs and what else it gives (history, ad spend).

    \b
    Example: automator connectors
    """
    for name, cls in sorted(builtin_connectors().items()):
        click.echo(f"{name}  ({cls.__module__})")
        for action_name, spec in sorted(cls.actions.items()):
            click.echo(f"    {action_name:<22} {spec.delivery:<14} {spec.description}")
        if cls.can_backfill():
            click.echo(f"    {'history':<37} automator backfill CONNECTOR --since DATE")
        if cls.can_report_spend():
            click.echo(f"    {'ad spend':<37} automator spend pull CONNECTOR --since DATE")


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text",
              show_default=True, help="markdown is the README's function reference, as it is generated.")
def functions(fmt: str) -> None:
    """List every expression function: its signature, what it gives, and examples with their values,
    then the date format tokens of fmt_date.

    Example: automator functions --format json
    """
    from automator import functions as reference

    if fmt == "json":
        click.echo(json.dumps(reference.as_json(), ensure_ascii=False, indent=2))
    else:
        click.echo(reference.as_markdown() if fmt == "markdown" else reference.as_text())


# ---- the daemon and what it did ---------------------------------------------------------------------

_config_option = click.option("--config", "config", default="automator.yaml", show_default=True,
                              type=click.Path(path_type=Path), help="The project's automator.yaml (or its folder).")
_db_option = click.option("--db", "db", type=click.Path(path_type=Path),
                          help="The database, if not the one automator.yaml names.")


@cli.command()
@_config_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=int, help="Port to listen on.")
@click.option("--sandbox", is_flag=True, help="Play every outside system with its local emulator.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], case_sensitive=False),
              help="INFO logs a line per accepted event, rule run and settled effect; WARNING only trouble.")
@click.option("--no-mask", is_flag=True, help="Show phone numbers and names in logs (for debugging only).")
@_db_option
@click.option("--synchronous", type=click.Choice(["FULL", "NORMAL"]), default="FULL", show_default=True,
              help="FULL survives power loss; NORMAL only process crashes.")
@click.option("--no-reload", is_flag=True, help="Do not watch the rule files for changes.")
@click.option("--processes", type=click.IntRange(1, 2), default=2, show_default=True,
              help="2: rules are decided by a second process, on another core; 1: all in this one.")
def run(config: Path, host: str, port: int, sandbox: bool, log_format: str, log_level: str, no_mask: bool,
        db: Path | None, synchronous: str, no_reload: bool, processes: int) -> None:
    """Run the daemon: receive webhooks, run the rules, perform the effects, keep the timers.

    \b
    Example: automator run --sandbox --port 8080
    """
    from automator.connector import ConfigError
    from automator.daemon.instance import AlreadyRunning
    from automator.daemon.logs import setup_logging
    from automator.daemon.options import LogOptions, daemon_options
    from automator.daemon.process import Daemon, run_daemon
    from automator.observe import config_path

    setup_logging(log_format, log_level, mask=not no_mask)
    _say_http_engine()
    project, problems = load_project(config_path(config).parent)
    if project is None:
        _fail_problems(problems)
    assert project is not None
    options = daemon_options(project.root, project.config, host=host, port=port, sandbox=sandbox, db_path=db,
                             synchronous=synchronous, reload=not no_reload, processes=processes,
                             log=LogOptions(format=log_format, level=log_level, mask=not no_mask))
    daemon = Daemon(project, options)
    try:
        sys.exit(run_daemon(daemon))
    except (ConfigError, AlreadyRunning) as exc:  # a `${env:NAME}` not set, a second daemon: said plainly, exit 1
        raise click.ClickException(f"{exc} (nothing was started)") from exc


def _say_http_engine() -> None:
    """Refuse an AUTOMATOR_HTTP_ENGINE naming no engine before anything starts (not at the first call), and log
    the operator's choice when it is not the default: both processes make their clients from that variable."""
    import logging

    from automator import http

    try:
        engine = http.default_engine()
    except ValueError as exc:
        raise click.ClickException(f"{exc} (nothing was started)") from exc
    if engine != http.DEFAULT_ENGINE:
        logging.getLogger("automator.http").info("outbound HTTP on the %s engine (%s)", engine, http.ENGINE_VARIABLE)


_Command = TypeVar("_Command", bound=Callable[..., None])


def _operator(command: _Command) -> _Command:
    """An operator command ends in one line and exit 1 on any unexpected error, never in a traceback."""

    @functools.wraps(command)
    def guarded(*args: Any, **kwargs: Any) -> None:
        try:
            command(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except sqlite3.OperationalError as exc:
            from automator.observe import WRITE_WAIT

            if "locked" in str(exc):  # only a write (replay, drop) waits for the lock, WRITE_WAIT s at most
                raise click.ClickException(f"the database is busy: another process (the daemon?) held its write "
                                           f"lock for over {WRITE_WAIT:g} s; nothing was changed, try again") from exc
            raise click.ClickException(f"the database cannot be used: {exc}") from exc
        except Exception as exc:
            raise click.ClickException(f"{type(exc).__name__}: {exc}") from exc

    return guarded  # type: ignore[return-value]


def _store(config: Path, db: Path | None, *, write: bool = False) -> Store:
    from automator.observe import config_path, open_store

    try:
        return open_store(config_path(config), db, write=write)
    except (FileNotFoundError, OutdatedStore) as exc:
        raise click.ClickException(str(exc)) from exc


def _timezone(config: Path) -> Any:
    from automator.observe import config_path, project_timezone

    return project_timezone(config_path(config))


@cli.command()
@_config_option
@_db_option
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@_operator
def status(config: Path, db: Path | None, fmt: str) -> None:
    """The daemon's state: loaded rules, load errors, queue depth, timers, effects, dead letters.

    \b
    Example: automator status
    """
    from automator.clock import show_time
    from automator.observe import status as read_status

    tz = _timezone(config)
    report = read_status(_store(config, db), tz=tz)
    if fmt == "json":
        click.echo(json.dumps(report, ensure_ascii=False, indent=2))
        return
    daemon = report["daemon"]
    click.echo(f"daemon:      {daemon.get('state', 'never started')}  pid {daemon.get('pid', '-')}  "
               f"{daemon.get('address', '')}{'  (sandbox)' if daemon.get('sandbox') else ''}")
    if daemon.get("started_at"):
        click.echo(f"since:       {show_time(daemon['started_at'], tz)}, "
                   f"last heartbeat {show_time(daemon.get('heartbeat'), tz)}")
    click.echo(f"rules:       {daemon.get('rules', 0)} loaded, version {daemon.get('version', '-')}")
    for problem in daemon.get("load_errors") or []:
        click.echo(f"  load error: {problem}")
    click.echo(f"queue:       {report['journal_pending']} events waiting (oldest {report['journal_lag_seconds']:.1f} s), "
               f"{report['events_failed']} failed")
    click.echo(f"runs:        {report['runs_waiting']} waiting")
    click.echo(f"timers:      {report['timers_pending']} pending")
    click.echo(f"effects:     {report['effects_pending']} pending, {report['dead_letters']} dead letters")


@cli.command()
@_config_option
@_db_option
@click.option("--rule", help="Only runs of this rule.")
@click.option("--entity", help="Only runs about this entity, as KIND:ID (client:77).")
@click.option("--since", help="Only runs started at or after this ISO 8601 moment.")
@click.option("--limit", default=50, show_default=True, type=int)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@_operator
def runs(config: Path, db: Path | None, rule: str | None, entity: str | None, since: str | None, limit: int,
         fmt: str) -> None:
    """List rule runs, newest last.

    \b
    Example: automator runs --rule no-show-to-rehabilitation --entity booking:1001
    """
    from automator.clock import show_time
    from automator.observe import effect_summary, local_iso

    tz = _timezone(config)
    try:
        moment = datetime.fromisoformat(since) if since else None
    except ValueError as exc:
        raise click.UsageError(f"--since: not an ISO 8601 moment: {since!r}") from exc
    if moment is not None and moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)  # a time without an offset is the project's local time
    store = _store(config, db)
    found = store.runs(rule, entity=entity, since=moment, limit=limit)
    states = store.effect_states(r.id for r in found)
    if fmt == "json":
        click.echo(json.dumps([{"id": r.id, "rule": r.rule_id, "status": r.status, "entity": str(r.entity or ""),
                                "event": r.event_id, "started_at": local_iso(r.started_at, tz),
                                "effects": states.get(r.id, {})}
                               for r in found], ensure_ascii=False, indent=2))
        return
    for r in found:
        effects = f"  effects: {effect_summary(states[r.id])}" if r.id in states else ""
        click.echo(f"{r.id}  {show_time(r.started_at, tz)}  {r.status:<9} {r.rule_id}  {r.entity or ''}{effects}")
    click.echo(f"{_plural(len(found), 'run')}", err=True)


@cli.command()
@click.argument("ident")
@_config_option
@_db_option
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@_operator
def explain(ident: str, config: Path, db: Path | None, fmt: str) -> None:
    """Everything about one run or event: each rule considered, each condition's value, each step and effect.

    \b
    Example: automator explain 3f2a9c0d1e4b5a6f
    """
    from automator.observe import explain as read_explain, format_explain

    report = read_explain(_store(config, db), ident)
    if report is None:
        raise click.ClickException(f"no run or event with id {ident!r}")
    click.echo(json.dumps(report, ensure_ascii=False, indent=2, default=str) if fmt == "json"
               else format_explain(report, _timezone(config)))


@cli.command()
@_config_option
@_db_option
@click.option("--limit", default=50, show_default=True, type=int)
@_operator
def timers(config: Path, db: Path | None, limit: int) -> None:
    """Pending timers (waits, `held` triggers, schedules), soonest first.

    \b
    Example: automator timers --limit 10
    """
    from automator.clock import show_time

    store, tz = _store(config, db), _timezone(config)
    for timer in store.timers(limit):
        click.echo(f"{show_time(timer.due_at, tz)}  {timer.kind:<8} {timer.rule_id}  "
                   f"{timer.key or ''}  {timer.run_id or ''}")
    click.echo(f"{_plural(store.count('timers'), 'timer')} pending", err=True)


@cli.command()
@_config_option
@_db_option
@click.option("--replay", "replay_key", metavar="ID", help="Put a parked effect back in the outbox.")
@click.option("--drop", "drop_key", metavar="ID", help="Give up on a parked effect.")
@_operator
def dead(config: Path, db: Path | None, replay_key: str | None, drop_key: str | None) -> None:
    """Effects parked for an operator: dead (gave up or refused) and uncertain (maybe performed).

    \b
    Example: automator dead --replay 3f2a9c0d1e4b5a6f/do/0
    """
    from automator.clock import show_time

    now = datetime.now(timezone.utc)
    if replay_key or drop_key:
        store = _store(config, db, write=True)  # the one operator command that writes: through the write lock
        done = store.replay(replay_key, now) if replay_key else store.drop(str(drop_key), now)
        if not done:
            raise click.ClickException(f"no parked effect {replay_key or drop_key!r}")
        if replay_key and store.path is not None:
            from automator.daemon.instance import nudge

            nudge(store.path)  # a running daemon's outbox sleeps until woken: it performs the effect now
        click.echo(f"{'replayed' if replay_key else 'dropped'} {replay_key or drop_key}")
        return
    tz = _timezone(config)
    letters = _store(config, db).dead_letters()
    for e in letters:
        click.echo(f"{e['key']}  [{e['status']}]  {e['action']} via {e['connector']}  rule {e['rule_id']}  "
                   f"{e['attempts'] or 0} tries  parked {show_time(e['updated_at'], tz)}\n    {e['error'] or ''}\n    "
                   f"{json.dumps(e['params'], ensure_ascii=False, default=str)}")
    click.echo(f"{_plural(len(letters), 'dead letter')}", err=True)


# ---- history brought in from outside the event stream ----------------------------------------------------

@cli.group("import")
def import_() -> None:
    """Bring history kept elsewhere into the store (no rule runs: history is not news).

    \b
    Example: automator import visits examples/visits.csv --system booking
    """


@import_.command("visits")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--system", default="import", show_default=True,
              help="The connector whose client ids the `client` column holds (booking: YCLIENTS's); one of "
                   "automator.yaml's connectors, or `import` for ids of no system.")
@_config_option
@_db_option
@_operator
def import_visits_cmd(file: Path, system: str, config: Path, db: Path | None) -> None:
    """Import visits from a CSV file: idempotent (the same file again adds nothing); a bad row is reported as
    FILE:LINE:COL and skipped, the good ones are imported, and the exit is 1 when any row was bad.

    Columns: client or phone, at, amount, and optionally visit, branch, services (separated by |), staff, category,
    kind (visit or purchase), currency, booking. The derived fields of the clients touched are recomputed.

    \b
    Example: automator import visits examples/visits.csv --system booking
    """
    from automator.ingest import IMPORT, import_visits
    from automator.observe import config_path

    project, problems = load_project(config_path(config).parent)
    if project is None:
        _fail_problems(problems)
        return
    # The ids of a system no connector names would each be a stranger: every row a new person.
    if system != IMPORT and system not in project.config.systems:
        raise click.UsageError(f"--system {system!r}: no connector of automator.yaml has that name and ids of its "
                               f"own (there are: {', '.join(sorted(project.config.systems)) or 'none'}; `import` "
                               "for ids of no system)")
    store = _store_for_history(config, db)
    counts = import_visits(store, file, system, _timezone(config), datetime.now(timezone.utc),
                           progress=lambda c: click.echo(f"… {c.read} rows read, {c.new} new visits stored",
                                                         err=True))
    _ingested(counts, "rows")


@cli.command()
@click.argument("connector")
@click.option("--since", required=True, help="The first day (ISO 8601 date or moment) of the history to fetch.")
@_config_option
@_db_option
@_operator
def backfill(connector: str, since: str, config: Path, db: Path | None) -> None:
    """Fetch a connector's clients and visits since a date into the store (idempotent; no rule runs).

    \b
    Example: automator backfill booking --since 2025-01-01
    """
    from automator.ingest import backfill as ingest

    tz = _timezone(config)
    try:
        start = datetime.fromisoformat(since)
    except ValueError as exc:
        raise click.UsageError(f"--since: not an ISO 8601 date or moment: {since!r}") from exc
    start = start if start.tzinfo is not None else start.replace(tzinfo=tz)
    project = _project(config, connector)
    store = _store_for_history(config, db)

    async def fetch(built: Any) -> Any:
        # `Connector.backfill(since)`: an async generator of client.updated, then visit.completed.
        if not built.can_backfill():
            raise NotImplementedError(f"connector {connector!r} ({built.type}) has no history to backfill")
        return await ingest(store, connector, built.backfill(start), datetime.now(timezone.utc),
                            progress=lambda c: click.echo(f"… {c.read} records read, {c.new} new visits", err=True))

    _ingested(_with_connector(project, store, connector, fetch), "records")


# ---- ad spend ---------------------------------------------------------------------------------------------

@cli.group("spend")
def spend() -> None:
    """Bring ad spend per day, channel and campaign into the store, for the channels report (CPL, CAC, ROMI).

    \b
    Example: automator spend import examples/spend.csv
    """


@spend.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--source", default="csv", show_default=True, help="A name for where the figures came from "
              "(kept with each row: yandex_direct_export).")
@_config_option
@_db_option
@_operator
def spend_import(file: Path, source: str, config: Path, db: Path | None) -> None:
    """Import ad spend from a CSV file: idempotent (the same file again changes nothing; a corrected file replaces
    the figures of the days and channels it lists); a bad row is reported as FILE:LINE:COL and skipped, the good
    ones are imported, and the exit is 1 when any row was bad.

    Columns: day (YYYY-MM-DD), channel (a name or title of automator.yaml's channels:), amount (1500.00), and
    optionally campaign and currency (RUB).

    \b
    Example: automator spend import examples/spend.csv --source vk_cabinet
    """
    from automator.spend import import_csv

    project = _project(config)
    result = import_csv(_store_for_history(config, db), file, project.config.channels, datetime.now(timezone.utc),
                        source=source)
    _spent(result, project.config.channels)


@spend.command("pull")
@click.argument("connector")
@click.option("--since", required=True, help="The first day (YYYY-MM-DD) of the spend to fetch.")
@click.option("--until", help="The last day (YYYY-MM-DD), included; default today.")
@_config_option
@_db_option
@_operator
def spend_pull(connector: str, since: str, until: str | None, config: Path, db: Path | None) -> None:
    """Fetch a connector's ad spend per day from --since to --until into the store (idempotent: the days fetched
    again replace what was stored).

    \b
    Example: automator spend pull ads --since 2026-03-01 --until 2026-03-31
    """
    from datetime import date

    from automator.spend import pull

    try:
        first = date.fromisoformat(since)
        last = date.fromisoformat(until) if until else datetime.now(_timezone(config)).date()
    except ValueError as exc:
        raise click.UsageError(f"--since/--until: not a date written YYYY-MM-DD: {exc}") from exc
    if last < first:
        raise click.UsageError(f"--until {last} is before --since {first}")
    project = _project(config, connector)
    store = _store_for_history(config, db)

    async def fetch(built: Any) -> Any:
        if not built.can_report_spend():
            raise NotImplementedError(f"connector {connector!r} ({built.type}) reports no ad spend")
        return await pull(store, built.spend(first, last), project.config.channels, datetime.now(timezone.utc),
                          source=connector)

    _spent(_with_connector(project, store, connector, fetch), project.config.channels)


def _project(config: Path, connector: str | None = None) -> Any:
    """The project loaded (its problems printed and exit 1 when it cannot be), with `connector` one of its
    connectors when named."""
    from automator.observe import config_path

    project, problems = load_project(config_path(config).parent)
    if project is None:
        _fail_problems(problems)
    if connector is not None and connector not in project.config.connectors:
        raise click.UsageError(f"no connector {connector!r} in automator.yaml "
                               f"(there are: {', '.join(sorted(project.config.connectors))})")
    return project


def _with_connector(project: Any, store: Store, connector: str, use: Callable[[Any], Awaitable[Any]]) -> Any:
    """What `use` does with the project's connector `connector`, built as the daemon builds it and closed after;
    a capability it has not (NotImplementedError) is one line and exit 1."""
    import asyncio

    from automator.clock import SystemClock
    from automator.daemon.connectors import build_connectors, close_connectors

    async def run() -> Any:
        built = build_connectors(project, store.db, SystemClock(), announce=False)
        try:
            return await use(built[connector])
        finally:
            await close_connectors(built.values())

    try:
        return asyncio.run(run())
    except NotImplementedError as exc:
        raise click.ClickException(str(exc)) from exc


def _spent(result: Any, channels: Any) -> None:
    for problem in result.problems:
        click.echo(problem.format())
    for line in result.summary(channels):
        click.echo(line)
    if result.problems:
        sys.exit(1)


def _store_for_history(config: Path, db: Path | None) -> Store:
    from automator.observe import config_path, open_store

    return open_store(config_path(config), db, write=True, create=True)


def _ingested(counts: Any, what: str) -> None:
    for problem in counts.problems:
        click.echo(problem.format())
    click.echo(f"{counts.read} {what} read: {_plural(counts.new, 'new visit')}, "
               f"{_plural(counts.clients, 'client')} recomputed, {counts.skipped} skipped")
    if counts.problems:
        sys.exit(1)


@cli.group("loyalty")
def loyalty() -> None:
    """Loyalty programs (loyalty.yaml) and each client's ledger: points, tiers, certificates and abonements.

    \b
    Example: automator loyalty show +79161234567
    """


@loyalty.command("simulate")
@click.option("--programs", "names", default="", help="Programs to compare, separated by commas (all by default).")
@click.option("--from", "start", metavar="DATE", help="The first day of visits replayed (YYYY-MM-DD).")
@click.option("--to", "end", metavar="DATE", help="The last day, inclusive (today by default).")
@click.option("--visits", "visits_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Replay a visits CSV (automator import visits' format) instead of the store's history.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@_config_option
@_db_option
@_operator
def loyalty_simulate(names: str, start: str | None, end: str | None, visits_file: Path | None, fmt: str,
                     config: Path, db: Path | None) -> None:
    """Each program run over the same visit history as if every client were in it, side by side: clients by
    tier, points accrued, reversed, expired and outstanding, discounts, free visits, referral payouts, and the
    cost as a share of revenue. Nothing is written.

    \b
    Example: automator loyalty simulate --programs base,gold --from 2025-01-01 --to 2025-12-31
    """
    from automator.loyalty_simulation import run
    from automator.reports.period import PeriodError, parse_day

    project = _project(config)
    if project.loyalty is None:
        raise click.UsageError("there is no loyalty.yaml beside automator.yaml: no programs to simulate")
    try:
        first, last = (parse_day(start, "--from") if start else None), (parse_day(end, "--to") if end else None)
        found = run(project.loyalty, [n.strip() for n in names.split(",") if n.strip()],
                    store=None if visits_file else _store(config, db), visits_file=visits_file, first=first,
                    last=last, fmt=fmt, tz=project.config.timezone, now=datetime.now(timezone.utc))
    except (PeriodError, ValueError) as exc:
        raise click.UsageError(str(exc)) from exc
    click.echo(found.text, nl=False)
    for problem in found.problems:
        click.echo(problem.format(), err=True)
    if found.problems:
        sys.exit(1)


@cli.command()
@click.argument("name", metavar="REPORT", type=click.Choice(["channels", "funnel", "retention", "staff", "loyalty"]))
@click.option("--from", "start", metavar="DATE", help="The first day (YYYY-MM-DD, the project's time zone).")
@click.option("--to", "end", metavar="DATE", help="The last day, inclusive.")
@click.option("--period", metavar="NAME", help="A named period instead: yesterday, last_week, this_week, "
              "last_month, this_month, last_30d, last_90d, this_year.")
@click.option("--by", help="Group by: channels: channel|campaign|source; funnel: manager; staff: staff|branch.")
@click.option("--touch", type=click.Choice(["first", "last"]), default="first", show_default=True,
              help="channels: attribute a lead to its first or its last touch.")
@click.option("--pipeline", help="funnel: only this pipeline (default: each).")
@click.option("--table", "table", metavar="KEY", help="csv: the table to write (default: the report's main one).")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json", "html"]), default="table",
              show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to FILE, not stdout.")
@_config_option
@_db_option
@_operator
def report(name: str, start: str | None, end: str | None, period: str | None, by: str | None, touch: str,
           pipeline: str | None, table: str | None, fmt: str, output: Path | None, config: Path,
           db: Path | None) -> None:
    """A report over the store: channels (leads, spend, CAC, ROMI by channel), funnel (stages, drop-off, time in
    stage), retention (who comes back, LTV, cohorts), staff (bookings, visits, revenue, NPS per employee) or
    loyalty (bonus points outstanding, and accrued, spent, expired and lapsing by month).

    \b
    Example: automator report channels --period last_month --format csv -o channels.csv
    """
    from automator.observe import config_path
    from automator.reports import ReportError, compute, project_settings
    from automator.reports.period import PeriodError, named, parse_day
    from automator.reports.text import render

    settings = project_settings(config_path(config))
    try:
        if period and (start or end):
            raise PeriodError("give either --period or --from and --to, not both")
        if period:
            days = named(period, datetime.now(timezone.utc), settings.tz)
            first, last = days.start, days.end
        elif start and end:
            first, last = parse_day(start, "--from"), parse_day(end, "--to")
        else:
            raise PeriodError("say which days: --from DATE --to DATE, or --period NAME")
        found = compute(name, _existing_store(config, db), start=first, end=last, by=by, touch=touch,
                        pipeline=pipeline, channels=settings.channels, tz=settings.tz, pipelines=settings.pipelines)
        text = render(found, fmt, table)
    except (PeriodError, ReportError, KeyError) as exc:
        raise click.UsageError(str(exc).strip('"')) from exc
    except ModuleNotFoundError as exc:  # the HTML page is drawn by automator.reports.html
        click.echo(f"Error: --format html is not available in this build ({exc.name} is missing)", err=True)
        raise click.exceptions.Exit(2) from exc
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"{name}: {first.isoformat()} – {last.isoformat()} written to {output}", err=True)


@loyalty.command("show")
@click.argument("client")
@click.option("--at", "at", help="Balances as of this moment (ISO 8601); default: now.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@_config_option
@_db_option
@_operator
def loyalty_show(client: str, at: str | None, fmt: str, config: Path, db: Path | None) -> None:
    """One client's loyalty (CLIENT: their id or phone): tier, points and what lapses soon, certificates,
    abonements, discounts in force, and every ledger row with its reason and cause.

    \b
    Example: automator loyalty show 77 --format json
    """
    from automator.config.load import load_project
    from automator.loyalty.config import DEFAULT_NOTICE
    from automator.loyalty.statement import person_of, statement, text
    from automator.observe import config_path

    store = _store(config, db)
    person = person_of(store, client)
    if person is None:
        raise click.ClickException(f"no client {client!r} in the store (give their id or phone)")
    project, _ = load_project(config_path(config).parent) if config_path(config).exists() else (None, [])
    notice = project.loyalty.notice if project is not None and project.loyalty is not None else DEFAULT_NOTICE
    moment = datetime.fromisoformat(at) if at else datetime.now(timezone.utc)
    found = statement(person, store.ledger_of(person), moment if moment.tzinfo else moment.replace(
        tzinfo=_timezone(config)), notice, _timezone(config))
    click.echo(json.dumps(found.to_json(), ensure_ascii=False, indent=2) if fmt == "json" else text(found))


def _existing_store(config: Path, db: Path | None) -> Path:
    from automator.observe import config_path, store_file

    try:
        return store_file(config_path(config), db)
    except FileNotFoundError as exc:
        raise click.ClickException(str(exc)) from exc


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@_config_option
@_db_option
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
def backup(file: Path, config: Path, db: Path | None, force: bool) -> None:
    """Copy the database to FILE, consistently, while the daemon runs (SQLite's online backup API).

    \b
    Example: automator backup automator-$(date +%F).db
    """
    from automator.observe import config_path, store_file
    from automator.store.backup import BackupError, backup as copy_database

    try:
        report = copy_database(store_file(config_path(config), db), file, force=force)
    except (BackupError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{report.target}  {report.size} bytes ({report.pages} pages, {report.seconds:.1f} s)")


@cli.group("segments")
def segments_group() -> None:
    """Clients' RFM segments (segments.yaml): see them, explain one client, rescore everyone.

    \b
    Example: automator segments show --format csv
    """


def _segmenting(config: Path) -> tuple[Any, Any, datetime, Any]:
    """The project with its segments.yaml, now, and the expression context segments are decided with."""
    from automator.observe import config_path
    from automator.rescoring import context

    project = _project(config)
    if project.segments is None:
        raise click.ClickException(f"there is no segments.yaml beside {config_path(config)}")
    now = datetime.now(timezone.utc)
    return project, project.segments, now, context(project, now)


@segments_group.command("show")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@_config_option
@_db_option
@_operator
def segments_show(fmt: str, config: Path, db: Path | None) -> None:
    """Each segment: clients, share, average check, average recency and revenue over the window.

    \b
    Example: automator segments show --format csv > segments.csv
    """
    from automator.reports.text import render
    from automator.segment_views import show

    project, segments, now, ectx = _segmenting(config)
    found = show(_existing_store(config, db), segments, now, project.config.timezone, ectx)
    click.echo(render(found, fmt), nl=False)


@segments_group.command("explain")
@click.argument("client")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@_config_option
@_db_option
@_operator
def segments_explain(client: str, fmt: str, config: Path, db: Path | None) -> None:
    """One client's R, F and M values, the cut points, the scores, the segment whose conditions held and why each
    one before it did not. CLIENT is the product's client id or a phone.

    \b
    Example: automator segments explain "+7 916 123-45-67"
    """
    from automator.client_segment import Unscorable
    from automator.segment_views import ClientNotFound, explain

    project, segments, now, ectx = _segmenting(config)
    try:
        found = explain(_store(config, db), segments, client, now, project.config.timezone, ectx)
    except (ClientNotFound, Unscorable) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(found.to_data(), ensure_ascii=False, indent=2) if fmt == "json" else
               "\n".join(found.lines()))


@segments_group.command("compute")
@_config_option
@_db_option
@_operator
def segments_compute(config: Path, db: Path | None) -> None:
    """Rescore every client from the visits in the store (a first run, or after changing segments.yaml) and write
    the segments and scores that changed; no rule runs (the daemon's daily rescoring is what rules hear of).

    \b
    Example: automator segments compute
    """
    from automator.rescoring import rescore_all, write_changes

    project, segments, now, ectx = _segmenting(config)
    found = rescore_all(_existing_store(config, db), segments, now, project.config.timezone, ectx)
    write_changes(_store(config, db, write=True), found, segments, now)
    click.echo("\n".join(found.summary(segments)))


def main() -> None:
    """Console-script entry point."""
    if sys.argv[1:2] == ["report"]:
        # A report's process runs beside the daemon's at a lower priority: a report can wait a little, a webhook
        # should not. (Here, not in the command: a program calling the CLI in-process keeps its own priority.)
        from automator.report_delivery import lower_priority

        lower_priority()
    cli()
