"""The interpreter: a compiled `Expr` evaluated on plain data, with field reads only, bounds (records the lookups
read included) and a deadline.

Comparing None with a number raises "cannot compare an empty value with 60" rather than silently being false.
"""
from __future__ import annotations

import ast
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from time import perf_counter
from typing import Any

from simpleeval import SimpleEval

from automator.clock import Duration
from automator.expr.context import EvalContext, _now, _plain, _today_of
from automator.expr.describe import _describe, _short, _text
from automator.expr.linked import Linked
from automator.expr.errors import EvalError
from automator.expr.library import _LIBRARY
from automator.expr.limits import READS, _check_size
from automator.expr.moments import _by_length, _calendar_binop, _exact
from automator.expr.operators import _BINOPS, _COMPARE, _UNARY, _type_hint
from automator.expr.suggest import suggest


_TICK_EVERY = 32  # nodes between two looks at the clock


class _Evaluator(SimpleEval):
    """simpleeval with every handler replaced: field reads only on data, bounded results, a wall-time deadline.

    One instance per thread is reused; `Expr.evaluate` swaps the scope and context in and out.
    """

    def __init__(self) -> None:
        super().__init__(operators={}, functions={}, names={})
        self.nodes: dict[type[ast.AST], Callable[[Any], Any]] = {
            ast.Constant: self._constant, ast.Name: self._name, ast.Attribute: self._attribute,
            ast.Subscript: self._subscript, ast.BoolOp: self._boolop, ast.BinOp: self._binop,
            ast.UnaryOp: self._unaryop, ast.Compare: self._compare, ast.IfExp: self._ifexp,
            ast.Call: self._call, ast.List: self._list, ast.Tuple: self._tuple, ast.Set: self._set,
            ast.Dict: self._dict,
        }
        self.scope: Mapping[str, Any] = {}
        self.ctx: EvalContext | None = None
        self.ticks = _TICK_EVERY
        self.deadline = 0.0
        self.busy = False

    def _eval(self, node: ast.AST) -> Any:
        self.ticks -= 1
        if self.ticks <= 0:
            self._look_at_clock()
        return self.nodes[node.__class__](node)

    def _context(self) -> EvalContext:
        # `Expr.evaluate` sets the context for as long as any node is being evaluated.
        assert self.ctx is not None
        return self.ctx

    def _look_at_clock(self) -> None:
        self.ticks = _TICK_EVERY
        if perf_counter() > self.deadline:
            budget = self._context().deadline_s * 1000
            raise EvalError(f"expression took longer than {budget:g} ms")

    @staticmethod
    def _constant(node: ast.Constant) -> Any:
        return node.value

    def _name(self, node: ast.Name) -> Any:
        value = self.scope.get(node.id, _MISSING)
        if value is not _MISSING:
            return value
        if node.id == "now":
            return _now(self._context())
        if node.id == "today":
            return _today_of(self._context())
        raise EvalError(f"{node.id} is not available for this event")

    def _attribute(self, node: ast.Attribute) -> Any:
        base = self._eval(node.value)
        if base.__class__ is dict and node.attr in base:
            return base[node.attr]
        return _read(base, node.attr, node.value)

    def _subscript(self, node: ast.Subscript) -> Any:
        base = self._eval(node.value)
        part = node.slice
        if part.__class__ is ast.Slice:
            lower = None if part.lower is None else self._eval(part.lower)
            upper = None if part.upper is None else self._eval(part.upper)
            if not isinstance(base, (str, list, tuple)):
                raise EvalError(f"{_text(node.value)} is {_describe(base)}, it cannot be sliced")
            try:
                return base[lower:upper]
            except TypeError:
                raise EvalError("slice bounds must be whole numbers") from None
        return _read(base, self._eval(part), node.value)

    def _boolop(self, node: ast.BoolOp) -> Any:
        want = node.op.__class__ is ast.Or
        value: Any = None
        for item in node.values:
            value = self._eval(item)
            if bool(value) is want:
                break
        return value

    def _binop(self, node: ast.BinOp) -> Any:
        fn, symbol = _BINOPS[node.op.__class__]
        left, right = self._eval(node.left), self._eval(node.right)
        if left.__class__ is Duration or right.__class__ is Duration:
            fn = partial(_calendar_binop, fn, symbol, self._context())
        try:
            return _check_size(fn(left, right))
        except TypeError:
            pass
        except ZeroDivisionError:
            raise EvalError("division by zero") from None
        except OverflowError:
            raise EvalError(f"number too large: {_short(left)} {symbol} {_short(right)}") from None
        except ValueError as exc:
            raise EvalError(f"cannot compute {_short(left)} {symbol} {_short(right)}: {exc}") from None
        raise EvalError(f"cannot apply '{symbol}' to {_describe(left)} and {_describe(right)}{_type_hint(left, right)}")

    def _unaryop(self, node: ast.UnaryOp) -> Any:
        fn, symbol = _UNARY[node.op.__class__]
        value = self._eval(node.operand)
        try:
            return fn(value)
        except TypeError:
            raise EvalError(f"cannot apply '{symbol}' to {_describe(value)}") from None

    def _compare(self, node: ast.Compare) -> Any:
        left = self._eval(node.left)
        for op, comparator in zip(node.ops, node.comparators):
            right = self._eval(comparator)
            fn, symbol = _COMPARE[op.__class__]
            if (left.__class__ is Duration or right.__class__ is Duration) and _by_length(left, right, symbol):
                left, right = _exact(left), _exact(right)
            try:
                if not fn(left, right):
                    return False
            except TypeError:
                if symbol in ("in", "not in"):
                    raise EvalError(f"cannot look for {_describe(left)} in {_describe(right)}") from None
                raise EvalError(f"cannot compare {_describe(left)} with {_describe(right)}"
                                f"{_type_hint(left, right)}") from None
            left = right
        return True

    def _ifexp(self, node: ast.IfExp) -> Any:
        return self._eval(node.body) if self._eval(node.test) else self._eval(node.orelse)

    def _call(self, node: ast.Call) -> Any:
        name = node.func.id  # type: ignore[attr-defined]  # compile_expr admits only library names
        args = [self._eval(arg) for arg in node.args]
        try:
            if not node.keywords:
                return _LIBRARY[name](self.ctx, *args)
            # compile_expr refuses `**` unpacking, the only keyword without a name, so the test drops nothing.
            keywords = {kw.arg: self._eval(kw.value) for kw in node.keywords if kw.arg is not None}
            return _LIBRARY[name](self.ctx, *args, **keywords)
        except EvalError:
            raise
        except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
            raise EvalError(f"{name}() failed: {exc}") from None

    def _list(self, node: ast.List) -> list[Any]:
        return [self._eval(item) for item in node.elts]

    def _tuple(self, node: ast.Tuple) -> tuple[Any, ...]:
        return tuple([self._eval(item) for item in node.elts])

    def _set(self, node: ast.Set) -> set[Any]:
        try:
            return {self._eval(item) for item in node.elts}
        except TypeError:
            raise EvalError("a set can hold only texts, numbers and dates") from None

    def _dict(self, node: ast.Dict) -> dict[Any, Any]:
        try:
            return {self._eval(k): self._eval(v) for k, v in zip(node.keys, node.values)}  # type: ignore[arg-type]
        except TypeError:
            raise EvalError("record keys must be texts or numbers") from None


_MISSING = object()
_local = threading.local()


def _read(base: Any, key: Any, base_node: ast.AST) -> Any:
    """`base.key` or `base[key]` on data only: a mapping's key or a list's position, never a Python attribute. A
    link (`deal.booking`) is read by name as the entity it links to."""
    if base.__class__ is Linked and isinstance(key, str):
        base = base.view
    if isinstance(base, Mapping):
        try:
            return base[key]
        except KeyError:
            pass
        except TypeError:
            raise EvalError(f"{_short(key)} cannot be a field name") from None
        what = f"field '{key}'" if isinstance(key, str) else f"key {_short(key)}"
        message = f"{_text(base_node)} has no {what}"
        keys = [k for k in base if isinstance(k, str)]
        guess = suggest(key, keys) if isinstance(key, str) else None
        if guess:
            message += f"; did you mean '{guess}'?"
        elif 0 < len(keys) <= 12:
            message += f" (it has: {', '.join(keys)})"
        raise EvalError(message)
    shown = f"'{key}'" if isinstance(key, str) else f"[{_short(key)}]"
    if base is None:
        raise EvalError(f"{_text(base_node)} is empty, cannot read {shown}")
    if isinstance(base, (list, tuple, str)) and not isinstance(key, bool) and isinstance(key, int):
        try:
            return base[key]
        except IndexError:
            raise EvalError(f"{_text(base_node)} has no item {key} (it has {len(base)})") from None
    raise EvalError(f"{_text(base_node)} is {_describe(base)}, not a record; cannot read {shown}")


@dataclass(frozen=True, slots=True)
class Expr:
    """A compiled expression: its source, the names and field chains it reads, and its checked syntax tree."""

    source: str
    names: frozenset[str]
    fields: tuple[tuple[str, ...], ...]
    _tree: ast.expr = field(repr=False, compare=False)

    @property
    def tree(self) -> ast.expr:
        """The checked syntax tree (for static checks such as automator/typecheck.py; never to be changed)."""
        return self._tree

    def evaluate(self, scope: Mapping[str, Any], ctx: EvalContext) -> Any:
        """Evaluate against plain data; every problem (missing field, type, limit, deadline) is an EvalError."""
        ev: _Evaluator | None = getattr(_local, "ev", None)
        if ev is None:
            ev = _local.ev = _Evaluator()
        elif ev.busy:  # a library callback evaluating another expression on this thread
            ev = _Evaluator()
        ev.busy, ev.scope, ev.ctx, ev.ticks = True, scope, ctx, _TICK_EVERY
        ev.deadline = perf_counter() + ctx.deadline_s
        outer_rows, READS.rows = READS.rows, 0  # a nested evaluation has a budget of its own
        try:
            return _plain(ev.eval(self.source, previously_parsed=self._tree))
        except EvalError:
            raise
        except RecursionError:
            raise EvalError("expression is nested too deeply") from None
        except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
            raise EvalError(f"cannot evaluate: {exc}") from None
        finally:
            ev.busy, ev.scope, ev.ctx = False, {}, None
            READS.rows = outer_rows
