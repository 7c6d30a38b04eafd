"""RunState: what one run's steps read and produce while the core advances it (steps import it, the runner
drives it)."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from automator.channels import ChannelMap
from automator.config.project import Project
from automator.core.outcome import StepError
from automator.expr import EvalContext, EvalError, Expr, Template
from automator.loyalty.config import LoyaltyConfig
from automator.loyalty.ledger import Entry, ordered
from automator.model import Effect, Entity, EntityRef, Event, Pipeline, Rule, Run, Timer, TraceStep
from automator.segments import SegmentsConfig
from automator.store.base import Snapshot


@dataclass
class RunState:
    """Everything one run's steps read and produce while the core advances it."""

    run: Run
    rule: Rule
    project: Project
    snapshot: Snapshot
    scope: dict[str, Any]
    ectx: EvalContext
    now: datetime
    preview: bool = False  # dry-run: look past waits without changing anything
    effects: list[Effect] = field(default_factory=list)
    timers: list[Timer] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    trace: list[TraceStep] = field(default_factory=list)
    preview_offset: int = 0
    # The decision's ledger rows so far (loyalty's, and earlier actions'): shared with the decision's plan.
    ledger: list[Entry] = field(default_factory=list)

    def eval(self, expr: Expr) -> Any:
        """Evaluate an expression in this run's scope; EvalError becomes a StepError."""
        try:
            return expr.evaluate(self.scope, self.ectx)
        except EvalError as exc:
            raise StepError(f"{expr.source}: {exc}") from exc

    def render(self, value: Any) -> Any:
        """Render every Template inside params."""
        if isinstance(value, Template):
            try:
                return value.render(self.scope, self.ectx)
            except EvalError as exc:
                raise StepError(f"{value.source}: {exc}") from exc
        if isinstance(value, dict):  # params come from YAML: plain dicts (and typing.Mapping checks are slow)
            return {k: self.render(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.render(v) for v in value]
        return value

    def record(self, path: str, kind: str, detail: str = "", value: Any = None, error: str | None = None) -> None:
        """Append one trace line."""
        self.trace.append(TraceStep(path=path, kind=kind, detail=detail, value=value, error=error, at=self.now))

    def rule_pipeline(self) -> str | None:
        """The trigger's `pipeline:` narrowing, the default pipeline of deal actions."""
        return getattr(self.rule.trigger, "pipeline", None)

    def entity(self, ref: EntityRef) -> Entity | None:
        """The stored state of an entity."""
        return self.snapshot.entity(ref)

    def client_of(self, system: str, ext_id: str) -> str | None:
        """The person a system's id (or, with system `phone`, a phone) belongs to."""
        return self.snapshot.client_of(system, ext_id)

    def links_of(self, client: str) -> list[tuple[str, str]]:
        """Every (system, id) of one person, phones included."""
        return self.snapshot.links_of(client)

    def pipeline(self, name: str) -> Pipeline | None:
        """The project's pipeline of that name."""
        return self.project.pipelines.get(name)

    def segments(self) -> SegmentsConfig | None:
        """The project's segments.yaml, compiled."""
        return self.project.segments

    def history(self) -> Snapshot:
        """Clients' visits and the kept RFM cut points, as the snapshot has them (what rescoring reads)."""
        return self.snapshot

    def channels(self) -> ChannelMap:
        """The project's channels (automator.yaml's `channels:`, or the built-in set)."""
        return self.project.config.channels

    def loyalty(self) -> LoyaltyConfig | None:
        """The project's loyalty.yaml, compiled."""
        return self.project.loyalty

    def ledger_of(self, client: str) -> list[Entry]:
        """A person's ledger rows as this decision leaves them so far (stored, then the ones made since)."""
        stored = self.snapshot.ledger_of(client)
        mine = [e for e in self.ledger if e.client == client]
        if not mine:
            return stored
        known = {e.id for e in stored}
        return ordered([*stored, *(e for e in mine if e.id not in known)])

    def keep(self, entries: list[Entry]) -> None:
        """Add ledger rows an action made to the decision (a row whose id is there already is kept once)."""
        known = {e.id for e in self.ledger}
        for entry in entries:
            if entry.id not in known:
                known.add(entry.id)
                self.ledger.append(entry)

    def set_var(self, name: str, value: Any) -> None:
        """Set a run variable, visible to later steps as `vars.name`."""
        self.scope["vars"] = {**self.scope.get("vars", {}), name: value}
