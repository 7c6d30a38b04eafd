"""CompileContext: what compiling one file needs — its document, the problems so far, and the project's names."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from automator.clock import Duration, parse_duration
from automator.config.problems import Problem
from automator.config.reads import (Knowledge, Reading, field_problem, optional_reads, source_problem, type_of,
                                    value_problem, values_of)
from automator.expr import Expr, ExprSyntaxError, Template, compile_expr, compile_template, suggest
from automator.typecheck import check as check_types
from automator.model import Location, Pipeline

if TYPE_CHECKING:
    from automator.config.settings import Config
    from automator.loyalty.config import LoyaltyConfig
    from automator.connector import Connector
    from automator.config.source import Document
    from automator.config.schemas import SchemaSet

Path_ = tuple[str | int, ...]

# Names every expression may read; a `for_each` rule adds its kind, a rule's `set:` adds `vars` fields.
SCOPE_NAMES = frozenset({"event", "entity", "prev", "client", "contact", "booking", "deal", "task", "settings",
                         "vars", "now", "today"})


_GUARDS = frozenset({"get", "has"})  # the functions that read an optional field


@dataclass
class CompileContext:
    """Collects problems while compiling one document; knows the project's connectors, pipelines and settings."""

    doc: Document
    problems: list[Problem]
    config: Config | None = None
    pipelines: Mapping[str, Pipeline] = field(default_factory=dict)
    rule_vars: set[str] = field(default_factory=set)
    rule_pipeline: str | None = None  # the trigger's `pipeline:`, the default for deal.move
    rule_kind: str | None = None  # the entity kind the trigger is about (see automator.checks.rule_trigger)
    rule_sources: tuple[str, ...] = ()  # the connector types whose events start the rule
    schemas: SchemaSet | None = None
    deal_fields: set[str] = field(default_factory=set)  # shared across rules: fields some action sets
    broken: set[tuple[str | int, ...]] = field(default_factory=set)  # nodes with schema problems
    types: Mapping[str, type[Connector]] = field(default_factory=dict)  # installed connector types, for their checks
    knowledge: Knowledge | None = None  # the project's catalogue and what its files declare
    reading: Reading | None = None  # what the rule being compiled reads (None outside rules)
    loyalty: LoyaltyConfig | None = None  # loyalty.yaml, compiled before the rules: the types their actions name
    # The rule's expressions and templates, checked against `reading` once the whole rule is compiled (a
    # `has(event, 'deal')` in its trigger makes `event.deal` in its steps known): (label, exprs, path).
    reads: list[tuple[str, tuple[Expr, ...], tuple[str | int, ...]]] = field(default_factory=list)

    def is_broken(self, path: Sequence[str | int]) -> bool:
        """Whether a schema problem lies at or under `path` (so compiling it would repeat that problem)."""
        size = len(path)
        return any(b[:size] == tuple(path) for b in self.broken)

    def error(self, path: Sequence[str | int], message: str, hint: str | None = None, *, key: bool = False) -> None:
        """Record a problem at the node (or key) at `path`."""
        self.problems.append(self.doc.problem(tuple(path), message, hint, key=key))

    def warning(self, path: Sequence[str | int], message: str, hint: str | None = None) -> None:
        """Record a warning at the node at `path`: the project loads, but this does not work as written."""
        self.problems.append(replace(self.doc.problem(tuple(path), message, hint), severity="warning"))

    def location(self, path: Sequence[str | int]) -> Location:
        """File, line and column of the node at `path`."""
        mark = self.doc.mark(tuple(path))
        return Location(self.doc.path, mark.line, mark.col)

    def expr(self, value: Any, path: Sequence[str | int], names: frozenset[str] = SCOPE_NAMES) -> Expr | None:
        """Compile an expression, reporting syntax, unknown names and unknown settings/variables."""
        if isinstance(value, bool) or isinstance(value, (int, float)):
            value = str(value).lower() if isinstance(value, bool) else str(value)
        if not isinstance(value, str):
            self.error(path, f"expected an expression (text), got {kind_of(value)}")
            return None
        try:
            compiled = compile_expr(value, names)
        except ExprSyntaxError as exc:
            self.error(path, f"expression {value!r}: {exc.message}", exc.hint)
            return None
        self._check_fields(compiled.fields, path)
        if self.reading is not None:
            self.reads.append((f"expression {value!r}", (compiled,), tuple(path)))
        return compiled

    def template(self, value: str, path: Sequence[str | int], names: frozenset[str] = SCOPE_NAMES) -> Template | None:
        """Compile a `{{ }}` template string."""
        try:
            compiled = compile_template(value, names)
        except ExprSyntaxError as exc:
            self.error(path, f"template {value!r}: {exc.message}", exc.hint)
            return None
        self._check_fields(compiled.fields, path)
        if self.reading is not None:
            exprs = tuple(part for part in compiled.parts if isinstance(part, Expr))
            self.reads.append((f"template {value!r}", exprs, tuple(path)))
        return compiled

    def templates(self, value: Any, path: Sequence[str | int], names: frozenset[str] = SCOPE_NAMES) -> Any:
        """Walk params: every string holding `{{` becomes a Template, everything else stays as written."""
        if isinstance(value, str):
            if self.is_broken(path):  # the schema has reported this value
                return value
            return self.template(value, path, names) if "{{" in value or "}}" in value else value
        if isinstance(value, Mapping):
            return {k: self.templates(v, (*path, k), names) for k, v in value.items()}
        if isinstance(value, list):
            return [self.templates(v, (*path, i), names) for i, v in enumerate(value)]
        return value

    def duration(self, value: Any, path: Sequence[str | int]) -> Duration | None:
        """Parse a duration such as `14d`, reporting a clear problem."""
        try:
            return parse_duration(value)
        except (ValueError, TypeError) as exc:
            self.error(path, f"bad duration {value!r}: {exc}", "durations look like 30s, 5m, 2h, 14d, 2w or 2mo")
            return None

    def _check_fields(self, fields: tuple[tuple[str, ...], ...], path: Sequence[str | int]) -> None:
        # Settings and run variables are known at load time, so a typo in either is caught before any event.
        for chain in fields:
            if len(chain) < 2:
                continue
            head, name = chain[0], chain[1]
            if head == "settings" and self.config is not None and name not in self.config.settings:
                self.error(path, f"unknown setting '{name}'",
                           did_you_mean(name, self.config.settings) or "add it under `settings:` in automator.yaml")
            elif head == "vars" and name not in self.rule_vars:
                self.error(path, f"unknown variable 'vars.{name}'",
                           did_you_mean(name, self.rule_vars) or "set it first with a `set:` step")

    def check_reads(self) -> None:
        """Check the fields and types of the rule's expressions, collected since `reading` was set; one
        problem per expression (the first), so that one mistake is not echoed by what follows from it."""
        reads, self.reads = self.reads, []
        if self.knowledge is None or self.reading is None:
            return
        knowledge, reading = self.knowledge, self.reading
        # Only what can matter is walked: calls of get()/has(), comparisons that read event.source.
        optional = optional_reads(expr.tree for _, exprs, _ in reads for expr in exprs if _GUARDS & expr.names)
        for label, exprs, path in reads:
            found = next((problem for expr in exprs for chain in expr.fields
                          if (problem := field_problem(chain, reading, knowledge, optional)) is not None), None)
            found = found or next((problem for expr in exprs if ("event", "source") in expr.fields
                                   and (problem := source_problem(expr.tree, knowledge, reading)) is not None), None)
            # Only an expression that reads a field with listed values (a status) is walked for its comparisons.
            found = found or next((problem for expr in exprs
                                   if any(values_of(chain, reading, knowledge) for chain in expr.fields)
                                   and (problem := value_problem(expr.tree, reading, knowledge)) is not None), None)
            if found is None:
                mismatches = [m for expr in exprs
                              for m in check_types(expr.tree, lambda chain: type_of(chain, reading, knowledge))]
                found = (mismatches[0].message, mismatches[0].hint) if mismatches else None
            if found is not None:
                self.error(path, f"{label}: {found[0]}", found[1])

    def pipeline(self, name: Any, path: Sequence[str | int]) -> Pipeline | None:
        """The pipeline called `name`, or a problem with a did-you-mean hint."""
        if not isinstance(name, str):
            return None
        found = self.pipelines.get(name)
        if found is None:
            self.error(path, f"unknown pipeline '{name}'",
                       did_you_mean(name, self.pipelines) or known_names("pipelines", self.pipelines))
        return found

    def stage(self, pipeline: Pipeline | None, name: Any, path: Sequence[str | int]) -> None:
        """Report a stage that the pipeline (or, without one, every pipeline) lacks."""
        if not isinstance(name, str) or "{{" in name:
            return
        pipelines = [pipeline] if pipeline else list(self.pipelines.values())
        if not pipelines or any(name in p.stages for p in pipelines):
            return
        stages = {s for p in pipelines for s in p.stages}
        where = f" in pipeline '{pipeline.name}'" if pipeline else ""
        self.error(path, f"unknown stage '{name}'{where}", did_you_mean(name, stages) or known_names("stages", stages))


def did_you_mean(name: str, candidates: Any) -> str | None:
    guess = suggest(name, list(candidates))
    return f"did you mean '{guess}'?" if guess else None


def branch_hint(name: Any, ctx: CompileContext) -> str | None:
    """A did-you-mean or the list of branches in automator.yaml, for an unknown `branch:`."""
    branches = ctx.config.branches if ctx.config is not None else {}
    return did_you_mean(str(name), branches) or known_names("branches", branches)


def known_names(what: str, names: Any) -> str:
    listed = sorted(names)
    if not listed:
        return f"no {what} are defined"
    return f"known {what}: " + ", ".join(listed[:12]) + (" …" if len(listed) > 12 else "")


def kind_of(value: Any) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing"
    return type(value).__name__

