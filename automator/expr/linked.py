"""A link to another entity that reads as the other's id and opens onto it: `deal.booking` is "1001" (it renders,
compares and is sent as that text) and `deal.booking.status` is the booking's status."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class Linked(str):
    """An id (the text itself) carrying the linked entity's view, which attribute access reads (see evaluate.py's
    `_read`); it is only ever made by the core from stored data, so expressions stay over plain data."""

    view: Mapping[str, Any]

    def __new__(cls, ident: str, view: Mapping[str, Any]) -> Linked:
        made = super().__new__(cls, ident)
        made.view = view
        return made
