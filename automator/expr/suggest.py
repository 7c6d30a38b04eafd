"""Did-you-mean: the known name closest to a mistyped one, for expressions and the rule file's keys alike."""
from __future__ import annotations

import difflib
from collections.abc import Iterable


def suggest(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate closest to `name` (a case-insensitive match first, then difflib), or None."""
    pool = [c for c in candidates if c != name]
    folded = {c.lower(): c for c in pool}
    if name.lower() in folded:
        return folded[name.lower()]
    found = difflib.get_close_matches(name, pool, n=1, cutoff=0.6)
    return found[0] if found else None
