"""The date format language of `fmt_date`: `DD.MM.YYYY HH:mm`, `D MMMM` → `2 марта`, names in Russian.

The tokens are the ones admins know from spreadsheets, CRMs and moment.js/dayjs, not strftime's `%d` and not
LDML's (where `DD` is the day of the year and `YYYY` the week's year: a format that looks right and prints the
wrong date in the last days of December). A format is compiled once into parts; a mistake is a `FormatError`
naming the place and the token to write instead, so validate can point at it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache

# Month names: the genitive "марта" after a day (`D MMMM` → "2 марта"), the nominative "март" alone.
_MONTHS = ("январь", "февраль", "март", "апрель", "май", "июнь", "июль", "август", "сентябрь", "октябрь",
           "ноябрь", "декабрь")
_MONTHS_OF = ("января", "февраля", "марта", "апреля", "мая", "июня", "июля", "августа", "сентября", "октября",
              "ноября", "декабря")
_MONTHS_SHORT = ("янв", "фев", "мар", "апр", "мая", "июн", "июл", "авг", "сен", "окт", "ноя", "дек")
_WEEKDAYS = ("понедельник", "вторник", "среда", "четверг", "пятница", "суббота", "воскресенье")
_WEEKDAYS_SHORT = ("пн", "вт", "ср", "чт", "пт", "сб", "вс")


def _offset(moment: datetime) -> str:
    text = moment.strftime("%z")
    return f"{text[:3]}:{text[3:]}" if text else ""


@dataclass(frozen=True, slots=True)
class Token:
    """One format token: what it prints, an example on 2 March 2026 (a Monday) 09:05:07 +03:00."""

    text: str
    doc: str
    example: str


TOKENS: dict[str, Token] = {t.text: t for t in (
    Token("YYYY", "year", "2026"), Token("YY", "year, two digits", "26"),
    Token("MMMM", "month name: 'март'; 'марта' when the format has the day ('D MMMM': '2 марта')", "март"),
    Token("MMM", "short month name", "мар"), Token("MM", "month, two digits", "03"), Token("M", "month", "3"),
    Token("DD", "day of the month, two digits", "02"), Token("D", "day of the month", "2"),
    Token("dddd", "weekday name", "понедельник"), Token("ddd", "short weekday name", "пн"),
    Token("HH", "hour 00-23", "09"), Token("H", "hour 0-23", "9"), Token("mm", "minutes", "05"),
    Token("m", "minutes, no leading zero", "5"), Token("ss", "seconds", "07"), Token("s", "seconds, no zero", "7"),
    Token("Z", "UTC offset", "+03:00"),
)}

# How each token prints a datetime; `of` says the format has the day, so month names take the genitive.
_PRINT = {
    "YYYY": lambda t, of: f"{t.year:04d}", "YY": lambda t, of: f"{t.year % 100:02d}",
    "MMMM": lambda t, of: (_MONTHS_OF if of else _MONTHS)[t.month - 1],
    "MMM": lambda t, of: _MONTHS_SHORT[t.month - 1], "MM": lambda t, of: f"{t.month:02d}",
    "M": lambda t, of: str(t.month), "DD": lambda t, of: f"{t.day:02d}", "D": lambda t, of: str(t.day),
    "dddd": lambda t, of: _WEEKDAYS[t.weekday()], "ddd": lambda t, of: _WEEKDAYS_SHORT[t.weekday()],
    "HH": lambda t, of: f"{t.hour:02d}", "H": lambda t, of: str(t.hour), "mm": lambda t, of: f"{t.minute:02d}",
    "m": lambda t, of: str(t.minute), "ss": lambda t, of: f"{t.second:02d}", "s": lambda t, of: str(t.second),
    "Z": lambda t, of: _offset(t),
}

# Tokens of other languages admins bring along (LDML, .NET, PHP), and what to write here instead; a run of one
# letter is read as one token, so these are runs too.
_INSTEAD = {
    "yyyy": "YYYY", "yy": "YY", "y": "YYYY", "Y": "YYYY", "YYY": "YYYY", "dd": "DD", "d": "D",
    "DDD": "DD", "DDDD": "DD", "hh": "HH", "h": "H", "SS": "ss", "S": "s",
    "MMMMM": "MMMM", "ddddd": "dddd", "n": "M", "i": "mm", "j": "D", "F": "MMMM", "l": "dddd",
}
_WHY = {"dd": "the day of the month is DD (ddd is the weekday)", "d": "the day of the month is D",
        "hh": "hours are HH (a 12-hour clock is not supported)", "h": "hours are H (a 12-hour clock is not supported)"}
_STRFTIME = {"d": "DD", "-d": "D", "e": "D", "m": "MM", "-m": "M", "Y": "YYYY", "y": "YY", "H": "HH", "-H": "H",
             "M": "mm", "S": "ss", "B": "MMMM", "b": "MMM", "h": "MMM", "A": "dddd", "a": "ddd", "z": "Z",
             "%": "%"}
_STRFTIME_CODE = re.compile(r"%(-?[a-zA-Z%])")
_LETTERS = re.compile(r"([A-Za-z])\1*")
_WORDS = re.compile(r"[A-Za-z]+")
_DEFAULT_HINT = "write e.g. 'DD.MM.YYYY HH:mm' or 'D MMMM' (2 марта); put other text in [brackets]"


class FormatError(ValueError):
    """A format that cannot be read: `index` is where in the format text, `hint` what to write instead."""

    def __init__(self, message: str, index: int, hint: str) -> None:
        super().__init__(message)
        self.message, self.index, self.hint = message, index, hint


@dataclass(frozen=True, slots=True)
class DateFormat:
    """A compiled format: literal texts and token names, and whether a day is in it (for month names)."""

    parts: tuple[tuple[bool, str], ...]  # (is_token, text)
    has_day: bool

    def render(self, moment: date) -> str:
        """The date or date-time as text; a date's time of day is midnight."""
        at = moment if isinstance(moment, datetime) else datetime(moment.year, moment.month, moment.day)
        return "".join(_PRINT[text](at, self.has_day) if token else text for token, text in self.parts)


@lru_cache(maxsize=256)
def compile_format(fmt: str) -> DateFormat:
    """Read a format such as 'DD.MM.YYYY HH:mm'; raise FormatError for strftime codes and unknown letters."""
    code = _STRFTIME_CODE.search(fmt)
    if code:
        raise FormatError(f"'%{code.group(1)}' is a strftime code; formats here use tokens such as DD.MM.YYYY",
                          code.start(), _from_strftime(fmt))
    parts: list[tuple[bool, str]] = []
    starts: list[int] = []
    pos = 0
    while pos < len(fmt):
        char = fmt[pos]
        starts.append(pos)
        if char == "[":
            end = fmt.find("]", pos)
            if end < 0:
                raise FormatError("'[' is never closed", pos, "close literal text with ']', e.g. '[в] HH:mm'")
            parts.append((False, fmt[pos + 1:end]))
            pos = end + 1
            continue
        if char.isascii() and char.isalpha():
            run = _LETTERS.match(fmt, pos).group(0)  # type: ignore[union-attr]
            if run not in TOKENS:
                raise _unknown(fmt, run, pos)
            parts.append((True, run))
            pos += len(run)
            continue
        parts.append((False, char))  # digits, punctuation, spaces and Cyrillic are printed as they are
        pos += 1
    _check_minutes_and_months(parts, starts)
    return DateFormat(tuple(parts), any(part in ((True, "D"), (True, "DD")) for part in parts))


def _unknown(fmt: str, run: str, index: int) -> FormatError:
    if run in _INSTEAD:
        fixed = _LETTERS.sub(lambda m: _INSTEAD.get(m.group(0), m.group(0)), fmt)
        why = _WHY.get(run, f"'{run}' is written '{_INSTEAD[run]}' here")
        return FormatError(f"'{run}' is not a date format token", index, f"{why}; write '{fixed}'")
    end = index  # the letters up to the next real token: 'T' in 'DDTHH', all of 'UTC'
    while (found := _LETTERS.match(fmt, end)) and found.group(0) not in TOKENS:
        end = found.end()
    word = fmt[index:end]
    return FormatError(f"unknown date format letters '{word}'", index,
                       f"tokens are {' '.join(TOKENS)}; put other text in brackets: '[{word}]'")


def _check_minutes_and_months(parts: list[tuple[bool, str]], starts: list[int]) -> None:
    """`HH:MM` prints the month where minutes were meant, `DD.mm.YYYY` minutes where the month was: a token is
    read by its neighbours across a separator (':' joins times, '.', '/' and '-' join dates)."""
    for i, (is_token, text) in enumerate(parts):
        if not is_token or text not in ("MM", "M", "mm", "m"):
            continue
        month = text.isupper()
        joins, wrong = ((":",), ("HH", "H", "ss", "s")) if month else ((".", "/", "-"), ("YYYY", "YY", "DD", "D"))
        near = [parts[j] for j, k in ((i - 2, i - 1), (i + 2, i + 1))
                if 0 <= j < len(parts) and parts[k][1] in joins and not parts[k][0]]
        if any(is_near_token and name in wrong for is_near_token, name in near):
            swapped = text.lower() if month else text.upper()
            what, meant = ("the month, not minutes", "minutes are") if month else ("minutes, not the month",
                                                                                   "the month is")
            raise FormatError(f"'{text}' is {what}", starts[i],
                              f"{meant} '{swapped}': write '{_swap(parts, i, swapped)}'")


def _swap(parts: list[tuple[bool, str]], index: int, token: str) -> str:
    """The format with one token replaced, literal text back in brackets where it needs them."""
    shown = [(t, token if i == index else text) for i, (t, text) in enumerate(parts)]
    return "".join(text if t or not _WORDS.search(text) else f"[{text}]" for t, text in shown)


def _from_strftime(fmt: str) -> str:
    """The same format in tokens, as a hint: '%d.%m.%Y %H:%M' → write 'DD.MM.YYYY HH:mm'."""
    unknown = [c for c in _STRFTIME_CODE.findall(fmt) if c not in _STRFTIME]
    if unknown:
        return _DEFAULT_HINT
    pieces = _STRFTIME_CODE.split(fmt)  # literal text and codes, alternately
    text = "".join(_STRFTIME[piece] if i % 2 else _WORDS.sub(r"[\g<0>]", piece) for i, piece in enumerate(pieces))
    return f"write '{text}'"


def format_date(moment: date, fmt: str) -> str:
    """`moment` (already in the project's timezone) printed by the format `fmt`."""
    return compile_format(fmt).render(moment)
