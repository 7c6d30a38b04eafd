"""The two ways an expression fails: `ExprSyntaxError` when the rules load, `EvalError` when it runs."""
from __future__ import annotations


class ExprSyntaxError(Exception):
    """A problem found while compiling: bad syntax, an unknown name or function, a refused construct."""

    def __init__(self, message: str, offset: int | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message, self.offset, self.hint = message, offset, hint


class EvalError(Exception):
    """A problem while evaluating: a missing field, a type mismatch, a limit exceeded, the deadline passed."""
