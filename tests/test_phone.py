"""automator.phone: the policy table (each class of input under each reading and policy), and the six callers'
choices, so a caller that changes what it accepts changes it here, on purpose."""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from automator.expr import EvalContext, EvalError, compile_expr
from automator.phone import Policy, Reading, to_e164
from automator_connectors.amocrm.mapping import e164 as amocrm_e164
from automator_connectors.bitrix24.mapping import e164 as bitrix24_e164
from automator_connectors.sms import normalize_phone
from automator_connectors.telegram.mapping import e164 as telegram_e164
from automator_connectors.yclients.mapping import to_e164 as yclients_e164

WRITTEN_VALID = (Reading.AS_WRITTEN, Policy.VALID)
WRITTEN_POSSIBLE = (Reading.AS_WRITTEN, Policy.POSSIBLE)
DIGITS_POSSIBLE = (Reading.DIGITS, Policy.POSSIBLE)
INTERNATIONAL_POSSIBLE = (Reading.INTERNATIONAL, Policy.POSSIBLE)
CHOICES = [WRITTEN_VALID, WRITTEN_POSSIBLE, DIGITS_POSSIBLE, INTERNATIONAL_POSSIBLE]
RU = "+79161234567"

# input class, text, then E.164 (or None) under each of CHOICES, in order.
TABLE: list[tuple[str, str, tuple[str | None, ...]]] = [
    ("+7 with punctuation", "+7 (916) 123-45-67", (RU, RU, RU, RU)),
    ("7 without the plus", "79161234567", (RU, RU, RU, RU)),
    ("Russian 8 trunk prefix", "8 916 123-45-67", (RU, RU, RU, None)),
    ("ten-digit local number", "9161234567", (RU, RU, RU, "+9161234567")),
    ("8-800 free phone", "8 800 555-35-35", ("+78005553535", "+78005553535", "+78005553535", "+8805553535")),
    ("Kazakh number, 8 prefix", "8 701 123 4567", ("+77011234567", "+77011234567", "+77011234567", None)),
    ("another country with +", "+380 50 123 45 67", ("+380501234567",) * 4),
    ("another country, digits only", "380501234567", (None, None, "+380501234567", "+380501234567")),
    ("US with +", "+1 212 555 0123", ("+12125550123",) * 4),
    ("unassigned range +7 0xx", "+7 016 123-45-67", (None, "+70161234567", "+70161234567", "+70161234567")),
    ("too short", "+7 916 123", (None, None, None, None)),
    ("three digits", "123", (None, None, None, None)),
    ("too long", "+7 916 123-45-67-89", (None, None, None, None)),
    ("extension доб.", "+7 916 123-45-67 доб. 12", (RU, RU, None, RU)),
    ("extension ext.", "8 916 123 45 67 ext. 5", (RU, RU, None, None)),
    ("vanity letters", "+7 916 CALL-NOW", ("+79162255669", "+79162255669", None, "+79162255669")),
    ("words", "hello", (None, None, None, None)),
    ("two numbers", "8 916 123-45-67, 8 916 765-43-21", (None, None, None, None)),
    ("empty", "", (None, None, None, None)),
    ("blank", "   ", (None, None, None, None)),
]


@pytest.mark.parametrize(("choice", "position"), [(c, i) for i, c in enumerate(CHOICES)],
                         ids=[f"{r.value}-{p.value}" for r, p in CHOICES])
@pytest.mark.parametrize(("text", "expected"), [(text, want) for _, text, want in TABLE],
                         ids=[case for case, _, _ in TABLE])
def test_the_policy_table(text: str, expected: tuple[str | None, ...], choice: tuple[Reading, Policy],
                          position: int) -> None:
    reading, policy = choice
    assert to_e164(text, policy=policy, region="RU", reading=reading) == expected[position]


def test_the_region_reads_numbers_without_a_country_code() -> None:
    assert to_e164("030 1234567", policy=Policy.VALID, region="DE") == "+49301234567"
    assert to_e164("030 1234567", policy=Policy.VALID, region="RU") is None
    # The 8 trunk prefix of digits-only text is Russia's and Kazakhstan's, not everyone's.
    assert to_e164("87011234567", policy=Policy.POSSIBLE, region="KZ", reading=Reading.DIGITS) == "+77011234567"
    assert to_e164("87011234567", policy=Policy.POSSIBLE, region="DE", reading=Reading.DIGITS) is None


def test_an_international_reading_ignores_the_region() -> None:
    for region in ("RU", "DE", "US"):
        assert to_e164("79161234567", policy=Policy.POSSIBLE, region=region, reading=Reading.INTERNATIONAL) == RU


CTX = EvalContext(now=datetime(2026, 3, 2, 9, 0, tzinfo=ZoneInfo("Europe/Moscow")), tz=ZoneInfo("Europe/Moscow"))
PHONE = compile_expr("phone(x)", {"x"})


def _expr_phone(raw: Any) -> str | None:
    try:
        return PHONE.evaluate({"x": raw}, CTX)
    except EvalError:
        return None


def _sms(raw: Any) -> str | None:
    try:
        return normalize_phone(raw)
    except ValueError:
        return None


CALLERS: list[tuple[str, Callable[[Any], str | None], tuple[Reading, Policy]]] = [
    ("expr phone()", _expr_phone, WRITTEN_VALID),
    ("sms to:", _sms, WRITTEN_VALID),
    ("bitrix24", bitrix24_e164, WRITTEN_VALID),
    ("amocrm", amocrm_e164, WRITTEN_VALID),
    ("yclients", yclients_e164, DIGITS_POSSIBLE),
    ("telegram", telegram_e164, INTERNATIONAL_POSSIBLE),
]


@pytest.mark.parametrize(("normalise", "choice"), [(f, c) for _, f, c in CALLERS], ids=[n for n, _, _ in CALLERS])
def test_each_caller_keeps_its_policy(normalise: Callable[[Any], str | None], choice: tuple[Reading, Policy]) -> None:
    reading, policy = choice
    for _, text, _ in TABLE:
        assert normalise(text) == to_e164(text, policy=policy, region="RU", reading=reading), text


@pytest.mark.parametrize("normalise", [f for _, f, _ in CALLERS], ids=[n for n, _, _ in CALLERS])
def test_no_caller_takes_an_empty_value_for_a_number(normalise: Callable[[Any], str | None]) -> None:
    assert normalise(None) is None


def test_the_callers_that_refuse_say_so() -> None:
    with pytest.raises(EvalError, match="not a phone number: '123'"):
        PHONE.evaluate({"x": "123"}, CTX)
    with pytest.raises(ValueError, match="not a valid phone number: 'hello'"):
        normalize_phone("hello")
