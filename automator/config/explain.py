"""JSON Schema validation errors -> what an admin reads: each jsonschema error turned into issues with a readable
message and, where a likely slip is recognisable, a hint (a misspelt key, a rule key indented too deep, a number
where text is meant, a forgotten '- '). Pure: the registry (automator.config.schemas) validates and places the
issues in the file."""
from __future__ import annotations

import datetime as _dt
import difflib
import re
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from jsonschema.exceptions import ValidationError, best_match

from automator.clock import spelled_duration

__all__ = ["DataPath", "Issue", "explain", "non_text_keys"]

DataPath = tuple[str | int, ...]
_COMBINATORS = ("anyOf", "oneOf")
_TYPE_WORDS = {
    "object": "a mapping", "array": "a list", "string": "a string", "integer": "a whole number",
    "number": "a number", "boolean": "true or false", "null": "nothing",
}
_PY_TYPES: dict[str, tuple[type, ...]] = {"object": (dict,), "array": (list,), "string": (str,), "number": (int, float)}


@dataclass(frozen=True, slots=True)
class Issue:
    """One readable complaint before it is placed in the file."""

    path: DataPath
    message: str
    hint: str | None = None
    key: bool = False


def explain(errors: Iterable[ValidationError], prefix: DataPath, rule_keys: Collection[str]) -> list[Issue]:
    """The issues an admin should read for jsonschema's `errors` about the value at `prefix`, without the
    complaints another one says better. `rule_keys` are the keys of a rule (the rules schema's), for the hint
    that a key was indented under another."""
    return _drop_noise([issue for error in errors for issue in _explain(error, prefix, rule_keys)])


def non_text_keys(value: Any, path: DataPath) -> Iterator[Issue]:
    """An issue for every mapping key in `value` that is not text (YAML `1:` or `yes:`), which no schema
    pattern can be matched against."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                text = getattr(key, "source", None) or _show(key)
                yield Issue(path + (key,), f"key {text} must be text", f'write it in quotes: "{text}"', key=True)
            yield from non_text_keys(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from non_text_keys(item, path + (index,))



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


def _rule_key_too_deep(path: DataPath, key: str, rule_keys: Collection[str]) -> str | None:
    """`if:` or `do:` indented under `when:` (or deeper) is a rule's key at the wrong depth, `via:` among an
    action's params a step's: say so."""
    if len(path) < 3 or path[0] != "rules" or not isinstance(path[1], int):
        return None
    if key == "via" and isinstance(path[-1], str) and "." in path[-1]:  # written among the action's params
        return f"'via' belongs to the step, not to the params of {path[-1]}: indent it as far as '{path[-1]}'"
    if key not in rule_keys:
        return None
    return f"'{key}' is a key of the rule: indent it as far as `when:` and `do:`, not under `{path[2]}:`"


def _explain(error: ValidationError, prefix: DataPath, rule_keys: Collection[str]) -> Iterator[Issue]:
    """Turn one jsonschema error into the issues an admin should read."""
    path = prefix + tuple(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    where, inst, v, value = _label(path), _instance(error), str(error.validator), _keyword_value(error)
    if "propertyNames" in error.absolute_schema_path:  # the instance is a key of the object at `path`
        what = schema.get("x-pattern-message") or schema.get("description") or "a valid name"
        yield Issue(path + (inst,), f"{where}expected {what}, got {_show(inst)}", key=True)
    elif v in _COMBINATORS or v == "not":
        yield from _explain_combinator(error, prefix, schema, rule_keys)
    elif v == "additionalProperties":
        allowed = list(schema.get("properties", {}))
        patterns = list(schema.get("patternProperties", {}))
        for key in inst:
            if key not in allowed and not any(re.search(p, key) for p in patterns):
                hint = (_did_you_mean(key, allowed) or _rule_key_too_deep(path, key, rule_keys)
                        or (f"allowed keys: {', '.join(allowed)}" if allowed else None))
                yield Issue(path + (key,), f"unknown key '{key}'", hint, key=True)
    elif v == "required":
        for key in value:
            if key not in inst:
                yield Issue(path, f"missing required key '{key}'", _required_hint(schema, key, inst))
    elif v == "dependentRequired":
        for key, needs in value.items():
            missing = [n for n in needs if key in inst and n not in inst]
            if missing:
                yield Issue(path + (key,), f"'{key}' only works together with '{missing[0]}'", key=True)
    elif v == "enum":
        values = ", ".join(_show(x).strip("'") for x in value)
        yield Issue(path, f"{where}{_show(inst)} is not one of {values}", _did_you_mean(inst, value))
    elif v == "const":
        yield Issue(path, f"{where}expected {_show(value).strip(chr(39))}, got {_show(inst)}")
    elif v == "type":
        types = {value} if isinstance(value, str) else set(value)
        expected = schema.get("x-expected") or _or([_TYPE_WORDS.get(t, t) for t in sorted(types)])
        yield Issue(path, f"{where}expected {expected}, got {_actual(inst)}", _type_hint(inst, types))
    elif v == "pattern":
        what = schema.get("x-pattern-message") or schema.get("description") or f"text matching {value}"
        got = "" if schema.get("x-sensitive") else f", got {_show(inst)}"
        hint = schema.get("x-pattern-hint")
        if hint:  # a secret's hint names the variable after the connector and key it belongs to
            names = [p for p in path[-2:] if isinstance(p, str)]
            env = re.sub(r"[^A-Z0-9_]", "_", "_".join(names).upper()) or "NAME"
            hint = hint.replace("{env_name}", env)
        yield Issue(path, f"{where}expected {what}{got}", hint)
    else:
        yield Issue(path, where + _limit_message(v, value, inst, error))


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
        values = _keyword_value(error) if error.validator == "enum" else [_keyword_value(error)]
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


def _explain_combinator(error: ValidationError, prefix: DataPath, schema: dict[str, Any],
                        rule_keys: Collection[str]) -> Iterator[Issue]:
    path = prefix + tuple(error.absolute_path)
    where, inst = _label(path), error.instance
    dispatch = schema.get("x-dispatch")
    if dispatch and isinstance(inst, dict):
        yield from _dispatch(error, prefix, dispatch, rule_keys)
        return
    if "x-message" in schema:
        yield Issue(path, schema["x-message"], schema.get("x-hint"))
        return
    if error.validator == "not" or not error.context:
        yield Issue(path, f"{where}{'is not allowed here' if error.validator == 'not' else 'fits more than one form'}")
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
        yield Issue(path, f"{where}expected {words}, got {_actual(inst)}", _type_hint(inst, set(types)))
    elif expected and (len(candidates) > 1 or all(_value_level(e, depth) for e in candidates[0])):
        enums = [x for errs in candidates for e in errs if e.validator == "enum" for x in _keyword_value(e)]
        negative = isinstance(inst, str) and inst.strip().startswith("-") or \
            isinstance(inst, (int, float)) and not isinstance(inst, bool) and inst < 0
        spelled = spelled_duration(inst) if isinstance(inst, str) and "x-negative-hint" in schema else None
        yield Issue(path, f"{where}expected {expected}, got {_show(inst)}",
                     _did_you_mean(inst, enums) or (schema.get("x-negative-hint") if negative else None)
                     or (f"write '{spelled}'" if spelled else None))
    elif len(candidates) == 1:
        for sub in candidates[0]:
            yield from _explain(sub, prefix, rule_keys)
    else:
        best = best_match([e for errs in candidates for e in errs])
        if best is not None:
            yield from _explain(best, prefix, rule_keys)


def _instance(error: ValidationError) -> Any:
    """The value the error is about: jsonschema sets it on every error it yields (its stubs also allow an error
    built by hand without one)."""
    return error.instance


def _keyword_value(error: ValidationError) -> Any:
    """The failed keyword's value in the schema (`required`'s list, `enum`'s values, ...); set on every error
    jsonschema yields."""
    return error.validator_value


def _value_level(error: ValidationError, depth: int) -> bool:
    """A complaint about the value itself (not its inner keys), which the schema's x-expected says better."""
    return len(error.absolute_path) == depth and error.validator in ("pattern", "enum", "const")


def _expected_types(errors: list[ValidationError], depth: int) -> Iterator[str]:
    for e in errors:
        if len(e.absolute_path) != depth:
            continue
        if e.validator == "type":
            yield from ([e.validator_value] if isinstance(e.validator_value, str) else _keyword_value(e))
        elif e.validator in _COMBINATORS:
            yield from _expected_types(list(e.context), depth)


def _dispatch(error: ValidationError, prefix: DataPath, dispatch: dict[str, Any],
              rule_keys: Collection[str]) -> Iterator[Issue]:
    """Explain a oneOf whose branch is chosen by the key present (a trigger, a step, a test item)."""
    path = prefix + tuple(error.absolute_path)
    inst, keys = _instance(error), dispatch["keys"]
    other = re.compile(dispatch["other"]) if "other" in dispatch else None
    present = [k for k in keys if k in inst]
    present += [k for k in inst if other and isinstance(k, str) and k not in keys and other.match(k)]
    if not present:
        hint = next((h for k in inst if (h := _did_you_mean(k, keys))), None)
        yield Issue(path, dispatch["none"], hint or dispatch.get("none_hint"))
    elif len(present) > 1:
        yield Issue(path, dispatch["many"].format(keys=", ".join(present)), dispatch.get("many_hint"))
    else:
        index = keys.index(present[0]) if present[0] in keys else len(keys)
        chosen = [e for e in error.context if e.relative_schema_path[0] == index]
        for sub in chosen:
            yield from _explain(sub, prefix, rule_keys)
        if not chosen:
            yield Issue(path, f"{_label(path)}is not valid")


def _drop_noise(issues: list[Issue]) -> list[Issue]:
    """Drop complaints that an unknown key at the same place already says better: key counts, and a missing
    required key that the unknown one is a misspelling of (`whn:` is one mistake, not two)."""
    unknown = {i.path[:-1] for i in issues if i.key and i.message.startswith("unknown key")}
    meant = {(i.path[:-1], i.hint) for i in issues if i.key and i.message.startswith("unknown key") and i.hint}
    return [i for i in issues
            if not (i.path in unknown and " keys, at " in i.message)
            and not (i.message.startswith("missing required key ")
                     and (i.path, f"did you mean '{i.message[len('missing required key '):].strip(chr(39))}'?")
                     in meant)]
