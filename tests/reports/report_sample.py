"""The reports' fixed data set: a dozen leads across three channels with spend, stage moves at known times,
visits of a dozen clients (one came through an aggregator), bookings and reviews, written into a real store file.

Every figure the report tests assert is computed by hand from the lists below (the tests show the arithmetic).
The period the tests read is March 2026 in Moscow (UTC+3, no daylight saving): PERIOD_FROM..PERIOD_TO.
Use `fill(path)` from another test (the HTML page, the README's screenshots) to get the same store.
"""
from __future__ import annotations

import sqlite3
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from automator.store.sqlite import SqliteStore

TZ = ZoneInfo("Europe/Moscow")
PERIOD_FROM = date(2026, 3, 1)
PERIOD_TO = date(2026, 3, 31)
NOW = datetime(2026, 7, 1, 12, 0, tzinfo=TZ)  # the moment the tests compute at


def at(text: str) -> int:
    """A local Moscow moment "MM-DD HH:MM" of 2026 (or "YYYY-MM-DD HH:MM") as epoch seconds."""
    full = text if text.count("-") == 2 else f"2026-{text}"
    return int(datetime.strptime(full, "%Y-%m-%d %H:%M").replace(tzinfo=TZ).timestamp())


def iso(text: str) -> str:
    """A local moment as the visits table keeps it: UTC ISO 8601 with microseconds."""
    from datetime import timezone

    return datetime.fromtimestamp(at(text), timezone.utc).isoformat(timespec="microseconds")


# id, client, first channel, first campaign, last channel, created, qualified, closed, outcome, amount, manager,
# raw source. Stage moves below. c1's second lead (deal:9) came back through VK: its last touch differs.
LEADS = [
    ("deal:1", "c1", "site", None, "site", "03-02 10:00", "03-03 10:00", "03-05 10:00", "won", 500000, "m1", "WEB"),
    ("deal:2", "c2", "site", None, "site", "03-04 12:00", "03-04 18:00", "03-06 18:00", "lost", None, "m2", "WEB"),
    ("deal:3", "c3", "site", None, "site", "03-10 09:00", None, None, "open", None, "m1", "WEB"),
    ("deal:4", "c4", "vk", "spring", "vk", "03-11 10:00", "03-12 10:00", "03-15 10:00", "won", 300000, "m2", "vk"),
    ("deal:5", "c5", "vk", "spring", "vk", "03-12 10:00", None, "03-13 10:00", "lost", None, "m2", "vk"),
    ("lead:crm:6", "c6", "vk", None, "vk", "03-20 10:00", None, None, "open", None, "m2", "vk"),
    ("deal:7", "c7", "aggregator", None, "aggregator", "03-05 10:00", "03-05 12:00", "03-06 12:00", "won", None,
     "m1", "prodoctorov"),
    ("deal:8", "c8", "aggregator", None, "aggregator", "03-25 10:00", "03-26 10:00", None, "open", None, "m1",
     "prodoctorov"),
    ("deal:9", "c1", "site", None, "vk", "03-20 10:00", None, None, "open", None, "m1", "WEB"),
    ("deal:10", "c9", "site", None, "site", "2026-02-20 10:00", "2026-02-21 10:00", "03-03 10:00", "won", 700000,
     "m1", "WEB"),
    ("deal:11", None, "vk", "spring", "vk", "03-30 10:00", "03-30 12:00", "03-31 20:00", "won", 100000, "m2", "vk"),
    ("deal:12", "c10", "site", None, "site", "03-28 10:00", "03-29 10:00", "04-02 10:00", "won", 200000, "m1", "WEB"),
]

# record → [(stage, local moment)], in order. Pipeline first_sales: new → in_progress (qualified) → won | lost.
MOVES = {
    "deal:1": [("new", "03-02 10:00"), ("in_progress", "03-03 10:00"), ("won", "03-05 10:00")],
    "deal:2": [("new", "03-04 12:00"), ("in_progress", "03-04 18:00"), ("lost", "03-06 18:00")],
    "deal:3": [("new", "03-10 09:00")],
    "deal:4": [("new", "03-11 10:00"), ("in_progress", "03-12 10:00"), ("won", "03-15 10:00")],
    "deal:5": [("new", "03-12 10:00"), ("lost", "03-13 10:00")],
    "deal:7": [("new", "03-05 10:00"), ("in_progress", "03-05 12:00"), ("won", "03-06 12:00")],
    "deal:8": [("new", "03-25 10:00"), ("in_progress", "03-26 10:00")],
    "deal:9": [("new", "03-20 10:00")],
    "deal:10": [("new", "2026-02-20 10:00"), ("in_progress", "2026-02-21 10:00"), ("won", "03-03 10:00")],
    "deal:11": [("new", "03-30 10:00"), ("in_progress", "03-30 12:00"), ("won", "03-31 20:00")],
    "deal:12": [("new", "03-28 10:00"), ("in_progress", "03-29 10:00"), ("won", "04-02 10:00")],
}

# day, channel, campaign, amount (kopecks)
SPEND = [
    ("2026-02-28", "site", "", 999900),      # before the period
    ("2026-03-01", "site", "", 1000000),
    ("2026-03-15", "site", "", 500000),
    ("2026-03-10", "vk", "spring", 800000),
    ("2026-03-20", "vk", "", 200000),
]

# client, local moment, amount, staff, branch
VISITS = [
    ("c1", "2026-02-10 10:00", 200000, "anna", "center"),
    ("c1", "03-06 11:00", 300000, "anna", "center"),
    ("c1", "03-20 11:00", 250000, "anna", "center"),
    ("c2", "03-05 15:00", 150000, "boris", "center"),
    ("c4", "03-16 10:00", 400000, "boris", "center"),
    ("c4", "04-20 10:00", 400000, "boris", "center"),
    ("c7", "03-06 12:00", 200000, "vera", "south"),
    ("c7", "03-28 12:00", 200000, "vera", "south"),
    ("c8", "03-27 10:00", 150000, "vera", "south"),
    ("c9", "2026-01-15 10:00", 500000, "boris", "center"),
    ("c9", "03-25 10:00", 500000, "boris", "center"),
    ("c11", "03-01 09:00", 100000, "anna", "center"),
    ("c11", "03-02 09:00", 0, "anna", "center"),
    ("c12", "2026-01-10 10:00", 300000, "vera", "south"),
    ("c12", "2026-02-12 10:00", 300000, "vera", "south"),
    ("c12", "03-31 22:00", 300000, "vera", "south"),
]

# client → first channel (client_channels)
CLIENT_CHANNELS = {"c1": "site", "c2": "site", "c4": "vk", "c7": "aggregator", "c8": "aggregator", "c9": "site",
                   "c11": "walk_in", "c12": "aggregator"}

# id, client, staff, branch, status, created, starts
BOOKINGS = [
    ("b1", "c1", "anna", "center", "visited", "03-04 10:00", "03-06 11:00"),
    ("b2", "c2", "boris", "center", "visited", "03-05 09:00", "03-05 15:00"),
    ("b3", "c4", "boris", "center", "visited", "03-12 10:00", "03-16 10:00"),
    ("b4", "c5", "boris", "center", "no_show", "03-13 09:00", "03-18 10:00"),
    ("b5", "c7", "vera", "south", "visited", "03-01 10:00", "03-06 12:00"),
    ("b6", "c8", "vera", "south", "no_show", "03-20 10:00", "03-24 10:00"),
    ("b7", "c8", "vera", "south", "visited", "03-24 12:00", "03-27 10:00"),
    ("b8", "c3", "anna", "center", "cancelled", "03-10 10:00", "04-01 10:00"),  # starts after the period
]

# id, client, local moment, score, staff (None: the staff of the client's latest visit before it)
REVIEWS = [
    ("r1", "c1", "03-06 15:00", 10, None),    # → anna (03-06 11:00)
    ("r2", "c2", "03-05 18:00", 6, None),     # → boris
    ("r3", "c4", "03-16 12:00", 9, "boris"),
    ("r4", "c7", "03-06 13:00", 8, None),     # → vera
    ("r5", "c8", "03-27 12:00", 3, None),     # → vera
    ("r6", "c12", "03-30 10:00", 10, None),   # → vera (its visit of 02-12; the one of 03-31 is later)
]


def fill(path: Path) -> Path:
    """Write the data set into a new store at `path` (migrations run through SqliteStore) and return `path`."""
    SqliteStore(str(path)).close()
    db = sqlite3.connect(path)
    with db:
        for (ident, client, first, campaign, last, created, qualified, closed, outcome, amount, manager,
             raw) in LEADS:
            moves = MOVES.get(ident, [])
            db.execute(
                "insert into leads (id, kind, source, client, pipeline, stage, outcome, responsible, created_at, "
                "qualified_at, closed_at, amount, currency, first_channel, first_campaign, first_at, last_channel, "
                "last_campaign, last_at, raw_source) values (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (ident, ident.split(":")[0], "crm", client, "first_sales" if moves else None,
                 moves[-1][0] if moves else None, outcome, manager, at(created),
                 at(qualified) if qualified else None, at(closed) if closed else None, amount, "RUB", first,
                 campaign, at(created), last, campaign, at(created), raw))
            previous = None
            for stage, moment in moves:
                db.execute("insert into stage_moves (record, pipeline, stage, from_stage, at, by, responsible, "
                           "event) values (?,?,?,?,?,?,?,?)",
                           (ident, "first_sales", stage, previous, at(moment), None, manager,
                            f"e:{ident}:{stage}"))
                previous = stage
        db.executemany("insert into spend values (?,?,?,?,?,?,?)",
                       [(day, channel, campaign, amount, "RUB", "csv", "2026-04-01T00:00:00+00:00")
                        for day, channel, campaign, amount in SPEND])
        for number, (client, moment, amount, staff, branch) in enumerate(VISITS, 1):
            db.execute("insert into visits (id, client, at, kind, branch, services, category, staff, amount, "
                       "currency, booking, source) values (?,?,?,?,?,?,?,?,?,?,?,?)",
                       (f"booking:v{number}", client, iso(moment), "visit", branch, "[]", None, staff, amount,
                        "RUB", None, "booking"))
        for client, channel in CLIENT_CHANNELS.items():
            db.execute("insert into client_channels values (?,?,?,?,?)", (client, channel, "", 0, None))
        for ident, client, staff, branch, status, created, starts in BOOKINGS:
            db.execute("insert into bookings values (?,?,?,?,?,?,?,?,?,?)",
                       (ident, "booking", client, staff, branch, status, at(created), at(starts), None, None))
        for ident, client, moment, score, staff in REVIEWS:
            db.execute("insert into reviews values (?,?,?,?,?,?,?)",
                       (ident, client, at(moment), score, staff, None, None))
    db.close()
    return path
