"""Entities' dates and times are datetimes in expressions, and the envelope of an event is never its data.

Through `automator test` on real files: what validate now passes (`booking.starts_at - duration('2h')`) also
runs, and what leaves the engine (params, emitted data) carries ISO text with the project's offset.
"""
from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from click.testing import CliRunner

from automator.catalogue import CORE
from automator.cli import cli
from automator.core.scope import event_view, typed
from automator.model import EntityRef, Event

MSK = ZoneInfo("Europe/Moscow")


def run_tests(project: Path) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["test", str(project), "-v"])
    return result.exit_code, result.output


def test_a_booking_reminder_two_hours_before_its_start(make_project) -> None:  # type: ignore[no-untyped-def]
    project = make_project("""\
        rules:
          - id: reminder
            when: {event: booking.created}
            if: ["booking.starts_at > now", "days_until(booking.starts_at) < 2"]
            do:
              - wait: {until: "booking.starts_at - duration('2h')"}
              - sms.send: {to: "{{ client.phone }}", text: "Ждём вас в {{ fmt_time(booking.starts_at) }}, {{ date(booking.starts_at) }}"}
              - http.request: {method: POST, url: "https://example.com/hook", json: {at: "{{ booking.starts_at }}", born: "{{ client.birth_date }}"}}
              - emit: {event: visit.soon, data: {at: "{{ booking.starts_at }}"}}
          - id: soon
            when: {event: visit.soon}
            do:
              - notify: {to: admin, text: "{{ event.at }}"}
        """, config=None)
    (project / "automator.yaml").write_text((project / "automator.yaml").read_text().replace(
        "  sms: {type: local}\n", "  sms: {type: local}\n  api: {type: http, allow: [example.com]}\n"))
    (project / "rules" / "reminder.test.yaml").write_text("""\
now: 2026-03-02T09:00:00+03:00
given:
  - {kind: client, id: 77, name: Анна, phone: "+79161234567", birth_date: "1990-05-01"}
when:
  - {event: booking.created, entity: {kind: booking, id: 1001},
     data: {client: 77, status: confirmed, starts_at: "2026-03-02T12:00:00Z"}}
  - {advance: 1d}
expect:
  - {action: sms.send, params: {text: "Ждём вас в 15:00, 2026-03-02"}, count: 1,
     after: 2026-03-02T13:00:00+03:00, before: 2026-03-02T13:00:00+03:00}
  - {action: http.request, params: {json: {at: "2026-03-02T15:00:00+03:00", born: "1990-05-01"}}, count: 1}
  - {action: notify, params: {text: "2026-03-02T13:00:00+03:00"}, count: 1}
""")
    code, out = run_tests(project)
    assert (code, out.splitlines()[-1]) == (0, "1 passed, 0 failed"), out


def test_dates_and_times_reach_expressions_typed_by_the_catalogue() -> None:
    from automator.catalogue import parse

    catalogue = CORE.merged(parse({"entities": {"booking": {"starts_at": "datetime", "note": "text"},
                                                "client": {"birth_date": "date"}}}, "test", "test"))
    booking = typed("booking", {"starts_at": "2026-03-02T12:00:00Z", "note": "2026-03-02"}, catalogue, MSK)
    assert booking == {"starts_at": datetime(2026, 3, 2, 15, 0, tzinfo=MSK), "note": "2026-03-02"}
    assert str(booking["starts_at"].tzinfo) == "Europe/Moscow"
    # A naive text is the project's local time; a value that is not a date stays for the expression to report.
    assert typed("booking", {"starts_at": "2026-03-02T15:00"}, catalogue, MSK)["starts_at"] == \
           datetime(2026, 3, 2, 15, 0, tzinfo=MSK)
    assert typed("booking", {"starts_at": "soon"}, catalogue, MSK) == {"starts_at": "soon"}
    assert typed("client", {"birth_date": "1990-05-01"}, catalogue, MSK) == {"birth_date": date(1990, 5, 1)}


def test_the_envelope_is_never_shadowed_by_data_nor_shadows_it() -> None:
    """event.source, event.id, event.entity are the envelope's; data of those names is event.data.<name>."""
    event = Event(id="crm:1", type="lead.created", at=datetime(2026, 3, 2, 9, 0, tzinfo=MSK), entity=None,
                  data={"source": "instagram", "id": "L-5", "entity": "lead", "type": "hot", "score": 7},
                  source="crm")
    view = event_view(event, CORE, MSK)
    assert (view["source"], view["id"], view["entity"], view["type"]) == ("crm", "crm:1", None, "lead.created")
    assert view["data"] == {"source": "instagram", "id": "L-5", "entity": "lead", "type": "hot", "score": 7}
    assert view["score"] == 7 and view["at"] == datetime(2026, 3, 2, 9, 0, tzinfo=MSK)
    booked = event_view(Event(id="e", type="booking.created", at=event.at, entity=EntityRef("booking", "1")), CORE,
                        MSK)
    assert booked["entity"] == {"kind": "booking", "id": "1"}
