"""Every example in schemas/ is what it claims: valid against its schema and, where it is an expression, a
template, a trigger, a step, an action or a rule, accepted by `validate` and evaluated without an error on a
fixed scope (the example clinic's client, booking and deal). An editor shows these examples to admins."""
from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import referencing
import yaml
from jsonschema import Draft202012Validator
from referencing.jsonschema import DRAFT202012

from automator.config.load import load_project
from automator.config.schemas import BASE_URI, SCHEMA_DIR
from automator.core import scope as scopes
from automator.expr import EvalError, Expr, Template
from automator.model import Entity, EntityRef, Event, Rule
from automator.store.sqlite import SqliteStore

REPO = Path(__file__).resolve().parent.parent
MSK = ZoneInfo("Europe/Moscow")
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=MSK)


def examples() -> Iterator[tuple[str, str, Any]]:
    """(schema file, JSON pointer of the node, example) for every `examples` entry in schemas/."""
    for path in sorted(SCHEMA_DIR.rglob("*.json")):
        name = path.relative_to(SCHEMA_DIR).as_posix()
        stack: list[tuple[str, Any]] = [("", json.loads(path.read_text(encoding="utf-8")))]
        while stack:
            pointer, node = stack.pop()
            if isinstance(node, dict):
                for example in node.get("examples", ()):
                    yield name, pointer, example
                stack.extend((f"{pointer}/{key}", value) for key, value in node.items() if key != "examples")
            elif isinstance(node, list):
                stack.extend((f"{pointer}/{i}", value) for i, value in enumerate(node))


EXAMPLES = list(examples())


def _registry() -> referencing.Registry[Any]:
    resources = []
    for path in SCHEMA_DIR.rglob("*.json"):
        resource = referencing.Resource.from_contents(json.loads(path.read_text(encoding="utf-8")),
                                                      default_specification=DRAFT202012)
        resources.append((BASE_URI + path.relative_to(SCHEMA_DIR).as_posix(), resource))
    return referencing.Registry().with_resources(resources)


REGISTRY = _registry()


def test_the_schemas_have_examples_of_every_kind() -> None:
    kinds = {name.split("/")[0] if "/" in name else name for name, _, _ in EXAMPLES}
    assert {"actions", "steps", "triggers", "rules.schema.json", "common.json"} <= kinds


@pytest.mark.parametrize(("name", "pointer", "example"), EXAMPLES,
                         ids=[f"{n}#{p}:{i}" for i, (n, p, _) in enumerate(EXAMPLES)])
def test_an_example_is_valid_against_its_own_schema(name: str, pointer: str, example: Any) -> None:
    validator = Draft202012Validator({"$ref": f"{BASE_URI}{name}#{pointer}"}, registry=REGISTRY)
    assert [e.message for e in validator.iter_errors(example)] == []


def as_rules(name: str, pointer: str, example: Any) -> list[dict[str, Any]] | None:
    """The example as rules of the example project, or None for what is not rule content (settings, ids)."""
    booking = {"event": "booking.updated"}
    if name == "rules.schema.json":
        return list(example["rules"])
    if name.startswith("actions/") and pointer == "":
        return [{"id": "r", "when": booking, "do": [{name[len("actions/"):-len(".json")]: example}]}]
    if name.startswith("steps/") and pointer == "":
        when = {"event": "nps.received"} if "event.score" in json.dumps(example) else booking
        return [{"id": "r", "when": when, "do": [example]}]
    if name.startswith("triggers/") and pointer == "":
        return [{"id": "r", "when": example, "do": [{"stop": True}]}]
    if name == "common.json" and pointer in ("/$defs/expr", "/$defs/conditions"):
        return [{"id": "r", "when": {"event": "nps.received"}, "if": example, "do": [{"stop": True}]}]
    if name == "common.json" and pointer == "/$defs/template":
        return [{"id": "r", "when": booking, "do": [{"notify": {"to": "admin", "text": example}}]}]
    if name == "common.json" and pointer == "/$defs/until":
        return [{"id": "r", "when": booking, "do": [{"wait": {"until": example}}]}]
    return None


RULE_EXAMPLES = [(n, p, e) for n, p, e in EXAMPLES if as_rules(n, p, e) is not None]


@pytest.fixture(scope="module")
def clinic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example project's settings, pipelines, segments and loyalty, without its rules."""
    root = tmp_path_factory.mktemp("clinic")
    for name in ("automator.yaml", "segments.yaml", "loyalty.yaml"):
        shutil.copy(REPO / name, root / name)
    shutil.copytree(REPO / "pipelines", root / "pipelines")
    (root / "rules").mkdir()
    # What fills the fields the `booked` stage requires, as the clinic's own rules do.
    (root / "rules" / "fills.yaml").write_text(
        "rules:\n  - id: fills\n    when: {event: booking.created}\n    do:\n"
        "      - deal.update: {fields: {visit_at: \"{{ booking.starts_at }}\", service: \"{{ booking.service }}\"}}\n")
    return root


def store() -> SqliteStore:
    """Анна, her booking 1001 that names the rehabilitation deal 501."""
    snapshot = SqliteStore()
    snapshot.put_entity(Entity(EntityRef("client", "77"), {
        "name": "Анна", "phone": "+79161234567", "visits": 4, "spent": 12000, "segment": "loyal",
        "first_visit_at": "2025-09-01T10:00:00+03:00", "last_visit_at": "2026-02-01T10:00:00+03:00"}, NOW))
    snapshot.put_entity(Entity(EntityRef("booking", "1001"), {
        "client": 77, "deal": 501, "status": "waiting", "branch": "main", "service": "massage", "amount": 3500,
        "starts_at": "2026-03-03T15:00:00+03:00"}, NOW))
    snapshot.put_entity(Entity(EntityRef("deal", "501"), {
        "pipeline": "rehabilitation", "stage": "thinking", "client": 77, "responsible": "olga", "amount": 20000}, NOW))
    return snapshot


def compiled(value: Any) -> Iterator[Expr | Template]:
    """Every expression and template inside a compiled rule, its trigger and steps."""
    if isinstance(value, (Expr, Template)):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from compiled(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from compiled(item)
    elif hasattr(value, "__dataclass_fields__"):
        for name in value.__dataclass_fields__:
            yield from compiled(getattr(value, name))


def scope_for(project: Any, rule: Rule, snapshot: SqliteStore) -> dict[str, Any]:
    trigger = rule.trigger
    type_ = getattr(trigger, "type", None) or f"{getattr(trigger, 'kind', 'booking')}.updated"
    kind = type_.partition(".")[0]
    ref = {"client": EntityRef("client", "77"), "deal": EntityRef("deal", "501")}.get(kind,
                                                                                       EntityRef("booking", "1001"))
    event = Event(id="ev-1", type=type_, at=NOW, entity=ref, data={"score": 9}, source="forms")
    entity = snapshot.entity(ref)
    assert entity is not None
    return scopes.build(project, snapshot, event, ref, entity.fields, entity.fields)


@pytest.mark.parametrize(("name", "pointer", "example"), RULE_EXAMPLES,
                         ids=[f"{n}#{p}:{i}" for i, (n, p, _) in enumerate(RULE_EXAMPLES)])
def test_an_example_validates_and_evaluates_in_the_example_project(clinic: Path, name: str, pointer: str,
                                                                   example: Any) -> None:
    rules = as_rules(name, pointer, example)
    (clinic / "rules" / "example.yaml").write_text(yaml.safe_dump({"rules": rules}, allow_unicode=True),
                                                   encoding="utf-8")
    project, problems = load_project(clinic)
    assert problems == [] and project is not None, "\n".join(p.format() for p in problems)
    snapshot = store()
    ectx = scopes.eval_context(project, snapshot, NOW)
    for rule in (r for r in project.rules if r.id != "fills"):
        scope = scope_for(project, rule, snapshot)
        for part in compiled((rule.trigger, rule.conditions, rule.steps)):
            try:
                value = part.render(scope, ectx) if isinstance(part, Template) else part.evaluate(scope, ectx)
            except EvalError as exc:
                pytest.fail(f"{rule.id}: {part.source!r} failed on the example clinic: {exc}")
            if pointer == "/$defs/until" and isinstance(part, Expr):
                assert isinstance(value, datetime), f"{part.source!r} is {value!r}, not a moment"
