"""What JSON text cannot carry, made storable: lone surrogates become U+FFFD (a pair held as two code points
becomes its one character), NaN and ±Infinity become None, everything else is left as it is."""
from __future__ import annotations

import json
from datetime import datetime, timezone

from automator.daemon.storable import storable, storable_event
from automator.model import EntityRef, Event
from automator.store.codec import dump

AT = datetime(2026, 3, 2, 7, 0, tzinfo=timezone.utc)


def test_lone_surrogates_become_replacement_characters_and_pairs_their_character() -> None:
    assert storable("a\ud800b") == "a\ufffdb"
    assert storable("\udc00") == "\ufffd"
    assert storable("\ud83d\ude00") == "\U0001F600"  # a pair held as two code points is one emoji
    assert storable("Привет 😀") == "Привет 😀"


def test_numbers_json_has_no_word_for_become_none_at_any_depth() -> None:
    data = {"a": float("nan"), "b": [1.5, float("inf"), {"c": float("-inf")}], "\ud800": ("x", 2), "n": None,
            "t": True, 3: "three"}
    assert storable(data) == {"a": None, "b": [1.5, None, {"c": None}], "\ufffd": ["x", 2], "n": None, "t": True,
                              3: "three"}
    json.loads(dump(storable(data)))  # now plain JSON text


def test_every_text_of_an_event_is_made_storable() -> None:
    event = Event(id="e\ud800", type="booking.updated", at=AT, entity=EntityRef("booking", "1\udfff"),
                  data={"comment": "\ud83d"}, source="yc", delivery_id="d\ud800", caused_by=None, echo_of="r\udc01")
    clean = storable_event(event)
    assert (clean.id, clean.entity, clean.data, clean.delivery_id, clean.caused_by, clean.echo_of) == (
        "e\ufffd", EntityRef("booking", "1\ufffd"), {"comment": "\ufffd"}, "d\ufffd", None, "r\ufffd")
    assert (clean.type, clean.at, clean.source, clean.depth) == (event.type, event.at, event.source, event.depth)
