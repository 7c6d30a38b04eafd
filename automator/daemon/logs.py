"""Structured logging (text or JSON lines) for the daemon, with phone numbers and client names masked, in fields
and in the free text of messages."""
from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timezone
from typing import IO, Any

# Keys whose values are personal names; compared lower-cased with `_`/`-` removed, so `firstName` counts too.
# second_name/middle_name: Bitrix24 and others call the patronymic that.
NAME_KEYS = frozenset({
    "name", "client_name", "first_name", "last_name", "surname", "patronymic", "fio", "full_name",
    "contact_name", "second_name", "middle_name",
})
_NAME_KEYS = frozenset(k.replace("_", "") for k in NAME_KEYS)
# A name written next to its key inside free text, as JSON, a dict's repr, a form body or `key=value` quote one:
# `"name": "Анна Петрова"`, `'first_name': 'Анна'`, `fields[NAME]=Анна`, `client_name=Анна Петрова`. The key in
# any case and spelling (`firstName`, `FIRST-NAME`), not glued to a longer word (`stage_name` is no person's);
# a bare value runs to a delimiter, taking up to two more capitalised words (a surname, a patronymic).
_NAME_IN_TEXT = re.compile(
    r"(?<![\w-])(?i:" + "|".join(sorted(("[_-]?".join(k.split("_")) for k in NAME_KEYS), key=len, reverse=True))
    + r")(?P<sep>[\"'\]]?\s*[:=]\s*)"
    r"(?:(?P<q>[\"'])(?P<quoted>(?:\\.|(?!(?P=q)).)*)(?P=q)"
    r"|(?!(?:null|None)\b)(?P<bare>[^\s\"'&,;()\[\]{}<>]+(?: [A-ZА-ЯЁ][a-zа-яё]+){0,2}))")
_NAME_KEY_HINTS = ("nam", "fio", "patronymic")  # every key of NAME_KEYS holds one (tested)

# 10 to 15 digits, possibly split by spaces, hyphens or brackets, not glued to a word: fewer digits are
# ids and amounts. Dots and colons are not separators, so `01.12.2026` and `06:00:00` never join a run.
_PHONE = re.compile(r"(?<![\w\-])\+?\(?\d(?:[ \u00a0\-()]{0,2}\d){9,14}(?!\w)")
# `2026-12-01 06` has ten digits in a phone-like run; a date inside a run means it is no phone.
_DATE = re.compile(r"(?<!\d)(?:19|20)\d\d-[01]\d-[0-3]\d(?!\d)")
# What every text that masking changes holds: ten digits as `_PHONE` joins them, or a hint of a name key (matched
# without regard to case, as `_NAME_IN_TEXT` matches its keys). Most texts hold neither (ids, types, rule names):
# one search spares them the substitutions (a worklog line was formatted in 29 µs, now in 9 µs).
_SUSPECT = re.compile(r"\d(?:[ \u00a0\-()]{0,2}\d){9}|(?i:nam|fio|patronymic)")

# Attributes every LogRecord has; anything else on a record came from `extra=`.
# color_message: uvicorn's ANSI-coloured copy of its own message, noise in our lines.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName", "color_message",
}
_RESERVED = ("ts", "level", "logger", "msg", "exc", "stack")


def _mask_phone(match: re.Match[str]) -> str:
    run = match.group(0)
    if _DATE.search(run):
        return run
    digits = sum(c.isdigit() for c in run)
    # The compact international form keeps its country and operator code (`+7916`); local forms keep 2.
    head = 4 if run.startswith("+") and run[1:].isdigit() else 2
    out, seen = [], 0
    for c in run:
        if c.isdigit():
            seen += 1
            out.append(c if seen <= head or seen > digits - 2 else "*")
        else:
            out.append(c)
    return "".join(out)


def _mask_name_in_text(match: re.Match[str]) -> str:
    key_and_sep = match.string[match.start():match.end("sep")]
    if match.group("q") is not None:
        return f"{key_and_sep}{match.group('q')}{_mask_name(match.group('quoted'))}{match.group('q')}"
    return key_and_sep + _mask_name(match.group("bare"))


def mask_text(s: str, names: Iterable[str] = ()) -> str:
    """Star the middle digits of every phone number in `s` (shorter numbers, dates and times stay as they are),
    and mask every name written next to a name key (`"name": "Анна"`) or given in `names`, wherever it is."""
    # Whole words only, and each word of a full name too (a message may use the first name alone).
    words = {part for name in names for part in (name, *name.split()) if len(part) > 1}
    if not words and _SUSPECT.search(s) is None:
        return s
    if words:
        alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
        s = re.sub(rf"(?<!\w)(?:{alternatives})(?!\w)", lambda m: _mask_name(m.group(0)), s)
    s = _PHONE.sub(_mask_phone, s)
    # Most lines name no key at all: a substring test spares them the search (every key holds one of these).
    lowered = s.lower()
    if any(hint in lowered for hint in _NAME_KEY_HINTS):
        s = _NAME_IN_TEXT.sub(_mask_name_in_text, s)
    return s


def _mask_name(v: Any) -> Any:
    if isinstance(v, str):
        s = v.strip()
        return s[0] + "***" if s else v
    if isinstance(v, Mapping):
        return {k: _mask_name(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_mask_name(x) for x in v]
    return v


def _is_name_key(key: Any) -> bool:
    if not isinstance(key, str):
        return False
    known = _NAME_KEY_SEEN.get(key)
    if known is None:
        known = key.lower().replace("_", "").replace("-", "") in _NAME_KEYS
        if len(_NAME_KEY_SEEN) < 4096:  # the keys of extras are the code's own, few; those of data are bounded too
            _NAME_KEY_SEEN[key] = known
    return known


_NAME_KEY_SEEN: dict[str, bool] = {}  # key -> whether it is a name key: the same few keys are asked about per line


def _names_in(v: Any) -> Iterator[str]:
    """The names under name keys anywhere in `v`: a record's extras, whose names its message may repeat."""
    if isinstance(v, Mapping):
        for key, value in v.items():
            if _is_name_key(key):
                yield from (n.strip() for n in _strings(value) if len(n.strip()) > 1)
            else:
                yield from _names_in(value)
    elif isinstance(v, (list, tuple)):
        for item in v:
            yield from _names_in(item)


def _strings(v: Any) -> Iterator[str]:
    if isinstance(v, str):
        yield v
    elif isinstance(v, Mapping):
        for item in v.values():
            yield from _strings(item)
    elif isinstance(v, (list, tuple)):
        for item in v:
            yield from _strings(item)


def mask_value(v: Any) -> Any:
    """Mask phones in strings and names under name keys, recursing into dicts and lists; returns a copy."""
    if isinstance(v, str):
        return mask_text(v)
    if isinstance(v, Mapping):
        return {k: _mask_name(x) if _is_name_key(k) else mask_value(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [mask_value(x) for x in v]
    if isinstance(v, int) and not isinstance(v, bool):
        if -_NO_PHONE < v < _NO_PHONE:  # nine digits at most: no phone, and no need to write it out
            return v
        # CRMs sometimes store a phone as a number; ids and amounts are too short to change.
        masked = mask_text(str(v))
        return v if masked == str(v) else masked
    return v


def _masked_extras(extras: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """`mask_value(extras)` and the names under name keys in them (`_names_in`), in one pass that looks into no
    value that cannot hold a name: most extras are ids, words and counts (that pass made a worklog line 2× cheaper)."""
    masked: dict[str, Any] = {}
    names: set[str] = set()
    for key, value in extras.items():
        kind = type(value)
        if _is_name_key(key):
            names.update(_names_in({key: value}))
            masked[key] = _mask_name(value)
        elif kind is str:
            masked[key] = value if _SUSPECT.search(value) is None else mask_text(value)
        elif kind in _SCALARS:
            masked[key] = mask_value(value)
        else:
            names.update(_names_in(value))
            masked[key] = mask_value(value)
    return masked, names


_SCALARS = frozenset({int, float, bool, type(None)})
_NO_PHONE = 10 ** 9
_PLAIN = re.compile(r'[\s="]')  # a text field holding none of these is written bare in a text line


class _Formatter(logging.Formatter):
    """Renders a record as one JSON object or one `ts LEVEL logger: msg key=value` line."""

    def __init__(self, fmt: str, *, mask: bool) -> None:
        super().__init__()
        self.json = fmt == "json"
        self.mask = mask
        self._second = -1  # the whole second `_stamp` last wrote, and its text up to the seconds
        self._second_text = ""

    def _text(self, s: str, names: Iterable[str] = ()) -> str:
        return mask_text(s, names) if self.mask else s

    def _stamp(self, created: float) -> str:
        """`created` in UTC to the millisecond (`2026-12-01T06:00:00.123Z`); the text up to the seconds is made
        once a second, not once a line."""
        second = int(created)
        if second != self._second:
            moment = datetime.fromtimestamp(second, timezone.utc)
            self._second, self._second_text = second, moment.strftime("%Y-%m-%dT%H:%M:%S")
        return f"{self._second_text}.{int((created - second) * 1000):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        extras = {k: v for k, v in vars(record).items() if k not in _STANDARD}
        # A name given as a field is masked in the message and the traceback too, which may repeat it as is.
        names: Iterable[str] = ()
        if extras and self.mask:
            extras, names = _masked_extras(extras)
        payload: dict[str, Any] = {
            "ts": self._stamp(record.created), "level": record.levelname, "logger": record.name,
            "msg": self._text(record.getMessage(), names),
        }
        for key, value in extras.items():
            # An extra named like a base field must not overwrite it, nor be lost.
            payload[key + "_" if key in _RESERVED else key] = value
        if record.exc_info:
            payload["exc"] = self._text(self.formatException(record.exc_info), names)
        elif record.exc_text:
            payload["exc"] = self._text(record.exc_text, names)
        if record.stack_info:
            payload["stack"] = self._text(self.formatStack(record.stack_info), names)
        if self.json:
            return json.dumps(payload, ensure_ascii=False, default=self._default)
        return self._line(payload)

    def _default(self, o: Any) -> str:
        # Objects that JSON cannot hold are logged by their str(), which may itself quote a phone.
        return self._text(str(o))

    def _line(self, payload: dict[str, Any]) -> str:
        ts, level, logger, msg = payload.pop("ts"), payload.pop("level"), payload.pop("logger"), payload.pop("msg")
        tail = [payload.pop(k) for k in ("exc", "stack") if k in payload]
        fields = "".join(f" {k}={self._field(v)}" for k, v in payload.items())
        return "\n".join([f"{ts} {level} {logger}: {msg}{fields}", *tail])

    def _field(self, v: Any) -> str:
        if isinstance(v, str):
            if v and _PLAIN.search(v) is None:
                return v
        elif type(v) is int:
            return str(v)  # as JSON writes it
        return json.dumps(v, ensure_ascii=False, default=self._default, separators=(",", ":"))


def setup_logging(fmt: str = "text", level: str = "INFO", *, mask: bool = True, stream: IO[str] | None = None) -> None:
    """Send the `automator` and uvicorn loggers to one handler on `stream` (stderr by default).

    `fmt` is "text" or "json" (one object per line). Calling again replaces the handler rather than adding one.
    uvicorn's access log is cut to warnings: the daemon logs each accepted event itself.
    """
    if fmt not in ("text", "json"):
        raise ValueError(f"log format must be 'text' or 'json', got {fmt!r}")
    levelno = logging.getLevelNamesMapping().get(level.upper())
    if levelno is None:
        raise ValueError(f"unknown log level {level!r}; use DEBUG, INFO, WARNING, ERROR or CRITICAL")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(_Formatter(fmt, mask=mask))
    for name in ("automator", "uvicorn"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(levelno)
        # Not to the root: a root handler set up by some library would print the same line again, unmasked.
        logger.propagate = False
    for name, child_level in (("uvicorn.error", logging.NOTSET), ("uvicorn.access", logging.WARNING)):
        child = logging.getLogger(name)
        child.handlers.clear()
        child.setLevel(child_level)
        child.propagate = True
