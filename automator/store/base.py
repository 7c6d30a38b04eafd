"""The storage contract: the Snapshot the core decides on, the Store the daemon works through, and their value types.

A store keeps in one database: the journal (every accepted event, in order), entities with their previous
state, runs, timers, the outbox of effects, and people across systems with their history (links, visits).
Every backend passes `tests/store/test_store_contract.py`; the rules below are what that suite checks.

Words used throughout:
- *atomic*: all of a call's writes are committed together or none is; inside `atomic()` they join the caller's
  transaction and are committed with it.
- *idempotent*: calling again with the same input changes nothing more (a duplicate delivery is refused, a
  settled effect is not claimed again).
- *lease*: a claim (of an event or an effect) names its owner (`worker_name()`: host, pid, nonce) and holds until
  `claimed_until`; past it, or once its owner's process is gone, anyone may take the item again.
"""
from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from automator.loyalty.ledger import Entry
from automator.model import Decision, Effect, Entity, EntityRef, Event, Run, Timer, Visit
from automator.store.backup import BackupReport


# Visits a bulk load stores per transaction: the pages of the visits' indexes a batch changes are written once per
# batch, not once per visit, and the write lock is held for one batch (about a second, storing 50,000 visits and
# recomputing their 5,000 clients in a store of 100,000 clients: bench/history.py's import at that size).
STAGED_BATCH = 50_000


class Snapshot(Protocol):
    """What `decide` may read. Implementations must not change anything while it is read.

    Invariants: `entity` returns the state before the event being decided; `active_runs` returns runs with
    status `waiting` or `queued`, oldest first.
    """

    def entity(self, ref: EntityRef) -> Entity | None:
        """The last known state of one entity."""

    def entities(self, kind: str) -> Iterable[Entity]:
        """Every stored entity of a kind (for `for_each` and segments)."""

    def run(self, run_id: str) -> Run | None:
        """One run by id."""

    def active_runs(self, rule_id: str | None, key: str) -> list[Run]:
        """Waiting or queued runs of a rule (or of every rule, given None) for one `per` key, oldest first."""

    def segment_recency(self) -> Mapping[str, timedelta]:
        """Average time between visits per segment."""

    def segment_cuts(self) -> Mapping[str, Any] | None:
        """The RFM cut points the last full rescoring kept (`automator.segments.cuts_document`), None before one."""

    # ---- one client across systems, and their history -----------------------------------------------
    def client_of(self, system: str, ext_id: str) -> str | None:
        """The person (a `client` entity's id) a system's own id belongs to: `system` is a connector's name, or
        `phone` with an E.164 phone. None when no link is stored."""

    def links_of(self, client: str) -> list[tuple[str, str]]:
        """Every (system, id) of one person, phones included (system `phone`), in the order they were linked."""

    def related(self, kind: str, client: str, limit: int | None = None) -> list[Entity]:
        """The bookings, deals or tasks whose `client` field is this person, oldest first (`automator.store.order`:
        bookings by `starts_at`, deals and tasks by `created_at`, then by id as a number); the first `limit` of
        them when given, cut by the backend's read (a person with a hundred thousand records costs what `limit`
        does)."""

    def bookings_starting(self, after: datetime, before: datetime, limit: int | None = None) -> list[Entity]:
        """The bookings that start at or after `after` and before `before` (their `starts_at` as a moment; text
        without an offset is read as UTC), earliest first, then by id as a number; the first `limit` when given.
        Through an index, never a scan."""

    def clients_with_phone(self, phone: str) -> list[Entity]:
        """The stored clients whose `phone` field is this text (an index, never a scan), oldest first: people
        no system has reported through the journal (a test's `given:`, a `local` form) have no phone link."""

    def visits_of(self, client: str, since: datetime | None = None, limit: int | None = None) -> list[Visit]:
        """A person's visits and purchases, oldest first (by `at`, then id); since a moment, when given; the
        first `limit` of them when given, cut by the backend's read."""

    def has_visit(self, visit_id: str) -> bool:
        """True when a visit of this id is stored."""

    def ledger_of(self, client: str) -> list[Entry]:
        """A person's loyalty ledger rows, in the ledger's order (by `at`, then id)."""

    def stored_ledger_ids(self, ids: Collection[str]) -> set[str]:
        """Which of these ledger row ids are stored (by the primary key: however long the client's ledger)."""


class OutdatedStore(Exception):
    """A database opened read-only lacks tables or columns this version writes (or is no automator database)."""


@dataclass(frozen=True, slots=True)
class Claimed:
    """An effect taken from the outbox, with how many times it has been tried (this try included)."""

    effect: Effect
    attempts: int
    # True when the claim itself marked the call started (it is called at once); else the call is marked started
    # by a write of its own just before it begins (see `mark_started`).
    started: bool = False
    # True when an earlier try may have been performed without an answer: this one looks for what it made first.
    interrupted: bool = False


class Released(NamedTuple):
    """What recovery did with the effects a dead process (or a lapsed lease) left claimed."""

    retried: int  # the call may have begun: tried again (at_least_once, or a connector that deduplicates)
    parked: int  # the call may have begun: parked as uncertain (at_most_once)
    unstarted: int  # claimed but never called: back in the outbox, performed as if never tried


@dataclass(frozen=True, slots=True)
class Settlement:
    """How one try of an effect ended.

    `status`: done | retry (at `next_try_at`) | dead (attempts exhausted, or refused by the system) |
    uncertain (the call may have happened: an at_most_once effect is parked, not repeated).
    """

    status: str
    result: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None
    next_try_at: datetime | None = None
    events: tuple[Event, ...] = ()
    # The call may have been performed though it gave no answer (an Uncertain end): later tries look first.
    interrupted: bool = False


@dataclass(frozen=True)
class Writes:
    """One decision as the rows it writes. The JSON and the row building are done by writes_of() before the
    write lock is taken (the worker builds them while deciding), so that the lock is held for the statements only."""

    event_id: str
    why_not: str  # the journal's why-not report
    entity: list[Any] | None  # kind, id, fields, prev, updated_at
    runs: list[list[Any]]
    effects: list[list[Any]]
    cancel: list[list[str]]
    timers: list[list[Any]]
    events: tuple[Event, ...]  # emitted: journaled with the decision
    visits: list[list[Any]] = field(default_factory=list)  # history the decision adds (kept if already stored)
    facts: FactRows | None = None  # what the reports read (None: nothing)
    ledger: list[list[Any]] = field(default_factory=list)  # loyalty ledger rows (kept if already stored)


@dataclass(frozen=True)
class FactRows:
    """One decision's `Facts` as the rows the store writes (automator/store/facts.py builds and writes them)."""

    deals: list[list[Any]] = field(default_factory=list)  # `leads` upserts of deals
    moves: list[list[Any]] = field(default_factory=list)  # deals' stage moves (the stage before is known)
    # Each lead's stage moves (compared with the stored stage) and its upsert, written in order.
    leads: list[tuple[list[list[Any]], list[Any]]] = field(default_factory=list)
    bookings: list[list[Any]] = field(default_factory=list)
    booking_channels: list[list[Any]] = field(default_factory=list)  # a person's first channel candidates
    reviews: list[list[Any]] = field(default_factory=list)
    client_sources: list[list[Any]] = field(default_factory=list)  # a rule's set_source on a client


class LockTimes(Protocol):
    """A write lock as /metrics sees it: seconds this process's writers spent waiting for it and holding it."""

    waited: float
    held: float


class Store(Snapshot, Protocol):
    """Everything the daemon, the CLI and the simulator do with stored state. A store is used by one thread at a
    time (the daemon gives each thread its own); several stores, in several processes, may share one database.

    The methods are grouped by concern: the database (transactions, backup), the Snapshot reads and their batch
    forms, plain writes, timers, reading back (for operators), the journal and the outbox.
    """

    # ---- the database and its transactions ------------------------------------------------------------
    @property
    def path(self) -> Path | None:
        """The database file (None for a store that has none, such as SQLite in memory)."""

    @property
    def db(self) -> Any:
        """The backend's own database handle, for what writes into the same database in the same transactions
        (the `local` connector's tables, the daemon's schedule timers). For SQLite a `sqlite_utils.Database`."""

    @property
    def lock(self) -> LockTimes | None:
        """The process's write lock of this database (None when writes need no turn, as in memory)."""

    def atomic(self, *, savepoint: bool = True) -> AbstractContextManager[None]:
        """One transaction that takes the write lock up front (no deadlock on an upgrade); nested calls join it,
        through a savepoint (undone alone on failure) or, with `savepoint=False`, as they are. Every write of the
        methods below is atomic in this sense."""

    def take_turn(self, *, wait: bool = True) -> bool:
        """Take the write lock now (waiting, or only if free: True if taken); the next `atomic()` uses that turn.
        Lets one thread wait for the lock and another write."""

    def give_back_turn(self) -> None:
        """Free a turn taken with `take_turn` that no transaction will use."""

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Call `callback` once the transaction under way commits (at once outside one); never if it rolls back."""

    def close(self) -> None:
        """Close the connection; the store is not used afterwards."""

    def backup(self, target: Path, *, force: bool = False) -> BackupReport:
        """A consistent copy of the whole database as it was at one commit, written to `target` (refused when it
        exists, unless `force`) while writers go on. BackupError, with no file left, when it cannot be made."""

    # ---- Snapshot reads in batches (the worker's prefetch) ----------------------------------------------
    def entities_of(self, refs: Iterable[EntityRef]) -> dict[EntityRef, Entity | None]:
        """Each ref with its stored state, or None when none is stored: `entity()` for many at once."""

    def active_runs_of(self, keys: Iterable[str]) -> dict[str, list[Run]]:
        """`active_runs(None, key)` for many keys at once; every key is in the answer."""

    # ---- plain writes --------------------------------------------------------------------------------------
    def put_entity(self, entity: Entity, old: Entity | None | bool = True) -> None:
        """Store an entity's state, keeping the one it replaces as its previous state (read first, unless the
        caller passes it as `old`)."""

    def apply(self, decision: Decision) -> None:
        """Write one decision atomically: entity, runs with traces, effects, timers set and cancelled."""

    def write(self, writes: Writes) -> None:
        """Write one decision's rows (see Writes), atomically."""

    def write_all(self, many: list[Writes]) -> None:
        """Write many decisions' rows atomically, in their order (a later decision's timers may cancel an earlier
        one's). Effects are inserted once: writing an effect key again keeps the first."""

    def link(self, system: str, ext_id: str, client: str, at: datetime) -> None:
        """Say that a system's id (or, with `system` "phone", an E.164 phone) is this person's; a link already
        made to someone else is moved to them."""

    def put_visits(self, visits: Iterable[Visit]) -> int:
        """Store visits atomically, keeping any already stored under the same id; how many were new."""

    def recompute_history(self, clients: Iterable[str], at: datetime) -> int:
        """Recompute the derived fields (`automator.history`) of these clients from all their stored visits,
        atomically, making a client entity for a person who has none; how many clients were written."""

    def stage_visits(self, rows: Iterable[Sequence[Any]]) -> None:
        """Keep visits, as the rows `Writes.visits` holds (`codec.visit_row`), aside for `put_staged_visits` (a
        bulk load: an import, a backfill): not stored yet, seen by no read, and, outside a transaction, taking no
        turn at the write lock."""

    def put_staged_visits(self, at: datetime, *, batch: int = STAGED_BATCH,
                          progress: Callable[[int, int], None] = ...) -> tuple[int, int]:
        """Store the staged visits as `put_visits` does and recompute the derived fields of every client they name
        as `recompute_history` does, about `batch` visits at a time, each batch atomic (a client's visits are never
        split between two; a long load holds the write lock a batch at a time), `progress(new, clients)` after
        each. How many visits were new and how many clients were written; nothing is staged afterwards."""

    def refresh_ids(self, clients: Iterable[str]) -> None:
        """Bring each stored person's `ids` and `all_ids` fields up to their links, atomically (links written
        outside a `client.*` event, as an import writes them); a person not stored is left alone."""

    def set_systems(self, systems: Iterable[str]) -> None:
        """Name the connectors whose ids are their systems' own (every one but `local`; `Config.systems`), in
        place of those named before (a reload may change them); none until it is called. From then on an event
        whose `source` is one of them is resolved to persons (`resolve`) whenever it is journaled — a webhook, a
        catch-up poll, an action's answer in `settle` — before its echo is recognised, its links written in the
        same transaction. Events of other sources (`engine`, `timer`, `local` connectors) pass as they are."""

    def resolve(self, event: Event, now: datetime, *, phone: str | None = None) -> Event:
        """The event naming persons in place of its system's ids (`automator.identity.resolve`), the links that
        makes written atomically, when its source is one of `set_systems`'; else the event as it is. `phone`: the
        phone our effect named the person by, for the effect's answer. The simulator's path to the journal's."""

    def link_back(self, action: str, event: Event) -> None:
        """The stored records the answer `event` to `action` says its new record belongs to learn it back,
        atomically (`actions.linked_back`: the booking a deal was created for gets its `deal`), unless they name
        one already; a record not stored is left alone. What `settle` does, for the simulator's short path."""

    def record_effect(self, key: str, status: str, result: Mapping[str, Any] | None = None) -> None:
        """Record an effect's outcome directly (the simulator's short path; the daemon settles through the outbox)."""

    def get_meta(self, name: str) -> str | None:
        """A small named value (the rule version, a connector's last poll), None when unset."""

    def set_meta(self, name: str, value: str) -> None:
        """Set a named value, replacing the one before."""

    # ---- timers --------------------------------------------------------------------------------------------
    def put_timer(self, timer: Timer) -> None:
        """Set a timer, or move it: a timer id is set at most once."""

    def delete_timer(self, timer_id: str) -> None:
        """Remove a timer (it has fired, or was cancelled); removing one that is gone does nothing."""

    def next_timer(self, until: datetime) -> Timer | None:
        """The earliest timer due at or before `until`."""

    def due_timers(self, now: datetime, limit: int) -> list[Timer]:
        """Up to `limit` timers due at or before `now`, soonest first (ties by id)."""

    def next_due(self) -> datetime | None:
        """When the earliest timer is due (how long the timer loop may sleep); None without timers."""

    def timers(self, limit: int | None = None) -> list[Timer]:
        """Pending timers, soonest first."""

    # ---- reading back --------------------------------------------------------------------------------------
    def count(self, table: str, where: str = "", args: list[Any] | None = None) -> int:
        """How many rows of a table (journal, entities, runs, timers, effects) match a filter in the backend's SQL."""

    def runs(self, rule_id: str | None = None, *, entity: str | None = None, since: datetime | None = None,
             event_id: str | None = None, limit: int | None = None) -> list[Run]:
        """Runs, oldest first, filtered by rule, entity (`kind:id`), start time or triggering event; with
        `limit`, the newest that many."""

    def effect_states(self, run_ids: Iterable[str]) -> dict[str, dict[str, int]]:
        """For each of these runs that has effects, how many are in each state (`{"done": 1, "dead": 1}`)."""

    def effects(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """Effects as stored (params decoded), in the order written, optionally of one run."""

    # ---- the journal ---------------------------------------------------------------------------------------
    def append(self, events: Sequence[Event], now: datetime, *, digests: Sequence[str | None] | None = None,
               window: timedelta = ..., echoes: bool | None = None) -> list[bool]:
        """Journal events atomically; False for each duplicate. Idempotent: a duplicate has the same event id,
        the same (source, delivery_id), or the same `digest` from the same source within `window`. Events that
        echo one of our own effects get its chain depth and rule (see `expect_echo`)."""

    def journal_events(self, events: Sequence[Event], now: datetime, *, digests: Sequence[str | None] | None = None,
                       window: timedelta = ..., echoes: bool | None = None) -> list[Event | None]:
        """`append`, returning each event as journaled (its echo and repeat recognised), None for a duplicate."""

    def expecting_echoes(self, now: datetime) -> bool:
        """True when some effect's echo is still expected at `now`."""

    def expect_echo(self, entity: EntityRef, fields: dict[str, Any], effect: str, rule_id: str, depth: int,
                    until: datetime) -> None:
        """Remember a change our effect made until `until`, so the system's webhook reporting it is known as ours
        (it gets depth + 1 and `echo_of` = rule_id, once)."""

    def claim_events(self, worker: str, now: datetime, limit: int, lease: timedelta) -> list[Event]:
        """Claim up to `limit` undecided events in journal order, under `worker`'s lease until `now + lease`,
        skipping every key another live claim holds (one key is decided by one worker, in order). An event whose
        lease has lapsed may be claimed again."""

    def pending_events(self, worker: str, now: datetime, limit: int) -> list[Event]:
        """What `claim_events` would claim, read without claiming (no write lock): taken by `commit_pending`."""

    def commit(self, event: Event, decision: Decision, now: datetime) -> list[Event]:
        """Write a decision and mark its event done, atomically; journal the events it emits and return the new
        ones."""

    def commit_pending(self, event: Event, decision: Decision, now: datetime, worker: str | None,
                       writes: Writes | None = None) -> list[Event] | None:
        """`commit`, only if the event is still undecided and no other worker's live claim holds it; None, with
        nothing written, otherwise (another worker decided it). `writes`: the decision's rows, when built."""

    def commit_all_pending(self, items: Sequence[tuple[Event, Decision, Writes]], now: datetime, worker: str
                           ) -> list[Event] | None:
        """`commit_pending` for many at once: None, with nothing written, unless every event is still pending. A row
        that cannot be written raises, with the rows before it written in the caller's transaction: the caller
        undoes that transaction whole."""

    def fail_event(self, event: Event, error: str, now: datetime) -> None:
        """Park an event that could not be decided (a bug, not bad input): kept with its error, never retried."""

    def release_dead_claims(self, me: str, gone: Callable[[str, str], bool] = ...) -> int:
        """Make the events claimed by dead owners (`gone(owner, me)`) pending again; how many."""

    def journal_event(self, event_id: str) -> dict[str, Any] | None:
        """One journaled event as stored, with its status and why-not report decoded."""

    def journal_lag(self, now: datetime) -> tuple[int, float]:
        """How many events wait to be decided, and the age in seconds of the oldest."""

    def prune(self, now: datetime, keep: timedelta) -> dict[str, int]:
        """Forget, atomically, what is finished and older than `keep` (decided events, ended runs, settled
        effects, stale echoes and reports); how many rows of each table. Never anything still in progress."""

    # ---- the outbox ----------------------------------------------------------------------------------------
    def claim_effects(self, worker: str, now: datetime, limit: int, lease: timedelta,
                      connectors: Sequence[str] | None = None,
                      start: Callable[[Effect], bool] | None = None) -> list[Claimed]:
        """Atomically take up to `limit` due effects (pending or retry, of `connectors` when given), oldest first,
        running under `worker`'s lease; each counts one more attempt. Those `start` accepts are marked started
        in the same transaction; the others by `mark_started` just before their call."""

    def due_effects(self, now: datetime, limit: int, connectors: Sequence[str] | None = None,
                    skip: Collection[str] = ()) -> list[Claimed]:
        """Up to `limit` due effects (pending or retry, of `connectors` when given, none of `skip`), oldest first,
        as their next try would be; read only, no lock: `claim_keys` takes each just before its call."""

    def claim_keys(self, worker: str, keys: Sequence[str], now: datetime, lease: timedelta, *,
                   started: bool) -> list[str]:
        """Atomically take those of these effects that still wait (pending or retry): running under `worker`'s
        lease, one more attempt, marked started when `started`. The keys taken."""

    def mark_started(self, keys: Sequence[str], now: datetime) -> None:
        """These claimed effects' calls are about to begin: committed first, so that recovery knows they may
        have been performed."""

    def mark_interrupted(self, keys: Sequence[str]) -> None:
        """Tries of these effects may have been performed without an answer: later tries look first."""

    def settle(self, effect: Effect, outcome: Settlement, now: datetime) -> list[Event]:
        """Record a try's outcome atomically with, when done, the events the system reports back (journaled as
        caused by the effect, resolved to persons, given the links the action carries (`actions.answered`), their
        echoes expected); a stored record such a link names learns the new record back (`actions.linked_back`:
        the booking a deal was created for gets its `deal`, unless it names one). Returns those journaled."""

    def release_dead_effects(self, me: str, now: datetime, repeatable: frozenset[str] = frozenset(),
                             gone: Callable[[str, str], bool] = ...) -> Released:
        """Recover effects left running by a dead owner or past their lease: never called → back in the outbox
        as if not tried; maybe called → tried again if at_least_once (or its connector is `repeatable`), else
        parked as `uncertain` for an operator."""

    def dead_letters(self) -> list[dict[str, Any]]:
        """Effects parked for an operator (dead, uncertain), oldest first."""

    def replay(self, key: str, now: datetime) -> bool:
        """Put a parked effect back in the outbox with fresh attempts; False if no parked effect has that key."""

    def drop(self, key: str, now: datetime) -> bool:
        """Give up on a parked effect for good (kept as `dropped`); False if no parked effect has that key."""

    def next_effect_due(self, connectors: Sequence[str] | None = None,
                        after: datetime | None = None) -> datetime | None:
        """When the earliest waiting effect (of `connectors`, when given; due after `after`, when given) may be
        tried."""
