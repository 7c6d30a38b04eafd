"""The expression function library as an admin meets it: `automator functions`, the README's reference, durations
that mean what `wait:` means, the date format language checked by validate, and a run that sees its own
`segment.recompute`."""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from cli_support import invoke
from automator import functions
from automator.clock import parse_duration
from automator.datefmt import TOKENS, FormatError, compile_format, format_date
from automator.expr import FUNCTIONS, REFERENCE, EvalContext, compile_expr

ROOT = Path(__file__).resolve().parents[1]
BERLIN = ZoneInfo("Europe/Berlin")
EXAMPLES = [(f.name, expression, value) for f in REFERENCE.values() for expression, value in f.examples]


# ------------------------------------------------------------------------------------------------ the reference


def test_every_function_has_a_signature_a_description_and_an_example() -> None:
    assert set(REFERENCE) == set(FUNCTIONS)
    for name, doc in REFERENCE.items():
        assert doc.signature.split("(")[0] == name and doc.doc and doc.examples, name
        assert FUNCTIONS[name] == f"{doc.signature}: {doc.doc}"


@pytest.mark.parametrize(("name", "expression", "value"), EXAMPLES, ids=[e for _, e, _ in EXAMPLES])
def test_every_example_gives_its_stated_value(name: str, expression: str, value: str) -> None:
    assert name in compile_expr(expression, functions.EXAMPLE_SCOPE).names or name in ("now", "today")
    assert functions.evaluate_example(expression) == value


def test_the_readme_reference_is_the_generated_one() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(r"<!-- functions:start[^>]*-->\n(.*?)\n<!-- functions:end -->", readme, re.S)
    assert found, "README lacks the functions block"
    assert found.group(1) == functions.as_markdown(), "regenerate it with `automator functions --format markdown`"
    assert "… |" not in readme.split("### The language")[1].split("## The CLI")[0]


def test_the_functions_command_lists_everything() -> None:
    code, out = invoke("functions")
    assert code == 0
    for doc in REFERENCE.values():
        assert f"\n{doc.signature}\n    {doc.doc}\n" in out
    assert "    fmt_date(booking.starts_at, 'D MMMM, dddd, [в] HH:mm')  →  '5 марта, четверг, в 15:00'" in out
    assert "    MMMM  март" in out
    code, out = invoke("functions", "--format", "json")
    data = json.loads(out)
    assert code == 0 and [f["name"] for f in data["functions"]] == sorted(FUNCTIONS)
    days_since = next(f for f in data["functions"] if f["name"] == "days_since")
    assert days_since == {"name": "days_since", "signature": "days_since(x)",
                          "description": "calendar days (fractional) from x to now; empty if x is empty",
                          "examples": [{"expression": "days_since(client.last_visit_at)", "value": "10"}]}
    assert {"token": "DD", "description": "day of the month, two digits", "example": "02"} \
        in data["date_format_tokens"]
    code, out = invoke("functions", "--format", "markdown")
    assert code == 0 and out == functions.as_markdown() + "\n"
    code, out = invoke("functions", "--help")
    assert "Example: automator functions --format json" in out


# ------------------------------------------------------------------------------------------------ durations

START = [datetime(2026, 3, 28, 10, 0, tzinfo=BERLIN),   # the night before spring-forward
         datetime(2026, 10, 24, 2, 30, tzinfo=BERLIN),  # a wall time that repeats the next night
         datetime(2026, 1, 31, 9, 0, tzinfo=BERLIN),    # a month later is 28 February
         datetime(2026, 3, 29, 1, 30, tzinfo=BERLIN)]   # an hour later is inside the gap
SPANS = ["30s", "90m", "1h", "24h", "1d", "1d12h", "14d", "2w", "1mo", "2mo", "1mo2w", "3600"]


@pytest.mark.parametrize("start", START, ids=lambda s: s.isoformat())
@pytest.mark.parametrize("text", SPANS)
def test_expressions_and_wait_reach_the_same_instant(start: datetime, text: str) -> None:
    """`wait: X` (clock's Duration.add_to, as the wait step schedules it) and every way an expression adds X.

    Instants are compared in UTC: Python never finds a fold=1 wall time equal to a time in another zone."""
    waited = parse_duration(text).add_to(start, BERLIN)
    ctx = EvalContext(now=start, tz=BERLIN)

    def instant(source: str) -> datetime:
        return compile_expr(source, ()).evaluate({}, ctx).astimezone(timezone.utc)

    for source in (f"now + duration('{text}')", f"duration('{text}') + now", f"add(now, '{text}')",
                   f"now - duration('-{text}')", f"add(now, duration('{text}'))"):
        assert instant(source) == waited, source
    back = instant(f"add(now, '-{text}')")
    assert back == instant(f"now - duration('{text}')") and back < start


def test_a_wait_for_an_expression_duration_is_calendar_time(make_project) -> None:  # type: ignore[no-untyped-def]
    project = make_project("""\
        rules:
          - id: r
            when: {event: nps.received}
            do:
              - wait: {for: "duration('1mo')"}
              - notify: {to: admin, text: "{{ fmt_date(now, 'D MMMM HH:mm') }}"}
              - wait: 1mo
              - notify: {to: admin, text: "{{ fmt_date(now, 'D MMMM HH:mm') }}"}
        """, tz="Europe/Berlin")
    (project / "rules" / "r.test.yaml").write_text(
        "now: 2026-01-31T10:00:00+01:00\nwhen: [{event: nps.received}, {advance: 70d}]\n"
        "expect:\n"
        "  - {action: notify, params: {text: 28 февраля 10:00}, count: 1, after: 2026-02-28T10:00:00+01:00,\n"
        "     before: 2026-02-28T10:00:00+01:00}\n"
        "  - {action: notify, params: {text: 28 марта 10:00}, count: 1}\n")
    code, out = invoke("test", str(project))
    assert code == 0, out


# ------------------------------------------------------------------------------------------------ date formats


def test_the_tokens_print_their_documented_examples() -> None:
    moment = datetime(2026, 3, 2, 9, 5, 7, tzinfo=ZoneInfo("Europe/Moscow"))
    for token in TOKENS.values():
        assert format_date(moment, token.text) == token.example, token.text
    assert format_date(moment, "D MMMM") == "2 марта" and format_date(moment, "MMMM YYYY") == "март 2026"
    assert format_date(moment, "dddd, DD.MM.YYYY [в] H:mm") == "понедельник, 02.03.2026 в 9:05"
    assert format_date(moment.date(), "DD.MM.YYYY HH:mm") == "02.03.2026 00:00"


@pytest.mark.parametrize(("fmt", "index", "message", "hint"), [
    ("HH:MM", 3, "'MM' is the month, not minutes", "minutes are 'mm': write 'HH:mm'"),
    ("DD.mm.YYYY", 3, "'mm' is minutes, not the month", "the month is 'MM': write 'DD.MM.YYYY'"),
    ("YYYY-mm-DD", 5, "'mm' is minutes, not the month", "the month is 'MM': write 'YYYY-MM-DD'"),
    ("D MMMM [в] H:MM", 13, "'MM' is the month, not minutes", "minutes are 'mm': write 'D MMMM в H:mm'"),
    ("%d.%m.%Y %H:%M", 0, "'%d' is a strftime code; formats here use tokens such as DD.MM.YYYY",
     "write 'DD.MM.YYYY HH:mm'"),
    ("dd.MM.yyyy", 0, "'dd' is not a date format token",
     "the day of the month is DD (ddd is the weekday); write 'DD.MM.YYYY'"),
    ("DD.MM.yyyy", 6, "'yyyy' is not a date format token", "'yyyy' is written 'YYYY' here; write 'DD.MM.YYYY'"),
    ("hh:mm", 0, "'hh' is not a date format token",
     "hours are HH (a 12-hour clock is not supported); write 'HH:mm'"),
    ("YYYY-MM-DDTHH:mm", 10, "unknown date format letters 'T'", None),
    ("HH:mm UTC", 6, "unknown date format letters 'UTC'", None),
    ("[в HH:mm", 0, "'[' is never closed", "close literal text with ']', e.g. '[в] HH:mm'"),
])
def test_format_mistakes_name_the_place_and_the_token_to_write(fmt: str, index: int, message: str,
                                                               hint: str | None) -> None:
    with pytest.raises(FormatError) as info:
        compile_format(fmt)
    assert (info.value.index, info.value.message) == (index, message)
    bracketed = "[" + message.split("'")[1] + "]"
    assert info.value.hint == hint if hint else info.value.hint.endswith(f"put other text in brackets: '{bracketed}'")


def test_validate_reports_date_and_duration_mistakes_in_place(make_project) -> None:  # type: ignore[no-untyped-def]
    project = make_project("""\
        rules:
          - id: remind
            when: {event: booking.created}
            if: "now - datetime(booking.created_at) > duration('2mo')"
            do:
              - wait: -1d
              - wait: -60
              - sms.send: {to: "{{ client.phone }}", text: "Ждём вас {{ fmt_date(booking.starts_at, 'HH:MM') }}"}
              - sms.send:
                  to: "{{ client.phone }}"
                  text: "{{ fmt_date(booking.starts_at, '%d.%m.%Y') }}"
              - wait: {until: "add(booking.starts_at, '1 day')"}
              - set: {hours: "{{ hours(duration('1mo')) }}"}
              - wait: {for: "duration('-1d')"}
        """)
    code, out = invoke("validate", str(project))
    assert code == 1
    assert out.replace(f"{project}/", "").splitlines()[:-1] == [
        "rules/rules.yaml:4:9: error: expression \"now - datetime(booking.created_at) > duration('2mo')\": "
        "'2mo' cannot be compared as a length",
        "    hint: a month is 28 to 31 days; compare moments instead, e.g. client.last_visit_at < now - duration('2mo')",
        "rules/rules.yaml:6:15: error: wait: expected a duration such as 30s, 5m, 2h, 14d, 2w or 2mo, got '-1d'",
        "    hint: durations never go back; to act before a moment, wait until it: "
        "{until: \"add(booking.starts_at, '-1d')\"}",
        "rules/rules.yaml:7:15: error: wait: expected a duration such as 30s, 5m, 2h, 14d, 2w or 2mo, got '-60'",
        "    hint: durations never go back; to act before a moment, wait until it: "
        "{until: \"add(booking.starts_at, '-1d')\"}",
        "rules/rules.yaml:8:52: error: template \"Ждём вас {{ fmt_date(booking.starts_at, 'HH:MM') }}\": "
        "date format 'HH:MM': 'MM' is the month, not minutes",
        "    hint: minutes are 'mm': write 'HH:mm'",
        "rules/rules.yaml:11:17: error: template \"{{ fmt_date(booking.starts_at, '%d.%m.%Y') }}\": date format "
        "'%d.%m.%Y': '%d' is a strftime code; formats here use tokens such as DD.MM.YYYY",
        "    hint: write 'DD.MM.YYYY'",
        "rules/rules.yaml:12:23: error: expression \"add(booking.starts_at, '1 day')\": bad duration '1 day': "
        "unknown unit 'day' in '1 day'; write '1d'",
        "    hint: durations look like 30s, 5m, 2h, 14d, 2w or 2mo; '-1d' goes back a day",
        "rules/rules.yaml:13:22: error: template \"{{ hours(duration('1mo')) }}\": hours() of '1mo': months have "
        "no fixed length",
        "    hint: a month is 28 to 31 days; compare moments instead, e.g. client.last_visit_at < now - duration('2mo')",
        "rules/rules.yaml:14:21: error: `wait: {for: duration('-1d')}` is not a positive duration",
        "    hint: a wait never goes back; to act before a moment, wait until it: "
        "{until: \"add(booking.starts_at, '-1d')\"}",
    ]


def test_negative_offsets_and_formats_work_in_a_real_run(make_project) -> None:  # type: ignore[no-untyped-def]
    project = make_project("""\
        rules:
          - id: remind
            when: {event: booking.created}
            do:
              - wait: {until: "add(booking.starts_at, '-1d')"}
              - sms.send:
                  to: "{{ client.phone }}"
                  text: "Ждём вас {{ fmt_date(booking.starts_at, 'D MMMM [в] HH:mm') }}"
        """)
    (project / "rules" / "remind.test.yaml").write_text("""\
now: 2026-03-02T10:00:00+03:00
given:
  - {kind: client, id: 7, phone: "+79161234567"}
  - {kind: booking, id: 1, client: 7, starts_at: "2026-03-05T15:00:00+03:00"}
when:
  - {event: booking.created, entity: {kind: booking, id: 1}, data: {client: 7, starts_at: "2026-03-05T15:00:00+03:00"}}
  - {advance: 5d}
expect:
  - {action: sms.send, params: {text: Ждём вас 5 марта в 15:00}, count: 1,
     after: 2026-03-04T15:00:00+03:00, before: 2026-03-04T15:00:00+03:00}
""", encoding="utf-8")
    code, out = invoke("test", str(project))
    assert code == 0, out


# ------------------------------------------------------------------------------------------------ recompute


SEGMENTS = """\
    rfm:
      window: 365d
      recency: [14, 30, 60, 120]
      frequency: [5, 4, 3, 2]
      monetary: [50000, 20000, 10000, 5000]
    segments:
      loyal: {when: "f >= 4", category: Постоянный}
      newcomers: {when: "true", category: Новый}
    """


def test_steps_after_segment_recompute_see_the_new_segment(make_project) -> None:  # type: ignore[no-untyped-def]
    project = make_project("""\
        rules:
          - id: visit
            when: {changed: booking.status, to: arrived}
            do:
              - segment.recompute: {client: "{{ client.id }}"}
              - notify:
                  to: admin
                  text: "{{ segment_of(client) }} {{ days(segment_avg_recency(client)) }} {{ client.segment }}"
              - wait: {for: "segment_avg_recency(client) * 2"}
              - notify: {to: admin, text: "back {{ segment_of(client) }}"}
        """, segments=SEGMENTS)
    (project / "rules" / "visit.test.yaml").write_text("""\
now: 2026-03-02T10:00:00+03:00
given:
  # Борис, a newcomer until this visit: five visits make him loyal.
  - {kind: client, id: 1, name: Борис, segment: newcomers}
  - {kind: visit, client: 1, at: 2025-11-01T10:00:00+03:00, amount: "200.00"}
  - {kind: visit, client: 1, at: 2025-12-01T10:00:00+03:00, amount: "200.00"}
  - {kind: visit, client: 1, at: 2026-01-01T10:00:00+03:00, amount: "200.00"}
  - {kind: visit, client: 1, at: 2026-02-01T10:00:00+03:00, amount: "200.00"}
  - {kind: visit, client: 1, at: 2026-02-20T10:00:00+03:00, amount: "200.00"}
  # The loyal segment's clients come back every 12.5 days; the newcomers (Борис too, so far) every 43.875.
  - {kind: client, id: 2, segment: loyal}
  - {kind: visit, client: 2, at: 2025-12-01T10:00:00+03:00, amount: "100.00"}
  - {kind: visit, client: 2, at: 2025-12-10T10:00:00+03:00, amount: "100.00"}
  - {kind: visit, client: 2, at: 2025-12-20T10:00:00+03:00, amount: "100.00"}
  - {kind: visit, client: 2, at: 2026-01-10T10:00:00+03:00, amount: "100.00"}
  - {kind: visit, client: 2, at: 2026-01-20T10:00:00+03:00, amount: "100.00"}
  - {kind: client, id: 3, segment: newcomers}
  - {kind: visit, client: 3, at: 2025-12-01T10:00:00+03:00, amount: "100.00"}
  - {kind: visit, client: 3, at: 2026-01-30T10:00:00+03:00, amount: "100.00"}
  - {kind: booking, id: 10, client: 1, status: confirmed}
tests:
  - name: the steps after the recompute read the client's new segment
    when:
      - {event: booking.updated, entity: {kind: booking, id: 10}, data: {status: arrived}}
      - {advance: 30d}
    expect:
      - {action: notify, params: {text: loyal 12.5 loyal}, count: 1}
      - {action: notify, params: {text: back loyal}, count: 1,
         after: 2026-03-27T10:00:00+03:00, before: 2026-03-27T10:00:00+03:00}
""", encoding="utf-8")
    code, out = invoke("test", str(project))
    assert code == 0, out
