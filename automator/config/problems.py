"""Problem: one mistake in an admin's files, with its place; collecting and formatting them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem found while loading: where it is, what is wrong, and an optional hint."""

    path: str
    line: int
    col: int
    message: str
    hint: str | None = None
    severity: str = "error"  # "warning": the project loads, but something in it does not work as written

    def format(self) -> str:
        """Render as `path:line:col: error: message` (or `warning:`), plus an indented `hint:` line."""
        text = f"{self.path}:{self.line}:{self.col}: {self.severity}: {self.message}"
        if self.hint:
            text += f"\n    hint: {self.hint}"
        return text

    def to_json(self) -> dict[str, Any]:
        """The problem as `validate --format json` prints it: every field, `hint` null when there is none."""
        return {"path": self.path, "line": self.line, "col": self.col, "severity": self.severity,
                "message": self.message, "hint": self.hint}


def sort_problems(problems: list[Problem]) -> list[Problem]:
    """Order problems by file, line and column, dropping exact duplicates."""
    return sorted(set(problems), key=lambda p: (p.path, p.line, p.col, p.message))
