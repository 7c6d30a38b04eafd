"""Runs *.test.yaml files on the simulated world; pytest-like report ending `N passed, N failed`."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from collections.abc import Iterator, Mapping
from typing import Any

from automator.clock import parse_duration
from automator import history
from automator.config.files import walk_yaml
from automator.config.load import load_project
from automator.config.problems import Problem
from automator.config.project import TEST_SUFFIX, Project, display
from automator.config.schemas import SchemaSet
from automator.config.source import Document, load_document
from automator.run_errors import RunError
from automator.simulator import Performed, SimulationError, Simulator, parse_time
from automator.model import same

CASE_KEYS = ("name", "now", "settings", "given", "when", "expect")


@dataclass
class CaseResult:
    """The outcome of one test case."""

    file: str
    name: str
    failures: list[str] = field(default_factory=list)
    performed: list[Performed] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """No expectation failed and nothing went wrong."""
        return not self.failures


def find_tests(path: Path) -> list[Path]:
    """`*.test.yaml` files at or under `path`."""
    if not path.is_dir():
        return [path] if os.path.lexists(path) else []
    # Symlinked folders are not walked; unlike under rules/ they are not reported either (any folder can be tested).
    return [p for p in walk_yaml(path, TEST_SUFFIX) if ".venv" not in p.parts and p.name.endswith(TEST_SUFFIX)]


def run_tests(path: str | Path, *, sandbox: bool = False) -> list[CaseResult]:
    """Run every test case found at or under `path`; with `sandbox`, against the connectors' emulators."""
    results: list[CaseResult] = []
    projects: dict[tuple[str, str], tuple[Project | None, list[Problem]]] = {}
    from automator.config.load import builtin_connectors
    from automator.connector import vendor_schemas

    schemas = SchemaSet(vendor_schemas(builtin_connectors()))
    # A test file found in a folder is read only if it lies in that folder (not through a symlink out of it).
    within = Path(path) if Path(path).is_dir() else None
    for file in find_tests(Path(path)):
        results.extend(run_file(file, schemas, projects, within=within, sandbox=sandbox))
    return results


def run_file(file: Path, schemas: SchemaSet, projects: dict[Any, Any], *,
             within: Path | None = None, sandbox: bool = False) -> Iterator[CaseResult]:
    """Run the case (or the `tests:` cases) of one file (refused unread if it lies outside `within`); against the
    emulators with `sandbox` or the file's `connectors: sandbox`."""
    shown = display(file)
    doc, problems = load_document(file, display_path=shown, within=within)
    if doc is not None and doc.data is not None:
        problems += schemas.validate(doc, "test.schema.json")
    if problems or doc is None or not isinstance(doc.data, Mapping):
        yield CaseResult(shown, "(file)", [p.format() for p in problems] or ["the test file is empty"])
        return
    top = doc.data
    sandbox = sandbox or top.get("connectors") == "sandbox"
    cases = top.get("tests") or [top]
    for index, case in enumerate(cases):
        merged = {**{k: top[k] for k in ("load", "now", "settings", "given") if k in top}, **case}
        path = ("tests", index) if "tests" in top else ()
        name = str(case.get("name") or top.get("name") or (f"case {index + 1}" if "tests" in top else file.stem))
        yield run_case(doc, file, merged, path, name, projects, sandbox=sandbox)


def run_case(doc: Document, file: Path, case: Mapping[str, Any], path: tuple[Any, ...], name: str,
             projects: dict[Any, Any], *, sandbox: bool = False) -> CaseResult:
    """Load the rules, seed the world, play the `when:` list and check `expect:`."""
    result = CaseResult(doc.path, name)
    load = (file.parent / str(case.get("load", "."))).resolve()
    cache_key = (str(load), repr(sorted((case.get("settings") or {}).items())))
    if cache_key not in projects:
        projects[cache_key] = load_project(load, only_rules_under=load, settings=case.get("settings"))
    project, problems = projects[cache_key]
    if project is None:
        result.failures = ["the rules do not load:"] + [p.format() for p in problems]
        return result
    if "now" not in case:
        result.failures = [doc.problem(path, "a test needs `now:`").format()]
        return result
    hand_kept = _hand_kept(doc, path)
    if hand_kept:
        result.failures = hand_kept
        return result
    sim = simulator(project, parse_time(case["now"], project), sandbox)
    try:
        sim.given(case.get("given") or [])
        for index, step in enumerate(case.get("when") or []):
            where = (*path, "when", index)
            if "advance" in step:
                sim.advance(parse_duration(step["advance"]))
            elif "advance_to" in step:
                sim.advance_to(parse_time(step["advance_to"], project))
            elif "event" in step:
                event_problem = _unknown_event(project, str(step["event"]))
                if event_problem is not None:  # it would start nothing, and a `no_action` would pass for that reason
                    result.failures.append(doc.problem((*where, "event"), *event_problem).format())
                    continue
                sim.event(step)
            else:
                result.failures.append(doc.problem(where, "a `when:` item is an event, `advance` or "
                                                          "`advance_to`").format())
    except (SimulationError, ValueError) as exc:
        result.failures.append(f"simulation stopped: {exc}")
    finally:
        sim.close()
    result.performed = list(sim.performed)
    result.failures += refused(sim.performed, project)
    expected = [e for e in case.get("expect") or () if "error" in e]
    tz = project.config.timezone
    for error in sim.errors:
        if not any(error_matches(e, error) for e in expected):
            result.failures.append(error.format(tz) + f"\n    hint: fix the rule, or expect the failure: "
                                                      f"`- {{error: {_quoted(_gist(error.message))}}}`")
    for index, expectation in enumerate(case.get("expect") or []):
        where = (*path, "expect", index)
        unknown = unknown_name(doc, where, expectation, project)
        if unknown is not None:
            result.failures.append(unknown)
            continue
        if "error" in expectation:
            failure = check_error(expectation, sim.errors, tz)
        else:
            failure = check(expectation, sim.performed, project, errors=len(sim.errors))
        if failure:
            mark = doc.mark(where)
            result.failures.append(f"{doc.path}:{mark.line}:{mark.col}: {failure}")
    return result


def _hand_kept(doc: Document, path: tuple[Any, ...]) -> list[str]:
    """A given client's history fields written by hand: the product derives them from visits, so a test gives
    the visits (and so proves what a rule does with the history the daemon would really have)."""
    own = doc.data["tests"][path[1]] if path else doc.data
    where = (*path, "given") if "given" in own else ("given",)  # the case's own, or the file's it inherits
    given = (own if "given" in own else doc.data).get("given") or []
    failures = []
    for index, raw in enumerate(given):
        if not isinstance(raw, Mapping) or raw.get("kind") != "client":
            continue
        for name in raw:
            if name in history.FIELDS:
                failures.append(doc.problem(
                    (*where, index, name), f"client.{name} is kept by the product from the client's visits",
                    f"give the visits instead: {{kind: visit, client: {raw.get('id')}, at: 2026-02-01T10:00:00+03:00, "
                    f"amount: \"1500.00\"}}", key=True).format())
    return failures


def simulator(project: Project, now: datetime, sandbox: bool) -> Simulator:
    """The simulated world: every connector played by `local`, or (sandbox) the real ones and their emulators."""
    if not sandbox:
        return Simulator(project, now)
    from automator.emulated import SandboxSimulator

    return SandboxSimulator(project, now)


def refused(performed: list[Performed], project: Project) -> list[str]:
    """One failure per effect its connector refused or could not perform: the daemon would dead-letter it."""
    return [f"{p.effect.action} {_short(p.effect.params)} at {_local(p.effect.at, project)} failed in connector "
            f"{p.effect.connector!r}: {p.error}" for p in performed if not p.ok]


def _unknown_event(project: Project, type_: str) -> tuple[str, str | None] | None:
    """(message, hint) for a test event of a type nothing in the project produces or emits; None when known."""
    from automator.config.reads import event_type_problem

    return event_type_problem(type_, project.knowledge) if project.knowledge is not None else None


def unknown_name(doc: Document, where: tuple[Any, ...], expectation: Mapping[str, Any],
                 project: Project) -> str | None:
    """An expectation naming an action nothing performs, or a rule that does not exist, can never fail (or
    never pass) for the reason its author meant: the misspelling is the failure, at its place."""
    from automator.config.context import did_you_mean
    from automator.actions import ENGINE_ACTIONS

    key = next((k for k in ("action", "no_action") if k in expectation), None)
    if key is not None:
        known = {*ENGINE_ACTIONS, *(a for c in project.config.connectors.values() for a in c.actions)}
        name = str(expectation[key])
        if name not in known:
            outcome = "always holds" if key == "no_action" else "cannot hold"
            return doc.problem((*where, key), f"no configured connector performs '{name}': this expectation "
                                              f"{outcome}", did_you_mean(name, known)
                               or "`automator connectors` lists the actions").format()
    rule = expectation.get("rule")
    if "error" in expectation and rule is not None and project.rule(str(rule)) is None:
        ids = [r.id for r in project.rules]
        return doc.problem((*where, "rule"), f"no rule '{rule}' is loaded for this test",
                           did_you_mean(str(rule), ids) or f"the rules loaded: {', '.join(ids)}").format()
    return None


def error_matches(expectation: Mapping[str, Any], error: RunError) -> bool:
    """`{error: TEXT, rule: ID}`: the run error's message contains TEXT (and it is that rule's)."""
    return (str(expectation["error"]) in error.message
            and ("rule" not in expectation or str(expectation["rule"]) == error.rule_id))


def _gist(message: str) -> str:
    """The words of a run error worth expecting: `client has no field 'phone'` of
    `{{ client.phone }}: client has no field 'phone' (it has: name, id)`."""
    gist = message.split(": ", 1)[1] if message.startswith(("{{", "if ")) and ": " in message else message
    return gist.split(" (")[0][:80]


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def check_error(expectation: Mapping[str, Any], errors: list[RunError], tz: Any) -> str | None:
    """None when some run failed as expected, else what was expected and the run errors there were."""
    if any(error_matches(expectation, e) for e in errors):
        return None
    rule = f" in rule '{expectation['rule']}'" if "rule" in expectation else ""
    lines = [f"expected: a run error containing {str(expectation['error'])!r}{rule}",
             "actual:" + ("" if errors else " no rule failed")]
    lines.extend("  " + line for e in errors for line in e.format(tz).splitlines())
    return "\n".join(lines)


def check(expectation: Mapping[str, Any], performed: list[Performed], project: Project, *,
          errors: int = 0) -> str | None:
    """None when the expectation holds, else the expected and actual effects side by side."""
    negative = "no_action" in expectation
    action = str(expectation["no_action" if negative else "action"])
    wanted = expectation.get("params") or {}
    after = parse_time(expectation["after"], project) if "after" in expectation else None
    before = parse_time(expectation["before"], project) if "before" in expectation else None
    same_action = [p for p in performed if p.effect.action == action]
    matching = [p for p in same_action if subset(wanted, p.effect.params)
                and (after is None or p.effect.at >= after) and (before is None or p.effect.at <= before)]
    count = expectation.get("count")
    if negative and not matching:
        return None
    if not negative and (len(matching) == count if count is not None else matching):
        return None
    want = "no " if negative else ""
    want += f"{action} {_short(wanted)}" if wanted else action
    if after:
        want += f" after {after.isoformat()}"
    if before:
        want += f" before {before.isoformat()}"
    if count is not None:
        want += f" exactly {count} time(s), got {len(matching)}"
    nothing = f" (no effects at all{f'; {errors} failed run(s), above' if errors else ''})"
    lines = [f"expected: {want}", "actual:" + (nothing if not performed else "")]
    for p in performed:
        mark = "*" if p in matching else ("~" if p in same_action else " ")
        status = "" if p.ok else f"  FAILED: {p.error}"
        lines.append(f"  {mark} {_local(p.effect.at, project)}  {p.effect.action} {_short(p.effect.params)}{status}")
    lines.append("  (* matches, ~ same action with other params or time)")
    return "\n".join(lines)


def subset(wanted: Any, actual: Any) -> bool:
    """Expected params match as a subset: every key given must be there with an equal value."""
    if isinstance(wanted, Mapping):
        return isinstance(actual, Mapping) and all(k in actual and subset(v, actual[k]) for k, v in wanted.items())
    if isinstance(wanted, list):
        return isinstance(actual, list) and len(wanted) == len(actual) and all(map(subset, wanted, actual))
    return same(wanted, actual)


def _short(params: Any) -> str:
    if isinstance(params, Mapping):
        return "{" + ", ".join(f"{k}: {_short(v)}" for k, v in params.items()) + "}"
    return repr(params) if isinstance(params, str) else str(params)


def _local(at: datetime, project: Project) -> str:
    return at.astimezone(project.config.timezone).strftime("%Y-%m-%d %H:%M")


def report(results: list[CaseResult], *, verbose: bool = False) -> tuple[str, bool]:
    """The pytest-like report and whether everything passed."""
    lines = []
    for r in results:
        if verbose or not r.passed:
            lines.append(f"{'PASSED' if r.passed else 'FAILED'} {r.file}::{r.name}")
        for failure in r.failures:
            lines.extend("    " + line for line in failure.splitlines())
    passed = sum(r.passed for r in results)
    failed = len(results) - passed
    lines.append(f"{passed} passed, {failed} failed")
    return "\n".join(lines), failed == 0 and bool(results)
