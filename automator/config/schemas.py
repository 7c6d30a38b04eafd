"""JSON Schema registry (schemas/ + every connector's action schemas) → Problems; writes the editor bundle."""
from __future__ import annotations

import contextlib
import datetime as _dt
import difflib
import functools
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import referencing
from referencing.jsonschema import DRAFT202012
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match
from referencing.exceptions import NoSuchResource, Unresolvable

from automator.clock import spelled_duration
from automator.config.problems import Problem

try:  # the quick check; without it every file goes through the full (slower) validation
    import jsonschema_rs
except ImportError:  # pragma: no cover
    jsonschema_rs = None

# Installed non-editable, the schemas are not package data; this path assumes a source checkout.
SCHEMA_DIR: Path = Path(__file__).resolve().parents[2] / "schemas"
BASE_URI = "https://automator.dev/schemas/"
RULES_SCHEMA = "rules.schema.json"

DataPath = tuple[str | int, ...]
_MISSING: Any = object()
_COMBINATORS = ("anyOf", "oneOf")
_TYPE_WORDS = {
    "object": "a mapping", "array": "a list", "string": "a string", "integer": "a whole number",
    "number": "a number", "boolean": "true or false", "null": "nothing",
}
_PY_TYPES: dict[str, tuple[type, ...]] = {"object": (dict,), "array": (list,), "string": (str,), "number": (int, float)}


class DocumentLike(Protocol):
    """What validation needs of a loaded file (automator.config.source.Document)."""

    path: str
    data: Any

    def problem(self, path: Sequence[str | int], message: str, hint: str | None = None, *,
                key: bool = False) -> Problem:
        """A Problem placed at the node (or, with key=True, the mapping key) at `path`."""
        ...


@dataclass(frozen=True, slots=True)
class _Issue:
    """One readable complaint before it is placed in the file."""

    path: DataPath
    message: str
    hint: str | None = None
    key: bool = False


def _refuse(uri: str) -> referencing.Resource[Any]:
    """Registry retrieval hook: every schema is preloaded, so anything else is refused, never fetched."""
    raise NoSuchResource(ref=uri)


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
        """The compiled jsonschema-rs validator of schema `name`, or None when there is none."""
        if jsonschema_rs is None:
            return None
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

    def _issues(self, doc: DocumentLike | None, name: str, prefix: DataPath, instance: Any) -> list[_Issue]:
        bad_keys = list(_non_text_keys(instance, prefix))
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
                return [_Issue(prefix, f"cannot check against schema '{name}': it refers to '{ref}', which "
                                       "is not available (schemas are never fetched from the network)")]
            if doc is None or not _coerce(errors, box, doc, prefix):
                break
        issues = [i for e in errors for i in _explain(e, prefix)]
        return _drop_noise(issues)

    def _action_issues(self, doc: DocumentLike, prefix: DataPath, data: Any) -> list[_Issue]:
        dispatch = self.schema(RULES_SCHEMA)["$defs"]["step"]["x-dispatch"]
        kinds, action_re = set(dispatch["keys"]), re.compile(dispatch["other"])
        issues: list[_Issue] = []
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


def _non_text_keys(value: Any, path: DataPath) -> Iterator[_Issue]:
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                text = getattr(key, "source", None) or _show(key)
                yield _Issue(path + (key,), f"key {text} must be text", f'write it in quotes: "{text}"', key=True)
            yield from _non_text_keys(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _non_text_keys(item, path + (index,))


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


# ---------------------------------------------------------------- errors → readable issues

def _label(path: DataPath) -> str:
    """'mode: ' / 'do item 2: ' — the field a message is about."""
    if not path:
        return ""
    last = path[-1]
    if isinstance(last, int):
        parent = next((p for p in reversed(path[:-1]) if isinstance(p, str)), None)
        return f"{parent} item {last + 1}: " if parent else f"item {last + 1}: "
    return f"{last}: "


def _show(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    if isinstance(value, (int, float)):
        source = getattr(value, "source", None)
        return source if isinstance(source, str) else str(value)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, _dt.datetime):
        return "a date and time"
    if isinstance(value, _dt.date):
        return "a date"
    return type(value).__name__


def _actual(value: Any) -> str:
    """What a value is, for 'expected X, got Y' about its type."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"the number {_show(value)}"
    return _show(value)


def _or(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _did_you_mean(word: Any, choices: Iterable[Any]) -> str | None:
    options = [str(c) for c in choices if isinstance(c, str)]
    match = difflib.get_close_matches(str(word), options, n=1, cutoff=0.6)
    return f"did you mean '{match[0]}'?" if match else None


def _type_hint(value: Any, types: set[str]) -> str | None:
    if value is None:
        return "fill in a value, or remove the key"
    if isinstance(value, bool) and "string" in types:
        return f'write it in quotes ("{_show(value)}") to mean the text'
    if isinstance(value, dict) and value and types == {"array"}:  # the '- ' of each item forgotten
        first = next(iter(value))
        return f"start each item with '- ' on its own line: `- {first}: …`"
    return None


def _rule_key_too_deep(path: DataPath, key: str) -> str | None:
    """`if:` or `do:` indented under `when:` (or deeper) is a rule's key at the wrong depth, `via:` among an
    action's params a step's: say so."""
    if len(path) < 3 or path[0] != "rules" or not isinstance(path[1], int):
        return None
    if key == "via" and isinstance(path[-1], str) and "." in path[-1]:  # written among the action's params
        return f"'via' belongs to the step, not to the params of {path[-1]}: indent it as far as '{path[-1]}'"
    rule_keys = _load_dir(SCHEMA_DIR)[RULES_SCHEMA]["$defs"]["rule"]["properties"]
    if key not in rule_keys:
        return None
    return f"'{key}' is a key of the rule: indent it as far as `when:` and `do:`, not under `{path[2]}:`"


def _explain(error: ValidationError, prefix: DataPath) -> Iterator[_Issue]:
    """Turn one jsonschema error into the issues an admin should read."""
    path = prefix + tuple(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    where, inst, v, value = _label(path), error.instance, error.validator, error.validator_value
    if "propertyNames" in error.absolute_schema_path:  # the instance is a key of the object at `path`
        what = schema.get("x-pattern-message") or schema.get("description") or "a valid name"
        yield _Issue(path + (inst,), f"{where}expected {what}, got {_show(inst)}", key=True)
    elif v in _COMBINATORS or v == "not":
        yield from _explain_combinator(error, prefix, schema)
    elif v == "additionalProperties":
        allowed = list(schema.get("properties", {}))
        patterns = list(schema.get("patternProperties", {}))
        for key in inst:
            if key not in allowed and not any(re.search(p, key) for p in patterns):
                hint = (_did_you_mean(key, allowed) or _rule_key_too_deep(path, key)
                        or (f"allowed keys: {', '.join(allowed)}" if allowed else None))
                yield _Issue(path + (key,), f"unknown key '{key}'", hint, key=True)
    elif v == "required":
        for key in value:
            if key not in inst:
                yield _Issue(path, f"missing required key '{key}'", _required_hint(schema, key, inst))
    elif v == "dependentRequired":
        for key, needs in value.items():
            missing = [n for n in needs if key in inst and n not in inst]
            if missing:
                yield _Issue(path + (key,), f"'{key}' only works together with '{missing[0]}'", key=True)
    elif v == "enum":
        values = ", ".join(_show(x).strip("'") for x in value)
        yield _Issue(path, f"{where}{_show(inst)} is not one of {values}", _did_you_mean(inst, value))
    elif v == "const":
        yield _Issue(path, f"{where}expected {_show(value).strip(chr(39))}, got {_show(inst)}")
    elif v == "type":
        types = {value} if isinstance(value, str) else set(value)
        expected = schema.get("x-expected") or _or([_TYPE_WORDS.get(t, t) for t in sorted(types)])
        yield _Issue(path, f"{where}expected {expected}, got {_actual(inst)}", _type_hint(inst, types))
    elif v == "pattern":
        what = schema.get("x-pattern-message") or schema.get("description") or f"text matching {value}"
        got = "" if schema.get("x-sensitive") else f", got {_show(inst)}"
        hint = schema.get("x-pattern-hint")
        if hint:  # a secret's hint names the variable after the connector and key it belongs to
            names = [p for p in path[-2:] if isinstance(p, str)]
            env = re.sub(r"[^A-Z0-9_]", "_", "_".join(names).upper()) or "NAME"
            hint = hint.replace("{env_name}", env)
        yield _Issue(path, f"{where}expected {what}{got}", hint)
    else:
        yield _Issue(path, where + _limit_message(v, value, inst, error))


def _required_hint(schema: dict[str, Any], key: str, inst: dict[str, Any]) -> str | None:
    known = schema.get("properties", {})
    typo = difflib.get_close_matches(key, [k for k in inst if isinstance(k, str) and k not in known], n=1, cutoff=0.6)
    if typo:
        return f"is '{typo[0]}' meant to be '{key}'?"
    description = known.get(key, {}).get("description")
    return f"{key}: {description[0].lower()}{description[1:].rstrip('.')}" if description else None


def _limit_message(v: str, value: Any, inst: Any, error: ValidationError) -> str:
    if v in ("minLength", "minItems", "minProperties") and value == 1:
        return "must not be empty"
    size = len(inst) if isinstance(inst, (str, list, dict)) else 0
    unit = {"minLength": "characters", "maxLength": "characters", "minItems": "items", "maxItems": "items",
            "minProperties": "keys", "maxProperties": "keys"}.get(v)
    if unit:
        bound = "at least" if v.startswith("min") else "at most"
        return f"has {size} {unit}, {bound} {value} allowed"
    if v in ("minimum", "exclusiveMinimum"):
        return f"must be {'at least' if v == 'minimum' else 'more than'} {value}, got {_show(inst)}"
    if v in ("maximum", "exclusiveMaximum"):
        return f"must be {'at most' if v == 'maximum' else 'less than'} {value}, got {_show(inst)}"
    if v == "uniqueItems":
        return "has the same item twice"
    return error.message[:1].lower() + error.message[1:].rstrip(".")


def _mismatched(error: ValidationError, depth: int) -> bool:
    """Whether `error` says the instance at `depth` is of the wrong kind altogether for its branch."""
    if len(error.absolute_path) != depth:
        return False
    if error.validator == "type":
        return True
    if error.validator in ("enum", "const"):
        values = error.validator_value if error.validator == "enum" else [error.validator_value]
        return _kind(error.instance) not in {_kind(x) for x in values}
    if error.validator in _COMBINATORS and error.context:
        return all(_mismatched(e, depth) for e in error.context)
    return False


def _kind(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return repr(value)
    for kind in ("string", "number", "array", "object"):
        if isinstance(value, _PY_TYPES[kind]):
            return kind
    return type(value).__name__


def _explain_combinator(error: ValidationError, prefix: DataPath, schema: dict[str, Any]) -> Iterator[_Issue]:
    path = prefix + tuple(error.absolute_path)
    where, inst = _label(path), error.instance
    dispatch = schema.get("x-dispatch")
    if dispatch and isinstance(inst, dict):
        yield from _dispatch(error, prefix, dispatch)
        return
    if "x-message" in schema:
        yield _Issue(path, schema["x-message"], schema.get("x-hint"))
        return
    if error.validator == "not" or not error.context:
        yield _Issue(path, f"{where}{'is not allowed here' if error.validator == 'not' else 'fits more than one form'}")
        return
    depth = len(error.absolute_path)
    branches: dict[int, list[ValidationError]] = {}
    for sub in error.context:
        branches.setdefault(int(sub.relative_schema_path[0]), []).append(sub)
    candidates = [errs for _, errs in sorted(branches.items()) if not any(_mismatched(e, depth) for e in errs)]
    expected = schema.get("x-expected")
    if not candidates:
        types = sorted({t for errs in branches.values() for t in _expected_types(errs, depth)})
        words = expected or _or([_TYPE_WORDS.get(t, t) for t in types] or ["another value"])
        yield _Issue(path, f"{where}expected {words}, got {_actual(inst)}", _type_hint(inst, set(types)))
    elif expected and (len(candidates) > 1 or all(_value_level(e, depth) for e in candidates[0])):
        enums = [x for errs in candidates for e in errs if e.validator == "enum" for x in e.validator_value]
        negative = isinstance(inst, str) and inst.strip().startswith("-") or \
            isinstance(inst, (int, float)) and not isinstance(inst, bool) and inst < 0
        spelled = spelled_duration(inst) if isinstance(inst, str) and "x-negative-hint" in schema else None
        yield _Issue(path, f"{where}expected {expected}, got {_show(inst)}",
                     _did_you_mean(inst, enums) or (schema.get("x-negative-hint") if negative else None)
                     or (f"write '{spelled}'" if spelled else None))
    elif len(candidates) == 1:
        for sub in candidates[0]:
            yield from _explain(sub, prefix)
    else:
        best = best_match([e for errs in candidates for e in errs])
        if best is not None:
            yield from _explain(best, prefix)


def _value_level(error: ValidationError, depth: int) -> bool:
    """A complaint about the value itself (not its inner keys), which the schema's x-expected says better."""
    return len(error.absolute_path) == depth and error.validator in ("pattern", "enum", "const")


def _expected_types(errors: list[ValidationError], depth: int) -> Iterator[str]:
    for e in errors:
        if len(e.absolute_path) != depth:
            continue
        if e.validator == "type":
            yield from ([e.validator_value] if isinstance(e.validator_value, str) else e.validator_value)
        elif e.validator in _COMBINATORS:
            yield from _expected_types(list(e.context), depth)


def _dispatch(error: ValidationError, prefix: DataPath, dispatch: dict[str, Any]) -> Iterator[_Issue]:
    """Explain a oneOf whose branch is chosen by the key present (a trigger, a step, a test item)."""
    path = prefix + tuple(error.absolute_path)
    inst, keys = error.instance, dispatch["keys"]
    other = re.compile(dispatch["other"]) if "other" in dispatch else None
    present = [k for k in keys if k in inst]
    present += [k for k in inst if other and isinstance(k, str) and k not in keys and other.match(k)]
    if not present:
        hint = next((h for k in inst if (h := _did_you_mean(k, keys))), None)
        yield _Issue(path, dispatch["none"], hint or dispatch.get("none_hint"))
    elif len(present) > 1:
        yield _Issue(path, dispatch["many"].format(keys=", ".join(present)), dispatch.get("many_hint"))
    else:
        index = keys.index(present[0]) if present[0] in keys else len(keys)
        chosen = [e for e in error.context if e.relative_schema_path[0] == index]
        for sub in chosen:
            yield from _explain(sub, prefix)
        if not chosen:
            yield _Issue(path, f"{_label(path)}is not valid")


def _drop_noise(issues: list[_Issue]) -> list[_Issue]:
    """Drop complaints that an unknown key at the same place already says better: key counts, and a missing
    required key that the unknown one is a misspelling of (`whn:` is one mistake, not two)."""
    unknown = {i.path[:-1] for i in issues if i.key and i.message.startswith("unknown key")}
    meant = {(i.path[:-1], i.hint) for i in issues if i.key and i.message.startswith("unknown key") and i.hint}
    return [i for i in issues
            if not (i.path in unknown and " keys, at " in i.message)
            and not (i.message.startswith("missing required key ")
                     and (i.path, f"did you mean '{i.message[len('missing required key '):].strip(chr(39))}'?")
                     in meant)]
