"""Daemon logging: JSON and text lines, extras, and personal data masked unless asked not to."""
from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Callable, Iterator

import pytest

from automator.daemon.logs import mask_text, mask_value, setup_logging

LOGGERS = ("automator", "uvicorn", "uvicorn.error", "uvicorn.access")


@pytest.fixture(autouse=True)
def restore_loggers() -> Iterator[None]:
    # setup_logging changes process-wide loggers; later tests (caplog) must find them as they were.
    saved = {n: (lg.handlers[:], lg.level, lg.propagate) for n in LOGGERS for lg in [logging.getLogger(n)]}
    yield
    for name, (handlers, level, propagate) in saved.items():
        lg = logging.getLogger(name)
        lg.handlers[:], lg.level, lg.propagate = handlers, level, propagate


@pytest.fixture
def capture() -> Callable[..., io.StringIO]:
    def setup(fmt: str = "json", **kw: object) -> io.StringIO:
        stream = io.StringIO()
        setup_logging(fmt, stream=stream, **kw)  # type: ignore[arg-type]
        return stream
    return setup


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_parse_and_carry_extras(capture: Callable[..., io.StringIO]) -> None:
    out = capture("json")
    log = logging.getLogger("automator.daemon")
    log.info("accepted %s", "evt-1", extra={"event_id": "evt-1", "connector": "crm", "rule": "welcome"})
    log.warning("effect failed", extra={"run_id": 42, "effect": {"action": "sms.send"}})
    first, second = lines(out)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["ts"])
    assert first | {"ts": None} == {"ts": None, "level": "INFO", "logger": "automator.daemon", "msg": "accepted evt-1",
                                   "event_id": "evt-1", "connector": "crm", "rule": "welcome"}
    assert second["level"] == "WARNING" and second["run_id"] == 42 and second["effect"] == {"action": "sms.send"}


def test_text_format(capture: Callable[..., io.StringIO]) -> None:
    out = capture("text")
    logging.getLogger("automator.daemon").info("run done", extra={"run_id": "r1", "rule": "welcome", "n": 3,
                                                                  "note": "two words"})
    line = out.getvalue().rstrip("\n")
    assert re.fullmatch(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO automator\.daemon: run done '
                        r'run_id=r1 rule=welcome n=3 note="two words"', line), line


def test_level_filters_and_uvicorn_goes_to_the_same_handler(capture: Callable[..., io.StringIO]) -> None:
    out = capture("json", level="warning")
    logging.getLogger("automator.daemon").info("hidden")
    logging.getLogger("uvicorn.access").info("GET / 200")
    logging.getLogger("uvicorn.error").warning("shutting down", extra={"color_message": "\x1b[1mshutting\x1b[0m"})
    assert lines(out) == [{"ts": lines(out)[0]["ts"], "level": "WARNING", "logger": "uvicorn.error",
                           "msg": "shutting down"}]


def test_setting_up_twice_does_not_double_lines(capture: Callable[..., io.StringIO]) -> None:
    capture("json")
    out = capture("json")
    logging.getLogger("automator").info("once")
    assert len(lines(out)) == 1


@pytest.mark.parametrize("phone, masked", [
    ("+79161234567", "+7916*****67"),
    ("8 916 123-45-67", "8 9** ***-**-67"),
    ("+7 (916) 123-45-67", "+7 (9**) ***-**-67"),
    ("89161234567", "89*******67"),
    ("8(916)123-45-67", "8(9**)***-**-67"),
])
def test_phones_are_masked_in_msg_and_extras(capture: Callable[..., io.StringIO], phone: str, masked: str) -> None:
    assert mask_text(f"call {phone}, please") == f"call {masked}, please"
    for fmt in ("json", "text"):
        out = capture(fmt)
        logging.getLogger("automator").info("sms to %s", phone, extra={"phone": phone, "to": [{"tel": phone}]})
        text = out.getvalue()
        assert phone not in text and phone.replace(" ", "") not in text
        if fmt == "json":
            (line,) = lines(out)
            assert line["msg"] == f"sms to {masked}" and line["phone"] == masked and line["to"] == [{"tel": masked}]


@pytest.mark.parametrize("text", [
    "deal 1001 moved", "amount 1500.00 RUB", "sum 2500000", "at 2026-12-01T06:00:00.123Z",
    "at 2026-12-01 06:00:00", "on 01.12.2026 at 06:00", "uuid 550e8400-e29b-41d4-a716-446655440000",
    "at 2026-12-01 06:00:00+03:00",
])
def test_ids_amounts_dates_are_not_masked(text: str) -> None:
    assert mask_text(text) == text


def test_mask_value_recurses_and_keeps_short_numbers() -> None:
    value = {"deal_id": 1001, "amount": 1500.5, "phone": 79161234567, "ok": True,
             "client": {"First_Name": "Анна", "lastName": "Петрова", "items": [{"fio": " Иванов Иван"}]},
             "contacts": ({"contact_name": "Boris", "phone": "+79161234567"},), "name": None}
    assert mask_value(value) == {
        "deal_id": 1001, "amount": 1500.5, "phone": "79*******67", "ok": True,
        "client": {"First_Name": "А***", "lastName": "П***", "items": [{"fio": "И***"}]},
        "contacts": [{"contact_name": "B***", "phone": "+7916*****67"}], "name": None}


def test_names_are_masked_in_nested_extras(capture: Callable[..., io.StringIO]) -> None:
    out = capture("json")
    logging.getLogger("automator").info("booked", extra={"client_name": "Анна",
                                                         "client": {"name": "Анна", "surname": "Петрова"}})
    (line,) = lines(out)
    assert line["client_name"] == "А***" and line["client"] == {"name": "А***", "surname": "П***"}


def test_mask_false_leaves_personal_data(capture: Callable[..., io.StringIO]) -> None:
    out = capture("json", mask=False)
    logging.getLogger("automator").info("sms to +79161234567", extra={"client": {"name": "Анна"}})
    (line,) = lines(out)
    assert line["msg"] == "sms to +79161234567" and line["client"] == {"name": "Анна"}


def test_exceptions_carry_exc(capture: Callable[..., io.StringIO]) -> None:
    for fmt in ("json", "text"):
        out = capture(fmt)
        try:
            raise RuntimeError("no answer from +79161234567")
        except RuntimeError:
            logging.getLogger("automator").exception("effect failed", extra={"effect": "e1"})
        text = out.getvalue()
        assert "+79161234567" not in text and "+7916*****67" in text
        if fmt == "json":
            (line,) = lines(out)
            assert line["exc"].startswith("Traceback") and "RuntimeError" in line["exc"]
        else:
            assert text.splitlines()[0].endswith("effect failed effect=e1") and "Traceback" in text


def test_bad_format_or_level_is_refused() -> None:
    with pytest.raises(ValueError):
        setup_logging("xml")
    with pytest.raises(ValueError):
        setup_logging("json", "LOUD")


@pytest.mark.parametrize("message, masked", [
    ('bitrix24 contact: HTTP 400 \'{"NAME": "Анна", "LAST_NAME": "Петрова", "PHONE": "+79161234567"}\'',
     'bitrix24 contact: HTTP 400 \'{"NAME": "А***", "LAST_NAME": "П***", "PHONE": "+7916*****67"}\''),
    ("could not decide Event(data={'client_name': 'Анна Петрова', 'stage_name': 'won'})",
     "could not decide Event(data={'client_name': 'А***', 'stage_name': 'won'})"),
    ("sent fields[NAME]=Анна&fields[SECOND_NAME]=Ивановна&fields[ID]=7",
     "sent fields[NAME]=А***&fields[SECOND_NAME]=И***&fields[ID]=7"),
    ("client firstName=Анна Петрова arrived", "client firstName=А*** arrived"),
    ("no connector named 'crm'; stage_name='won', filename=a.yaml", "no connector named 'crm'; stage_name='won', filename=a.yaml"),
])
def test_names_in_free_text_are_masked(capture: Callable[..., io.StringIO], message: str, masked: str) -> None:
    for fmt in ("json", "text"):
        out = capture(fmt)
        logging.getLogger("automator.daemon.outbox").warning("%s", message)
        text = out.getvalue()
        if fmt == "json":
            assert lines(out)[0]["msg"] == masked
        else:
            assert text.rstrip("\n").endswith(f"automator.daemon.outbox: {masked}")


def test_a_name_given_as_a_field_is_masked_in_the_message_and_traceback(capture: Callable[..., io.StringIO]) -> None:
    for fmt in ("json", "text"):
        out = capture(fmt)
        try:
            raise ValueError("template failed for Анна Петрова")
        except ValueError:
            logging.getLogger("automator").exception("Анна Петрова: sms not sent to Анна",
                                                     extra={"client": {"fio": "Анна Петрова", "id": 7}})
        text = out.getvalue()
        assert "Анна" not in text and "Петрова" not in text
        if fmt == "json":
            (line,) = lines(out)
            assert line["msg"] == "А***: sms not sent to А***" and line["client"] == {"fio": "А***", "id": 7}
            assert line["exc"].endswith("ValueError: template failed for А***")


def test_every_name_key_is_found_in_free_text() -> None:
    from automator.daemon.logs import NAME_KEYS

    for key in NAME_KEYS:
        assert mask_text(f"{key}=Анна, {key.upper()}: 'Анна'") == f"{key}=А***, {key.upper()}: 'А***'", key


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_plain_fields_of_a_line_are_masked_as_the_rest(capture: Callable[..., io.StringIO], fmt: str) -> None:
    # The formatter skips the substitutions for texts that hold no phone nor name key, and writes ints under a
    # billion as they are: whatever holds one must still be masked, in flat fields as in nested ones.
    out = capture(fmt)
    logging.getLogger("automator.work").info("effect %s %s", "sms.send", "done", extra={
        "to": "+7 (916) 123-45-67", "error": "HTTP 400: {'Client_Name': 'Анна'}", "tries": 79161234567,
        "amount": 999999999, "event_id": "hook:9f3a1c0b7e2d4a5b6c8d", "note": "FIO=Иванов"})
    text = out.getvalue()
    for secret in ("123-45", "Анна", "1234567", "Иванов"):
        assert secret not in text, (secret, text)
    assert "999999999" in text and "hook:9f3a1c0b7e2d4a5b6c8d" in text


def test_the_timestamp_is_the_records_moment_in_utc(capture: Callable[..., io.StringIO]) -> None:
    out = capture("json")
    log = logging.getLogger("automator.daemon")
    for created in (1764568800.0, 1764568800.9996, 1764568801.25):  # the same second, then the next
        record = log.makeRecord("automator.daemon", logging.INFO, __file__, 0, "tick", (), None)
        record.created = created
        log.handle(record)
    assert [line["ts"] for line in lines(out)] == [
        "2025-12-01T06:00:00.000Z", "2025-12-01T06:00:00.999Z", "2025-12-01T06:00:01.250Z"]
