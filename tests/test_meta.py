"""Meta-tests: the public API, the pure core's import boundary, no import cycles, and docs kept in step with the CLI."""
from __future__ import annotations

import ast
import re
from pathlib import Path

from click.testing import CliRunner

import automator
from automator.cli import cli

ROOT = Path(__file__).resolve().parents[1]
# The core decides without I/O: these modules may not import storage, sockets, HTTP or the file loader.
PURE = ["automator/model.py", "automator/expr", "automator/clock.py", "automator/triggers", "automator/steps",
        "automator/core", "automator/segments.py", "automator/client_segment.py", "automator/actions", "automator/registry.py", "automator/phone.py"]
# A report's page is drawn from the Report alone: its formats and charts read no file, store or network.
PURE += ["automator/reports/display.py", "automator/reports/charts.py", "automator/reports/html.py"]
FORBIDDEN = ("sqlite3", "sqlite_utils", "httpx", "socket", "urllib", "requests", "automator.store.sqlite",
             "automator.config.load", "automator.config.source", "automator.simulator", "connectors",
             "automator_connectors", "os", "subprocess", "shutil")


def _python_files(entry: str) -> list[Path]:
    path = ROOT / entry
    if path.is_dir():
        return sorted(path.rglob("*.py"))
    return [path] if path.exists() else sorted((ROOT / (entry + ".py")).parent.glob(Path(entry).name + "*.py"))


def test_public_api_is_sorted_and_complete() -> None:
    assert automator.__all__ == sorted(automator.__all__)
    for name in automator.__all__:
        assert hasattr(automator, name), name


def test_the_core_does_no_io() -> None:
    offenders = []
    for entry in PURE:
        for file in _python_files(entry):
            tree = ast.parse(file.read_text())
            for node in ast.walk(tree):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module]
                for name in names:
                    if any(name == f or name.startswith(f + ".") for f in FORBIDDEN):
                        offenders.append(f"{file.relative_to(ROOT)} imports {name}")
                if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "open":
                    offenders.append(f"{file.relative_to(ROOT)} calls open()")
    assert not offenders, offenders


def test_every_module_states_its_responsibility() -> None:
    for file in sorted((ROOT / "automator").rglob("*.py")) + sorted((ROOT / "connectors").rglob("*.py")):
        if file.name == "__init__.py" and not file.read_text().strip():
            continue
        doc = ast.get_docstring(ast.parse(file.read_text()))
        assert doc, f"{file.relative_to(ROOT)} has no module docstring"


def test_every_command_has_help_with_an_example_and_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    for name, command in cli.commands.items():
        result = CliRunner().invoke(cli, [name, "--help"])
        assert result.exit_code == 0
        assert "Example:" in result.output, f"`automator {name} --help` shows no example"
        assert f"automator {name}" in readme, f"README does not show `automator {name}`"


def test_readme_commands_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    for name in set(re.findall(r"^\s*(?:\$ )?automator ([a-z-]+)", readme, re.M)):
        assert name in cli.commands, f"README mentions `automator {name}`, which does not exist"
    assert "make run" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_every_action_and_step_and_trigger_has_a_schema_with_description_and_example() -> None:
    import json

    from automator.actions import CANONICAL
    from automator.triggers import TRIGGERS

    for name in CANONICAL:
        schema = json.loads((ROOT / "schemas" / "actions" / f"{name}.json").read_text())
        assert schema.get("description") and schema.get("examples"), name
    for kind in TRIGGERS:
        schema = json.loads((ROOT / "schemas" / "triggers" / f"{kind}.json").read_text())
        assert schema.get("description"), kind
    for kind in ("wait", "if", "set", "emit", "stop"):
        schema = json.loads((ROOT / "schemas" / "steps" / f"{kind}.json").read_text())
        assert schema.get("description"), kind


def test_example_files_point_editors_at_their_schema() -> None:
    files = [ROOT / "automator.yaml", ROOT / "segments.yaml", *(ROOT / "pipelines").glob("*.yaml"),
             *(ROOT / "rules").rglob("*.yaml")]
    for file in files:
        first = file.read_text().splitlines()[0]
        assert first.startswith("# yaml-language-server: $schema="), file
        target = (file.parent / first.split("=", 1)[1]).resolve()
        assert target.is_file(), f"{file}: {target} does not exist"


def test_every_metric_is_in_the_readme() -> None:
    from automator.daemon.metrics import Metrics

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    names = {metric.name for metric in Metrics().registry.collect()}
    missing = sorted(n for n in names if not re.search(rf"`{n}(_total)?[`{{]", readme))
    assert not missing, f"metrics the README's /metrics row does not name: {missing}"


def _imports(file: Path, module: str) -> set[str]:
    """Every module this file imports: at the top, inside functions and under `if TYPE_CHECKING:` alike."""
    found: set[str] = set()
    package = module if file.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def import_graph(package: str = "automator") -> dict[str, set[str]]:
    """Module → the modules of `package` it imports (a name imported from a module counts as that module)."""
    modules: dict[str, Path] = {}
    for file in sorted((ROOT / package).rglob("*.py")):
        parts = file.relative_to(ROOT).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = file

    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    return {name: {m for m in map(owner, _imports(file, name)) if m and m != name}
            for name, file in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_cycles_are_found() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles() -> None:
    # Every import counts, including those inside functions and under TYPE_CHECKING: a cycle hidden there is
    # still two modules that cannot be understood, tested or replaced one without the other.
    assert cycles(import_graph()) == []


def test_automator_reaches_connectors_only_through_the_registry() -> None:
    offenders = [f"{m} imports {t}" for m, targets in _all_imports().items() for t in targets
                 if t.split(".")[0] in ("connectors", "automator_connectors")]
    assert not offenders, offenders


def _all_imports() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for file in sorted((ROOT / "automator").rglob("*.py")):
        name = ".".join(file.relative_to(ROOT).with_suffix("").parts)
        out[name] = _imports(file, name)
    return out


def test_only_the_shipped_contract_suite_needs_pytest() -> None:
    # pytest is a plugin author's test need, not the daemon's: one module imports it and no other module imports
    # that one, so running automator never needs pytest installed.
    imports = _all_imports()
    needs = sorted(m for m, targets in imports.items() if any(t.split(".")[0] == "pytest" for t in targets))
    assert needs == ["automator.connector_contract"], needs
    users = sorted(m for m, targets in imports.items() if "automator.connector_contract" in targets)
    assert users == [], users


def test_the_architecture_document_places_every_module() -> None:
    # docs/architecture.md draws the layers from the code: a module added without a place there is a stale drawing.
    text = (ROOT / "docs" / "architecture.md").read_text()
    layers = text[text.index("## The layers"):text.index("## One event")]
    words = set(re.findall(r"[a-z_0-9]+", layers))
    missing = [str(f.relative_to(ROOT)) for f in sorted((ROOT / "automator").rglob("*.py"))
               if f.stem not in ("__init__", "__main__") and f.stem not in words]
    assert not missing, f"docs/architecture.md does not place {missing}"
