"""The CSV files an admin brings (visits, ad spend): a header row naming the columns in any order, `,` or `;` between
fields, UTF-8 with or without a BOM; each data row as its cells by column name, or a Problem at its FILE:LINE:COL.

A row that cannot be read (bytes that are not UTF-8, a field longer than the csv module's limit, a wrong number of
fields) spoils only itself: the reader goes on at the next line, so every good row of a file is read all the same.
"""
from __future__ import annotations

import codecs
import csv
import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from automator.config.problems import Problem


@dataclass(frozen=True, slots=True)
class CsvRow:
    """One data row: its last line's number, its cells (trimmed) by column name, and the header's names in order."""

    line: int
    cells: dict[str, str]
    names: tuple[str, ...]

    def column(self, name: str) -> int:
        """The 1-based column of `name` in the file (1 for a column it does not have)."""
        return self.names.index(name) + 1 if name in self.names else 1


class _Lines:
    """A file's lines as text for the csv reader, each decoded alone: bytes that are not UTF-8 spoil their own line
    (kept, with where they are, for the row it belongs to), never the rest of the file, as a decoding of the whole
    file would. The last line given is kept too: a row the reader refuses is located in it."""

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle = handle
        self.number = 0
        self.last = ""
        self.undecodable: dict[int, int] = {}  # line number → column of its first byte that is not UTF-8

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        raw = next(self.handle)
        self.number += 1
        if self.number == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8):]
        try:
            self.last = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            self.undecodable[self.number] = len(raw[:exc.start].decode("utf-8", "replace")) + 1
            self.last = raw.decode("utf-8", "replace")  # the reader stays in step with the file's lines
        return self.last


def read_table(path: Path, columns: Sequence[str], required: Sequence[str],
               header_check: Callable[[list[str]], str | None] = lambda names: None) -> Iterator[CsvRow | Problem]:
    """The data rows of a CSV file whose header may name only `columns` and must name every one of `required`
    (`header_check` may refuse a header for a reason of its own: its message, at line 1). A header that cannot be
    used is the one Problem yielded; after it, each row is a CsvRow or a Problem, blank rows skipped."""
    shown, listed = str(path), f"columns: {', '.join(columns)}"
    with path.open("rb") as handle:
        lines = _Lines(handle)
        first = next(lines, "")
        if not first:
            yield Problem(shown, 1, 1, "the file is empty: a header row naming the columns is needed", listed)
            return
        delimiter = ";" if first.count(";") > first.count(",") else ","
        reader = csv.reader(itertools.chain([first], lines), delimiter=delimiter)
        try:
            header = next(reader)
        except csv.Error as exc:
            yield Problem(shown, 1, _too_long(lines.last, delimiter), f"the header row cannot be read: {exc}")
            return
        if 1 in lines.undecodable:
            yield Problem(shown, 1, lines.undecodable[1], "the header row is not UTF-8 text")
            return
        names = [name.strip().lower() for name in header]
        for index, name in enumerate(names):
            if name not in columns:
                yield Problem(shown, 1, index + 1, f"unknown column {name!r}", listed)
                return
        for needed in required:
            if needed not in names:
                yield Problem(shown, 1, 1, f"the column {needed!r} is missing", listed)
                return
        refused = header_check(names)
        if refused:
            yield Problem(shown, 1, 1, refused)
            return
        done = reader.line_num
        while True:
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:  # the reader drops the rest of that line and goes on at the next one
                done = reader.line_num
                yield Problem(shown, done, _too_long(lines.last, delimiter), f"the row cannot be read: {exc}")
                continue
            first_line, done = done + 1, reader.line_num
            spoiled = next((n for n in range(first_line, done + 1) if n in lines.undecodable), None)
            if spoiled is not None:
                yield Problem(shown, spoiled, lines.undecodable.pop(spoiled),
                              "bytes that are not UTF-8 text: save the file as UTF-8")
                continue
            if not any(v.strip() for v in values):
                continue
            if len(values) != len(names):
                yield Problem(shown, done, 1, f"{len(values)} fields where the header names {len(names)}")
                continue
            yield CsvRow(done, {name: value.strip() for name, value in zip(names, values)}, tuple(names))


def _too_long(line: str, delimiter: str) -> int:
    """The column of the first field of a line longer than the csv module takes (1 when none is)."""
    limit = csv.field_size_limit()
    return next((n for n, field in enumerate(line.split(delimiter), 1) if len(field) > limit), 1)
