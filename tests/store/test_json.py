"""The stored JSON: orjson's speed with json's meaning (text as it is, anything unknown as its str())."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import date, datetime, timezone

from automator.store.codec import dump, load


@dataclass
class Point:
    x: int


class Count(int):
    """As the loader's SourceInt: an int that remembers where it was written."""


def test_what_json_would_write_with_default_str() -> None:
    at = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
    value = {"text": "Привет", "at": at, "day": date(2026, 3, 2), "point": Point(1), "n": Count(5), 7: "seven",
             "list": (1, 2.5, None, True)}
    assert json.loads(dump(value)) == json.loads(json.dumps(value, ensure_ascii=False, default=str))
    assert "Привет" in dump(value)  # not escaped


def test_what_orjson_refuses_is_written_as_json_writes_it() -> None:
    big = {"id": 2 ** 70}
    assert dump(big) == json.dumps(big)
    assert load(dump(big)) == big
    assert load(dump({"x": float("nan")})) == {"x": None}  # NaN is not JSON: it is stored as null
    assert math.isnan(load('{"x": NaN}')["x"])  # as json wrote it before: still read


def test_equal_moments_in_different_offsets_keep_their_own_text() -> None:
    """The texts of moments are remembered (a batch writes the same few again and again): by moment and offset."""
    from datetime import timedelta

    from automator.model import iso
    from automator.store.codec import utc

    moscow = datetime(2026, 1, 1, 10, tzinfo=timezone(timedelta(hours=3)))
    london = datetime(2026, 1, 1, 7, tzinfo=timezone.utc)
    assert moscow == london
    assert (iso(moscow), iso(london)) == ("2026-01-01T10:00:00+03:00", "2026-01-01T07:00:00+00:00")
    assert utc(moscow) == utc(london) == "2026-01-01T07:00:00.000000+00:00"
