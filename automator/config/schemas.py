"""JSON Schema registry (schemas/ + every connector's action schemas) → Problems; writes the editor bundle.

The registry loads the schemas, compiles their validators (jsonschema-rs first, the quick yes for a valid file;
jsonschema's for a file with a problem) and places each problem in the file; what a problem says is
automator.config.explain's."""
from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import referencing
from referencing.jsonschema import DRAFT202012
from jsonschema import Draft202012Validator
import jsonschema_rs
from jsonschema.exceptions import ValidationError
from referencing.exceptions import NoSuchResource, Unresolvable

from automator.config.explain import DataPath, Issue, explain, non_text_keys
from automator.config.problems import Problem

# Installed non-editable, the schemas are not package data; this path assumes a source checkout.
SCHEMA_DIR: Path = Path(__file__).resolve().parents[2] / "schemas"
BASE_URI = "https://automator.dev/schemas/"
RULES_SCHEMA = "rules.schema.json"

_MISSING: Any = object()


class DocumentLike(Protocol):
    """What validation needs of a loaded file (automator.config.source.Document)."""

    path: str
    data: Any

    def problem(self, path: Sequence[str | int], message: str, hint: str | None = None, *,
                key: bool = False) -> Problem:
        """A Problem placed at the node (or, with key=True, the mapping key) at `path`."""
        ...


def _refuse(uri: str) -> referencing.Resource[Any]:
    """Registry retrieval hook: every schema is preloaded, so anything else is refused, never fetched."""
    # NoSuchResource is public and made this way (referencing's docs); its attrs-made __init__ is invisible to
    # mypy through referencing's own `frozen` stub: a stub gap.
    raise NoSuchResource(ref=uri)  # type: ignore[call-arg]


@functools.lru_cache(maxsize=4)
def _load_dir(directory: Path) -> Mapping[str, dict[str, Any]]:
    """Every *.json under `directory`, by relative POSIX path (shared, treat as read-only)."""
    return {
        file.relative_to(directory).as_posix(): json.loads(file.read_text(encoding="utf-8"))
        for file in sorted(directory.rglob("*.json"))
    }


def _check_name(name: str) -> None:
    parts = name.split("/")
    if not name.endswith(".json") or name.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"schema name must be a relative path ending in .json: {name!r}")


class SchemaSet:
    """The built-in schemas plus connectors' extra ones, with cached validators that never fetch."""

    def __init__(self, extra: Mapping[str, dict[str, Any]] | None = None, *, directory: Path = SCHEMA_DIR) -> None:
        """Load schemas/ and add `extra` ({"actions/bitrix24.call.json": {...}}) from connectors."""
        self._schemas: dict[str, dict[str, Any]] = dict(_load_dir(directory))
        for name, schema in (extra or {}).items():
            _check_name(name)
            schema = dict(schema)
            schema.setdefault("$id", BASE_URI + name)  # relative $refs then resolve inside the bundle
            if name in self._schemas and self._schemas[name] != schema:
                raise ValueError(f"schema {name!r} is already defined differently")
            self._schemas[name] = schema
        resources: list[tuple[str, referencing.Resource[Any]]] = []
        for name, schema in self._schemas.items():
            resource = referencing.Resource.from_contents(schema, default_specification=DRAFT202012)
            uris = {BASE_URI + name, name}
            if isinstance(schema.get("$id"), str):
                uris.add(schema["$id"])
            resources.extend((uri, resource) for uri in uris)
        registry: referencing.Registry[Any] = referencing.Registry(retrieve=_refuse)  # type: ignore[call-arg]
        self._registry = registry.with_resources(resources)
        self._validators: dict[str, Draft202012Validator] = {}
        self._fast_validators: dict[str, Any] = {}
        self._fast_registry: Any = None

    @property
    def names(self) -> list[str]:
        """Every schema's relative name, sorted."""
        return sorted(self._schemas)

    def schema(self, name: str) -> dict[str, Any]:
        """The schema at relative path `name`, e.g. "rules.schema.json" (read-only)."""
        try:
            return self._schemas[name]
        except KeyError:
            raise KeyError(f"no schema named {name!r}") from None

    def action_schema(self, action: str) -> dict[str, Any] | None:
        """The params schema of `action` ("deal.move"), or None when no schema declares it."""
        return self._schemas.get(f"actions/{action}.json")

    def _validator(self, name: str) -> Draft202012Validator:
        validator = self._validators.get(name)
        if validator is None:
            schema = self.schema(name)
            Draft202012Validator.check_schema(schema)
            # No format_checker: formats stay annotations; the expression and date checks live in compile.
            validator = Draft202012Validator(schema, registry=self._registry)
            self._validators[name] = validator
        return validator

    def is_valid(self, name: str, instance: Any) -> bool:
        """A quick yes/no from jsonschema-rs (compiled, microseconds per file); False when it cannot tell.

        A valid file, the common case, costs only this; an invalid one then goes through jsonschema's full
        validation, which explains each problem. Both get the same registry and neither ever fetches.
        """
        validator = self._fast(name)
        if validator is None:
            return False
        try:
            return bool(validator.is_valid(_plain(instance)))
        except (ValueError, jsonschema_rs.ValidationError):
            return False

    def _fast(self, name: str) -> Any:
        """The compiled jsonschema-rs validator of schema `name`, or None when it cannot compile the schema."""
        validator = self._fast_validators.get(name)
        if validator is None:
            try:  # an unresolvable $ref fails here: then the full validation reports it
                if self._fast_registry is None:
                    self._fast_registry = jsonschema_rs.Registry(
                        [(BASE_URI + n, schema) for n, schema in self._schemas.items()], retriever=_refuse_rs)
                validator = jsonschema_rs.Draft202012Validator(self.schema(name), registry=self._fast_registry,
                                                               retriever=_refuse_rs)
            except ValueError:
                validator = False
            self._fast_validators[name] = validator
        return validator or None

    def validate(
        self, doc: DocumentLike, name: str, path_prefix: DataPath = (), instance: Any = _MISSING
    ) -> list[Problem]:
        """Check `instance` (default: doc.data at `path_prefix`) against schema `name`; every problem, readable.

        Admin-written numbers (and dates) where text is expected are replaced in place by their source
        text. For the rules schema, every action step's params are also checked against the action's
        own schema.
        """
        if instance is _MISSING:
            instance = _get(doc.data, path_prefix)
        issues = self._issues(doc, name, path_prefix, instance)
        if name == RULES_SCHEMA:
            issues += self._action_issues(doc, path_prefix, instance)
        seen: set[tuple[DataPath, bool, str]] = set()
        problems: list[Problem] = []
        for issue in issues:
            ident = (issue.path, issue.key, issue.message)
            if ident not in seen:
                seen.add(ident)
                problems.append(doc.problem(issue.path, issue.message, issue.hint, key=issue.key))
        return sorted(problems, key=lambda p: (p.line, p.col))

    def errors(self, name: str, instance: Any) -> list[str]:
        """Readable messages for a plain value against schema `name` (rendered params at run time); no coercion."""
        validator = self._fast(name)
        with contextlib.suppress(ValueError, TypeError):
            # Rendered params are plain data nearly always: checked as they are, with no copy and no walk over
            # their keys; anything jsonschema-rs does not take (a key that is not text, a YAML number) goes below.
            if validator is not None and validator.is_valid(instance):
                return []
        messages: list[str] = []
        for issue in self._issues(None, name, (), instance):
            if issue.message not in messages:
                messages.append(issue.message)
        return messages

    def _issues(self, doc: DocumentLike | None, name: str, prefix: DataPath, instance: Any) -> list[Issue]:
        bad_keys = list(non_text_keys(instance, prefix))
        if bad_keys:  # jsonschema cannot match patterns against such keys; report them first
            return bad_keys
        if self.is_valid(name, instance):
            return []
        validator = self._validator(name)  # built (and its schema checked) only for a file that has a problem
        box = [instance]
        for _ in range(3):  # coercion may reveal more coercible values in another branch
            try:
                errors = list(validator.iter_errors(box[0]))
            except Unresolvable as exc:
                ref = getattr(exc, "ref", "?")
                return [Issue(prefix, f"cannot check against schema '{name}': it refers to '{ref}', which "
                                       "is not available (schemas are never fetched from the network)")]
            if doc is None or not _coerce(errors, box, doc, prefix):
                break
        # The built-in rules schema's, as before connectors' extra schemas could be added.
        rule_keys = _load_dir(SCHEMA_DIR)[RULES_SCHEMA]["$defs"]["rule"]["properties"]
        return explain(errors, prefix, rule_keys)

    def _action_issues(self, doc: DocumentLike, prefix: DataPath, data: Any) -> list[Issue]:
        dispatch = self.schema(RULES_SCHEMA)["$defs"]["step"]["x-dispatch"]
        kinds, action_re = set(dispatch["keys"]), re.compile(dispatch["other"])
        issues: list[Issue] = []
        for step_path, action, params in _action_steps(data, kinds, action_re):
            name = f"actions/{action}.json"
            # Unknown actions are compile's business (it knows the connectors); params that are not a mapping
            # at all are already the step schema's complaint.
            if name in self._schemas and (params is None or isinstance(params, Mapping)):
                params = {} if params is None else params
                issues += self._issues(doc, name, prefix + step_path + (action,), params)
        return issues

    def write_bundle(self, out_dir: Path) -> list[Path]:
        """Write every schema (built-in and extra) under `out_dir` in the same layout; the paths written."""
        written = []
        for name in self.names:
            target = Path(out_dir, *name.split("/"))
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(self._schemas[name], indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            written.append(target)
        return written


# ---------------------------------------------------------------- walking the data

def _refuse_rs(uri: str) -> Any:
    raise ValueError(f"schemas are never fetched from the network: {uri}")


def _plain(value: Any) -> Any:
    """Data as jsonschema-rs takes it: the loader's SourceInt/SourceFloat become plain numbers."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None or type(value) in (str, int, float):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    raise ValueError(f"{type(value).__name__} is for the full validation to coerce")


def _get(data: Any, path: DataPath) -> Any:
    for part in path:
        data = data[part]
    return data


def _action_steps(data: Any, kinds: set[str], action_re: re.Pattern[str]) -> Iterator[tuple[DataPath, str, Any]]:
    """(path of the step, action name, params) for every well-formed action step of a rules file."""
    rules = data.get("rules") if isinstance(data, dict) else None
    if not isinstance(rules, list):
        return
    stack: list[tuple[DataPath, Any]] = [
        (("rules", i, "do"), r.get("do")) for i, r in enumerate(rules) if isinstance(r, dict)]
    while stack:
        path, steps = stack.pop()
        for j, step in enumerate(steps if isinstance(steps, list) else ()):
            if not isinstance(step, dict):
                continue
            if "if" in step:
                stack += [(path + (j, branch), step.get(branch)) for branch in ("then", "else")]
            actions = [k for k in step if isinstance(k, str) and k not in kinds and action_re.match(k)]
            if len(actions) == 1 and not kinds & step.keys():
                yield path + (j,), actions[0], step[actions[0]]


def _coerce(errors: Iterable[ValidationError], box: list[Any], doc: DocumentLike, prefix: DataPath) -> bool:
    """Replace admin-written scalars where a string is expected by their text; True if any changed."""
    changed = False
    pending = list(errors)
    while pending:
        error = pending.pop()
        pending.extend(error.context or ())
        if error.validator != "type" or "propertyNames" in error.absolute_schema_path:
            continue
        text = _as_text(error.instance, error.validator_value)
        if text is None:
            continue
        rel = tuple(error.absolute_path)
        if rel:
            _get(box[0], rel[:-1])[rel[-1]] = text
        else:
            if prefix and _get(doc.data, prefix) is box[0]:
                _get(doc.data, prefix[:-1])[prefix[-1]] = text
            box[0] = text
        changed = True
    return changed


def _as_text(value: Any, expected: Any) -> str | None:
    types = {expected} if isinstance(expected, str) else set(expected)
    if isinstance(value, str) or "string" not in types or types & {"number", "integer"}:
        return None
    source = getattr(value, "source", None)
    if isinstance(source, str):
        return source
    if isinstance(value, _dt.date):  # unquoted YAML timestamps; isoformat keeps the offset
        return value.isoformat()
    return None


