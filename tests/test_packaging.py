"""What the wheel installs: `automator` and the connectors under the project's own name, never a top-level
`connectors` that another distribution could also take; and nothing imports the folder by its bare name."""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_installs_the_connectors_as_automator_connectors(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for folder in ("automator", "connectors"):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path / "dist"), str(source)], check=True, capture_output=True)
    wheel, = (tmp_path / "dist").glob("automator-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert tops == {"automator", "automator_connectors"}
    assert "automator_connectors/bitrix24/catalogue.yaml" in names
    assert "automator_connectors/local/__init__.py" in names
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "local = automator_connectors.local:LocalConnector" in entry_points


def test_nothing_imports_the_connectors_folder_by_its_bare_name() -> None:
    offenders = []
    for folder in ("automator", "connectors", "tests", "bench"):
        for file in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(file.read_text())):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
                offenders += [f"{file.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] == "connectors"]
    assert not offenders, offenders
