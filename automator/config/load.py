"""load_project(): read a project's files, check them against schemas and each other, compile a Project."""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path
from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from automator.actions import CANONICAL
from automator import channels
from automator.catalogue import CORE, Catalogue, CatalogueError, merge
from automator.checks import rule_trigger
from automator.clock import parse_business_hours
from automator.config.context import SCOPE_NAMES, CompileContext, did_you_mean
from automator.config.problems import Problem, sort_problems
from automator.config.reads import (Knowledge, declared, event_type_problem, field_problem, reading_of, unlisted_value,
                                    values_of)
from automator.config.project import (CONFIG_FILE, SEGMENTS_FILE, Project, content_version, display, find_root,
                                      rule_files)
from automator.config.settings import DEFAULT_CHAIN_DEPTH, Config, ConnectorConfig
from automator.config.schemas import RULES_SCHEMA, SchemaSet
from automator.config.files import read_file
from automator.config.misplaced import misplaced_params
from automator.config.source import MAX_BYTES, Document, load_document
from automator.connector import Connector, vendor_schemas
from automator.core.router import Router
from automator.expr import Expr
from automator.model import ENTITY_KINDS, MODES, ForEach, Location, Pipeline, Rule, Stage, steps_shape
from automator.steps import compile_steps, set_names
from automator.triggers import TRIGGERS
from automator.typecheck import LOOKUP_KINDS, items_kind

PER_KINDS = ("client", "booking", "deal", "task", "entity")


def builtin_connectors() -> dict[str, type[Connector]]:
    """Installed connector types, by type name: every entry point of the `automator.connectors` group. The
    built-in ones (`local` among them) are registered there by automator's own distribution, as a plugin's are by
    its, so the engine names no connector package."""
    from automator.connector import discover

    return discover()


def load_project(path: str | Path, *, connector_types: Mapping[str, type[Connector]] | None = None,
                 only_rules_under: str | Path | None = None,
                 settings: Mapping[str, Any] | None = None) -> tuple[Project | None, list[Problem]]:
    """Load every file of the project at or above `path`: the Project and its warnings, or None and every problem
    when any error was found."""
    path = Path(path)
    root = find_root(path)
    if root is None:
        return None, [Problem(str(path), 1, 1, f"no {CONFIG_FILE} found in {path} or its parent folders",
                              f"create {CONFIG_FILE} with at least `timezone: Europe/Moscow`")]
    types = dict(connector_types) if connector_types is not None else builtin_connectors()
    problems: list[Problem] = []
    schemas = SchemaSet(vendor_schemas(types))
    texts: list[tuple[str, bytes]] = []

    def read(file: Path, schema: str) -> Document | None:
        shown = display(file)
        # Read once, here: the bytes parsed are the bytes the version is made of.
        raw, refused = read_file(file, shown, MAX_BYTES, within=root)
        if refused is not None:
            problems.append(refused)
            return None
        doc, found = load_document(file, raw=raw, display_path=shown)
        problems.extend(found)
        if doc is not None and schema == RULES_SCHEMA and not found and _no_rules(doc.data):
            problems.append(_no_rules_warning(doc))
            return None
        if doc is None or doc.data is None:
            return None
        assert raw is not None
        texts.append((str(file.relative_to(root)), raw))
        if schema == RULES_SCHEMA:
            problems.extend(misplaced_params(doc, schemas))
        problems.extend(schemas.validate(doc, schema))
        return doc

    config_doc = read(root / CONFIG_FILE, "automator.schema.json")
    config = _config(config_doc, types, problems, settings)
    pipelines: dict[str, Pipeline] = {}
    pipeline_docs: dict[str, Document] = {}
    for file in sorted((root / "pipelines").glob("*.yaml")):
        doc = read(file, "pipelines.schema.json")
        if doc is not None:
            _pipelines(doc, config, pipelines, problems)
            pipeline_docs.update({name: doc for name in pipelines if name not in pipeline_docs})
    segments = None
    if os.path.lexists(root / SEGMENTS_FILE):  # anything there is read, so that a FIFO or a symlink out is reported
        doc = read(root / SEGMENTS_FILE, "segments.schema.json")
        if doc is not None:
            from automator.config.segments import check_loyalty, compile_segments

            segments_ctx = CompileContext(doc, problems, config)
            segments = compile_segments(doc.data, segments_ctx)
            programs = _loyalty_programs(root)
            if segments is not None and programs is not None:
                check_loyalty(segments, programs, segments_ctx)
    rules: list[Rule] = []
    first_seen: dict[str, Location] = {}
    deal_fields: set[str] = set()
    files = rule_files(root, Path(only_rules_under) if only_rules_under else None)
    docs = [doc for doc in (read(file, "rules.schema.json") for file in files) if doc is not None]
    knowledge = _knowledge(root, files, docs, config, pipelines, types)
    for doc in docs:
        ctx = CompileContext(doc, problems, config, pipelines, schemas=schemas, deal_fields=deal_fields,
                             knowledge=knowledge, types=types)
        rules.extend(_rules(doc, ctx, first_seen))
    if only_rules_under is None or Path(only_rules_under).resolve() == root:
        _check_requires(pipelines, pipeline_docs, deal_fields, problems)
    problems = sort_problems(problems)
    if any(p.severity == "error" for p in problems):
        return None, problems
    project = Project(root=root, config=config, pipelines=pipelines, rules=tuple(r for r in rules),
                      segments=segments, router=Router(r for r in rules), schemas=schemas,
                      version=content_version(texts), files=tuple(display(root / name) for name, _ in texts),
                      warnings=tuple(problems), knowledge=knowledge)
    return project, []


def _loyalty_programs(root: Path) -> list[str] | None:
    """The program names of loyalty.yaml beside automator.yaml (its `programs:` keys), None without one: what a
    segment's `loyalty:` may name (the file's own problems are reported where loyalty.yaml is compiled)."""
    file = root / "loyalty.yaml"
    if not file.is_file():
        return None
    raw, refused = read_file(file, display(file), MAX_BYTES, within=root)
    doc = load_document(file, raw=raw, display_path=display(file))[0] if refused is None else None
    programs = doc.data.get("programs") if doc is not None and isinstance(doc.data, Mapping) else None
    return [str(name) for name in programs] if isinstance(programs, Mapping) else None


def _no_rules(data: Any) -> bool:
    """An empty or comment-only rule file, or one whose `rules:` is empty: it loads, and does nothing."""
    return data is None or (isinstance(data, Mapping) and set(data) == {"rules"} and data["rules"] in (None, []))


def _no_rules_warning(doc: Document) -> Problem:
    where = doc.mark(("rules",), key=True) if isinstance(doc.data, Mapping) else doc.mark(())
    what = "is empty" if doc.data is None else "has an empty `rules:` list"
    return Problem(doc.path, where.line, where.col, f"{doc.path} {what}: it has no rules",
                   "write rules under `rules:` (see README: A rule in five minutes), or delete the file",
                   severity="warning")


def _config(doc: Document | None, types: Mapping[str, type[Connector]], problems: list[Problem],
            overrides: Mapping[str, Any] | None) -> Config:
    data = doc.data if doc is not None and isinstance(doc.data, Mapping) else {}
    tz = ZoneInfo("UTC")
    if doc is not None and isinstance(data.get("timezone"), str):
        try:
            tz = ZoneInfo(data["timezone"])
        except (ZoneInfoNotFoundError, ValueError):
            problems.append(doc.problem(("timezone",), f"unknown timezone '{data['timezone']}'",
                                        _timezone_hint(data["timezone"])))
    # What the schema has reported is not checked again here: one mistake, one problem.
    broken = _broken_paths(doc, problems) if doc is not None else set()
    declared = written if isinstance(written := data.get("branches"), Mapping) else {}
    branches = {}
    for name, raw in declared.items():
        if not isinstance(raw, Mapping) or "hours" not in raw or any(b[:2] == ("branches", name) for b in broken):
            continue
        assert doc is not None
        branch_tz = tz
        if raw.get("timezone"):
            try:
                branch_tz = ZoneInfo(raw["timezone"])
            except (ZoneInfoNotFoundError, ValueError):
                problems.append(doc.problem(("branches", name, "timezone"), f"unknown timezone '{raw['timezone']}'",
                                            _timezone_hint(str(raw["timezone"]))))
                continue
        try:
            branches[str(name)] = parse_business_hours(str(raw["hours"]), raw.get("days", "daily"), branch_tz)
        except ValueError as exc:
            problems.append(doc.problem(("branches", name), f"branch '{name}': {exc}"))
    default_branch = data.get("default_branch")
    # Checked against every branch written, so a branch with its own mistake is not also "unknown".
    if default_branch is not None and default_branch not in declared and doc is not None \
            and ("default_branch",) not in broken:
        problems.append(doc.problem(("default_branch",), f"unknown branch '{default_branch}'",
                                    did_you_mean(str(default_branch), declared)))
    connectors = {}
    for name, raw in (data.get("connectors") or {}).items():
        if not isinstance(raw, Mapping) or not isinstance(raw.get("type"), str):
            continue
        assert doc is not None
        cls = types.get(raw["type"])
        mark = doc.mark(("connectors", name), key=True)
        if cls is None:
            problems.append(doc.problem(("connectors", name, "type"), f"unknown connector type '{raw['type']}'",
                                        did_you_mean(raw["type"], types) or
                                        "installed types: " + ", ".join(sorted(types))))
            # Still known by name, able to do the canonical actions: the one mistake is not echoed at every
            # `connector:`, `via:` and action that uses it (the project does not load anyway).
            connectors[str(name)] = ConnectorConfig(str(name), str(raw["type"]), dict(raw), dict(CANONICAL),
                                                    Location(doc.path, mark.line, mark.col))
            continue
        # The settings schema of automator.yaml already explained some mistakes (a literal secret): once is enough.
        seen = {(p.line, p.col) for p in problems if p.path == doc.path}
        problems.extend(p for p in _connector_problems(doc, str(name), raw, cls) if (p.line, p.col) not in seen)
        connectors[str(name)] = ConnectorConfig(str(name), cls.type, dict(raw), dict(cls.actions),
                                                Location(doc.path, mark.line, mark.col), cls.own_ids)
    settings = {**(data.get("settings") or {}), **(overrides or {})}
    limits = data.get("limits") or {}
    catalogue = _catalogue(doc, connectors, types, problems)
    try:
        channel_map = channels.load(data.get("channels"))
    except channels.ChannelsError as exc:
        channel_map = channels.DEFAULTS
        if doc is not None and not any(b[:1] == ("channels",) for b in broken):  # the schema said it already
            problems.append(doc.problem(tuple(exc.path.split(".")), str(exc).split(": ", 1)[1]))
    else:
        if doc is not None and data.get("channels") is not None:
            problems.extend(replace(doc.problem(tuple(path.split(".")), message,
                                                "list the value under one channel only"), severity="warning")
                            for path, message in channels.overlaps(channel_map))
    return Config(timezone=tz, branches=branches, default_branch=default_branch, connectors=connectors,
                  settings=settings, store=data.get("store"),
                  chain_depth=int(limits.get("chain_depth", DEFAULT_CHAIN_DEPTH)), daemon=dict(data.get("daemon") or {}),
                  catalogue=catalogue, channels=channel_map)


def _catalogue(doc: Document | None, connectors: Mapping[str, ConnectorConfig], types: Mapping[str, type[Connector]],
               problems: list[Problem]) -> Catalogue:
    """The engine's catalogue and every configured connector's, merged; a connector package whose catalogue
    cannot be read is a problem at that connector."""
    parts = [CORE]
    for name, conf in connectors.items():
        cls = types.get(conf.type)
        if cls is None:
            continue
        try:
            parts.append(cls.produces(name, conf.options))
        except CatalogueError as exc:
            if doc is None:
                continue
            if exc.in_settings:  # at the setting's own line
                problems.append(doc.problem(("connectors", name, *exc.path),
                                            f"connector '{name}' ({conf.type}): {exc.reason}", exc.hint, key=exc.key))
            else:
                problems.append(doc.problem(("connectors", name), f"connector '{name}' ({conf.type}): {exc}",
                                            exc.hint))
    return merge(parts)


def _knowledge(root: Path, files: list[Path], docs: list[Document], config: Config,
               pipelines: Mapping[str, Pipeline], types: Mapping[str, type[Connector]]) -> Knowledge:
    """The catalogue and what the project's files declare. Rules checked alone (`validate rules/clinic`) may
    read what rules elsewhere emit or set, so the other rule files are read too, for that only."""
    data = [doc.data for doc in docs]
    if len(files) < len(every := rule_files(root)):
        chosen = set(files)
        for file in every:
            if file not in chosen:
                raw, refused = read_file(file, display(file), MAX_BYTES, within=root)
                other = load_document(file, raw=raw, display_path=display(file))[0] if refused is None else None
                if other is not None:
                    data.append(other.data)
    requires = [name for p in pipelines.values() for stage in p.stages.values() for name in stage.requires]
    sends = {name: frozenset(_produced(types[c.type], name, c.options).events)
             for name, c in config.connectors.items() if c.type in types}
    silent = [name for name, c in config.connectors.items() if c.type in types
              and types[c.type].parse is not Connector.parse and not sends[name]]
    return Knowledge(config.catalogue, declared(data, requires, (c.options for c in config.connectors.values())),
                     {name: c.type for name, c in config.connectors.items()}, open=bool(silent), sends=sends)


def _produced(cls: type[Connector], name: str, options: Mapping[str, Any]) -> Catalogue:
    try:
        return cls.produces(name, options)
    except CatalogueError:  # reported where the catalogue is merged (`_catalogue`)
        return Catalogue()


def _connector_problems(doc: Document, name: str, raw: Mapping[str, Any], cls: type[Connector]) -> list[Problem]:
    """The connector type's own settings schema, checked where the admin wrote each setting."""
    from jsonschema import Draft202012Validator

    found = []
    for error in sorted(Draft202012Validator(cls.config_schema).iter_errors(dict(raw)), key=lambda e: list(e.path)):
        path = ("connectors", name, *error.absolute_path)
        found.append(doc.problem(path, f"connector '{name}' ({cls.type}): {error.message}"))
    return found


def _timezone_hint(name: str) -> str:
    """A close IANA name; never a look-alike abbreviation (MSK is Moscow time, not 'MST', US mountain time)."""
    zones = available_timezones()
    same_letters = sorted(z for z in zones if z.lower() == name.lower())
    if same_letters:
        return f"did you mean '{same_letters[0]}'?"
    guess = did_you_mean(name, zones) if "/" in name else None
    return guess or "use an IANA name such as Europe/Moscow"


def _pipelines(doc: Document, config: Config, pipelines: dict[str, Pipeline], problems: list[Problem]) -> None:
    ctx = CompileContext(doc, problems, config, broken=_broken_paths(doc, problems))
    for name, raw in ((doc.data or {}).get("pipelines") or {}).items():
        if not isinstance(raw, Mapping):
            continue
        path = ("pipelines", name)
        if name in pipelines:
            where = pipelines[name].location
            ctx.error(path, f"pipeline '{name}' is defined twice", f"first defined at {where}", key=True)
            continue
        connector = raw.get("connector")
        if connector is not None and connector not in config.connectors:
            ctx.error((*path, "connector"), f"unknown connector '{connector}'",
                      did_you_mean(str(connector), config.connectors) or "define it under `connectors:` in "
                                                                         "automator.yaml")
        stages: dict[str, Stage] = {}
        seen_ids: dict[str, str] = {}
        for stage_name, stage in (raw.get("stages") or {}).items():
            if not isinstance(stage, Mapping) or "id" not in stage:
                continue
            crm_id = str(stage["id"])
            if crm_id in seen_ids:
                ctx.error((*path, "stages", stage_name, "id"),
                          f"stages '{seen_ids[crm_id]}' and '{stage_name}' have the same id '{crm_id}'")
            seen_ids[crm_id] = str(stage_name)
            sla_path = (*path, "stages", stage_name, "sla")
            # A schema problem already says what is wrong with a bad `sla`; parsing it again would repeat it.
            sla = ctx.duration(stage["sla"], sla_path) if "sla" in stage and not ctx.is_broken(sla_path) else None
            qualified = stage.get("qualified") is True
            if qualified and stage.get("outcome") == "lost":
                ctx.error((*path, "stages", stage_name, "qualified"),
                          f"stage '{stage_name}' is lost: it cannot be where leads count as qualified",
                          "mark the first stage a lead reaches once it is worth working on, such as in_progress")
                qualified = False
            elif qualified and any(s.qualified for s in stages.values()):
                first = next(s.name for s in stages.values() if s.qualified)
                ctx.warning((*path, "stages", stage_name, "qualified"),
                            f"stage '{first}' is marked qualified already: a lead is qualified from the first marked "
                            f"stage on, so this mark changes nothing", "keep `qualified: true` on one stage")
            stages[str(stage_name)] = Stage(name=str(stage_name), crm_id=crm_id, title=str(stage.get("title", "")),
                                            requires=tuple(str(f) for f in stage.get("requires") or ()), sla=sla,
                                            outcome=stage.get("outcome"), qualified=qualified)
        mark = doc.mark(path, key=True)
        pipelines[str(name)] = Pipeline(name=str(name), connector=str(connector or ""),
                                        crm_id=None if raw.get("id") is None else str(raw["id"]), stages=stages,
                                        title=str(raw.get("title", "")), location=Location(doc.path, mark.line, mark.col))


def _rules(doc: Document, ctx: CompileContext, first_seen: dict[str, Location]) -> list[Rule]:
    raw_rules = (doc.data or {}).get("rules") if isinstance(doc.data, Mapping) else None
    if not isinstance(raw_rules, list):
        return []
    ctx.broken = _broken_paths(doc, ctx.problems)
    out = []
    for index, raw in enumerate(raw_rules):
        if not isinstance(raw, Mapping):
            continue
        rule_id = str(raw.get("id"))
        # A missing or malformed id is the schema's to report; the rule's other parts are still checked.
        id_ok = "id" in raw and not ctx.is_broken(("rules", index, "id"))
        duplicate = id_ok and rule_id in first_seen
        if duplicate:  # reported, and still compiled so that its other problems show in the same run
            ctx.error(("rules", index, "id"), f"duplicate rule id '{rule_id}'", f"first defined at {first_seen[rule_id]}")
        if id_ok:
            first_seen.setdefault(rule_id, ctx.location(("rules", index)))
        rule = _rule(raw, ("rules", index), ctx)
        if rule is not None and id_ok and not duplicate and raw.get("enabled", True) is not False:
            out.append(rule)
    return out


def _broken_paths(doc: Document, problems: list[Problem]) -> set[tuple[Any, ...]]:
    """Paths of the nodes that schema problems point at: compiling them again would only echo those problems."""
    spots = {(p.line, p.col) for p in problems if p.path == doc.path}
    found = {path for path, mark in doc.marks.items() if (mark.line, mark.col) in spots}
    # A block mapping starts where its first key does: a problem there is about the mapping (a missing key),
    # so that first key stays unbroken; keys elsewhere are claimed by key problems (unknown, duplicate keys).
    taken = {(mark.line, mark.col) for path, mark in doc.marks.items() if path in found}
    found |= {path for path, mark in doc.key_marks.items() if (mark.line, mark.col) in spots - taken}
    return found


def _rule(raw: Mapping[str, Any], path: tuple[Any, ...], ctx: CompileContext) -> Rule | None:
    when = raw.get("when")
    kinds = [k for k in TRIGGERS if k in when] if isinstance(when, Mapping) else []
    # A broken trigger is the schema's to report; the rest of the rule is still checked, so one run shows all.
    trigger_ok = len(kinds) == 1 and not ctx.is_broken((*path, "when"))
    ctx.rule_vars = set_names(raw.get("do"))
    ctx.rule_pipeline = when.get("pipeline") if trigger_ok and isinstance(when, Mapping) else None
    catalogue = ctx.config.catalogue if ctx.config is not None else CORE
    for_each = None
    names = SCOPE_NAMES
    each = written if isinstance(written := raw.get("for_each"), Mapping) else {}
    items = None
    if "for_each" in raw and not ctx.is_broken((*path, "for_each")):
        items = _for_each_items(each, (*path, "for_each"), ctx)
        if trigger_ok and "items" not in each:
            _scan_on_schedules_only(each, kinds[0], (*path, "for_each"), ctx)
        each = {**each, "kind": items[0]} if items is not None else each
    ctx.rule_kind, ctx.rule_sources = rule_trigger(when, each, catalogue) if trigger_ok else (None, ())
    # What the rule reads is known from its trigger as written: every expression below is checked against it.
    # A fan-out's runs are each about one record of its kind, started by the trigger's events.
    ctx.reading = reading_of(when, each.get("kind"), ctx.knowledge) \
        if trigger_ok and ctx.knowledge is not None else None
    if ctx.reading is not None and isinstance(each.get("kind"), str) and each["kind"] in ENTITY_KINDS:
        ctx.reading = replace(ctx.reading, kind=each["kind"])
    if "for_each" in raw and not ctx.is_broken((*path, "for_each")) and isinstance(each.get("kind"), str):
        names = SCOPE_NAMES | {each["kind"]}
        where = ctx.expr(each["where"], (*path, "for_each", "where"), names) if "where" in each else None
        for_each = ForEach(kind=each["kind"], where=where, items=items[1] if items is not None else None)
    trigger = None
    if trigger_ok and isinstance(when, Mapping):
        trigger = TRIGGERS[kinds[0]].compile(when, (*path, "when"), ctx)
        if trigger is not None:
            _check_trigger_names(when, kinds[0], (*path, "when"), ctx)
    conditions_raw = raw.get("if", [])
    conditions_raw = conditions_raw if isinstance(conditions_raw, list) else [conditions_raw]
    conditions = []
    for index, source in enumerate(conditions_raw):
        where_path = (*path, "if", index) if isinstance(raw.get("if"), list) else (*path, "if")
        if ctx.is_broken(where_path):
            continue
        expr = ctx.expr(source, where_path, names)
        if expr is not None:
            conditions.append(expr)
    mode = raw.get("mode", "restart")
    if mode not in MODES and not ctx.is_broken((*path, "mode")):
        ctx.error((*path, "mode"), f"unknown mode '{mode}'", did_you_mean(str(mode), MODES))
    per: Any = raw.get("per")
    if isinstance(per, str) and ("{{" in per):
        per = ctx.template(per, (*path, "per"), names)
    elif per is not None and per not in PER_KINDS and not ctx.is_broken((*path, "per")):
        ctx.error((*path, "per"), f"unknown per '{per}': use one of {', '.join(PER_KINDS)} or a {{{{ template }}}}",
                  did_you_mean(str(per), PER_KINDS))
    steps = compile_steps(raw.get("do"), (*path, "do"), ctx)
    ctx.check_reads()
    ctx.reading = None
    if trigger is None:
        return None
    mark = ctx.doc.mark(path)
    content = hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()[:12]
    version = f"{steps_shape(steps)}.{content}"
    return Rule(id=str(raw.get("id")), trigger=trigger, conditions=tuple(conditions), steps=steps, per=per,
                mode=mode, for_each=for_each, description=str(raw.get("description", "")), version=version,
                location=Location(ctx.doc.path, mark.line, mark.col))


def _scan_on_schedules_only(spec: Mapping[str, Any], trigger: str, path: tuple[Any, ...], ctx: CompileContext) -> None:
    """`for_each: {kind:}` alone reads every stored record of the kind: once a schedule tick is fine, but on every
    matching event it is a million evaluations per webhook in a big store. Other triggers must name their records
    with `items:` (a lookup, through an index)."""
    if trigger == "schedule" or not isinstance(spec.get("kind"), str):
        return
    kind = spec["kind"]
    ctx.error((*path, "kind"), f"`for_each: {{kind: {kind}}}` with `when: {{{trigger}: ...}}` would read every stored "
                               f"{kind} on each event it matches",
              "name the records with `items:`, a lookup through an index, such as bookings_of(client) or "
              "bookings_at(event.starts_at) (every booking of a slot); `kind:` alone is for `when: {schedule: ...}`")


def _for_each_items(spec: Mapping[str, Any], path: tuple[Any, ...], ctx: CompileContext) -> tuple[str, Expr] | None:
    """`for_each: {items: EXPR}`: the lookup compiled (in the trigger's scope) and the kind of record it gives; None
    without `items:`, or when it cannot work (reported here, at its line)."""
    if "kind" not in spec and "items" not in spec:
        ctx.error(path, "`for_each` needs `kind:` (every stored record of a kind) or `items:` (a lookup such as "
                        "bookings_of(client, status='confirmed'))")
        return None
    if "items" not in spec:
        return None
    expr = ctx.expr(spec["items"], (*path, "items"))
    if expr is None:
        return None
    kind = items_kind(expr.tree)
    if kind is None:
        ctx.error((*path, "items"), f"`items` {expr.source!r} does not give records a run can be about",
                  f"write a lookup of bookings or deals, such as bookings_of(client, status='confirmed') or "
                  f"where(deals_of(client), stage='new'); the kinds are {', '.join(sorted(set(LOOKUP_KINDS.values())))}")
        return None
    if "kind" in spec and spec["kind"] != kind:
        ctx.error((*path, "kind"), f"`kind: {spec['kind']}` but `items` gives {kind} records",
                  f"write kind: {kind}, or leave `kind` out")
        return None
    return kind, expr


def _check_trigger_names(when: Mapping[str, Any], kind: str, path: tuple[Any, ...], ctx: CompileContext) -> None:
    """An event type nothing produces, or a `changed:`/`held:` field no connector fills: the rule never fires."""
    if ctx.knowledge is None:
        return
    if kind == "event":
        found = event_type_problem(str(when["event"]), ctx.knowledge)
    elif kind in ("changed", "held"):
        chain = tuple(str(when[kind]).split(".", 1))
        found = field_problem(chain, ctx.reading, ctx.knowledge, set())
        values = values_of(chain, ctx.reading, ctx.knowledge) if found is None and len(chain) == 2 else None
        for key in ("to", "from", "is"):
            value = when.get(key)
            if values and isinstance(value, (str, int)) and not isinstance(value, bool) and str(value) not in values:
                ctx.error((*path, key), *unlisted_value(".".join(chain), str(value), values))
    else:
        found = None
    if found is not None:
        ctx.error((*path, kind), *found)


def _check_requires(pipelines: Mapping[str, Pipeline], docs: Mapping[str, Document], deal_fields: set[str],
                    problems: list[Problem]) -> None:
    """A stage that requires a field no action ever sets can only be entered by hand: say so."""
    for pipeline in pipelines.values():
        for stage in pipeline.stages.values():
            for index, name in enumerate(stage.requires):
                if name not in deal_fields:
                    problems.append(docs[pipeline.name].problem(
                        ("pipelines", pipeline.name, "stages", stage.name, "requires", index),
                        f"stage '{stage.name}' requires '{name}', but no action sets it",
                        "set it with `deal.update: {fields: {" + name + ": ...}}` or in deal.create `fields:`"))
