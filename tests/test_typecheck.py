"""The type checker (automator/typecheck.py) on its own: the library table, and what is and is not a mismatch."""
from __future__ import annotations

import pytest

from automator.expr import compile_expr
from automator.expr.library import _LIBRARY
from automator.typecheck import FUNCTION_TYPES, check, field_type

TYPES = {("booking", "starts_at"): "datetime", ("client", "phone"): "text", ("client", "name"): "text",
         ("booking", "amount"): "number", ("event", "score"): "number", ("client", "birth_date"): "date",
         ("client", "categories"): "list"}
NAMES = {"event", "client", "booking", "vars", "now", "today"}


def mismatches(source: str) -> list[str]:
    tree = compile_expr(source, NAMES).tree
    return [m.message for m in check(tree, lambda chain: TYPES.get(chain))]


def test_every_library_function_has_its_types() -> None:
    """A function added to the library without an entry here would go unchecked: the two are kept in step."""
    assert set(FUNCTION_TYPES) == set(_LIBRARY)


def test_catalogue_types_map_to_expression_types() -> None:
    assert [field_type(t) for t in ("money", "phone", "datetime", "id", "object", None)] == \
           ["number", "text", "datetime", None, "record", None]


@pytest.mark.parametrize("source", [
    "booking.starts_at - duration('2h')", "booking.starts_at < now", "days_until(booking.starts_at) < 2",
    "booking.starts_at - now > duration('1d')", "add(booking.starts_at, '-1d') > now", "date(booking.starts_at) == today",
    "days_since('2026-01-01') > 3", "client.birth_date + duration('1d') > today", "len(client.categories) > 0",
    "vars.x - 2", "get(client, 'visits', 0) > 'x'", "min(event.score, 5) + 1", "event.score * 2 / 3 >= 9",
    "client.name + ' ' + str(event.score)", "'VIP' in client.categories", "(booking.starts_at - now) / duration('1h') > 2",
    "abs(booking.starts_at - now) < duration('1h')", "coalesce(vars.a, booking.starts_at) < now",
])
def test_what_computes_is_not_a_mismatch(source: str) -> None:
    assert mismatches(source) == []


@pytest.mark.parametrize(("source", "message"), [
    ("booking.starts_at + 3600", "cannot apply '+' to a date-time (booking.starts_at) and a number (3600)"),
    ("-booking.starts_at", "cannot apply '-' to a date-time (booking.starts_at)"),
    ("client.name - 1", "cannot apply '-' to a text (client.name) and a number (1)"),
    ("booking.starts_at > client.birth_date", "cannot compare a date-time (booking.starts_at) with a date "
                                              "(client.birth_date)"),
    ("upper(event.score) == 'X'", "upper() expects a text as its first argument, got a number (event.score)"),
    ("hours_since(now) > booking.starts_at", "cannot compare a number (hours_since(now)) with a date-time "
                                             "(booking.starts_at)"),
    ("'a' in event.score", "cannot look for 'a' in a number (event.score): `in` looks in a text, a list or a record"),
    ("days(booking.amount) > 1", "days() expects a duration as its first argument, got a number (booking.amount)"),
])
def test_a_mismatch_names_both_sides(source: str, message: str) -> None:
    assert mismatches(source)[:1] == [message]
