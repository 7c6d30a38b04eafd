"""The function reference: every expression function with its signature, what it gives and worked examples.

The examples are evaluated on one fixed scope and clock, shown with the reference, so `automator functions`,
the README's list and the tests all state values an admin can check by hand. The data is the library's own
(`automator.expr.REFERENCE`); the date format tokens are `automator.datefmt.TOKENS`.
"""
from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from automator.catalogue import CORE, merge
from automator.clock import end_of_day, parse_business_hours, start_of_day
from automator.config.settings import Config
from automator.core.scope import StoreLookups
from automator.datefmt import TOKENS
from automator.expr import REFERENCE, EvalContext, FunctionDoc, compile_expr, format_value
from automator.model import Entity, EntityRef, Visit
from automator.store.sqlite import SqliteStore

EXAMPLE_TZ = ZoneInfo("Europe/Moscow")
EXAMPLE_NOW = datetime(2026, 3, 2, 12, 0, tzinfo=EXAMPLE_TZ)  # a Monday
EXAMPLE_HOURS = parse_business_hours("10:00-21:00", "daily", EXAMPLE_TZ)
EXAMPLE_SCOPE: Mapping[str, Any] = {
    "client": {"id": 77, "name": "Анна", "phone": "8 916 123-45-67", "visits": 4, "segment": "loyal",
               "last_visit_at": "2026-02-20T12:00:00+03:00", "tags": ["vip", "new"]},
    "booking": {"id": 501, "client": 77, "starts_at": "2026-03-05T15:00:00+03:00", "price": 2500},
}
EXAMPLE_SETTING = ("now is 2026-03-02 12:00 (a Monday) in Europe/Moscow; client = {name: Анна, phone: "
                   "'8 916 123-45-67', visits: 4, segment: loyal, last_visit_at: 2026-02-20T12:00+03:00, tags: [vip, "
                   "new]} (no email); booking = {starts_at: 2026-03-05T15:00+03:00}; the branch works 10:00-21:00; "
                   "the loyal segment's average recency is 21 days; in the store, Анна (+79161234567) has booking 501 "
                   "(confirmed, 2026-03-05 15:00), deals 9 (pipeline sales, stage new) and 10 (stage won, outcome "
                   "won), and visits on 2025-12-10 (2200.00) and 2026-02-20 (1500.00), both at branch center")


def _example_store() -> SqliteStore:
    """The store the lookup examples read, as EXAMPLE_SETTING says it holds them: a real (in-memory) store, read
    through the engine's own lookups, so each documented value is what a rule gets."""
    store = SqliteStore(":memory:")
    with store.atomic():
        store.put_entity(Entity(EntityRef("client", "77"), {"name": "Анна", "phone": "+79161234567"}, EXAMPLE_NOW))
        for kind, ident, fields in (
                ("booking", "501", {"client": "77", "status": "confirmed", "starts_at": "2026-03-05T15:00:00+03:00"}),
                ("deal", "9", {"client": "77", "pipeline": "sales", "stage": "new", "outcome": "open"}),
                ("deal", "10", {"client": "77", "pipeline": "sales", "stage": "won", "outcome": "won"})):
            store.put_entity(Entity(EntityRef(kind, ident), fields, EXAMPLE_NOW))
        store.put_visits([Visit(id=f"booking:{n}", client="77", at=at, branch="center", amount=amount)
                          for n, at, amount in ((1, datetime(2025, 12, 10, 12, 0, tzinfo=EXAMPLE_TZ), 2200_00),
                                                (2, datetime(2026, 2, 20, 12, 0, tzinfo=EXAMPLE_TZ), 1500_00))])
    return store


def _example_config() -> Config:
    """The project the examples run in: Moscow time, and a `local` connector's catalogue, so records are typed as a
    rule of a project reads them (a booking's `starts_at` is a date-time)."""
    from automator.connector import discover

    return Config(timezone=EXAMPLE_TZ, catalogue=merge([discover()["local"].produces("local", {}), CORE]))


# Made on first use (only the reference's readers need them), then kept.
_WORLD: list[tuple[Config, SqliteStore]] = []


def example_context() -> EvalContext:
    """The clock, timezone, segments, business hours and store the examples are evaluated with."""
    if not _WORLD:
        _WORLD.append((_example_config(), _example_store()))
    config, store = _WORLD[0]
    return EvalContext(now=EXAMPLE_NOW, tz=EXAMPLE_TZ,
                       segment_of=lambda client: client.get("segment"),
                       segment_avg_recency=lambda client: timedelta(days=21) if client.get("segment") else None,
                       end_of_day=lambda at, branch: end_of_day(at, EXAMPLE_HOURS),
                       start_of_day=lambda at, branch: start_of_day(at, EXAMPLE_HOURS),
                       lookups=StoreLookups(config, store, EXAMPLE_NOW))


def show(value: Any, ctx: EvalContext) -> str:
    """A value as the reference writes it: texts quoted, `empty` for none, the rest as a template prints it."""
    if value is None:
        return "empty"
    if isinstance(value, str):
        return "'" + value.replace("'", "\\'") + "'"
    return format_value(value, ctx)


def evaluate_example(expression: str) -> str:
    """What an example gives on the fixed scope and clock, written as `show` writes it."""
    ctx = example_context()
    return show(compile_expr(expression, EXAMPLE_SCOPE).evaluate(EXAMPLE_SCOPE, ctx), ctx)


def reference() -> list[FunctionDoc]:
    """Every library function, by name."""
    return list(REFERENCE.values())


def as_json() -> dict[str, Any]:
    """The reference as data for editors: functions, the examples' setting, and the date format tokens."""
    return {
        "functions": [{"name": f.name, "signature": f.signature, "description": f.doc,
                       "examples": [{"expression": e, "value": v} for e, v in f.examples]} for f in reference()],
        "examples_on": EXAMPLE_SETTING,
        "date_format_tokens": [{"token": t.text, "description": t.doc, "example": t.example}
                               for t in TOKENS.values()],
    }


def as_text() -> str:
    """The reference for a terminal: the call, its description, and `example → value` lines."""
    lines = [f"Examples are evaluated with: {EXAMPLE_SETTING}.", ""]
    for f in reference():
        lines.append(f.signature)
        lines.append(f"    {f.doc}")
        lines.extend(f"    {e}  →  {v}" for e, v in f.examples)
    lines += ["", "Date format tokens (fmt_date), on 2026-03-02 09:05:07 +03:00; [text] is printed as it is:"]
    lines.extend(f"    {t.text:<5} {t.example:<12} {t.doc}" for t in TOKENS.values())
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def as_markdown() -> str:
    """The reference as the README shows it (between the `functions` markers, regenerated by the CLI)."""
    lines = [f"Examples are evaluated with: {EXAMPLE_SETTING}.", "",
             "| function | what it gives | example → value |", "| --- | --- | --- |"]
    for f in reference():
        examples = "<br>".join(f"`{_cell(e)}` → `{_cell(v)}`" for e, v in f.examples)
        lines.append(f"| `{_cell(f.signature)}` | {_cell(f.doc)} | {examples} |")
    lines += ["", "Date format tokens of `fmt_date` (on 2026-03-02 09:05:07 +03:00); text in `[brackets]` is printed "
              "as it is, as are digits, punctuation and Cyrillic letters; a strftime code (`%d`) or another letter "
              "is a validate error naming the token to write:", "",
              "| token | prints | meaning |", "| --- | --- | --- |"]
    lines.extend(f"| `{t.text}` | {t.example} | {_cell(t.doc)} |" for t in TOKENS.values())
    return "\n".join(lines)
