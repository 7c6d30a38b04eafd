"""Templates: a text with `{{ expr }}` placeholders, compiled once and rendered with each value formatted."""
from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from automator.expr.compile import compile_expr
from automator.expr.context import EvalContext
from automator.expr.errors import ExprSyntaxError
from automator.expr.evaluate import Expr
from automator.expr.formatting import _format
from automator.expr.limits import MAX_LEN, _too_long


@dataclass(frozen=True, slots=True)
class Template:
    """A text with `{{ expr }}` placeholders, compiled once."""

    source: str
    parts: tuple[str | Expr, ...]
    names: frozenset[str]
    fields: tuple[tuple[str, ...], ...]
    _single: Expr | None = field(default=None, repr=False, compare=False)

    @property
    def is_static(self) -> bool:
        """True when the text has no placeholders."""
        return not any(isinstance(part, Expr) for part in self.parts)

    def render(self, scope: Mapping[str, Any], ctx: EvalContext) -> Any:
        """The raw value for a lone `{{ expr }}`; otherwise the text with each value formatted (None as '')."""
        if self._single is not None:
            return self._single.evaluate(scope, ctx)
        if self.is_static:
            return self.source
        out, size = [], 0
        for part in self.parts:
            text = part if isinstance(part, str) else _format(part.evaluate(scope, ctx), ctx)
            size += len(text)
            if size > MAX_LEN:
                raise _too_long("the rendered text")
            out.append(text)
        return "".join(out)


def _placeholder_end(source: str, start: int) -> int:
    """Where the `}}` closing a placeholder begins, skipping quoted text and balanced braces; -1 if none."""
    depth, quote, k = 0, "", start
    while k < len(source):
        char = source[k]
        if quote:
            if char == "\\":
                k += 1
            elif char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "{":
            depth += 1
        elif char == "}":
            if depth == 0 and source.startswith("}}", k):
                return k
            depth = max(depth - 1, 0)
        k += 1
    return -1


def compile_template(source: str, names: Collection[str]) -> Template:
    """Compile `{{ expr }}` placeholders in a text; errors carry offsets into the whole template."""
    parts: list[str | Expr] = []
    pos = 0
    while True:
        opening, closing = source.find("{{", pos), source.find("}}", pos)
        if closing != -1 and (opening == -1 or closing < opening):
            raise ExprSyntaxError("'}}' without a matching '{{'", closing, "remove it or open a placeholder with '{{'")
        if opening == -1:
            break
        end = _placeholder_end(source, opening + 2)
        if end < 0:
            raise ExprSyntaxError("'{{' is never closed", opening, "close the placeholder with '}}'")
        if opening > pos:
            parts.append(source[pos:opening])
        try:
            parts.append(compile_expr(source[opening + 2:end], names))
        except ExprSyntaxError as exc:
            raise ExprSyntaxError(exc.message, opening + 2 + (exc.offset or 0), exc.hint) from None
        pos = end + 2
    if pos < len(source):
        parts.append(source[pos:])
    exprs = [part for part in parts if isinstance(part, Expr)]
    lone = len(exprs) == 1 and all(isinstance(p, Expr) or not p.strip() for p in parts)
    fields = dict.fromkeys(chain for e in exprs for chain in e.fields)
    return Template(source, tuple(parts), frozenset().union(*(e.names for e in exprs)), tuple(fields),
                    exprs[0] if lone else None)
