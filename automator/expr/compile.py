"""Compiling: parse an expression once and check it against the whitelist when the rules load.

Only known names, library functions and plain syntax pass; no `_` names or fields, no methods, no
comprehensions. A mistake an admin is likely to make gets a hint (`&&` → `and`, `=` → `==`, `2h` →
`duration('2h')`), and the offset of every error points at the character to fix.
"""
from __future__ import annotations

import ast
import re
import warnings
from collections.abc import Collection, Sequence
from datetime import timedelta
from typing import TypeGuard

from automator import datefmt
from automator.clock import parse_offset
from automator.expr.describe import _describe
from automator.expr.errors import ExprSyntaxError
from automator.expr.evaluate import Expr
from automator.expr.library import _LIBRARY, _SIGNATURES, FUNCTIONS
from automator.expr.limits import MAX_DEPTH, MAX_INT, MAX_LITERAL_ITEMS, MAX_NODES, MAX_SOURCE
from automator.expr.moments import _MONTHS_HINT
from automator.expr.operators import _BINOPS
from automator.expr.suggest import suggest


_ALIASES = {"true": True, "false": False, "null": None}  # YAML spellings admins type out of habit


_REFUSED = {
    ast.Lambda: "defining functions (lambda) is not supported",
    ast.ListComp: "comprehensions are not supported", ast.SetComp: "comprehensions are not supported",
    ast.DictComp: "comprehensions are not supported", ast.GeneratorExp: "comprehensions are not supported",
    ast.NamedExpr: "assignment (:=) is not supported",
    ast.JoinedStr: "f-strings are not supported; use a {{ }} template",
    ast.Starred: "* unpacking is not supported",
    ast.Await: "'await' is not supported", ast.Yield: "'yield' is not supported",
    ast.YieldFrom: "'yield' is not supported",
}
# A field read on these can never reach data, only Python internals (`{}.get`, `''.join`).
_LITERAL_BASES = (ast.Constant, ast.List, ast.Tuple, ast.Dict, ast.Set, ast.BinOp, ast.UnaryOp, ast.Compare)
_NOT_WORDS = re.compile(r"(?<![=!<>])!(?!=)")
_LONE_EQUALS = re.compile(r"(?<![=!<>])=(?!=)")  # `client.visits = 1`, meant as a comparison
_BARE_DURATION = re.compile(r"(?<![\w.'\"])(-?\d+(?:mo|w|d|h|m|s)(?:\d+(?:mo|w|d|h|m|s))*)(?![\w'\"])")


def chain_of(node: ast.AST) -> tuple[str, ...] | None:
    """`client.rfm['r']` -> ("client", "rfm", "r"); None for anything that is not a plain field read."""
    parts: list[str] = []
    while True:
        if isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) \
                and isinstance(node.slice.value, str):
            parts.append(node.slice.value)
            node = node.value
        elif isinstance(node, ast.Name):
            return (node.id, *reversed(parts))
        else:
            return None


class _Compiler:
    """Parse one expression and check it against the whitelist, collecting the names and field chains it uses."""

    def __init__(self, source: str, names: Collection[str]) -> None:
        self.source = source
        self.allowed = frozenset(names)
        self.used: dict[str, None] = {}
        self.fields: dict[tuple[str, ...], None] = {}
        self.count = 0
        self.text, self.base, self.starts = "", 0, [0]

    def compile(self) -> Expr:
        tree = self._parse()
        self._check(tree.body, 0)
        body = _Aliases(self.allowed).visit(tree).body
        return Expr(self.source, frozenset(self.used), tuple(self.fields), body)

    def _parse(self) -> ast.Expression:
        if len(self.source) > MAX_SOURCE:
            raise ExprSyntaxError(
                f"expression is too long ({len(self.source):,} characters, at most {MAX_SOURCE:,})", 0)
        stripped = self.source.strip()
        if not stripped:
            raise ExprSyntaxError("empty expression", 0, "write an expression such as: client.visits > 2")
        lead = len(self.source) - len(self.source.lstrip())
        attempts = [(stripped, 0)]
        if "\n" in stripped or "\r" in stripped:  # a multi-line YAML block reads as one parenthesised expression
            attempts.append(("(" + stripped + "\n)", 1))
        first: tuple[SyntaxError, str, int] | None = None
        for text, shift in attempts:
            try:
                with warnings.catch_warnings():  # e.g. "invalid escape sequence" in an admin's string
                    warnings.simplefilter("ignore")
                    tree = ast.parse(text, mode="eval")
            except SyntaxError as exc:
                first = first or (exc, text, shift)
                continue
            except (RecursionError, MemoryError):
                raise ExprSyntaxError("expression is nested too deeply", 0) from None
            except ValueError as exc:
                raise ExprSyntaxError(f"invalid expression: {exc}", 0) from None
            self._use(text, lead - shift)
            return tree
        assert first is not None
        error, text, shift = first
        self._use(text, lead - shift)
        offset = len(self.source.rstrip())
        if error.lineno and error.offset and error.lineno <= len(self.starts):
            offset = self._at(error.lineno, error.offset - 1)
        hint = next((f"use '{good}' instead of '{bad}'" for bad, good in (("&&", "and"), ("||", "or"))
                     if bad in stripped), None)
        if hint is None and _NOT_WORDS.search(stripped):
            hint = "use 'not' instead of '!'"
        if hint is None and _LONE_EQUALS.search(re.sub(r"'[^']*'|\"[^\"]*\"", "", stripped)):
            hint = "compare with '==' (a single '=' is not a comparison)"
        bare = _BARE_DURATION.search(stripped) if "decimal literal" in error.msg else None
        if hint is None and bare:
            hint = f"in an expression a duration is written duration('{bare.group(1)}')"
        message = "invalid syntax" if error.msg == "invalid syntax" else f"invalid syntax: {error.msg}"
        raise ExprSyntaxError(message, offset, hint) from None

    def _use(self, text: str, base: int) -> None:
        self.text, self.base = text, base
        self.starts = [0] + [m.end() for m in re.finditer(r"\r\n|\r|\n", text)]

    def _at(self, lineno: int, col: int) -> int:
        return max(0, min(len(self.source), self.base + self.starts[lineno - 1] + col))

    def _error(self, node: ast.expr, message: str, hint: str | None = None, *,
               back: int | None = None) -> ExprSyntaxError:
        # AST columns count UTF-8 bytes; offsets count characters. `back` points into the node's end instead.
        if back is not None:
            # ast.parse gives every node its end; only nodes built by hand may lack one.
            assert node.end_lineno is not None and node.end_col_offset is not None
            lineno, col = node.end_lineno, node.end_col_offset
        else:
            lineno, col = node.lineno, node.col_offset
        line = self.text[self.starts[lineno - 1]:]
        chars = len(line.encode()[:col].decode(errors="ignore"))
        return ExprSyntaxError(message, self._at(lineno, chars - (back or 0)), hint)

    def _check(self, node: ast.expr, depth: int, chained: bool = False) -> None:
        self.count += 1
        if depth > MAX_DEPTH:
            raise self._error(node, "expression is nested too deeply")
        if self.count > MAX_NODES:
            raise self._error(node, "expression is too long; split it into several conditions")
        if node.__class__ in _REFUSED:
            raise self._error(node, _REFUSED[node.__class__])
        method = getattr(self, "_check_" + node.__class__.__name__, None)
        if method is None:
            raise self._error(node, f"{node.__class__.__name__} is not supported in expressions")
        method(node, depth + 1, chained)

    def _check_Constant(self, node: ast.Constant, depth: int, chained: bool) -> None:
        value = node.value
        if value.__class__ is int and abs(value) > MAX_INT:
            raise self._error(node, "number too large (more than 100 digits)")
        if value is not None and value.__class__ not in (bool, int, float, str):
            raise self._error(node, f"{type(value).__name__} literals are not supported")

    def _check_Name(self, node: ast.Name, depth: int, chained: bool) -> None:
        name = node.id
        if name.startswith("_"):
            raise self._error(node, f"names starting with '_' are not allowed ('{name}')")
        if name in self.allowed or name in ("now", "today"):
            self.used[name] = None
        elif name in _ALIASES:
            return
        elif name in _LIBRARY:
            raise self._error(node, f"{name} is a function; call it as {name}(...)", FUNCTIONS[name])
        elif name.lower() in ("true", "false", "none", "null"):
            raise self._error(node, f"unknown name '{name}'", "write True, False or None (or true, false, null)")
        else:
            guess = suggest(name, sorted(self.allowed | {"now", "today"} | set(_LIBRARY)))
            raise self._error(node, f"unknown name '{name}'", f"did you mean '{guess}'?" if guess else None)

    def _record(self, node: ast.expr) -> None:
        chain = chain_of(node)
        if chain is not None:
            self.fields[chain] = None

    def _check_Attribute(self, node: ast.Attribute, depth: int, chained: bool) -> None:
        if node.attr.startswith("_"):
            raise self._error(node, f"fields starting with '_' cannot be read ('{node.attr}')", back=len(node.attr))
        if isinstance(node.value, _LITERAL_BASES):
            raise self._error(node, f"'.{node.attr}' can be read only from data such as client.name",
                              back=len(node.attr))
        if not chained:
            self._record(node)
        self._check(node.value, depth, chained=True)

    def _check_Subscript(self, node: ast.Subscript, depth: int, chained: bool) -> None:
        part = node.slice
        if isinstance(part, ast.Slice):
            if part.step is not None:
                raise self._error(part.step, "slices with a step are not supported")
            for bound in (part.lower, part.upper):
                if bound is not None:
                    self._check(bound, depth)
            self._check(node.value, depth)
            return
        is_key = isinstance(part, ast.Constant) and isinstance(part.value, str)
        if is_key and not chained:
            self._record(node)
        self._check(part, depth)
        self._check(node.value, depth, chained=is_key)

    def _check_BoolOp(self, node: ast.BoolOp, depth: int, chained: bool) -> None:
        for value in node.values:
            self._check(value, depth)

    def _check_BinOp(self, node: ast.BinOp, depth: int, chained: bool) -> None:
        if node.op.__class__ not in _BINOPS:
            raise self._error(node, "the '@' operator is not supported")
        if isinstance(node.op, ast.Mod) and isinstance(node.left, ast.Constant) and isinstance(node.left.value, str):
            raise self._error(node, "'%' formatting of text is not supported", "use a {{ }} template or fmt_date()")
        self._check(node.left, depth)
        self._check(node.right, depth)

    def _check_UnaryOp(self, node: ast.UnaryOp, depth: int, chained: bool) -> None:
        self._check(node.operand, depth)

    def _check_Compare(self, node: ast.Compare, depth: int, chained: bool) -> None:
        operands = [node.left, *node.comparators]
        for i, op in enumerate(node.ops):
            pair = operands[i:i + 2]
            counted = next((call for call in pair if _counting_call(call)), None)
            span = next((call for call in pair if _duration_call(call)), None)
            if counted is not None and span is not None:
                raise self._number_against_duration(node, counted, span)
            months = _months_literal(operands[i]) or _months_literal(operands[i + 1])
            if months and isinstance(op, (ast.Lt, ast.LtE, ast.Gt, ast.GtE)):
                raise self._error(node, f"'{months}' cannot be compared as a length", _MONTHS_HINT)
        for i, op in enumerate(node.ops):
            if isinstance(op, (ast.Is, ast.IsNot)) and not any(map(_is_singleton, operands[i:i + 2])):
                raise self._error(node, "'is' compares only with None, True or False", "use == to compare values")
        for operand in operands:
            self._check(operand, depth)

    def _number_against_duration(self, node: ast.Compare, counted: ast.Call, span: ast.Call) -> ExprSyntaxError:
        """`days_since(x) > duration('60d')`: a number of days against a span, which never compare."""
        assert isinstance(counted.func, ast.Name)  # _counting_call chose it by its name
        name = counted.func.id
        unit = _COUNTING[name]
        number = "N"
        literal = span.args[0] if span.args and isinstance(span.args[0], ast.Constant) else None
        if literal is not None and isinstance(literal.value, str):
            try:
                number = f"{parse_offset(literal.value).exact() / timedelta(**{unit: 1}):g}"
            except ValueError:
                pass
        return self._error(node, f"{name}() gives a number of {unit}, not a duration",
                           f"compare it with a number: {ast.unparse(node).replace(ast.unparse(span), number)}")

    def _check_IfExp(self, node: ast.IfExp, depth: int, chained: bool) -> None:
        for part in (node.test, node.body, node.orelse):
            self._check(part, depth)

    def _check_Call(self, node: ast.Call, depth: int, chained: bool) -> None:
        func = node.func
        if isinstance(func, ast.Attribute):
            raise self._error(node, f"methods cannot be called (.{func.attr}())",
                              "use library functions such as get(), lower(), contains()")
        if not isinstance(func, ast.Name):
            raise self._error(node, "only library functions can be called")
        name = func.id
        if name.startswith("_"):
            raise self._error(node, f"names starting with '_' are not allowed ('{name}')")
        if name not in _LIBRARY:
            if name in self.allowed:
                raise self._error(node, f"{name} is data, not a function")
            guess = suggest(name, _LIBRARY)
            raise self._error(node, f"unknown function '{name}'", f"did you mean '{guess}'?" if guess else None)
        if len(node.args) + len(node.keywords) > MAX_LITERAL_ITEMS:
            raise self._error(node, f"too many arguments (at most {MAX_LITERAL_ITEMS})")
        keywords: dict[str, None] = {}
        for kw in node.keywords:
            if kw.arg is None:
                raise self._error(kw.value, "** unpacking is not supported")
            keywords[kw.arg] = None
        try:
            _SIGNATURES[name].bind(None, *node.args, **keywords)
        except TypeError as exc:
            raise self._error(node, f"wrong arguments for {name}(): {exc}", FUNCTIONS[name]) from None
        self.used[name] = None
        self._check_literal_args(name, node)
        for arg in [*node.args, *(kw.value for kw in node.keywords)]:
            self._check(arg, depth)

    def _check_literal_args(self, name: str, node: ast.Call) -> None:
        """A duration or date format written as literal text is read now, so its mistake is a validate error."""
        if name in ("days", "hours") and node.args and _months_literal(node.args[0]):
            raise self._error(node, f"{name}() of '{_months_literal(node.args[0])}': months have no fixed length",
                              _MONTHS_HINT)
        if name not in _LITERAL_ARGS:
            return
        index, keyword = _LITERAL_ARGS[name]
        arg = node.args[index] if len(node.args) > index else next(
            (kw.value for kw in node.keywords if kw.arg == keyword), None)
        if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
            return
        if name in ("fmt_date", "fmt_time"):
            try:
                datefmt.compile_format(arg.value)
            except datefmt.FormatError as exc:
                raise self._in_text(arg, exc.index, f"date format {arg.value!r}: {exc.message}", exc.hint) from None
            return
        try:
            parse_offset(arg.value)
        except ValueError as exc:
            raise self._error(arg, f"bad duration {arg.value!r}: {exc}",
                              "durations look like 30s, 5m, 2h, 14d, 2w or 2mo; '-1d' goes back a day") from None

    def _in_text(self, node: ast.Constant, index: int, message: str, hint: str) -> ExprSyntaxError:
        """An error at a character inside a literal text (at the literal when escapes make that uncertain)."""
        error = self._error(node, message, hint)
        raw = ast.get_source_segment(self.text, node) or ""
        if error.offset is not None and raw[1:-1] == node.value and raw[:1] in "'\"":
            error.offset += 1 + index
        return error

    def _check_items(self, node: ast.expr, items: Sequence[ast.expr | None], depth: int, count: int) -> None:
        if count > MAX_LITERAL_ITEMS:
            raise self._error(node, f"too many items in a literal (at most {MAX_LITERAL_ITEMS})")
        for item in items:
            if item is None:
                raise self._error(node, "** unpacking is not supported")
            self._check(item, depth)

    def _check_List(self, node: ast.List, depth: int, chained: bool) -> None:
        self._check_items(node, node.elts, depth, len(node.elts))

    _check_Tuple = _check_Set = _check_List

    def _check_Dict(self, node: ast.Dict, depth: int, chained: bool) -> None:
        self._check_items(node, [*node.keys, *node.values], depth, len(node.keys))


# Functions whose literal argument is read when the rules load: (position, keyword).
_LITERAL_ARGS = {"duration": (0, "x"), "add": (1, "d"), "fmt_date": (1, "fmt"), "fmt_time": (1, "fmt")}


# Functions that count time as a number, and the unit they count in.
_COUNTING = {"days_since": "days", "days_until": "days", "hours_since": "hours", "hours_until": "hours",
             "minutes_since": "minutes", "days": "days", "hours": "hours"}


def _counting_call(node: ast.expr) -> TypeGuard[ast.Call]:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _COUNTING


def _duration_call(node: ast.expr) -> TypeGuard[ast.Call]:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "duration"


def _months_literal(node: ast.expr) -> str | None:
    """The text of `duration('2mo')` written out, when it has months; else None."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "duration"
            and len(node.args) == 1 and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
        return None
    try:
        return node.args[0].value if parse_offset(node.args[0].value).months else None
    except ValueError:
        return None


def _is_singleton(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and (node.value is None or isinstance(node.value, bool))


class _Aliases(ast.NodeTransformer):
    """`true`, `false` and `null` become constants, unless the caller's scope defines those names."""

    def __init__(self, allowed: frozenset[str]) -> None:
        self.allowed = allowed

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id in _ALIASES and node.id not in self.allowed:
            return ast.copy_location(ast.Constant(_ALIASES[node.id]), node)
        return node


def compile_expr(source: str, names: Collection[str]) -> Expr:
    """Parse and check an expression once; `names` are the data names it may read (functions always may)."""
    if not isinstance(source, str):
        raise ExprSyntaxError(f"expected an expression (text), got {_describe(source)}", 0)
    return _Compiler(source, names).compile()
