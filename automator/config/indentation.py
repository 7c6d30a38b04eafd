"""Indentation mistakes told in the admin's terms: which line is off, by how much, and which line it should match.

libyaml reports a line indented one space too few or too many as "did not find expected key", "mapping values
are not allowed here" or "expected <block end>, but found '-'", at a column that says nothing of indentation.
What the admin needs is the sibling: the key or list item above, in the same block, that the line was meant to
line up with. The blocks open at a line are read from the lines above it (each line less indented than all
the lines after it opens a block), so this works on the text alone, whatever the parser made of it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

# What libyaml says when the real mistake is usually a line's indentation.
PARSER_MESSAGES = ("did not find expected key", "did not find expected '-' indicator",
                   "mapping values are not allowed here", "expected <block end>, but found",
                   "did not find expected <document start>")


@dataclass(frozen=True, slots=True)
class Misindented:
    """A line whose indentation matches no block open above it, and the sibling it was most likely meant for."""

    line: int        # 1-based
    indent: int      # spaces before the line's first character
    item: bool       # the line starts a list item ('-'); otherwise it holds a key
    sibling_line: int
    sibling_indent: int

    @property
    def message(self) -> str:
        """The problem, told as indentation."""
        return (f"bad indentation: line {self.line} is indented {_spaces(self.indent)}, but its sibling, "
                f"line {self.sibling_line}, {_spaces(self.sibling_indent)}")

    @property
    def hint(self) -> str:
        """What to write instead."""
        if self.item:
            return (f"the items of one list start their '-' in the same column: indent this line "
                    f"{_spaces(self.sibling_indent)}, as line {self.sibling_line}")
        hint = (f"the keys of one mapping start in the same column: indent this line {_spaces(self.sibling_indent)}, "
                f"as line {self.sibling_line}")
        if self.indent > self.sibling_indent and self.sibling_line < self.line:
            hint += "; a key goes inside the one above it only if that one ends in ':' with nothing after it"
        return hint


def _spaces(count: int) -> str:
    return f"{count} space{'' if count == 1 else 's'}"


def _content(line: str) -> str | None:
    """The line without its indentation, or None for a blank or comment-only line."""
    stripped = line.strip()
    return None if not stripped or stripped.startswith("#") else stripped


def _openings(line: str) -> list[tuple[int, bool]]:
    """(column, is an item) of each block a line can open: `- key: v` opens a list item and a key inside it."""
    indent = len(line) - len(line.lstrip(" "))
    found = []
    rest = line[indent:]
    while rest.startswith("-") and rest[1:2] in (" ", ""):
        found.append((indent, True))
        step = 1 + len(rest[1:]) - len(rest[1:].lstrip(" "))
        indent, rest = indent + step, rest[step:]
    if rest and not rest.startswith("#"):
        found.append((indent, False))
    return found


# `key: |` or `- key: >-` and the like: the lines after it, indented more than the key, are its text.
_BLOCK_SCALAR = re.compile(r"(?:- )*[^\s#][^#]*?:\s+[|>][-+0-9]*\s*(?:#.*)?")


def outdented_text(text: str, line_no: int) -> tuple[int, int, str, str] | None:
    """(line, column, message, hint) when line `line_no` was meant to go on a `|` or `>` text above it but is
    not indented more than that text's key, so YAML reads it as a new key (and asks for its ':')."""
    lines = text.split("\n")
    if not 1 <= line_no <= len(lines) or _content(lines[line_no - 1]) is None:
        return None
    line = lines[line_no - 1]
    indent = len(line) - len(line.lstrip(" "))
    deeper: int | None = None  # the indentation of the text's own lines, between its key and this line
    for number in range(line_no - 1, 0, -1):
        above = lines[number - 1]
        if _content(above) is None:
            continue
        col = len(above) - len(above.lstrip(" "))
        body = above[col:]
        while body.startswith("- "):  # `- text: |`: the key's column is after the dashes
            col, body = col + 2, body[2:]
        if _BLOCK_SCALAR.fullmatch(body):
            if deeper is None or indent > col:
                return None
            key = body.split(":")[0]
            return (line_no, indent + 1,
                    f"line {line_no} is not indented more than '{key}:' (line {number}), so it is not part of "
                    f"its text", f"indent every line of a '|' or '>' text more than its key: "
                                 f"{_spaces(deeper)}, as line {number + 1}")
        if col <= indent:
            return None
        deeper = col if deeper is None else min(deeper, col)
    return None


def diagnose(text: str, line_no: int) -> tuple[int, int, str, str] | None:
    """(line, column, message, hint) for the layout mistake that made the parser stop at line `line_no`, if
    there is one: a list item without a space after its '-', or a line indented unlike its siblings."""
    lines = text.split("\n")
    dash = _dash_glued(lines, line_no)
    if dash is not None:
        return dash
    found = _first_line_indented(lines, line_no) or misindented(text, line_no)
    return None if found is None else (found.line, found.indent + 1, found.message, found.hint)


def _dash_glued(lines: list[str], line_no: int) -> tuple[int, int, str, str] | None:
    """`-id: x` (a key named '-id') where `- id: x` (a list item) was meant, on the line or the one above."""
    for number in (line_no, line_no - 1):
        line = lines[number - 1] if 1 <= number <= len(lines) else ""
        body = line.lstrip(" ")
        if len(body) > 1 and body[0] == "-" and body[1].isalpha() and ":" in body:
            col = len(line) - len(body) + 1
            key = body[1:body.index(":")]
            return (number, col, f"'-{key}' is a key, not a list item: a list item needs a space after its '-'",
                    f"write `- {body[1:].strip()}`")
    return None


def _first_line_indented(lines: list[str], line_no: int) -> Misindented | None:
    """The file's first line indented while the lines after it are not: its top-level keys do not line up."""
    first = next((n for n in range(1, len(lines) + 1) if _content(lines[n - 1]) is not None), None)
    if first is None or first >= line_no or line_no > len(lines):
        return None
    indent = len(lines[first - 1]) - len(lines[first - 1].lstrip(" "))
    below = len(lines[line_no - 1]) - len(lines[line_no - 1].lstrip(" "))
    if indent <= below:
        return None
    return Misindented(first, indent, _content(lines[first - 1]).startswith("- "), line_no, below)  # type: ignore[union-attr]


def misindented(text: str, line_no: int) -> Misindented | None:
    """The indentation mistake on line `line_no` (1-based), if that line lines up with no block open above it.

    Returns None when the line's indentation is one the lines above allow (the mistake is something else), or
    when nothing above it is of the same kind (a key among keys, an item among items) to compare with.
    """
    lines = text.split("\n")
    if not 1 <= line_no <= len(lines):
        return None
    line = lines[line_no - 1]
    if _content(line) is None or line.startswith("\t") or "\t" in line[: len(line) - len(line.lstrip())]:
        return None
    indent = len(line) - len(line.lstrip(" "))
    item = line.lstrip(" ").startswith("-") and line.lstrip(" ")[1:2] in (" ", "")
    # Walk up: a line opens a block for the lines below it only if it is less indented than every line
    # between them (the first line above always does).
    candidates: list[tuple[int, int]] = []  # (indent, line number) of blocks of the same kind as this line
    limit: int | None = None
    for number in range(line_no - 1, 0, -1):
        above = lines[number - 1]
        if _content(above) is None:
            continue
        opens = [(col, is_item) for col, is_item in _openings(above) if limit is None or col < limit]
        if not opens:
            continue
        candidates.extend((col, number) for col, is_item in opens if is_item == item)
        limit = min(col for col, _ in opens)
        if limit == 0:
            break
    if not candidates or any(col == indent for col, _ in candidates):
        return None
    # The nearest column wins; between two as near, the nearer line (the one just above is the usual sibling).
    col, number = min(candidates, key=lambda c: (abs(c[0] - indent), line_no - c[1]))
    return Misindented(line_no, indent, item, number, col)
