"""Safe YAML with line:col on every node; duplicate keys, alias bombs and size limits refused."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Sequence
from typing import Any

import yaml
from yaml.events import (AliasEvent, DocumentStartEvent, MappingEndEvent, MappingStartEvent, ScalarEvent,
                         SequenceEndEvent, SequenceStartEvent, StreamEndEvent)

from automator.config.files import read_file, too_large
from automator.config.indentation import PARSER_MESSAGES, diagnose, outdented_text
from automator.config.problems import Problem, sort_problems

# libyaml is about twenty times faster than the pure-Python scanner; both give the same events and marks.
_Parser: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

MAX_BYTES = 2_000_000
MAX_DEPTH = 100
# Counts only nodes produced by aliases: plain nodes are already bounded by the file size.
MAX_ALIAS_NODES = 100_000

PathKey = tuple[str | int, ...]
_YAML_TAG = "tag:yaml.org,2002:"


@dataclass(frozen=True, slots=True)
class Mark:
    """A place in a file; line and column are 1-based."""

    line: int
    col: int


class SourceNumber:
    """Mixin for numbers that remember the text they were written as (`.source`).

    A later schema step can then turn `89161234567` back into the string an admin wrote. No `__slots__`: an int
    or float subclass cannot have a non-empty one, so `source` lives in the instance's dict.
    """

    source: str

    def __new__(cls, value: Any, source: str) -> Any:
        self = super().__new__(cls, value)  # type: ignore[call-arg]
        self.source = source
        return self

    def __getnewargs__(self) -> tuple[Any, ...]:
        return (*super().__getnewargs__(), self.source)  # type: ignore[misc]


class SourceInt(SourceNumber, int):
    """An int that remembers its YAML text; otherwise exactly an int."""


class SourceFloat(SourceNumber, float):
    """A float that remembers its YAML text; otherwise exactly a float."""


@dataclass(slots=True)
class Document:
    """One loaded YAML file: plain data plus the marks of every value and key, by path."""

    path: str
    data: Any
    marks: dict[PathKey, Mark]
    key_marks: dict[PathKey, Mark]

    def mark(self, path: Sequence[str | int], *, key: bool = False) -> Mark:
        """Mark of the node at `path`, or of its nearest ancestor that has one (root -> Mark(1,1)).

        With key=True, prefer the mark of the mapping key that introduces `path`.
        """
        p = tuple(path)
        if key and p in self.key_marks:
            return self.key_marks[p]
        while p:
            found = self.marks.get(p)
            if found is not None:
                return found
            p = p[:-1]
        return self.marks.get((), _ROOT_MARK)

    def problem(self, path: Sequence[str | int], message: str, hint: str | None = None, *,
                key: bool = False) -> Problem:
        """A Problem placed at the node at `path` (see `mark`)."""
        m = self.mark(path, key=key)
        return Problem(self.path, m.line, m.col, message, hint)


_ROOT_MARK = Mark(1, 1)

# --- YAML 1.2 core schema for plain scalars ---------------------------------------------------

_WORDS: dict[str, Any] = {
    "": None, "~": None, "null": None, "Null": None, "NULL": None,
    "true": True, "True": True, "TRUE": True,
    "false": False, "False": False, "FALSE": False,
}
_MISSING = object()
_NUMBER_START = frozenset("0123456789+-.")
_INT_RE = re.compile(r"[-+]?[0-9]+")
_FLOAT_RE = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?")
_OCT_RE = re.compile(r"0o[0-7]+")
_HEX_RE = re.compile(r"0x[0-9a-fA-F]+")
_SPECIAL_FLOATS = {sign + word: float(sign + "inf") for sign in ("", "+", "-")
                   for word in (".inf", ".Inf", ".INF")}
_SPECIAL_FLOATS.update({word: float("nan") for word in (".nan", ".NaN", ".NAN")})


def _number(text: str) -> Any:
    """Resolve a plain scalar that starts like a number; anything else stays the text itself."""
    if _INT_RE.fullmatch(text):
        # Phone numbers and codes: `+7916...`, `0123`, `007` are written as text by admins.
        if text[0] == "+" or (text[0] == "0" and len(text) > 1):
            return text
        return SourceInt(int(text), text)
    if _FLOAT_RE.fullmatch(text):
        return SourceFloat(float(text), text)
    if text[0] == "0":
        if _HEX_RE.fullmatch(text):
            return SourceInt(int(text, 16), text)
        if _OCT_RE.fullmatch(text):
            return SourceInt(int(text[2:], 8), text)
    special = _SPECIAL_FLOATS.get(text)
    if special is not None:
        return SourceFloat(special, text)
    return text


def _tagged_scalar(tag: str, text: str) -> tuple[Any, str | None]:
    """Value of an explicitly tagged scalar and an error message, if the tag or text is not acceptable."""
    kind = tag[len(_YAML_TAG):] if tag.startswith(_YAML_TAG) else None
    if tag == "!" or kind == "str":
        return text, None
    # An explicit number tag accepts leading zeros and '+', which plain scalars keep as text.
    value = SourceInt(int(text), text) if _INT_RE.fullmatch(text) else _number(text) if text else text
    if kind == "int":
        return (value, None) if isinstance(value, int) else (text, f"{text!r} is not an integer (tag !!int)")
    if kind == "float":
        if isinstance(value, (int, float)):
            return SourceFloat(float(value), text), None
        return text, f"{text!r} is not a number (tag !!float)"
    word = _WORDS.get(text, _MISSING)
    if kind == "bool":
        if word is True or word is False:
            return word, None
        return text, f"{text!r} is not true or false (tag !!bool)"
    if kind == "null":
        return (None, None) if word is None else (text, f"{text!r} is not null (tag !!null)")
    return text, _tag_not_allowed(tag)


def _tag_not_allowed(tag: str) -> str:
    shown = "!!" + tag[len(_YAML_TAG):] if tag.startswith(_YAML_TAG) else tag
    return f"tag {shown} is not allowed"


_TAG_HINT = "only plain YAML is read: mappings, lists, text, numbers, true/false and null"

# --- building data and marks from the event stream ---------------------------------------------

_NOKEY = object()        # the mapping waits for a key
_MERGE = object()        # the key was `<<`
_KEY_PENDING = object()  # a mapping or list is being read as a key
_COMPLEX = object()      # that key was refused; its value is read and dropped


class _Fatal(Exception):
    """Stops loading: the file cannot be read any further. Holds (line, col, message, hint)."""


class _Frame:
    """One open mapping or sequence."""

    __slots__ = ("value", "is_map", "path", "marks", "key_marks", "mark", "key", "key_path",
                 "merges", "first_lines", "anchor")

    def __init__(self, value: Any, is_map: bool, path: PathKey, marks: dict[PathKey, Mark],
                 key_marks: dict[PathKey, Mark], mark: Mark) -> None:
        self.value = value
        self.is_map = is_map
        self.path = path
        self.marks = marks
        self.key_marks = key_marks
        self.mark = mark
        self.key: Any = _NOKEY
        self.key_path: PathKey = ()
        self.merges: list[tuple[Any, dict[PathKey, Mark], dict[PathKey, Mark], Mark]] | None = None
        self.first_lines: dict[str, int] | None = None
        self.anchor: str | None = None


class _Builder:
    """Reads one document's events into plain data and marks, in a single pass.

    Aliases are expanded by replaying the anchored node's recorded events, so every copy gets
    its own objects and marks; the expansion is counted before it happens, so a bomb is refused
    without being built. Only events inside anchored nodes are kept, which keeps the heap (and
    the garbage collector's work) small for the usual file without anchors.
    """

    def __init__(self, parser: Any, display_path: str, max_depth: int, max_alias_nodes: int) -> None:
        self.parser = parser
        self.display_path = display_path
        self.max_depth = max_depth
        self.max_alias_nodes = max_alias_nodes
        self.problems: list[Problem] = []
        self.marks: dict[PathKey, Mark] = {}
        self.key_marks: dict[PathKey, Mark] = {}
        self.root: Any = None
        self.stack: list[_Frame] = []
        self.events: list[Any] = []
        self.recording = 0  # open anchored collections
        # anchor -> [first event index, last event index or None while open, node count]
        self.anchors: dict[str, list[Any]] = {}
        self.refused: dict[int, tuple[Any, tuple[str, str]]] = {}  # id(alias event) -> it, problem
        self.nodes = 0
        self.alias_nodes = 0
        self.pending_mark: Mark | None = None

    def problem(self, mark: Mark, message: str, hint: str | None = None) -> None:
        self.problems.append(Problem(self.display_path, mark.line, mark.col, message, hint))

    def run(self) -> None:
        """Consume the whole stream; raises _Fatal or yaml.YAMLError."""
        get_event = self.parser.get_event
        record = self.events.append
        stack = self.stack
        words_get = _WORDS.get
        number_start = _NUMBER_START
        number = _number
        missing = _MISSING
        replay: list[Any] = []
        documents = 0
        while True:
            if replay:
                ev = next(replay[-1], None)
                if ev is None:
                    replay.pop()
                    continue
                replaying = True
            else:
                ev = get_event()
                if self.recording:
                    record(ev)
                replaying = False
            cls = ev.__class__
            if cls is ScalarEvent:
                # The hot path: most nodes are scalars under a plain key or in a list.
                mark = self.pending_mark
                if mark is None:
                    sm = ev.start_mark
                    mark = Mark(sm.line + 1, sm.column + 1)
                else:
                    self.pending_mark = None
                self.nodes += 1
                text = ev.value
                tag = ev.tag
                top = stack[-1] if stack else None
                if top is not None and top.is_map and top.key is _NOKEY:
                    if tag is None and text != "<<" and text not in top.value:
                        key_path = top.path + (text,)
                        top.key_marks[key_path] = mark
                        top.key = text
                        top.key_path = key_path
                    else:
                        self.key(top, ev, text, tag, mark)
                else:
                    if tag is not None:
                        value = self.tagged(tag, text, mark)
                    elif ev.implicit[0]:
                        value = words_get(text, missing)
                        if value is missing:
                            value = number(text) if text[0] in number_start else text
                    else:
                        value = text
                    if top is None:
                        self.marks[()] = mark
                        self.root = value
                    elif not top.is_map:
                        items = top.value
                        top.marks[top.path + (len(items),)] = mark
                        items.append(value)
                    elif top.key.__class__ is str:
                        top.marks[top.key_path] = mark
                        top.value[top.key] = value
                        top.key = _NOKEY
                    else:
                        self.attach(top, value, mark, {}, {})
                if ev.anchor is not None and not replaying:
                    self.scalar_anchor(ev, mark)
            elif cls is MappingStartEvent or cls is SequenceStartEvent:
                self.start(ev, cls is MappingStartEvent, replaying)
            elif cls is MappingEndEvent or cls is SequenceEndEvent:
                self.end()
            elif cls is AliasEvent:
                replay.append(iter(self.alias(ev, replaying)))
            elif cls is DocumentStartEvent:
                documents += 1
                if documents > 1:
                    sm = ev.start_mark
                    raise _Fatal(sm.line + 1, sm.column + 1, "the file holds more than one YAML document",
                                 "keep one document per file: remove this '---' or move what follows "
                                 "to another file")
            elif cls is StreamEndEvent:
                return

    def take_mark(self, ev: Any) -> Mark:
        """The mark of the node starting at `ev`: an alias's own place when it is being expanded."""
        pending = self.pending_mark
        if pending is not None:
            self.pending_mark = None
            return pending
        sm = ev.start_mark
        return Mark(sm.line + 1, sm.column + 1)

    def tagged(self, tag: str, text: str, mark: Mark) -> Any:
        value, error = _tagged_scalar(tag, text)
        if error is not None:
            self.problem(mark, error, _TAG_HINT if error.startswith("tag ") else None)
        return value

    def attach(self, top: _Frame | None, value: Any, mark: Mark,
               marks: dict[PathKey, Mark], key_marks: dict[PathKey, Mark]) -> None:
        """Put a finished value into `top` (or make it the root); marks are already recorded."""
        if top is None:
            self.root = value
        elif not top.is_map:
            top.value.append(value)
        else:
            key = top.key
            top.key = _NOKEY
            if key.__class__ is str:
                top.value[key] = value
            elif key is _MERGE:
                if top.merges is None:
                    top.merges = []
                top.merges.append((value, marks, key_marks, mark))
            elif key is _KEY_PENDING:
                top.key = _COMPLEX
            # _COMPLEX: the value of a refused key is dropped.

    def register_anchor(self, anchor: str, mark: Mark) -> bool:
        if anchor in self.anchors:
            self.problem(mark, f"anchor &{anchor} is defined twice", "give each anchor its own name")
            return False
        self.anchors[anchor] = [len(self.events) - 1, None, self.nodes]
        return True

    def scalar_anchor(self, ev: Any, mark: Mark) -> None:
        if not self.recording:
            self.events.append(ev)
        if self.register_anchor(ev.anchor, mark):
            entry = self.anchors[ev.anchor]
            entry[1] = entry[0]
            entry[2] = 1

    def key(self, top: _Frame, ev: Any, text: str, tag: str | None, mark: Mark) -> None:
        """A scalar key: merges, refused tags and duplicates (the plain case is inlined in run)."""
        if tag is not None:
            self.tagged(tag, text, mark)
        elif text == "<<" and ev.implicit[0]:
            if top.merges is not None:
                self.problem(mark, "duplicate key '<<'", "merge several anchors at once: `<<: [*one, *two]`")
            top.key = _MERGE
            return
        path = top.path + (text,)
        if text in top.value:
            first_lines = top.first_lines
            if first_lines is None:
                first_lines = top.first_lines = {}
            first = first_lines.setdefault(text, top.key_marks[path].line)
            self.problem(mark, f"duplicate key {text!r} (first defined at line {first})",
                         f"the file is refused: a key may appear once in a mapping; keep the {text!r} of line "
                         f"{first} or of line {mark.line}, or merge the two")
        top.key_marks[path] = mark
        top.key = text
        top.key_path = path

    def start(self, ev: Any, is_map: bool, replaying: bool) -> None:
        mark = self.take_mark(ev)
        self.nodes += 1
        stack = self.stack
        if len(stack) >= self.max_depth:
            message = f"the data is nested too deeply (more than {self.max_depth} levels)"
            raise _Fatal(mark.line, mark.col, message, "flatten the structure")
        tag = ev.tag
        if tag is not None and tag != "!" and tag != _YAML_TAG + ("map" if is_map else "seq"):
            self.problem(mark, _tag_not_allowed(tag), _TAG_HINT)
        top = stack[-1] if stack else None
        marks, key_marks = self.marks, self.key_marks
        path: PathKey = ()
        if top is None:
            marks[()] = mark
        elif not top.is_map:
            marks, key_marks = top.marks, top.key_marks
            path = top.path + (len(top.value),)
            marks[path] = mark
        elif top.key.__class__ is str:
            marks, key_marks = top.marks, top.key_marks
            path = top.key_path
            marks[path] = mark
        else:
            if top.key is _NOKEY:
                self.problem(mark, "a key must be a single value, not a mapping or a list",
                             "write the key as plain text; check for a stray '?' or ':'")
                top.key = _KEY_PENDING
            # A merge value or a refused key: marks are kept aside; merges relocate them later.
            marks, key_marks = {}, {}
        frame = _Frame({} if is_map else [], is_map, path, marks, key_marks, mark)
        if ev.anchor is not None and not replaying:
            if not self.recording:
                self.events.append(ev)
            if self.register_anchor(ev.anchor, mark):
                frame.anchor = ev.anchor
                self.recording += 1
        stack.append(frame)

    def end(self) -> None:
        stack = self.stack
        frame = stack.pop()
        if frame.merges is not None:
            self.merge(frame)
        if frame.anchor is not None:
            self.recording -= 1
            entry = self.anchors[frame.anchor]
            entry[1] = len(self.events) - 1
            entry[2] = self.nodes - entry[2] + 1
        self.attach(stack[-1] if stack else None, frame.value, frame.mark, frame.marks, frame.key_marks)

    def alias(self, ev: Any, replaying: bool) -> list[Any]:
        """The events to replay for an alias: its anchor's, or a null when the alias is refused."""
        mark = self.take_mark(ev)
        entry = self.anchors.get(ev.anchor)
        refused: tuple[str, str] | None = None
        if id(ev) in self.refused:
            # Refused where it was written (the event is kept); stays refused when its anchor is replayed.
            refused = self.refused[id(ev)][1]
        elif entry is None:
            refused = f"unknown alias *{ev.anchor}", "define the anchor (&name) before using it"
        elif entry[1] is None:
            refused = f"alias *{ev.anchor} is used inside its own anchor", "an anchor cannot contain itself"
        if refused is not None:
            self.refused[id(ev)] = (ev, refused)  # holding the event keeps its id unique
            self.problem(mark, *refused)
            self.pending_mark = mark
            return [ScalarEvent(None, _YAML_TAG + "null", (False, False), "", ev.start_mark, ev.end_mark)]
        assert entry is not None  # an alias with no anchor was refused above
        if not replaying:
            # Aliases met while replaying are already counted in the size of the anchor replayed.
            self.alias_nodes += entry[2]
            if self.alias_nodes > self.max_alias_nodes:
                raise _Fatal(mark.line, mark.col,
                             f"too many alias expansions (more than {self.max_alias_nodes:,} nodes)",
                             "anchors and aliases may share blocks, not build huge documents")
        self.pending_mark = mark
        return self.events[entry[0]:entry[1] + 1]

    def merge(self, frame: _Frame) -> None:
        """Apply `<<` merges: explicit keys win, then earlier merge sources over later ones."""
        explicit: dict[str, Any] = frame.value
        merged: dict[str, Any] = {}
        for value, marks, key_marks, mark in frame.merges or ():
            if isinstance(value, dict):
                sources: list[tuple[dict[str, Any], PathKey]] = [(value, ())]
            elif isinstance(value, list) and all(isinstance(item, dict) for item in value):
                sources = [(item, (i,)) for i, item in enumerate(value)]
            else:
                self.problem(mark, "'<<' (merge) needs a mapping or a list of mappings",
                             "write `<<: *anchor` where &anchor names a mapping")
                continue
            for source, prefix in sources:
                taken = {k for k in source if k not in merged and k not in explicit}
                for k in source:
                    if k in taken:
                        merged[k] = source[k]
                if taken:
                    _relocate(marks, prefix, taken, frame.path, frame.marks)
                    _relocate(key_marks, prefix, taken, frame.path, frame.key_marks)
        merged.update(explicit)
        frame.value = merged


def _relocate(found: dict[PathKey, Mark], prefix: PathKey, taken: set[str], base: PathKey,
              into: dict[PathKey, Mark]) -> None:
    """Copy marks of merged keys from a merge value's own paths to the merging mapping's paths."""
    n = len(prefix)
    for p, m in found.items():
        if len(p) > n and p[n] in taken and p[:n] == prefix:
            into[base + p[n:]] = m


# --- reading files and turning parser errors into problems -------------------------------------

_TAB_HINT = "YAML does not allow tabs for indentation; use spaces"


def _line_col(text: str, index: int) -> tuple[int, int]:
    before = text[:index]
    return before.count("\n") + 1, index - before.rfind("\n")


def _syntax_problem(display_path: str, text: str, err: yaml.MarkedYAMLError) -> Problem:
    """One Problem for a scanner or parser error, at the parser's mark, with a hint where one helps."""
    message = (err.problem or err.context or "invalid YAML").strip()
    mark = err.problem_mark or err.context_mark
    context = err.context_mark
    hint: str | None = None
    # libyaml notices a missing ':' only on the next line; the key itself (the context) is what to look at.
    key_line = context or mark
    outdented = outdented_text(text, key_line.line + 1) if message == "could not find expected ':'" and key_line \
        else None
    if outdented is not None:
        return Problem(display_path, *outdented)
    if message == "could not find expected ':'" and context is not None:
        # libyaml notices a missing ':' only on the next line; the key itself is more useful.
        mark, message = context, "expected ':' after this key"
        hint = "write `key: value`, or put text that spans lines in quotes"
    elif message == "mapping values are not allowed in this context":
        message = "mapping values are not allowed here"
    elif message == "exceeded maximum nesting depth":
        # PyYAML 6.0.4's libyaml scans ahead and stops deep flow nesting before our own limit sees it.
        message, hint = f"the data is nested too deeply (more than {MAX_DEPTH} levels)", "flatten the structure"
    line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    if message.startswith(PARSER_MESSAGES):
        layout = diagnose(text, line)
        if layout is not None:
            return Problem(display_path, *layout)
    source_line = (text.split("\n", line)[line - 1:] or [""])[0]
    char = source_line[col - 1:col]
    indent = source_line[: len(source_line) - len(source_line.lstrip())]
    if char == "\t" or "\t" in indent or "tab" in message:
        if "\t" in indent:
            message = "a tab in this line's indentation"
        hint = _TAB_HINT
    elif message == "found character that cannot start any token" and char:
        message = f"found character {char!r} that cannot start any token"
        hint = f"put the value in quotes: {char!r} cannot start plain text in YAML"
    elif message == "mapping values are not allowed here":
        hint = "put a value that contains ': ' in quotes, or check the indentation"
    elif message in ("did not find expected ',' or '}'", "did not find expected ',' or ']'") and context is not None:
        # Inside {…} or […], ': ', ',' and brackets end a value: on the bracket's own line the value needs quotes;
        # on a later line, the bracket was never closed.
        bracket, closing = ("{", "}") if message.endswith("'}'") else ("[", "]")
        if context.line + 1 == line:
            hint = "put a value that contains ': ', ',', '{', '}', '[' or ']' in quotes"
        else:
            hint = (f"the {bracket} at line {context.line + 1}, column {context.column + 1} is not closed: end it "
                    f"with '{closing}'")
    elif hint is None and err.context and context is not None:
        hint = f"{err.context} that starts at line {context.line + 1}, column {context.column + 1}"
    return Problem(display_path, line, col, message, hint)


def _reader_problem(display_path: str, text: str, err: yaml.reader.ReaderError) -> Problem:
    """A Problem for a character the reader refused (control characters and the like)."""
    # libyaml counts bytes of the UTF-8 text; the pure-Python reader counts characters.
    index = err.position if _Parser is yaml.SafeLoader else len(
        text.encode("utf-8")[: err.position].decode("utf-8", "ignore"))
    char = err.character if isinstance(err.character, int) else ord(str(err.character)[:1] or "\0")
    return Problem(display_path, *_line_col(text, index), f"character U+{char:04X} is not allowed in YAML",
                   "remove it; it is often pasted in invisibly from a document or a chat")


def _decode(raw: bytes, display_path: str, max_bytes: int) -> tuple[str | None, Problem | None]:
    """The file's bytes as text, or a Problem (too large, not UTF-8)."""
    if len(raw) > max_bytes:
        return None, too_large(display_path, len(raw), max_bytes)
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]  # a BOM is invisible in editors, so columns count from after it
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as err:
        before = raw[: err.start]
        column = len(before[before.rfind(b"\n") + 1:].decode("utf-8", "replace")) + 1
        message = f"file is not valid UTF-8 (byte 0x{raw[err.start]:02x})"
        line = before.count(b"\n") + 1
        return None, Problem(display_path, line, column, message, "save the file in UTF-8 encoding")


def load_document(
    path: str | Path,
    *,
    text: str | None = None,
    raw: bytes | None = None,
    display_path: str | None = None,
    max_bytes: int = MAX_BYTES,
    within: str | Path | None = None,
) -> tuple[Document | None, list[Problem]]:
    """Load one YAML file (or `text` or `raw` bytes, shown as `path`) into a Document; never raises for bad input.

    The file is read as `automator.config.files.read_file` reads it: a regular file only, without blocking, and
    with `within`, only if it lies inside that folder.

    Returns (None, problems) when the file cannot be read at all (size, encoding, syntax,
    several documents, nesting or alias limits); otherwise the Document and any problems
    with single nodes (duplicate keys, refused tags, complex keys, bad merges).
    """
    shown = display_path if display_path is not None else str(path)
    if text is None:
        if raw is None:
            raw, problem = read_file(path, shown, max_bytes, within=within)
            if problem is not None:
                return None, [problem]
            assert raw is not None
        text, problem = _decode(raw, shown, max_bytes)
        if problem is not None:
            return None, [problem]
        assert text is not None
    else:
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > max_bytes:
            return None, [too_large(shown, size, max_bytes)]
        if text.startswith("\ufeff"):
            text = text[1:]
    builder = _Builder(None, shown, MAX_DEPTH, MAX_ALIAS_NODES)
    fatal: Problem | None = None
    try:
        builder.parser = _Parser(text)
        builder.run()
    except _Fatal as err:
        fatal = Problem(shown, *err.args)
    except yaml.MarkedYAMLError as err:
        fatal = _syntax_problem(shown, text, err)
    except yaml.reader.ReaderError as err:
        fatal = _reader_problem(shown, text, err)
    except UnicodeEncodeError as err:  # only from `text` holding lone surrogates
        bad = f"character U+{ord(text[err.start]):04X} is not valid text"
        fatal = Problem(shown, *_line_col(text, err.start), bad)
    except (yaml.YAMLError, ValueError, UnicodeError) as err:  # defensive: never raise on bad input
        fatal = Problem(shown, 1, 1, f"cannot read YAML: {err}")
    finally:
        if builder.parser is not None:
            builder.parser.dispose()
    problems = sort_problems(builder.problems)
    if fatal is not None:
        return None, sort_problems(problems + [fatal])
    return Document(shown, builder.root, builder.marks, builder.key_marks), problems
