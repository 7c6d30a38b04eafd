"""Phone numbers to E.164 (`+79161234567`): one normaliser, with how to read the text and what counts as a number
stated by each caller.

Two choices, both explicit at every call:

* `Policy` — what counts as a number. `VALID`: in an assigned range of its country's plan (phonenumbers'
  `is_valid_number`: `+7 016 …` is refused, there is no Russian 0xx range). `POSSIBLE`: only the length fits
  its country (`is_possible_number`), for numbers another system has already accepted.
* `Reading` — how the text is read. `AS_WRITTEN`: as a person types it, by phonenumbers in `region`: a leading
  `+` or the region's trunk prefix (`8 916 …`), punctuation, an extension (`доб. 12`, `ext. 5`, dropped) and
  letters of a vanity number (`CALL-NOW`) are understood; without a `+` the digits are the region's own
  (`380501234567` is not Ukrainian). `DIGITS`: only the digits count, as a CRM stores them: 11 or more without
  a `+` carry a country code, 8 and ten digits in Russia or Kazakhstan is the trunk prefix, fewer are the
  region's; an extension's digits are not told apart. `INTERNATIONAL`: the digits always begin with the country
  code, the `+` may be missing (`9161234567` reads as India's +91); `region` is not used.

The callers and their choices (the behaviour each had before they shared this function):

| caller | reading | policy | `8 916…` | `9161234567` | `380501234567` | `+7 016…` | `… доб. 12` |
| --- | --- | --- | --- | --- | --- | --- | --- |
| `phone()` in expressions, SMS `to:`, Bitrix24, amoCRM | AS_WRITTEN | VALID | +7916… | +7916… | none | none | +7916… |
| YCLIENTS (stored digits, a JSON number) | DIGITS | POSSIBLE | +7916… | +7916… | +380… | +7016… | none |
| Telegram (a shared contact) | INTERNATIONAL | POSSIBLE | none | +9161234567 | +380… | +7016… | +7916… |

Too short, too long, empty or wordy text is None under every choice; what None means (an error, a field left
out, the text kept as it was) is the caller's.
"""
from __future__ import annotations

import enum
import functools
import re

import phonenumbers

_TRUNK_EIGHT = ("RU", "KZ")  # where a national number is dialled as 8 and ten digits


class Policy(enum.Enum):
    """What counts as a phone number."""

    VALID = "valid"  # in an assigned range of its country's numbering plan
    POSSIBLE = "possible"  # only of a length its country's numbers have


class Reading(enum.Enum):
    """How the text of a phone number is read before it is checked (see the module's docstring)."""

    AS_WRITTEN = "as written"
    DIGITS = "digits"
    INTERNATIONAL = "international"


# Connectors meet the same client's phone on every record they map: parsed once (phonenumbers takes ~15 µs).
@functools.lru_cache(maxsize=4096)
def to_e164(text: str, *, policy: Policy, region: str = "RU", reading: Reading = Reading.AS_WRITTEN) -> str | None:
    """The number in `text` as E.164 (`+79161234567`), or None when `policy` does not accept it.

    `region` is the country of a number written without its code (a CLDR code such as "RU")."""
    text = text.strip()
    country: str | None = region
    if reading is Reading.DIGITS:
        candidate = _digits_candidate(text, region)
    elif reading is Reading.INTERNATIONAL:
        candidate, country = (text if text.startswith("+") else f"+{text}") if text else None, None
    else:
        candidate = text
    if candidate is None:
        return None
    try:
        number = phonenumbers.parse(candidate, country)
    except phonenumbers.NumberParseException:
        return None
    accepted = phonenumbers.is_valid_number if policy is Policy.VALID else phonenumbers.is_possible_number
    if not accepted(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _digits_candidate(text: str, region: str) -> str | None:
    """What phonenumbers should parse when only the digits of `text` count; None when it has none."""
    digits = re.sub(r"\D", "", text)
    if not digits:
        return None
    if text.startswith("+"):
        return "+" + digits
    if len(digits) == 11 and digits[0] == "8" and region in _TRUNK_EIGHT:
        return "+7" + digits[1:]
    if len(digits) >= 11:
        return "+" + digits  # stored with the country code, without the plus
    return text
