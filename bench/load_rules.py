"""Benchmark: loading and validating 1,000 rules, and the example project, in-process and as `automator validate`
from a shell (each target under 1 s), with the split by phase for the 1,000 rules."""
from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _project import write_project  # noqa: E402

from automator.config.load import load_project  # noqa: E402
from automator.config.schemas import SchemaSet  # noqa: E402
from automator.config.source import load_document  # noqa: E402

RULES = 1000
REPEAT = 5
EXAMPLE = Path(__file__).resolve().parent.parent  # the repository is the example clinic project


def median_time(fn: object, repeat: int = REPEAT) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        root = write_project(Path(folder), RULES)
        project, problems = load_project(root)
        assert project is not None and len(project.rules) == RULES, problems  # correctness, not timing
        files = sorted((root / "rules").glob("*.yaml"))
        total = median_time(lambda: load_project(root))
        parse = median_time(lambda: [load_document(f) for f in files])
        docs = [load_document(f)[0] for f in files]
        schemas = SchemaSet()
        schemas.validate(docs[0], "rules.schema.json")  # build the validators once, as load_project does
        validate = median_time(lambda: [schemas.validate(d, "rules.schema.json") for d in docs])
        command = [sys.executable, "-m", "automator", "validate"]
        cli_rules = median_time(lambda: subprocess.run([*command, str(root)], capture_output=True, check=True))
    example = median_time(lambda: load_project(EXAMPLE))
    # What an admin waits for: a new interpreter, the imports, the load and the printing.
    cli_example = median_time(lambda: subprocess.run([*command, str(EXAMPLE)], capture_output=True, check=True))
    print(f"load and validate {RULES} rules: {total * 1000:.0f} ms (median of {REPEAT}; target < 1000 ms)")
    print(f"  YAML with positions: {parse * 1000:.0f} ms, schema check: {validate * 1000:.0f} ms, "
          f"compile and cross-checks: {(total - parse - validate) * 1000:.0f} ms")
    print(f"  `automator validate` of them from a shell: {cli_rules * 1000:.0f} ms")
    print(f"the example project: {example * 1000:.0f} ms in-process, {cli_example * 1000:.0f} ms as `automator validate` "
          "from a shell (target < 1000 ms)")
    return {"load_1000_rules_ms": total * 1000, "validate_example_cli_ms": cli_example * 1000}


if __name__ == "__main__":
    main()
