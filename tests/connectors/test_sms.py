"""connectors.sms: phones to E.164 and gateway digits, SMS parts of Latin and Cyrillic texts, proxy statuses."""
from __future__ import annotations

import httpx
import pytest

from automator.errors import Rejected, Retryable, Uncertain
from automator_connectors.sms import (MAX_RECIPIENTS, check_gateway_status, gateway_digits, normalize_phone, normalize_phones,
                            segments, split_phones)


@pytest.mark.parametrize("raw", ["8 916 123-45-67", "+7 (916) 123-45-67", "89161234567", "9161234567",
                                 "79161234567", "+79161234567", " 8(916)1234567 "])
def test_russian_phones_written_any_way_become_e164(raw: str) -> None:
    assert normalize_phone(raw) == "+79161234567"


@pytest.mark.parametrize("raw", ["12345", "", "not a phone", "+7 000 000 00 00", "8 916 123", "+7916123456789"])
def test_invalid_phones_are_refused(raw: str) -> None:
    with pytest.raises(ValueError):
        normalize_phone(raw)


def test_foreign_numbers_keep_their_country() -> None:
    assert normalize_phone("+380 50 123 45 67") == "+380501234567"
    assert normalize_phone("+49 30 1234567") == "+49301234567"


def test_gateway_digits_drop_the_plus() -> None:
    assert gateway_digits("+79161234567") == "79161234567"


def test_several_numbers_split_normalised_deduplicated_in_order() -> None:
    assert split_phones("8 916 123-45-67; +7 903 123-45-67,,") == ["8 916 123-45-67", "+7 903 123-45-67"]
    assert normalize_phones("8 916 123-45-67, +7 (903) 123-45-67; 9161234567") == ["+79161234567", "+79031234567"]


def test_several_numbers_with_a_bad_one_name_it() -> None:
    with pytest.raises(ValueError, match="'12345'"):
        normalize_phones("89161234567, 12345")
    with pytest.raises(ValueError, match="no phone"):
        normalize_phones(" , ;")


def test_more_than_100_numbers_are_refused() -> None:
    many = ",".join(f"+7916{n:07d}" for n in range(MAX_RECIPIENTS + 1))
    with pytest.raises(ValueError, match="at most 100"):
        normalize_phones(many)
    assert len(normalize_phones(",".join(f"+7916{n:07d}" for n in range(MAX_RECIPIENTS)))) == MAX_RECIPIENTS


@pytest.mark.parametrize(("length", "parts"), [(1, 1), (160, 1), (161, 2), (306, 2), (307, 3), (459, 3),
                                               (460, 4), (1224, 8), (1225, 9)])
def test_latin_parts_at_the_boundaries(length: int, parts: int) -> None:
    found = segments("a" * length)
    assert (found.encoding, found.length, found.units, found.parts) == ("GSM-7", length, length, parts)


@pytest.mark.parametrize(("length", "parts"), [(1, 1), (70, 1), (71, 2), (134, 2), (135, 3), (201, 3),
                                               (202, 4), (536, 8), (537, 9)])
def test_cyrillic_parts_at_the_boundaries(length: int, parts: int) -> None:
    found = segments("я" * length)
    assert (found.encoding, found.length, found.units, found.parts) == ("UCS-2", length, length, parts)


def test_one_cyrillic_letter_makes_a_latin_text_ucs2() -> None:
    text = "a" * 69 + "ж"
    assert segments(text).encoding == "UCS-2" and segments(text).parts == 1
    assert segments(text + "b").parts == 2


def test_gsm_extension_characters_count_two_septets_and_never_straddle_parts() -> None:
    assert segments("{" * 80).units == 160 and segments("{" * 80).parts == 1
    assert segments("{" * 81).parts == 2
    # 152 septets, then an escape pair that does not fit in part one's 153: it moves whole to part two.
    text = "a" * 152 + "€" + "a" * 152
    assert segments(text).units == 306 and segments(text).parts == 3
    assert segments("a" * 151 + "€" + "a" * 153).parts == 2


def test_emoji_take_two_code_units() -> None:
    assert segments("😀" * 35).parts == 1
    assert segments("😀" * 36).parts == 2
    assert segments("я" * 66 + "😀" + "я" * 67).parts == 3  # the pair does not fit part one's 67th unit


def test_typical_texts() -> None:
    reminder = "Напоминаем: завтра в 10:00 запись к мастеру Анне. Салон «Лотос»"
    assert segments(reminder).to_json() == {"encoding": "UCS-2", "length": len(reminder), "units": len(reminder),
                                            "parts": 1}
    assert segments("Hello! Your visit is tomorrow at 10:00 @ Lotus, 5% off").encoding == "GSM-7"
    assert segments("").parts == 0


@pytest.mark.parametrize(("status", "error"), [(429, Retryable), (500, Retryable), (502, Retryable),
                                               (503, Retryable), (504, Uncertain), (520, Uncertain),
                                               (400, Rejected), (403, Rejected), (404, Rejected)])
def test_proxy_statuses(status: int, error: type[Exception]) -> None:
    response = httpx.Response(status, headers={"Retry-After": "12"}, text="<html>busy</html>")
    with pytest.raises(error) as caught:
        check_gateway_status(response, "send")
    if error is Retryable:
        assert caught.value.retry_after == 12  # type: ignore[attr-defined]
    check_gateway_status(httpx.Response(200, text="{}"), "send")
