"""A small type checker for compiled expressions: what `validate` can see would fail at run time.

Pure over the expression's syntax tree. The types of field chains come from the caller (the catalogue's
field types, see `field_type`); the library's parameter and return types are the table `FUNCTION_TYPES`.
Only a mismatch between two *known* types is reported: a value of unknown type (a run variable, a `get()`
result, a field of an `object`, an item of a list) is never an error, so the checker says nothing it is not
sure of. `None` stands for "unknown" throughout.
"""
from __future__ import annotations

import ast
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Union

from automator.expr import chain_of

# The types an expression's values can have, as an admin reads them.
TYPES = ("text", "number", "bool", "datetime", "date", "duration", "list", "record")
Type = Union[str, None]
TypeOf = Callable[[tuple[str, ...]], Type]

# Catalogue field types (automator/catalogue.py FIELD_TYPES) as values in expressions. `id` is unknown: ids
# arrive as numbers from some systems and as text from others, so nothing about them is certain.
_FIELD_TYPES = {"text": "text", "phone": "text", "number": "number", "money": "number", "bool": "bool",
                "datetime": "datetime", "date": "date", "list": "list", "object": "record"}

# Names that are records in every scope, and the two that are moments.
_RECORDS = frozenset({"event", "entity", "prev", "client", "booking", "deal", "task", "settings", "vars"})
_NAMES = {"now": "datetime", "today": "date"}

_SHOWN = {"text": "a text", "number": "a number", "bool": "true or false", "datetime": "a date-time",
          "date": "a date", "duration": "a duration", "list": "a list", "record": "a record"}


def field_type(catalogue_type: str | None) -> Type:
    """The expression type of a catalogue field type (None for `id` and anything unknown)."""
    return _FIELD_TYPES.get(catalogue_type or "")


@dataclass(frozen=True, slots=True)
class Signature:
    """A library function's parameters (each the set of types it accepts, None for any) and its result."""

    params: tuple[frozenset[str] | None, ...]
    returns: Type | Callable[[list[Type]], Type]
    variadic: bool = False  # every argument takes the last parameter's types


def _one(*types: str) -> frozenset[str]:
    return frozenset(types)


_MOMENT = _one("datetime", "date")
_DURATION_LIKE = _one("duration", "text", "number")
_NUMBER = _one("number", "bool")
_PERSON = _one("record", "text", "number")  # a client record, or a person's id written out


def _same(types: list[Type]) -> Type:
    known = {t for t in types if t is not None}
    return known.pop() if len(known) == 1 and None not in types else None


def _first(types: list[Type]) -> Type:
    return types[0] if types else None


# Keyed by the function's name in expr.library._LIBRARY; a test keeps the two in step, so a new function cannot be
# left out of the checker.
FUNCTION_TYPES: dict[str, Signature] = {
    "now": Signature((), "datetime"),
    "today": Signature((), "date"),
    "days_since": Signature((_MOMENT,), "number"),
    "hours_since": Signature((_MOMENT,), "number"),
    "minutes_since": Signature((_MOMENT,), "number"),
    "days_until": Signature((_MOMENT,), "number"),
    "hours_until": Signature((_MOMENT,), "number"),
    "duration": Signature((_DURATION_LIKE,), "duration"),
    "segment_of": Signature((_one("record"),), "text"),
    "segment_avg_recency": Signature((_one("record"),), "duration"),
    "phone": Signature((_one("text", "number"),), "text"),
    "fmt_date": Signature((_MOMENT, _one("text")), "text"),
    "fmt_time": Signature((_MOMENT,), "text"),
    "date": Signature((_MOMENT | {"text"},), "date"),
    "datetime": Signature((_MOMENT | {"text"},), "datetime"),
    "add": Signature((_MOMENT, _DURATION_LIKE), "datetime"),
    "days": Signature((_one("duration"),), "number"),
    "hours": Signature((_one("duration"),), "number"),
    "len": Signature((_one("text", "list", "record"),), "number"),
    "lower": Signature((_one("text"),), "text"),
    "upper": Signature((_one("text"),), "text"),
    "strip": Signature((_one("text"),), "text"),
    "contains": Signature((_one("text", "list", "record"), None), "bool"),
    "startswith": Signature((_one("text"), _one("text")), "bool"),
    "round": Signature((_NUMBER, _NUMBER), "number"),
    "abs": Signature((_NUMBER | {"duration"},), _first),
    "min": Signature((None,), _same, variadic=True),
    "max": Signature((None,), _same, variadic=True),
    "int": Signature((_NUMBER | {"text"},), "number"),
    "float": Signature((_NUMBER | {"text"},), "number"),
    "str": Signature((None,), "text"),
    "bool": Signature((None,), "bool"),
    "get": Signature((_one("record", "list"), None, None), None),
    "has": Signature((_one("record"), None), "bool"),
    "coalesce": Signature((None,), _same, variadic=True),
    "end_of_day": Signature((_MOMENT, _one("text")), "datetime"),
    "start_of_day": Signature((_MOMENT, _one("text")), "datetime"),
    "client_by_phone": Signature((_one("text", "number"),), "record"),
    "deals_of": Signature((_PERSON, _one("text", "list"), _one("bool")), "list"),
    "bookings_of": Signature((_PERSON, _one("text", "list"), _MOMENT, _MOMENT), "list"),
    "visits_of": Signature((_PERSON, _MOMENT), "list"),
    "bookings_at": Signature((_MOMENT, _MOMENT, _one("text", "list")), "list"),
    "where": Signature((_one("list"),), "list"),
    "count": Signature((_one("list"),), "number"),
    "sum": Signature((_one("list"), _one("text")), "number"),
    "avg": Signature((_one("list"), _one("text")), "number"),
    "any": Signature((_one("list"),), "bool"),
    "all": Signature((_one("list"),), "bool"),
}

# The lookups that give records of one kind, and the filter that keeps its list's kind: what `for_each: {items:}`
# runs over is known from its expression when the rules load.
LOOKUP_KINDS = {"bookings_of": "booking", "bookings_at": "booking", "deals_of": "deal"}
_KEEPS_KIND = ("where",)


def items_kind(tree: ast.AST) -> str | None:
    """The kind of record a list expression gives (`where(bookings_of(client), status='x')` -> booking), or None
    when it is not a lookup of records."""
    while isinstance(tree, ast.Call) and isinstance(tree.func, ast.Name):
        name = tree.func.id
        if name in LOOKUP_KINDS:
            return LOOKUP_KINDS[name]
        if name not in _KEEPS_KIND or not tree.args:
            return None
        tree = tree.args[0]
    return None

_N, _T, _L, _DT, _D, _DUR = "number", "text", "list", "datetime", "date", "duration"
# (operator, left, right) -> result, for every combination Python (and so the evaluator) computes.
_ARITHMETIC: dict[tuple[type, str, str], str] = {}
for _op in (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.LShift, ast.RShift,
            ast.BitOr, ast.BitXor, ast.BitAnd):
    for _a in ("number", "bool"):
        for _b in ("number", "bool"):
            _ARITHMETIC[(_op, _a, _b)] = _N
_ARITHMETIC.update({
    (ast.Add, _T, _T): _T, (ast.Add, _L, _L): _L, (ast.Add, _DT, _DUR): _DT, (ast.Add, _DUR, _DT): _DT,
    (ast.Add, _D, _DUR): _D, (ast.Add, _DUR, _D): _D, (ast.Add, _DUR, _DUR): _DUR,
    (ast.Sub, _DT, _DT): _DUR, (ast.Sub, _D, _D): _DUR, (ast.Sub, _DT, _DUR): _DT, (ast.Sub, _D, _DUR): _D,
    (ast.Sub, _DUR, _DUR): _DUR,
    (ast.Mult, _T, _N): _T, (ast.Mult, _N, _T): _T, (ast.Mult, _L, _N): _L, (ast.Mult, _N, _L): _L,
    (ast.Mult, _DUR, _N): _DUR, (ast.Mult, _N, _DUR): _DUR,
    (ast.Div, _DUR, _N): _DUR, (ast.Div, _DUR, _DUR): _N, (ast.FloorDiv, _DUR, _N): _DUR,
    (ast.FloorDiv, _DUR, _DUR): _N, (ast.Mod, _DUR, _DUR): _DUR,
})
_SYMBOLS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%",
            ast.Pow: "**", ast.LShift: "<<", ast.RShift: ">>", ast.BitOr: "|", ast.BitXor: "^", ast.BitAnd: "&"}
# Values that order against each other (<, <=, >, >=).
_ORDERED = ({"number", "bool"}, {"text"}, {"datetime"}, {"date"}, {"duration"}, {"list"})


@dataclass(frozen=True, slots=True)
class Mismatch:
    """A type error the checker is sure of: what cannot be computed, and what to write instead."""

    message: str
    hint: str | None = None


def check(tree: ast.expr, type_of: TypeOf) -> list[Mismatch]:
    """Every mismatch in one expression; `type_of` gives a field chain's type (`("booking", "starts_at")`)."""
    checker = _Checker(type_of)
    checker.infer(tree)
    return checker.found


def shown(type_: str) -> str:
    """An admin's name for a type: `a date-time`."""
    return _SHOWN.get(type_, type_)


def _text(node: ast.AST) -> str:
    text = ast.unparse(node)
    return text if len(text) <= 40 else text[:37] + "..."


def _is_text_literal(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


class _Checker:
    def __init__(self, type_of: TypeOf) -> None:
        self.type_of = type_of
        self.found: list[Mismatch] = []

    def fail(self, message: str, hint: str | None = None) -> None:
        self.found.append(Mismatch(message, hint))

    def infer(self, node: ast.AST) -> Type:
        method = getattr(self, "_" + node.__class__.__name__, None)
        if method is None:
            for child in ast.iter_child_nodes(node):
                self.infer(child)
            return None
        return method(node)

    def _Constant(self, node: ast.Constant) -> Type:
        value = node.value
        if isinstance(value, bool):
            return "bool"
        if isinstance(value, (int, float)):
            return "number"
        return "text" if isinstance(value, str) else None

    def _Name(self, node: ast.Name) -> Type:
        if node.id in _NAMES:
            return _NAMES[node.id]
        return "record" if node.id in _RECORDS else None

    def _Attribute(self, node: ast.Attribute) -> Type:
        chain = chain_of(node)
        return self.type_of(chain) if chain is not None else self._operand_then_none(node.value)

    def _Subscript(self, node: ast.Subscript) -> Type:
        chain = chain_of(node)
        if chain is not None:
            return self.type_of(chain)
        base = self.infer(node.value)
        if isinstance(node.slice, ast.Slice):
            for bound in (node.slice.lower, node.slice.upper):
                if bound is not None:
                    self.infer(bound)
            return base if base in ("text", "list") else None
        self.infer(node.slice)
        return None

    def _operand_then_none(self, node: ast.AST) -> Type:
        self.infer(node)
        return None

    def _List(self, node: ast.List | ast.Tuple | ast.Set) -> Type:
        for item in node.elts:
            self.infer(item)
        return "list"

    _Tuple = _Set = _List

    def _Dict(self, node: ast.Dict) -> Type:
        for item in (*node.keys, *node.values):
            if item is not None:
                self.infer(item)
        return "record"

    def _BoolOp(self, node: ast.BoolOp) -> Type:
        return _same([self.infer(value) for value in node.values])

    def _IfExp(self, node: ast.IfExp) -> Type:
        self.infer(node.test)
        return _same([self.infer(node.body), self.infer(node.orelse)])

    def _UnaryOp(self, node: ast.UnaryOp) -> Type:
        operand = self.infer(node.operand)
        if isinstance(node.op, ast.Not):
            return "bool"
        if operand is None:
            return None
        if operand in ("number", "bool") or (operand == "duration" and not isinstance(node.op, ast.Invert)):
            return "number" if operand == "bool" else operand
        symbol = {ast.USub: "-", ast.UAdd: "+", ast.Invert: "~"}[node.op.__class__]
        self.fail(f"cannot apply '{symbol}' to {shown(operand)} ({_text(node.operand)})")
        return None

    def _BinOp(self, node: ast.BinOp) -> Type:
        left, right = self.infer(node.left), self.infer(node.right)
        if left is None or right is None:
            return None
        result = _ARITHMETIC.get((node.op.__class__, left, right))
        if result is None:
            symbol = _SYMBOLS[node.op.__class__]
            self.fail(f"cannot apply '{symbol}' to {shown(left)} ({_text(node.left)}) and {shown(right)} "
                      f"({_text(node.right)})", _arithmetic_hint(node, left, right))
        return result

    def _Compare(self, node: ast.Compare) -> Type:
        operands = [node.left, *node.comparators]
        types = [self.infer(operand) for operand in operands]
        for op, (a, b), (ta, tb) in zip(node.ops, zip(operands, operands[1:]), zip(types, types[1:])):
            if ta is None or tb is None:
                continue
            problem = _compare_problem(op, ta, tb)
            if problem is not None:
                self.fail(f"cannot compare {shown(ta)} ({_text(a)}) with {shown(tb)} ({_text(b)})"
                          if problem == "order" else problem.format(a=_text(a), b=_text(b), ta=shown(ta),
                                                                    tb=shown(tb)),
                          _compare_hint(a, b, ta, tb))
        return "bool"

    def _Call(self, node: ast.Call) -> Type:
        name = node.func.id if isinstance(node.func, ast.Name) else ""
        args: list[ast.AST] = [*node.args, *(kw.value for kw in node.keywords)]
        types = [self.infer(arg) for arg in args]
        signature = FUNCTION_TYPES.get(name)
        if signature is None:
            return None
        for position, (arg, type_) in enumerate(zip(node.args, types)):
            accepted = _param(signature, position)
            if accepted is None or type_ is None or type_ in accepted:
                continue
            if _is_text_literal(arg) and accepted & {"datetime", "date", "duration"}:
                continue  # an ISO text or a duration text such as '2h': the function reads it
            self.fail(f"{name}() expects {_or(accepted)} as its {_ordinal(position)} argument, got "
                      f"{shown(type_)} ({_text(arg)})", _call_hint(name, accepted, type_))
            return None
        returns = signature.returns
        return returns(types) if callable(returns) else returns


def _param(signature: Signature, position: int) -> frozenset[str] | None:
    if position < len(signature.params):
        return signature.params[position]
    return signature.params[-1] if signature.variadic and signature.params else None


def _or(types: frozenset[str]) -> str:
    names = [shown(t) for t in TYPES if t in types and not (t == "bool" and "number" in types)]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def _ordinal(position: int) -> str:
    return ("first", "second", "third")[position] if position < 3 else f"argument {position + 1}"


def _call_hint(name: str, accepted: frozenset[str], got: str) -> str | None:
    if accepted <= _MOMENT:
        return f"{name}() takes a date or date-time field, such as booking.starts_at or client.last_visit_at"
    if "text" in accepted and got in ("number", "bool"):
        return "convert the number first: str(...)"
    if "number" in accepted and got == "text":
        return "convert the text first: int(...) or float(...)"
    return None


def _arithmetic_hint(node: ast.BinOp, left: str, right: str) -> str | None:
    moments = {"datetime", "date"}
    if (left in moments and right in ("number", "bool", "text")) or (right in moments and left in ("number", "bool")):
        other = node.right if left in moments else node.left
        amount = repr(other.value) if isinstance(other, ast.Constant) and isinstance(other.value, str) else "'2h'"
        return f"add or subtract a duration, such as {_text(node.left if left in moments else node.right)} " \
               f"{_SYMBOLS[node.op.__class__]} duration({amount})"
    if {left, right} == {"text", "number"}:
        return "convert with str(...) to join texts, or int(...) / float(...) to compute"
    if left in moments and right in moments:
        return "a date and a date-time cannot be mixed: use date(x) on the date-time, or datetime(x) on the date"
    return None


def _compare_problem(op: ast.cmpop, left: str, right: str) -> str | None:
    """'order' for values that cannot be ordered, a message template for the other mistakes, else None."""
    if isinstance(op, (ast.Lt, ast.LtE, ast.Gt, ast.GtE)):
        return None if any(left in group and right in group for group in _ORDERED) else "order"
    if isinstance(op, (ast.Eq, ast.NotEq)):
        moments = {"datetime", "date"}
        if (left in moments and right == "text") or (right in moments and left == "text") \
                or {left, right} == moments:
            return "{a} is {ta} and {b} is {tb}: they are never equal"
        return None
    if isinstance(op, (ast.In, ast.NotIn)):
        if right in ("number", "bool", "datetime", "date", "duration"):
            return "cannot look for {a} in {tb} ({b}): `in` looks in a text, a list or a record"
        if right == "text" and left not in ("text",):
            return "cannot look for {ta} ({a}) in a text ({b})"
    return None


def _compare_hint(a: ast.AST, b: ast.AST, ta: str, tb: str) -> str | None:
    moments = {"datetime", "date"}
    if {ta, tb} == moments:
        return "compare dates with date(x), such as date(booking.starts_at) == today"
    if ta in moments or tb in moments:
        literal = b if _is_text_literal(b) else a if _is_text_literal(a) else None
        if literal is not None:
            return f"convert the text: datetime({ast.unparse(literal)}) or date({ast.unparse(literal)})"
        return "convert the text with datetime(...) or date(...)"
    if {ta, tb} == {"number", "text"}:
        literal = b if _is_text_literal(b) else a if _is_text_literal(a) else None
        if literal is not None:
            return "compare with a number, written without quotes, such as 9"
        return "convert with int(...) or float(...), or str(...)"
    return None


def literal_texts(nodes: Sequence[ast.AST]) -> list[str]:
    """The text constants among `nodes`, and in list/tuple/set literals among them."""
    out: list[str] = []
    for node in nodes:
        if _is_text_literal(node):
            out.append(node.value)  # type: ignore[attr-defined]
        elif isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            out.extend(literal_texts(node.elts))
    return out
