"""A client's new category set when one category is set, added or removed: pure, over the company's labels.

YCLIENTS has no call that adds or removes one category: the client's whole set is PUT (reference part 2 §1.3.6).
So the set is computed here from what was read: `set` replaces the categories of the same group (a tier, from
the connector's `category_groups:`), `add` keeps every other, `remove` drops the one. Titles compare as YCLIENTS
shows its labels: ignoring case and the spaces around them.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MODES = ("set", "add", "remove")


def fold(title: Any) -> str:
    """A title as compared: case and surrounding spaces aside."""
    return str(title).strip().casefold()


def group_of(title: str, groups: Mapping[str, Sequence[str]] | None) -> str | None:
    """The `category_groups:` group a title belongs to; None when it is in none."""
    for name, titles in (groups or {}).items():
        if fold(title) in {fold(t) for t in titles}:
            return str(name)
    return None


def declared(title: str, categories: Any, groups: Mapping[str, Sequence[str]] | None) -> bool:
    """Whether rules may use this title: `categories:` (when set) or a group names it. Without `categories:`
    every title may be used (the company's own list is then the judge, at run time)."""
    if not isinstance(categories, list):
        return True
    return fold(title) in {fold(c) for c in categories} or group_of(title, groups) is not None


def find(labels: Sequence[Mapping[str, Any]], title: str) -> Mapping[str, Any] | None:
    """The company's live client category of that title."""
    return next((x for x in labels if fold(x.get("title", "")) == fold(title) and not x.get("deleted")), None)


@dataclass(frozen=True, slots=True)
class Change:
    """The category ids to PUT, and the titles that leave the client (a tier replaced)."""

    ids: list[str]
    removed: list[str]

    def same_as(self, current: Sequence[str]) -> bool:
        """Whether PUTting these ids would change nothing."""
        return sorted(self.ids) == sorted(current)


def change(mode: str, label: Mapping[str, Any], current: Sequence[str], labels: Sequence[Mapping[str, Any]],
           groups: Mapping[str, Sequence[str]] | None) -> Change:
    """The client's categories (`current` ids) after `mode` with `label`, the company's labels telling the
    titles of the ids. The order of the kept ones is kept; an added one goes last."""
    if mode not in MODES:
        raise ValueError(f"unknown category change {mode!r}")
    ident = str(label["id"])
    titles = {str(x.get("id")): str(x.get("title", "")) for x in labels}
    if mode == "remove":
        return Change([x for x in current if x != ident], [titles.get(ident, ident)] if ident in current else [])
    drop: set[str] = set()
    group = group_of(str(label.get("title", "")), groups) if mode == "set" else None
    if group is not None:
        tier = {fold(t) for t in (groups or {})[group]}
        drop = {x for x in current if x != ident and fold(titles.get(x, "")) in tier}
    kept = [x for x in current if x not in drop]
    return Change(kept if ident in kept else [*kept, ident], [titles.get(x, x) for x in current if x in drop])
