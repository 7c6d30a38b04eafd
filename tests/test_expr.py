"""Tests for automator.expr: the sandbox refuses escapes, bounds work, the library and templates behave."""
from __future__ import annotations

import threading
from datetime import date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from automator.clock import Duration, format_duration, parse_offset
from automator.expr import (
    FUNCTIONS,
    EvalContext,
    EvalError,
    Expr,
    ExprSyntaxError,
    compile_expr,
    compile_template,
    suggest,
)

MSK = ZoneInfo("Europe/Moscow")
BERLIN = ZoneInfo("Europe/Berlin")
NAMES = frozenset({"event", "client", "booking", "deal", "entity", "prev", "settings", "vars"})
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=MSK)
CTX = EvalContext(now=NOW, tz=MSK)


def scope() -> dict[str, Any]:
    return {
        "event": {"score": 10, "type": "nps.received"},
        "client": {"id": 77, "name": "Анна", "visits": 3, "phone": "8 916 123-45-67", "address": None,
                   "last_visit_at": "2026-02-20T10:00:00+03:00", "tags": ["vip", "new"], "do_not_call": False},
        "settings": {"review_url": "https://example.com/review"},
        "vars": {},
    }


def ev(source: str, data: dict[str, Any] | None = None, ctx: EvalContext = CTX) -> Any:
    names = NAMES if data is None else NAMES | set(data)
    return compile_expr(source, names).evaluate(scope() if data is None else data, ctx)


def compile_error(source: str) -> ExprSyntaxError:
    with pytest.raises(ExprSyntaxError) as info:
        compile_expr(source, NAMES)
    return info.value


def eval_error(source: str, data: dict[str, Any] | None = None, ctx: EvalContext = CTX) -> str:
    expr = compile_expr(source, NAMES if data is None else NAMES | set(data))
    with pytest.raises(EvalError) as info:
        expr.evaluate(scope() if data is None else data, ctx)
    return str(info.value)


# ------------------------------------------------------------------------------------------------ escapes

BIG_PRODUCT_10 = " * ".join(["(10**100)"] * 50)
BIG_PRODUCT_9 = " * ".join(["9**99"] * 50)

ESCAPES = [
    ("().__class__", "compile"),
    ("''.__class__.__mro__", "compile"),
    ("'a'.ljust(10**8)", "compile"),
    ("client.__dict__", "compile"),
    ("client['__class__']", "runtime"),
    ("now.__class__", "compile"),
    ("(lambda: 1)()", "compile"),
    ("__import__('os')", "compile"),
    ("open('x')", "compile"),
    ("eval('1')", "compile"),
    ("exec('1')", "compile"),
    ("globals()", "compile"),
    ("vars()", "compile"),
    ("getattr(client, 'x')", "compile"),
    ("type(1)", "compile"),
    ("{}.get", "compile"),
    ("''.join", "compile"),
    ("client.keys()", "compile"),
    ("client.get('x')", "compile"),
    ("f'{client}'", "compile"),
    ("[x for x in range(10**9)]", "compile"),
    ("{x: 1 for x in client}", "compile"),
    ("(x := 1)", "compile"),
    ("[*client.tags]", "compile"),
    ("{**client}", "compile"),
    ("days_since(*client.tags)", "compile"),
    ("get(**client)", "compile"),
    ("client.name[::-1]", "compile"),
    ("b'abc'", "compile"),
    ("1j", "compile"),
    ("...", "compile"),
    ("(yield)", "compile"),
    ("await client", "compile"),
    ("client @ client", "compile"),
    ("1" + "0" * 101 + " if True else 1", "compile"),
    ("-" * 3000 + "1", "compile"),
    ("max(" + ", ".join(["1"] * 1001) + ")", "compile"),
    ("[" + ", ".join(["1"] * 1001) + "]", "compile"),
    ("'%0100000000d' % 1", "compile"),
    ("'%s' * 3 % 1", "runtime"),
    ("client.name % 1", "runtime"),
    ("'a' * 10**8", "runtime"),
    ("10**8 * 'a'", "runtime"),
    ("'' * 10**100", "runtime"),
    ("[1] * 10**8", "runtime"),
    ("(1, 2) * 10**8", "runtime"),
    ("'a' * 99999 + 'b' * 99999", "runtime"),
    ("'x' in 'y' * 10**9", "runtime"),
    ("2 ** 10000", "runtime"),
    ("10 ** 10 ** 10", "runtime"),
    ("9**9**9", "runtime"),
    ("2.0 ** 100000", "runtime"),
    (BIG_PRODUCT_10, "runtime"),
    (BIG_PRODUCT_9, "runtime"),
    ("(10**99) * (10**99)", "runtime"),
    ("-(10**100) - 10**100", "runtime"),
    ("1 << 10**9", "runtime"),
    ("1 << 400", "runtime"),
    ("1 << -1", "runtime"),
    ("client.name.upper", "runtime"),
    ("now.year", "runtime"),
    ("duration('1d').days", "runtime"),
    ("round(10**50, -10**9)", "runtime"),
    ("int('9' * 200)", "runtime"),
    ("str(client) * 10**6", "runtime"),
    ("(-8) ** 0.5", "runtime"),
]


@pytest.mark.parametrize(("source", "stage"), ESCAPES, ids=[s[:40] for s, _ in ESCAPES])
def test_escape_attempts_are_refused(source: str, stage: str) -> None:
    if stage == "compile":
        compile_error(source)
    else:
        expr = compile_expr(source, NAMES)
        with pytest.raises(EvalError):
            expr.evaluate(scope(), CTX)


def test_big_numbers_are_refused_quickly() -> None:
    assert "too large" in eval_error("2 ** 10000")
    assert "too large" in eval_error(BIG_PRODUCT_9)
    assert ev("2 ** 300") == 2**300
    assert ev("9**99") == 9**99


def test_string_percent_formatting_is_refused_with_a_hint() -> None:
    err = compile_error("'%0100000000d' % 1")
    assert "'%' formatting" in err.message and "template" in (err.hint or "")
    assert "'%' formatting" in eval_error("client.name % 1")
    assert ev("7 % 3") == 1


def test_deadline_stops_a_long_but_legal_expression() -> None:
    source = "max(" + ", ".join(["1 + 1"] * 500) + ")"
    assert ev(source) == 2
    tiny = EvalContext(now=NOW, tz=MSK, deadline_s=1e-9)
    assert "took longer than" in eval_error(source, ctx=tiny)


def test_deadline_message_names_the_budget() -> None:
    source = "max(" + ", ".join(["1 + 1"] * 500) + ")"
    expired = EvalContext(now=NOW, tz=MSK, deadline_s=0.0)
    assert eval_error(source, ctx=expired) == "expression took longer than 0 ms"


# ------------------------------------------------------------------------------------------------ compile checks


def test_unknown_name_has_a_did_you_mean_hint() -> None:
    err = compile_error("cliet.name == 'x'")
    assert err.message == "unknown name 'cliet'"
    assert err.hint == "did you mean 'client'?"
    assert err.offset == 0


def test_unknown_function_has_a_did_you_mean_hint() -> None:
    err = compile_error("days_sinse(client.last_visit_at) > 60")
    assert err.message == "unknown function 'days_sinse'"
    assert err.hint == "did you mean 'days_since'?"


def test_names_outside_the_allowed_set_are_unknown() -> None:
    assert compile_expr("booking.status", {"booking"}).names == {"booking"}
    with pytest.raises(ExprSyntaxError, match="unknown name 'booking'"):
        compile_expr("booking.status", {"client"})


def test_function_used_as_a_value_and_data_used_as_a_function() -> None:
    assert "is a function" in compile_error("days_since > 1").message
    assert "is data, not a function" in compile_error("client(1)").message


def test_wrong_arity_is_caught_at_load() -> None:
    err = compile_error("days_since(client.last_visit_at, 2)")
    assert "days_since()" in err.message and err.hint == FUNCTIONS["days_since"]
    assert "wrong arguments" in compile_error("phone()").message
    assert "wrong arguments" in compile_error("get(client, 'x', fallback=1)").message


@pytest.mark.parametrize(("source", "offset"), [
    ("client.visits > > 2", 16),
    ("'Анна' ==  = 1", 11),
    ("  x y", 4),
    ("client.name and\n  cliet.x", 18),
    ("client.name +", 13),
])
def test_syntax_errors_point_at_the_offset(source: str, offset: int) -> None:
    assert compile_error(source).offset == offset


def test_syntax_hints_for_other_languages_habits() -> None:
    assert compile_error("client.vip && client.visits > 2").hint == "use 'and' instead of '&&'"
    assert compile_error("!client.vip").hint == "use 'not' instead of '!'"
    assert compile_error("client.visits = 1").hint == "compare with '==' (a single '=' is not a comparison)"
    assert compile_error("contains(client.note, 'a=b') and").hint is None


def test_empty_expression() -> None:
    err = compile_error("   ")
    assert err.message == "empty expression" and err.offset == 0


def test_underscore_attribute_offset_points_at_the_attribute() -> None:
    err = compile_error("client.__dict__")
    assert err.offset == 7 and "'_'" in err.message


def test_is_only_with_singletons() -> None:
    assert ev("client.address is None") is True
    assert ev("client.do_not_call is not True") is True
    assert "use ==" in (compile_error("client.visits is 3").hint or "")


def test_multiline_expression_from_a_yaml_block() -> None:
    source = "client.visits > 2\n  and not client.do_not_call\n"
    assert ev(source) is True


def test_yaml_spellings_true_false_null() -> None:
    assert ev("client.do_not_call == false") is True
    assert ev("true and not null") is True
    assert compile_expr("true", NAMES).names == frozenset()


def test_names_and_fields_extraction() -> None:
    expr = compile_expr("event.score >= 9 and days_since(client.last_visit_at) > 60 and client['address'].city "
                        "and client.tags[0] and segment_of(client) == 'vip' and now > today", NAMES)
    assert expr.names == {"event", "client", "days_since", "segment_of", "now", "today"}
    assert expr.fields == (("event", "score"), ("client", "last_visit_at"), ("client", "address", "city"),
                           ("client", "tags"))


def test_compiled_expression_keeps_its_source() -> None:
    expr = compile_expr("client.visits > 2", NAMES)
    assert isinstance(expr, Expr) and expr.source == "client.visits > 2"
    assert expr == compile_expr("client.visits > 2", NAMES)


# ------------------------------------------------------------------------------------------------ runtime errors


def test_missing_field_message_with_suggestion_and_listing() -> None:
    assert eval_error("client.nmae") == "client has no field 'nmae'; did you mean 'name'?"
    message = eval_error("event.zzz")
    assert message == "event has no field 'zzz' (it has: score, type)"
    expected = "client has no field 'do_not_call' (it has: id)"
    assert eval_error("not client.do_not_call", {"client": {"id": 1}}) == expected


def test_field_of_empty_and_of_non_record() -> None:
    assert eval_error("client.address.city") == "client.address is empty, cannot read 'city'"
    assert eval_error("client.name.first") == "client.name is the text 'Анна', not a record; cannot read 'first'"
    assert "has no item 5" in eval_error("client.tags[5]")
    assert ev("client.tags[-1]") == "new"
    assert ev("client['name'][:2]") == "Ан"


def test_name_missing_from_the_scope_at_runtime() -> None:
    assert eval_error("booking.status") == "booking is not available for this event"


def test_type_errors_are_readable() -> None:
    assert eval_error("'a' < 1").startswith("cannot compare the text 'a' with 1")
    assert eval_error("days_since(client.address) > 60") == "cannot compare an empty value with 60"
    assert eval_error("client.name + 1").startswith("cannot apply '+' to the text 'Анна' and 1")
    assert "datetime(" in eval_error("now > '2026-01-01'")
    assert eval_error("1 in None") == "cannot look for 1 in an empty value"
    assert eval_error("-client.name") == "cannot apply '-' to the text 'Анна'"


def test_division_by_zero() -> None:
    assert eval_error("1 / 0") == "division by zero"
    assert eval_error("client.visits // 0") == "division by zero"
    assert eval_error("duration('1d') / 0") == "division by zero"


# ------------------------------------------------------------------------------------------------ the library


def test_functions_catalogue_lists_the_library() -> None:
    expected = {"now", "today", "days_since", "hours_since", "minutes_since", "days_until", "hours_until",
                "duration", "segment_of", "segment_avg_recency", "phone", "fmt_date", "fmt_time", "date",
                "datetime", "add", "days", "hours", "len", "lower", "upper", "strip", "contains", "startswith",
                "round", "abs", "min", "max", "int", "float", "str", "bool", "get", "has", "coalesce",
                "end_of_day", "start_of_day", "client_by_phone", "deals_of", "bookings_of", "bookings_at", "visits_of",
                "where", "count", "sum", "avg", "any", "all"}
    assert set(FUNCTIONS) == expected
    assert all(doc.startswith(name) for name, doc in FUNCTIONS.items())


def test_now_and_today_work_as_names_and_calls_in_the_project_timezone() -> None:
    ctx = EvalContext(now=datetime(2026, 3, 1, 22, 30, tzinfo=timezone.utc), tz=MSK)
    value = ev("now", ctx=ctx)
    assert value == ev("now()", ctx=ctx) and value.utcoffset() == timedelta(hours=3)
    assert type(value) is datetime and (value.hour, value.day) == (1, 2)
    assert ev("today", ctx=ctx) == ev("today()", ctx=ctx) == date(2026, 3, 2)
    assert type(ev("today", ctx=ctx)) is date
    assert ev("now - duration('1h') < now") is True


def test_days_since_variants() -> None:
    assert ev("days_since(client.last_visit_at)") == pytest.approx(9.958333, rel=1e-6)
    assert ev("days_since('2026-02-28')") == pytest.approx(2.375)
    assert ev("days_since(x)", {"x": date(2026, 3, 1)}) == pytest.approx(1.375)
    assert ev("days_since(x)", {"x": datetime(2026, 3, 1, 9, 0)}) == 1.0  # naive means local
    assert ev("days_since(x)", {"x": datetime(2026, 3, 1, 6, 0, tzinfo=timezone.utc)}) == 1.0
    assert ev("days_since(client.address)") is None
    assert ev("minutes_since('2026-03-02T08:30:00+03:00')") == 30
    assert ev("hours_since('2026-03-02T05:00:00Z')") == 1
    assert ev("days_until('2026-03-05T09:00:00+03:00')") == 3
    assert ev("hours_until('2026-03-02T12:00:00+03:00')") == 3
    assert "not a date or time" in eval_error("days_since('yesterday')")
    assert "expects a date or time" in eval_error("days_since(5)")


def test_days_since_across_a_dst_change_counts_calendar_days() -> None:
    ctx = EvalContext(now=datetime(2026, 3, 30, 12, 0, tzinfo=BERLIN), tz=BERLIN)  # DST began on 29 March
    data = {"client": {"v": "2026-03-28T12:00:00+01:00", "w": "2026-03-28T12:00:00"}}
    assert ev("days_since(client.v)", data, ctx) == 2.0
    assert ev("days_since(client.w)", data, ctx) == 2.0
    assert ev("hours_since(client.v)", data, ctx) == 47.0
    assert ev("hours_since(client.w)", data, ctx) == 47.0
    back = EvalContext(now=datetime(2026, 3, 28, 12, 0, tzinfo=BERLIN), tz=BERLIN)
    assert ev("days_until('2026-03-30T12:00:00')", data, back) == 2.0
    assert ev("hours_until('2026-03-30T12:00:00')", data, back) == 47.0
    assert ev("add('2026-03-28T12:00:00', '1d')", data, ctx) == datetime(2026, 3, 29, 12, 0, tzinfo=BERLIN)
    gap = ev("add('2026-03-29T01:30:00', '1h')", data, ctx)  # 02:30 does not exist that night
    assert gap.isoformat() == "2026-03-29T03:30:00+02:00"


@pytest.mark.parametrize(("text", "expected"), [
    ("30s", Duration(seconds=30)), ("5m", Duration(seconds=300)), ("2h", Duration(seconds=7200)),
    ("14d", Duration(days=14)), ("2w", Duration(days=14)), ("2mo", Duration(months=2)),
    ("1h30m", Duration(seconds=5400)), (" 1h 30m ", Duration(seconds=5400)), ("1mo2w", Duration(months=1, days=14)),
    ("-1d", Duration(days=-1)), ("-2h", Duration(seconds=-7200)), ("+1d", Duration(days=1)),
    ("0s", Duration()),
])
def test_duration_is_the_clock_parsers_calendar_span(text: str, expected: Duration) -> None:
    assert ev(f"duration('{text}')") == expected == parse_offset(text)


@pytest.mark.parametrize(("text", "message"), [
    ("5x", "unknown unit 'x' in '5x'"), ("m5", "cannot read 'm5'"), ("1.5h", "use whole numbers"),
    ("--1d", "write one sign before the number"), ("9999999999d", "too long"), ("30 days", "unknown unit 'days'"),
])
def test_a_literal_bad_duration_is_a_compile_error(text: str, message: str) -> None:
    err = compile_error(f"add(now, '{text}')")
    assert err.message.startswith(f"bad duration '{text}': ") and message in err.message
    assert err.offset == len("add(now, ") and "'-1d' goes back" in (err.hint or "")
    assert message in eval_error("duration(x)", {"x": text})


def test_duration_function_accepts_numbers_and_durations() -> None:
    assert ev("duration(90)") == Duration(seconds=90)
    assert ev("duration(-90)") == Duration(seconds=-90)
    assert ev("duration(duration('1d'))") == Duration(days=1)
    assert ev("duration(now - now)") == timedelta(0)
    assert ev("duration(client.address)") is None
    assert "expects a duration" in eval_error("duration(true)")


def test_format_duration_round_trips() -> None:
    for text in ("14d", "1h30m", "45s", "0s", "2d3h4m5s", "2mo", "-1d", "-1h30m"):
        assert format_duration(parse_offset(text)) == text
        assert ev(f"str(duration('{text}'))") == text
    assert format_duration(-timedelta(hours=1)) == "-1h"
    assert format_duration(timedelta(days=1, hours=2)) == "1d2h"


def test_duration_arithmetic() -> None:
    assert ev("duration('1d') * 2 / 3") == timedelta(hours=16)
    assert ev("duration('1d') * 2") == Duration(days=2)
    assert ev("duration('1mo') + duration('1d')") == Duration(months=1, days=1)
    assert ev("duration('1d') - duration('2d')") == Duration(days=-1)
    assert ev("-duration('1d')") == Duration(days=-1)
    assert ev("duration('1d') > duration('2h')") is True
    assert ev("now - datetime('2026-03-01T10:00:00') < duration('1d')") is True  # a timedelta against a span
    assert ev("now + duration('1h')") == NOW + timedelta(hours=1)
    assert ev("now - datetime('2026-03-01T09:00:00')") == timedelta(days=1)
    assert ev("days(duration('36h'))") == 1.5
    assert ev("hours(duration('1d'))") == 24
    assert ev("hours(duration('-1d'))") == -24
    assert ev("days(client.address)") is None
    assert ev("max(duration('1d'), duration('20h'))") == timedelta(days=1)
    assert "expects a duration" in eval_error("hours(5)")
    assert eval_error("duration('1d') / 0") == "division by zero"


def test_months_have_no_fixed_length() -> None:
    assert ev("now - duration('2mo')") == datetime(2026, 1, 2, 9, 0, tzinfo=MSK)
    err = compile_error("now - datetime(client.last_visit_at) > duration('2mo')")
    assert err.message == "'2mo' cannot be compared as a length"
    assert err.hint == ("a month is 28 to 31 days; compare moments instead, "
                        "e.g. client.last_visit_at < now - duration('2mo')")
    assert compile_error("days(duration('1mo'))").message == "days() of '1mo': months have no fixed length"
    assert eval_error("days(x)", {"x": Duration(months=1)}) == (
        "'1mo' has no fixed length: a month is 28 to 31 days; compare moments instead, "
        "e.g. client.last_visit_at < now - duration('2mo')")
    assert "no fixed length" in eval_error("x > duration('1d')", {"x": Duration(months=1)})
    assert "no fixed length" in eval_error("x / 2", {"x": Duration(months=1)})
    assert ev("duration('1mo') == duration('1mo')") is True  # equal spans, no length needed


@pytest.mark.parametrize(("source", "message", "hint"), [
    ("days_since(client.last_visit_at) > duration('60d')", "days_since() gives a number of days, not a duration",
     "compare it with a number: days_since(client.last_visit_at) > 60"),
    ("hours_until(booking.starts_at) < duration('1d')", "hours_until() gives a number of hours, not a duration",
     "compare it with a number: hours_until(booking.starts_at) < 24"),
    ("duration('2mo') <= days_since(client.last_visit_at)", "days_since() gives a number of days, not a duration",
     "compare it with a number: N <= days_since(client.last_visit_at)"),
])
def test_a_count_of_days_is_compared_with_a_number(source: str, message: str, hint: str) -> None:
    err = compile_error(source)
    assert (err.message, err.hint) == (message, hint)
    assert eval_error("x > duration('1d')", {"x": 5}) == ("cannot compare 5 with a duration; days_since() and the like "
                                                          "give numbers: compare them with a number, or use days(...) "
                                                          "of the duration")


def test_negative_offsets_work_everywhere() -> None:
    back = NOW - timedelta(days=1)
    assert ev("add(now, '-1d')") == ev("now - duration('1d')") == ev("now + duration('-1d')") == back
    assert ev("add(now, -3600)") == NOW - timedelta(hours=1)
    assert ev("add(today, '-1mo')") == date(2026, 2, 2)
    assert ev("today - duration('7d')") == date(2026, 2, 23)
    assert ev("abs(duration('-2h'))") == Duration(seconds=7200)
    assert ev("add(client.last_visit_at, '-2h')") == datetime(2026, 2, 20, 8, 0, tzinfo=MSK)


def test_segments_delegate_to_the_context() -> None:
    ctx = EvalContext(now=NOW, tz=MSK, segment_of=lambda c: "vip" if c["visits"] > 2 else "new",
                      segment_avg_recency=lambda c: timedelta(days=30))
    assert ev("segment_of(client)", ctx=ctx) == "vip"
    assert ev("segment_avg_recency(client) * 2 / 3", ctx=ctx) == timedelta(days=20)
    assert ev("segment_of(client)") is None
    assert ev("segment_avg_recency(client)") is None
    assert ev("segment_of(client.address)", ctx=ctx) is None
    assert "empty value" in eval_error("segment_avg_recency(client) * 2 / 3")


@pytest.mark.parametrize("raw", ["8 916 123-45-67", "+7 (916) 123-45-67", "9161234567", "89161234567"])
def test_phone_normalises_to_e164(raw: str) -> None:
    assert ev("phone(x)", {"x": raw}) == "+79161234567"


def test_phone_rejects_non_numbers() -> None:
    assert eval_error("phone('123')") == "not a phone number: '123'"
    assert "not a phone number" in eval_error("phone('hello')")
    assert ev("phone(79161234567)") == "+79161234567"
    assert ev("phone(client.address)") is None


def test_fmt_date_and_fmt_time_in_the_project_timezone() -> None:
    assert ev("fmt_date('2026-03-01T22:30:00Z')") == "02.03.2026"
    assert ev("fmt_time('2026-03-01T22:30:00Z')") == "01:30"
    assert ev("fmt_date(now, 'DD.MM.YYYY HH:mm')") == "02.03.2026 09:00"
    assert ev("fmt_date(now, fmt='D MMMM, dddd')") == "2 марта, понедельник"
    assert ev("fmt_date(x, 'D MMMM YYYY')", {"x": date(2026, 12, 31)}) == "31 декабря 2026"
    assert ev("fmt_date(today)") == "02.03.2026"
    assert ev("fmt_date(client.address)") is None


@pytest.mark.parametrize(("source", "written"), [
    ("booking.starts_at - 1d", "1d"), ("now + 2h30m", "2h30m"), ("-1d", "-1d"), ("add(now, 2mo)", "2mo"),
])
def test_a_bare_duration_in_an_expression_is_told_how_to_write_it(source: str, written: str) -> None:
    assert compile_error(source).hint == f"in an expression a duration is written duration('{written}')"


def test_a_format_mistake_is_found_when_compiling_at_its_character() -> None:
    err = compile_error("fmt_date(now, 'DD.MM.YYYY HH:MM')")
    assert err.message == "date format 'DD.MM.YYYY HH:MM': 'MM' is the month, not minutes"
    assert err.offset == len("fmt_date(now, 'DD.MM.YYYY HH:")
    assert err.hint == "minutes are 'mm': write 'DD.MM.YYYY HH:mm'"
    assert compile_error("fmt_date(now, fmt='%H:%M')").hint == "write 'HH:mm'"
    assert compile_error("fmt_time(now, 'hh:mm')").hint == \
        "hours are HH (a 12-hour clock is not supported); write 'HH:mm'"
    assert ev("fmt_time(now, 'H:mm')") == "9:00"
    assert compile_error('fmt_date(now, "\\x44D.yyyy")').offset == len("fmt_date(now, ")  # escapes: at the text
    assert eval_error("fmt_date(now, x)", {"x": "%d.%m"}) == (
        "fmt_date(): '%d' is a strftime code; formats here use tokens such as DD.MM.YYYY; write 'DD.MM'")


def test_date_and_datetime_parse_to_the_project_timezone() -> None:
    assert ev("date('2026-03-02')") == date(2026, 3, 2)
    assert ev("date('2026-03-01T22:30:00Z')") == date(2026, 3, 2)
    assert ev("datetime('2026-03-02')") == datetime(2026, 3, 2, tzinfo=MSK)
    assert ev("datetime('2026-03-02T10:00:00')").utcoffset() == timedelta(hours=3)
    assert ev("today - date('2026-02-01')") == timedelta(days=29)
    assert ev("datetime(client.last_visit_at) < now") is True
    assert "not a date" in eval_error("date('2026-13-45')")
    assert ev("add(now, 3600)") == NOW + timedelta(hours=1)
    assert ev("add(client.address, '1d')") is None


def test_text_functions() -> None:
    assert ev("lower('АННА')") == "анна" and ev("upper(client.name)") == "АННА"
    assert ev("strip('  x ')") == "x" and ev("lower(client.address)") is None
    assert "expects a text" in eval_error("lower(1)")
    assert ev("len(client.tags)") == 2 and ev("len(client.name)") == 4 and ev("len(client.address)") == 0
    assert "len()" in eval_error("len(5)")
    assert ev("contains(client.tags, 'vip')") is True and ev("contains(client.name, 'нн')") is True
    assert ev("contains(client.address, 'x')") is False and ev("'vip' in client.tags") is True
    assert ev("startswith(client.phone, '8')") is True and ev("startswith(client.address, '8')") is False
    assert "expects two texts" in eval_error("startswith(client.tags, 'v')")


def test_number_functions() -> None:
    assert ev("round(2.567, 2)") == 2.57 and ev("round(2.5)") == 2 and ev("round(client.address)") is None
    assert ev("abs(-3)") == 3 and ev("abs(client.address)") is None
    assert ev("abs(now - add(now, '1h'))") == timedelta(hours=1)
    assert ev("min(3, 1, 2)") == 1 and ev("max([3, 1, 2])") == 3 and ev("min(client.address, 5)") == 5
    assert ev("max([])") is None
    assert "cannot compare" in eval_error("max(1, 'a')")
    assert ev("int('12')") == 12 and ev("int('3.7')") == 3 and ev("int(3.9)") == 3 and ev("int(client.address)") is None
    assert "not a number" in eval_error("int('abc')")
    assert ev("float('2.5')") == 2.5 and "not a number" in eval_error("float('x')")
    assert ev("str(5)") == "5" and ev("str(client.address)") == "" and ev("str(duration('90m'))") == "1h30m"
    assert ev("str(now)") == "2026-03-02T09:00:00+03:00"
    assert ev("bool(client.tags)") is True and ev("bool(client.address)") is False


def test_record_functions() -> None:
    assert ev("get(client, 'name')") == "Анна"
    assert ev("get(client, 'nope', 'друг')") == "друг" and ev("get(client, 'address', 'нет')") == "нет"
    assert ev("get(client.address, 'city')") is None and ev("get(client.tags, 1)") == "new"
    assert "expects a record" in eval_error("get(client.name, 'x')")
    assert ev("has(client, 'name')") is True and ev("has(client, 'address')") is False
    assert ev("has(client.address, 'city')") is False
    assert ev("coalesce(client.address, get(client, 'x'), client.name)") == "Анна" and ev("coalesce()") is None


def test_business_hours_delegate_to_the_context() -> None:
    calls: list[tuple[datetime, str | None]] = []

    def closes(at: datetime, branch: str | None) -> datetime:
        calls.append((at, branch))
        return at.replace(hour=21, minute=0)

    ctx = EvalContext(now=NOW, tz=MSK, end_of_day=closes, start_of_day=lambda at, b: at.replace(hour=9, minute=0))
    assert ev("end_of_day()", ctx=ctx) == datetime(2026, 3, 2, 21, 0, tzinfo=MSK)
    assert ev("end_of_day('2026-03-03T10:00:00', branch='main')", ctx=ctx).day == 3
    assert calls[-1][1] == "main" and type(calls[0][0]) is datetime
    assert ev("start_of_day(now)", ctx=ctx).hour == 9
    assert eval_error("end_of_day()") == "end_of_day() is not available: business hours are not configured"
    assert "start_of_day()" in eval_error("start_of_day()")


def test_condition_from_the_design() -> None:
    source = "days_since(client.last_visit_at) > 60 and not client.do_not_call"
    data = scope()
    assert ev(source, data) is False
    data["client"]["last_visit_at"] = "2025-12-01"
    assert ev(source, data) is True


# ------------------------------------------------------------------------------------------------ templates


def test_template_single_placeholder_returns_the_raw_value() -> None:
    assert compile_template("{{ client.visits }}", NAMES).render(scope(), CTX) == 3
    assert compile_template("  {{ client.tags }} ", NAMES).render(scope(), CTX) == ["vip", "new"]
    assert compile_template("{{ settings }}", NAMES).render(scope(), CTX) == scope()["settings"]
    assert compile_template("{{ client.address }}", NAMES).render(scope(), CTX) is None
    assert type(compile_template("{{ now }}", NAMES).render(scope(), CTX)) is datetime


def test_template_text_formats_each_value() -> None:
    tpl = compile_template("Реабилитация: {{ client.name }} ({{ client.visits }}), {{ client.address }}!",
                           NAMES)
    assert tpl.render(scope(), CTX) == "Реабилитация: Анна (3), !"
    assert compile_template("at {{ now }}", NAMES).render(scope(), CTX) == "at 2026-03-02T09:00:00+03:00"
    assert compile_template("{{ 4 / 2 }} {{ 1 / 4 }} {{ true }}", NAMES).render(scope(), CTX) == "2 0.25 true"
    assert compile_template("{{ client.tags }}.", NAMES).render(scope(), CTX) == '["vip", "new"].'
    assert compile_template("in {{ duration('2h') }}", NAMES).render(scope(), CTX) == "in 2h"
    assert compile_template("{{ today }}", NAMES).render(scope(), CTX) == date(2026, 3, 2)


def test_static_template_returns_itself() -> None:
    text = "Спасибо! { not a placeholder }"
    tpl = compile_template(text, NAMES)
    assert tpl.is_static and tpl.render(scope(), CTX) is text and tpl.names == frozenset()
    assert not compile_template("{{ 1 }}", NAMES).is_static
    assert compile_template("", NAMES).render(scope(), CTX) == ""


def test_template_braces_inside_quotes_and_literals() -> None:
    tpl = compile_template("{{ '}}' + client.name + '{{' }} and {{ {'a': {'b': 1}}['a'] }}", NAMES)
    assert tpl.render(scope(), CTX) == "}}Анна{{ and {\"b\": 1}"


@pytest.mark.parametrize(("source", "message", "offset"), [
    ("Hi }} there", "'}}' without a matching '{{'", 3),
    ("Hi {{ client.name", "'{{' is never closed", 3),
    ("Hi {{ client.name }} {{ x", "'{{' is never closed", 21),
    ("Hi {{ cliet.name }}", "unknown name 'cliet'", 6),
    ("Hi {{ }}", "empty expression", 5),
    ("{{ client.name }} {{ client.visits > > 1 }}", "invalid syntax", 37),
])
def test_template_errors_point_into_the_whole_template(source: str, message: str, offset: int) -> None:
    with pytest.raises(ExprSyntaxError) as info:
        compile_template(source, NAMES)
    assert info.value.message == message and info.value.offset == offset


def test_template_aggregates_names_and_fields() -> None:
    tpl = compile_template("{{ client.name }} {{ fmt_date(booking.starts_at) }} {{ client.name }}", NAMES)
    assert tpl.names == {"client", "booking", "fmt_date"}
    assert tpl.fields == (("client", "name"), ("booking", "starts_at"))
    assert len(tpl.parts) == 5


# ------------------------------------------------------------------------------------------------ plumbing


def test_suggest() -> None:
    assert suggest("cliet", ["client", "deal"]) == "client"
    assert suggest("Client", ["client"]) == "client"
    assert suggest("zzz", ["client"]) is None


def test_context_requires_an_aware_now() -> None:
    with pytest.raises(ValueError):
        EvalContext(now=datetime(2026, 3, 2, 9, 0), tz=MSK)


def test_evaluation_is_thread_safe() -> None:
    expr = compile_expr("client.visits * 2 + len(client.name)", NAMES)
    errors: list[str] = []

    def worker(n: int) -> None:
        for i in range(300):
            data = {"client": {"visits": n * 1000 + i, "name": "x" * n}}
            if expr.evaluate(data, CTX) != (n * 1000 + i) * 2 + n:
                errors.append(f"thread {n} iteration {i}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(1, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_a_callback_may_evaluate_another_expression() -> None:
    inner = compile_expr("client.visits > 2", NAMES)
    ctx = EvalContext(now=NOW, tz=MSK,
                      segment_of=lambda c: "vip" if inner.evaluate({"client": c}, CTX) else "new")
    assert ev("segment_of(client) + ':' + client.name", ctx=ctx) == "vip:Анна"
