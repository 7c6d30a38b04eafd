"""Registries of kinds by name (triggers, steps): each kind registered once, under its key and its model type."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, TypeVar


class Kind(Protocol):
    """A registrable kind: the name it is written with, and the model type it compiles to."""

    @property
    def key(self) -> str:
        """The name written in YAML."""

    @property
    def model(self) -> type:
        """The compiled model type, which carries the key as its `KIND`."""


K = TypeVar("K", bound=Kind)


def register(kinds: Iterable[K], what: str) -> dict[str, K]:
    """The registry by key, in the order given; a key or a model registered twice is refused."""
    found: dict[str, K] = {}
    for kind in kinds:
        if kind.key in found or any(k.model is kind.model for k in found.values()):
            raise TypeError(f"{what} kind {kind.key!r} is registered twice")
        found[kind.key] = kind
    return found
