"""Reports an owner reads every week, computed from what the store keeps (issue 15): which channel pays, where the
funnel leaks, who comes back, how the staff do. See `automator.reports.model` for what a report is.

The Python API mirrors `automator report`: `compute("channels", "automator.db", start=…, end=…)` gives a Report;
`automator.reports.text` renders it as a table, CSV or JSON.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone, tzinfo
from pathlib import Path
from collections.abc import Callable, Mapping
from typing import Any

from automator.channels import DEFAULTS, ChannelMap
import automator.reports.channels as channels_report
import automator.reports.funnel as funnel
import automator.reports.loyalty as loyalty
import automator.reports.retention as retention
import automator.reports.staff as staff
from automator.reports.model import Report
from automator.reports.period import Period, between
from automator.reports.snapshot import Limits, Snapshot

_Compute = Callable[[Snapshot, Period, Mapping[str, Any], ChannelMap, datetime], Report]
REPORTS: dict[str, _Compute] = {"channels": channels_report.report, "funnel": funnel.report,
                                "retention": retention.report, "staff": staff.report, "loyalty": loyalty.report}
NAMES = tuple(REPORTS)
# What `by` each report groups by (the first is its default; None: no grouping).
BY: dict[str, tuple[str | None, ...]] = {"channels": channels_report.BY, "funnel": (None, "manager"),
                                         "retention": (None,), "staff": staff.BY, "loyalty": (None,)}


@dataclass(frozen=True, slots=True)
class ProjectSettings:
    """What a report needs of a project: its channels, time zone and pipelines (stage order and titles)."""

    channels: ChannelMap
    tz: tzinfo
    pipelines: Mapping[str, Any]


def project_settings(config: Path) -> ProjectSettings:
    """The project's channels, time zone and pipelines from its automator.yaml (and pipelines/*.yaml). A project
    whose rules do not load still gets its report: then its channels and time zone are read from automator.yaml
    alone, and the funnel orders stages as the data has them."""
    from automator.config.load import load_project
    from automator.observe import project_timezone

    project, _ = load_project(config.parent) if config.exists() else (None, [])
    if project is not None:
        return ProjectSettings(project.config.channels, project.config.timezone, project.pipelines)
    from automator.channels import ChannelsError, load
    from automator.config.source import load_document

    doc, _ = load_document(config) if config.exists() else (None, [])
    raw = doc.data.get("channels") if doc is not None and isinstance(doc.data, dict) else None
    try:
        found = load(raw)
    except ChannelsError:
        found = DEFAULTS
    return ProjectSettings(found, project_timezone(config), {})


class ReportError(ValueError):
    """A report asked for in a way it cannot be computed: an unknown name, a `by` it has not."""


def compute(name: str, store: str | Path, *, start: date, end: date, by: str | None = None, touch: str = "first",
            pipeline: str | None = None, channels: ChannelMap | None = None, tz: tzinfo | None = None,
            now: datetime | None = None, pipelines: Mapping[str, Any] | None = None, lost_days: int | None = None,
            limits: Limits | None = None) -> Report:
    """The report `name` (NAMES) of the days `start`..`end` (inclusive, in `tz`, default UTC) over the store file
    `store`. `by` groups it (BY[name]), `touch` is first or last (channels), `pipeline` limits the funnel to one,
    `pipelines` (the project's, automator.model.Pipeline by name) orders and titles the funnel's stages, `lost_days`
    is when retention calls a client lost, `limits` how much of the machine it may use (default: one core while a
    daemon runs on the store, else every core: `Limits.beside`). A ReportError says what is wrong with the request;
    a PeriodError with the dates."""
    report = REPORTS.get(name)
    if report is None:
        raise ReportError(f"unknown report {name!r} (one of {', '.join(NAMES)})")
    if by is not None and by not in BY[name]:
        allowed = ", ".join(b for b in BY[name] if b) or "nothing"
        raise ReportError(f"the {name} report cannot be grouped by {by!r} (it can by: {allowed})")
    if touch not in channels_report.TOUCHES:
        raise ReportError(f"touch must be first or last, not {touch!r}")
    period = between(start, end, tz or timezone.utc)
    options = {"by": by, "touch": touch, "pipeline": pipeline, "lost_days": lost_days,
               "stages": funnel.stages_of(pipelines or {})}
    with Snapshot(Path(store), limits or Limits.beside(Path(store))) as snapshot:
        return report(snapshot, period, options, channels or DEFAULTS, now or datetime.now(timezone.utc))
