"""The README's screenshots of the four reports' HTML pages (run by hand, after a change to the page or to a report):

    .venv/bin/python docs/screenshots.py            # writes docs/img/report-<name>.png

Each report is computed by automator.reports over the reports' sample store (tests/reports/report_sample.py's
`fill()`, over its period) when both are there, else taken from the hand-made reports of
tests/reports/handmade_reports.py; its page (automator.reports.html.render_html) is screenshot by headless Chromium
(Debian's `chromium`) with no network, 1200 px wide and as tall as the whole page. `--from-handmade` forces the
hand-made reports; `--out DIR` writes elsewhere.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "reports")]

import handmade_reports  # noqa: E402  (a test helper, found through the path above)
import headless  # noqa: E402
from automator.reports.html import render_html  # noqa: E402
from automator.reports.model import Report  # noqa: E402

WIDTH = 1200


def sample_reports(workdir: Path) -> dict[str, Report] | None:
    """The four reports computed over the sample store, or None when this checkout has no reports or sample."""
    try:
        import report_sample
        from automator.reports import NAMES, compute  # type: ignore[attr-defined]
    except ImportError:
        return None
    store = report_sample.fill(workdir / "sample.db")
    return {name: compute(name, store, start=report_sample.PERIOD_FROM, end=report_sample.PERIOD_TO,
                          tz=report_sample.TZ, now=report_sample.NOW) for name in NAMES}


def main(argv: list[str] | None = None) -> int:
    """Render and screenshot each report; print where each PNG went."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--from-handmade", action="store_true", help="use the hand-made reports")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img", help="where the PNGs go")
    arguments = parser.parse_args(argv)
    if headless.CHROMIUM is None:
        print("chromium is not installed (apt-get install chromium)", file=sys.stderr)
        return 2
    arguments.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="report-screenshots-") as work:
        workdir = Path(work)
        reports = None if arguments.from_handmade else sample_reports(workdir)
        origin = "the sample store" if reports else "the hand-made reports"
        reports = reports or {name: make() for name, make in handmade_reports.REPORTS.items()}
        for name, report in reports.items():
            page = workdir / f"report-{name}.html"
            page.write_text(render_html(report), encoding="utf-8")
            png = headless.screenshot(page, arguments.out / f"report-{name}.png", WIDTH)
            print(f"{png.relative_to(ROOT) if png.is_relative_to(ROOT) else png}  ({origin})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
