"""A report composed for sending (`report.send`): the headline figures as text and the HTML page, computed in a
child process at lower priority, so that a report that takes ten seconds neither blocks the daemon's event loop
nor takes its CPU.

The connectors that perform `report.send` are given a `Compose` (the daemon gives each a `ChildComposer` over its
store and project; a test gives a fake). The child is `python -m automator.reports.compose`, which writes the
summary, the page and what it was about into a directory this side reads back.

A failure is classified as the outbox needs it: a request the reports refuse (an unknown report, a period that
cannot be read) is `Rejected`, never tried again; a child that timed out, was killed or crashed is `Retryable`
(the store may have been busy, the machine short of memory), so the outbox tries again, and the effect is dead
when its tries are spent.
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automator.errors import Rejected, Retryable

CHILD_MODULE = "automator.reports.compose"
CHILD_MODULE_ENV = "AUTOMATOR_REPORT_COMPOSER"
DEFAULT_TIMEOUT = 300.0  # seconds: the bench's largest report takes ~10 s; a child past this is stuck
NICENESS = 10  # added to the child's nice value: the daemon's own work goes first
# The child's exit codes (automator.reports.compose): 0 written, 2 the request is refused, anything else a failure.
EXIT_REFUSED = 2
TITLES = {"channels": "Каналы", "funnel": "Воронка", "retention": "Возвращаемость", "staff": "Сотрудники",
          "loyalty": "Баллы"}


@dataclass(frozen=True, slots=True)
class ReportRequest:
    """What a `report.send` asks for: the report, its period (a name or `{from, to}`) and its options."""

    report: str
    period: str | Mapping[str, str]
    by: str | None = None
    touch: str | None = None
    pipeline: str | None = None

    @classmethod
    def of(cls, params: Mapping[str, Any]) -> ReportRequest:
        """The request a `report.send`'s params make."""
        period = params.get("period")
        return cls(report=str(params.get("report")),
                   period=dict(period) if isinstance(period, Mapping) else str(period),
                   by=_text(params.get("by")), touch=_text(params.get("touch")), pipeline=_text(params.get("pipeline")))

    def arguments(self) -> list[str]:
        """The request as the child's command-line arguments, the report last (after the options it may take).

        Every value is bound to its option (`--period=…`) and the report follows `--`: a value rendered from data
        that starts with "-" is that value, never another option (another store, another output)."""
        args: list[str] = []
        if isinstance(self.period, Mapping):
            args += [f"--from={self.period.get('from')}", f"--to={self.period.get('to')}"]
        else:
            args.append(f"--period={self.period}")
        for flag, value in (("--by", self.by), ("--touch", self.touch), ("--pipeline", self.pipeline)):
            if value:
                args.append(f"{flag}={value}")
        return [*args, "--", self.report]


@dataclass(frozen=True, slots=True)
class Composed:
    """A report ready to send: `summary` (the headline figures, plain text), the page (`html`, UTF-8) and the
    attachment's `filename`; `title` and `period` name it in a subject ("Отчёт «Каналы» за 24.11–30.11.2026")."""

    summary: str
    html: bytes
    filename: str
    title: str
    period: str

    def subject(self) -> str:
        """An e-mail's subject for it."""
        return f"Отчёт «{self.title}» за {self.period}"

    def body(self, text: str | None) -> str:
        """The summary after the rule's own line, when it wrote one."""
        return f"{text.strip()}\n\n{self.summary}" if text and text.strip() else self.summary

    def brief(self, text: str | None) -> str:
        """The body where every character counts (an SMS): the summary's first line, the report's long title and
        period (`render_summary` puts them there), replaced by the subject's short words."""
        figures = self.summary.splitlines()[1:]
        short = "\n".join([self.subject(), *figures])
        return f"{text.strip()}\n{short}" if text and text.strip() else short


# What a connector performing report.send calls: the request → the composed report (or Rejected / Retryable).
Compose = Callable[[ReportRequest], Awaitable[Composed]]


@dataclass(frozen=True, slots=True)
class ChildComposer:
    """Composes a report in a child process: `python -m automator.reports.compose` over the store file `store`
    and the project at `root`, niced by NICENESS, killed after `timeout` seconds. `module` is the child's entry
    (tests run a stand-in)."""

    store: Path
    root: Path | None = None
    timeout: float = DEFAULT_TIMEOUT
    module: str = CHILD_MODULE

    @classmethod
    def for_daemon(cls, store: Path, root: Path | None) -> ChildComposer:
        """The daemon's composer: the child module AUTOMATOR_REPORT_COMPOSER names when set (a test's stand-in,
        a business's own renderer taking the same arguments), else automator's own."""
        return cls(store, root, module=os.environ.get(CHILD_MODULE_ENV) or CHILD_MODULE)

    async def __call__(self, request: ReportRequest) -> Composed:
        with tempfile.TemporaryDirectory(prefix="automator-report-") as out:
            ours = [f"--db={self.store}", f"--out={out}", *([f"--root={self.root}"] if self.root is not None else [])]
            command = [sys.executable, "-m", self.module, *ours, *request.arguments()]
            child = await asyncio.create_subprocess_exec(*command, stdin=asyncio.subprocess.DEVNULL,
                                                         stdout=asyncio.subprocess.DEVNULL,
                                                         stderr=asyncio.subprocess.PIPE)
            try:
                _, stderr = await asyncio.wait_for(child.communicate(), self.timeout)
            except asyncio.TimeoutError:
                child.kill()
                await child.wait()
                raise Retryable(f"report {request.report}: not composed in {self.timeout:g} s") from None
            except asyncio.CancelledError:  # the daemon is stopping: no orphan keeps computing
                if child.returncode is None:
                    child.kill()
                    await child.wait()
                raise
            said = _last_line(stderr)
            if child.returncode == EXIT_REFUSED:
                raise Rejected(f"report {request.report}: {said}")
            if child.returncode != 0:
                raise Retryable(f"report {request.report}: the child process failed (exit {child.returncode}): {said}")
            return read_composed(Path(out))


def lower_priority() -> None:
    """Called first by a report's process (`automator report`, the child of report.send; not through Popen's
    preexec_fn, unsafe in a process with threads, as the daemon is): the report waits for the daemon's work, not
    the other way round. Niced, and where Linux offers it SCHED_IDLE: the report runs only when nothing else wants
    the CPU, and a woken daemon takes the core at once. A nice value alone is not enough: beside a report at nice
    10 the daemon kept 48–71 % of its events/s (bench/report_beside_daemon.py), as each of its wake-ups waited for
    the report's time slice. The threads the report starts later (DuckDB's) inherit both."""
    os.nice(NICENESS)
    if hasattr(os, "sched_setscheduler") and hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        except OSError:  # a container that forbids it: the nice value still holds
            pass


def _last_line(stderr: bytes) -> str:
    lines = [line for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    return lines[-1].strip()[:500] if lines else "no message"


# The files the child writes into its output directory.
SUMMARY_FILE, HTML_FILE, ABOUT_FILE = "summary.txt", "report.html", "about.json"


def write_composed(out: Path, composed: Composed) -> None:
    """Write a composed report where `read_composed` finds it (the child's side)."""
    (out / SUMMARY_FILE).write_text(composed.summary, encoding="utf-8")
    (out / HTML_FILE).write_bytes(composed.html)
    about = {"filename": composed.filename, "title": composed.title, "period": composed.period}
    (out / ABOUT_FILE).write_text(json.dumps(about, ensure_ascii=False), encoding="utf-8")


def read_composed(out: Path) -> Composed:
    """The composed report the child wrote into `out`; Retryable when it is not all there."""
    try:
        about = json.loads((out / ABOUT_FILE).read_text(encoding="utf-8"))
        return Composed(summary=(out / SUMMARY_FILE).read_text(encoding="utf-8"), html=(out / HTML_FILE).read_bytes(),
                        filename=str(about["filename"]), title=str(about["title"]), period=str(about["period"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise Retryable(f"the report's child process wrote no complete report: {exc}") from exc


def filename(report: str, first: str, last: str) -> str:
    """The attachment's name: `report-channels-2026-11-24-2026-11-30.html` (ASCII: every mail client shows it)."""
    return f"report-{report}-{first}-{last}.html"


def shown_period(first: Any, last: Any) -> str:
    """A period as a subject says it: "24.11–30.11.2026", "30.12.2025–05.01.2026", "06.12.2026" for one day."""
    if first == last:
        return f"{last:%d.%m.%Y}"
    if first.year == last.year:
        return f"{first:%d.%m}–{last:%d.%m.%Y}"
    return f"{first:%d.%m.%Y}–{last:%d.%m.%Y}"


ELLIPSIS = "…"


def fit(text: str, fits: Callable[[str], bool]) -> str:
    """`text` cut to what `fits` accepts (a caption's 1024 characters, an SMS's parts): whole lines are dropped
    from the end first, so the figures that remain are whole, and "…" says something was cut; a first line too long
    alone is cut within. The headline figures come first in a summary, so what is kept is what matters most."""
    if fits(text):
        return text
    lines = text.splitlines()
    while len(lines) > 1:
        lines.pop()
        kept = "\n".join(lines).rstrip() + "\n" + ELLIPSIS
        if fits(kept):
            return kept
    line = lines[0] if lines else ""
    low, high = 0, len(line)  # the longest prefix that fits with the ellipsis: fits() is monotonic in length
    while low < high:
        middle = (low + high + 1) // 2
        if fits(line[:middle].rstrip() + ELLIPSIS):
            low = middle
        else:
            high = middle - 1
    return line[:low].rstrip() + ELLIPSIS if low else ""


async def placeholder_report(request: ReportRequest) -> Composed:
    """A report not computed (where there is no store: `automator test --sandbox`, the connector contract suite):
    a line and a page that say which report would go, so the real connector and its emulator play the rest."""
    title = TITLES.get(request.report, request.report)
    period = request.period if isinstance(request.period, str) else f"{request.period.get('from')}–{request.period.get('to')}"
    line = f"Отчёт «{title}» за {period}: в тесте не вычисляется"
    page = f"<!doctype html><html lang=\"ru\"><meta charset=\"utf-8\"><title>{title}</title><p>{line}</p></html>"
    return Composed(summary=line, html=page.encode("utf-8"), filename=f"report-{request.report}.html", title=title,
                    period=period)


def no_composer(name: str) -> Compose:
    """A Compose for a connector built where no store is at hand: every report.send is refused, saying why."""
    async def refuse(request: ReportRequest) -> Composed:
        raise Rejected(f"connector {name!r} cannot compose report {request.report}: it runs with no store "
                       "(report.send is performed by the daemon)")
    return refuse


def _text(value: Any) -> str | None:
    return None if value in (None, "") else str(value)
