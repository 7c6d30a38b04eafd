"""The outbox loop: read due effects, take each on disk as its call starts (within its connector's rate limit), settle
each try by its policy."""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import logging
import threading
import time
from datetime import datetime, timedelta
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any, TypeVar

from automator.call_start import CALL_START
from automator.clock import Clock
from automator.connector import ActionResult, Connector
from automator.daemon import crashpoints, worklog
from automator.daemon.metrics import Metrics
from automator.daemon.retry import RetryPolicy, TokenBucket
from automator.daemon.storethread import GroupCommit, StoreThread
from automator.errors import Rejected, Retryable, Uncertain
from automator.actions import expected_echo
from automator.identity import person_ref
from automator.model import Effect, EntityRef, Event
from automator.store.base import Claimed, Settlement, Store
from automator.store.outbox import ECHO_WINDOW

log = logging.getLogger(__name__)
R = TypeVar("R")
LEASE = timedelta(minutes=5)
REAP_EVERY = 30.0  # seconds between looks for effects whose lease ran out
# With nothing to do the loop sleeps until the earliest retry it knows of is due, or until it is woken (effects
# committed by the engine, a try ended, an operator's `automator dead --replay` nudging the daemon). LOOK_EVERY
# bounds the sleep: a safety net, not a poll (an idle daemon looks once a minute).
LOOK_EVERY = 60.0
# A settle has nobody waiting on its fsync: it waits this long (seconds) for the outbox's next write (the next
# call's start mark) to ride on, instead of a transaction of its own. At 500 effects/s the next effect's mark comes
# within ~2 ms; the lease and the crash table are unchanged (a try ended but not settled is one in doubt, as it
# was for the time of its own commit).
SETTLE_RIDE = 0.005


def classify(error: BaseException, claimed: Claimed, policy: RetryPolicy, now: datetime, *,
             repeatable: bool = False) -> Settlement:
    """How a failed try ends: retried later, parked as uncertain, or dead. Pure, so tests need no clock or sleep.

    - Rejected (4xx but 429): dead at once, repeating cannot help.
    - Retryable (5xx, 429, connection refused, timeout before sending): retried after backoff, at least
      Retry-After; dead when the attempts are used up.
    - Uncertain (or any unexpected error, or a timeout mid-call): the call may have happened. at_least_once
      effects are retried (connectors pass the key to systems that deduplicate, and every later try first looks
      for what this one made: `Connector.recover`); at_most_once ones are parked, unless the connector is
      `repeatable` (it deduplicates by the effect key itself).
    """
    effect, attempt = claimed.effect, claimed.attempts
    text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    if isinstance(error, Rejected):
        return Settlement("dead", error=f"rejected: {text}")
    retry_after = error.retry_after if isinstance(error, Retryable) else None
    maybe_performed = not isinstance(error, Retryable)
    if maybe_performed and effect.delivery == "at_most_once" and not repeatable:
        return Settlement("uncertain", error=f"{text} (at_most_once: not repeated, it may have been performed)",
                          interrupted=True)
    if policy.exhausted(attempt):
        return Settlement("dead", error=f"gave up after {attempt} attempts: {text}", interrupted=maybe_performed)
    delay = policy.delay(attempt, retry_after)
    return Settlement("retry", error=text, next_try_at=now + timedelta(seconds=delay), interrupted=maybe_performed)


# A try that ended: its effect, how it ended, and whether the try took the effect on disk (`claim_keys`: at its
# start mark, or in the transaction of a call into the store). One that ended before that (refused before sending,
# a connect that failed, no such connector) takes it in the transaction that settles it.
Ended = tuple[Effect, Settlement, bool]


def due_effects(store: Store, now: datetime, limit: int, connectors: list[str] | None, skip: Collection[str],
                look_ahead: bool) -> tuple[list[Claimed], datetime | None]:
    """Up to `limit` due effects (none of `skip`: tries in hand), read without a lock: each is taken on disk at
    its call's start mark. With `look_ahead`, also when the earliest one not due yet will be, else None."""
    claimed = store.due_effects(now, limit, connectors, skip) if limit > 0 else []
    return claimed, store.next_effect_due(connectors, after=now) if look_ahead else None


def write_settles(store: Store, items: list[Ended], worker: str, now: datetime) -> list[list[Event]]:
    """Settle the tries that ended, in one transaction; the events each one journaled."""
    with store.atomic():
        results = _settle(store, items, worker, now)
    if items:
        crashpoints.after_commit(store, "settle.after_commit")
    return results


def _settle(store: Store, items: list[Ended], worker: str, now: datetime) -> list[list[Event]]:
    """Write how these tries ended (inside the caller's transaction); the events each one journaled. A try that
    never took its effect on disk takes it now, as a claim would have; one whose effect another outbox took
    meanwhile (a reload gave its connector to the other process) is left to that one."""
    fresh = [effect.key for effect, _, taken in items if not taken]
    took = set(store.claim_keys(worker, fresh, now, LEASE, started=False)) if fresh else set()
    results: list[list[Event]] = []
    unsure = []
    for effect, outcome, taken in items:
        if not (taken or effect.key in took):
            results.append([])
            continue
        results.append(store.settle(effect, outcome, now))
        if outcome.interrupted:
            unsure.append(effect.key)
    if unsure:
        store.mark_interrupted(unsure)
    return results


class _Taken(Exception):
    """The effect no longer waits when its try comes to take it: another outbox has it. This try ends here, not
    called, not settled."""


def _perform_in_store(store: Store, connector: Connector, effect: Effect, interrupted: bool, worker: str,
                      now: datetime) -> ActionResult:
    with store.atomic():  # the connector's writes join the store's transaction (and its place in the write queue)
        # Taken and marked started in the call's own transaction: the call is committed whole or not at all.
        if not store.claim_keys(worker, [effect.key], now, LEASE, started=True):
            raise _Taken(effect.key)
        found = connector.recover(effect.action, effect.params, effect.key) if interrupted else None
        result: ActionResult = found if found is not None else connector.perform(effect.action, effect.params,
                                                                                   effect.key)
    return result


async def _recover_or_perform(connector: Connector, effect: Effect, interrupted: bool) -> ActionResult:
    """The action's result: found in the system when an earlier try was interrupted and made it, else performed."""
    if interrupted:
        found = connector.recover(effect.action, effect.params, effect.key)
        if inspect.isawaitable(found):
            found = await found
        if found is not None:
            log.info("effect %s %s: an interrupted try had performed it; not performed again", effect.action,
                     effect.key, extra={"effect": effect.key, "connector": effect.connector, "rule": effect.rule_id})
            return found
    result = connector.perform(effect.action, effect.params, effect.key)
    if inspect.isawaitable(result):
        result = await result
    return result


Echo = tuple[EntityRef, dict[str, Any]]
Call = tuple[Effect, Echo | None, Callable[[], None] | None]  # a call about to begin: its echo, what to do once marked


def _start(store: Store, calls: list[Call], items: list[Ended],
           worker: str, now: datetime) -> tuple[list[list[Event]], list[None | Exception]]:
    """Just before calls begin: take each effect, marked started, and expect the echo of each one's change (the
    system may report the change back before the call returns), in one write with the settles waiting for one
    (`items`: the events each journaled); each call's `then` once that is committed. Per call: None, or _Taken
    when its effect no longer waited."""
    with store.atomic():
        results = _settle(store, items, worker, now)
        taken = set(store.claim_keys(worker, [effect.key for effect, _, _ in calls], now, LEASE, started=True))
        marks: list[None | Exception] = []
        for effect, echo, then in calls:
            if effect.key not in taken:
                marks.append(_Taken(effect.key))
                continue
            if echo is not None:
                store.expect_echo(person_ref(echo[0], effect.connector, store), echo[1], effect.key,
                                  effect.rule_id, effect.depth, now + ECHO_WINDOW)
            if then is not None:
                store.on_commit(then)
            marks.append(None)
    if items:
        crashpoints.after_commit(store, "settle.after_commit")
    return results, marks


class _CallMark:
    """Takes one effect on disk, once, marking its call begun (with the echo its change will cause), and waits for
    the commit (automator.call_start.CallMark): the HTTP engine has it write the request the moment the mark is
    committed. `failed`: the mark could not be written (or the effect was no longer there to take: _Taken), so
    nothing was sent; `taken`: it was written."""

    def __init__(self, starts: Callable[[Call], Awaitable[None]], effect: Effect, echo: Echo | None) -> None:
        self._starts, self._effect, self._echo = starts, effect, echo
        self.taken = False
        self.failed: Exception | None = None

    async def __call__(self, then: Callable[[], None] | None = None) -> None:
        if self.taken:
            if then is not None:
                then()
            return
        try:
            await self._starts((self._effect, self._echo, None if then is None else _on_loop(then)))
        except Exception as exc:
            self.failed = exc
            raise
        self.taken = True


def _on_loop(fn: Callable[[], None]) -> Callable[[], None]:
    """`fn` to be called after a commit: on the running loop's thread (at once when the commit is made there, as
    the grouped writer does), and never raising into the writer, whose commit has already succeeded."""
    loop = asyncio.get_running_loop()
    thread = threading.get_ident()

    def call() -> None:
        try:
            if threading.get_ident() == thread:
                fn()
            else:
                loop.call_soon_threadsafe(fn)
        except Exception:  # the request is then never written: its call fails as a lost connection would
            log.exception("a call marked begun could not be written")

    return call


class _Wake(asyncio.Event):
    """`Outbox.wake`: an asyncio.Event whose `set` also ends the outbox loop's sleep."""

    def __init__(self, poke: Callable[[], None]) -> None:
        super().__init__()
        self._poke = poke

    def set(self) -> None:
        """Set, and wake the loop."""
        super().set()
        self._poke()


class Outbox:
    """Performs effects: at most `max_in_flight` calls at once, each connector within its token bucket; only
    the effects of connectors that `handles` accepts, when given (the daemon and its engine process split them).

    Set `wake` when effects may have been committed for it: it reads what is due only then, when a retry it knows
    of is due, or after LOOK_EVERY seconds without a look."""

    def __init__(self, engine: StoreThread, connectors: Callable[[], Mapping[str, Connector]], *, worker: str,
                 clock: Clock, metrics: Metrics, policy: RetryPolicy | None = None, deadline: float = 30.0,
                 max_in_flight: int = 128, on_events: Callable[[], None] | None = None,
                 handles: Callable[[Connector], bool] | None = None) -> None:
        self.engine = engine
        self.connectors = connectors
        self.worker = worker
        self.clock = clock
        self.metrics = metrics
        self.policy = policy or RetryPolicy()
        self.deadline = deadline
        self.max_in_flight = max_in_flight
        self.on_events = on_events or (lambda: None)
        self.handles = handles
        self.wake: asyncio.Event = _Wake(self._poke)  # effects may have been committed: claim
        # The loop sleeps on one future that anything may end (`_poke`: a try ended, a settle may wait no longer,
        # effects committed, a timeout, stopping): sleeping on three events cost three tasks a turn, twice a call.
        self._stirred = False
        self._sleeper: asyncio.Future[None] | None = None
        self.in_flight: set[asyncio.Task[None]] = set()
        self._keys: set[str] = set()  # the effects of the tries in flight: not read again as due
        self.buckets: dict[str, TokenBucket] = {}
        # Calls about to begin, marked on disk together: the marks that arrive while one group is written go into
        # the next, so a burst of calls costs one write (with one process, a transaction of its own), not one each.
        self._starts: GroupCommit[Call, None] = GroupCommit(self._write_starts)
        # A grouped writer already puts the marks that come while it writes into its next transaction: a mark goes
        # straight to it, without the hop through a task of its own (GroupCommit) first.
        self._start_one: Callable[[Call], Awaitable[None]] = \
            self._write_start if engine.group else self._starts.submit
        self._reaped = time.monotonic()
        # Tries that ended, waiting to be settled by the next write (a start mark, or, SETTLE_RIDE seconds
        # after the first of them ended, one of their own), each with the future its task waits on.
        self._ended: list[tuple[Ended, asyncio.Future[list[Event]]]] = []
        self._settle_by: asyncio.TimerHandle | None = None
        # What the loop knows of the effects waiting: whether some may be due now (`_more`), when the earliest
        # one not due yet will be (`_due`, None: none known), and whether it must ask the store for that.
        self._more = self._look = True
        self._due: datetime | None = None
        self._claimed = time.monotonic()  # when it last read the due effects (it saw every one due then)

    async def run(self, stopping: asyncio.Event) -> None:
        """Claim and perform until `stopping` is set; then let the calls in flight finish and settle."""
        starts = asyncio.create_task(self._starts.run())
        watcher = asyncio.create_task(stopping.wait())
        watcher.add_done_callback(lambda _: self._poke())
        try:
            await self._claim_and_perform(stopping)
        finally:
            watcher.cancel()
            self._starts.close()
            await starts

    def _poke(self) -> None:
        """Something changed: the loop looks again (at once if it sleeps)."""
        self._stirred = True
        if self._sleeper is not None and not self._sleeper.done():
            self._sleeper.set_result(None)

    async def _write_start(self, call: Call) -> None:
        (mark,) = await self._write_starts([call])
        if mark is not None:
            raise mark

    async def _write_starts(self, calls: list[Call]) -> list[None | Exception]:
        ended = self._take_ended()
        try:
            results, marks = await self.engine.call(_start, calls, [item for item, _ in ended], self.worker,
                                                    self.clock.now())
        except Exception as exc:
            self._settled(ended, exc)
            raise
        self._settled(ended, results)
        return marks

    async def _write_settles(self) -> None:
        ended = self._take_ended()
        try:
            results = await self.engine.call(write_settles, [item for item, _ in ended], self.worker,
                                             self.clock.now())
        except Exception as exc:  # each task hears of it and tries again
            self._settled(ended, exc)
            raise
        self._settled(ended, results)

    async def _read(self, fn: Callable[..., R], *args: Any) -> R:
        """`fn(store, *args)`, a read: with a grouped writer, at once on this thread (its connection is used on
        this thread only, and never left inside a transaction between two steps of the loop), so it takes no turn
        at the write lock and no hop to a thread; else on the store's thread."""
        if self.engine.group:
            return fn(self.engine.store, *args)
        return await self.engine.call(fn, *args)

    async def _claim_and_perform(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                await self._cycle(stopping)
            except Exception:  # the loop outlives a failure (a database held too long, a bug): logged
                log.exception("the outbox loop failed; it goes on in 1 s")
                self._more = self._look = True
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), timeout=1.0)
        # Stopping: the calls in flight finish (each is bounded by the deadline; a moment more is given for them to
        # return), and what they ended with is settled at once.
        end = time.monotonic() + self.deadline + 0.5
        while self.in_flight and time.monotonic() < end:
            if self._ended:
                with contextlib.suppress(Exception):
                    await self._write_settles()
                continue
            self._stirred = False
            self._sleeper = asyncio.get_running_loop().create_future()
            await asyncio.wait([self._sleeper, *self.in_flight], timeout=max(0.0, end - time.monotonic()),
                               return_when=asyncio.FIRST_COMPLETED)
            self._sleeper = None
        for _ in range(3):
            if not self._ended:
                break
            with contextlib.suppress(Exception):
                await self._write_settles()

    def _take_ended(self) -> list[tuple[Ended, asyncio.Future[list[Event]]]]:
        """The tries waiting to be settled, now being written."""
        ended, self._ended = self._ended, []
        if self._settle_by is not None:
            self._settle_by.cancel()
            self._settle_by = None
        return ended

    def _settled(self, ended: list[tuple[Ended, asyncio.Future[list[Event]]]],
                 results: list[list[Event]] | Exception) -> None:
        """Tell each settled try's task how its write went (each tries again on an exception)."""
        if isinstance(results, Exception):
            for _, future in ended:
                if not future.done():
                    future.set_exception(results)
            return
        for ((_, outcome, _), future), result in zip(ended, results):
            if outcome.status == "retry" and outcome.next_try_at is not None:
                self._due = outcome.next_try_at if self._due is None else min(self._due, outcome.next_try_at)
            if not future.done():
                future.set_result(result)
        if any(results):
            self.on_events()

    async def _cycle(self, stopping: asyncio.Event) -> None:
        """One turn: read what is due and start its calls (each takes its effect on disk at its start mark, with
        the settles waiting for a write), or write the settles that waited long enough, or sleep until there is
        something to do."""
        if time.monotonic() - self._reaped > REAP_EVERY:
            # An effect whose try could not be settled (its lease ran out) is tried again, or parked as uncertain.
            self._reaped = time.monotonic()
            repeatable = frozenset(n for n, c in self.connectors().items() if c.deduplicates)
            at = self.clock.now()
            released = await self.engine.call(lambda s: s.release_dead_effects(self.worker, at, repeatable))
            self._more = self._more or bool(released.retried or released.unstarted)
        if self.wake.is_set():
            self.wake.clear()
            self._more = True
        if (self._due is not None and self._due <= self.clock.now()) \
                or time.monotonic() - self._claimed >= LOOK_EVERY:
            self._more = self._look = True  # and where is the next one?
        self._stirred = False
        free = self.max_in_flight - len(self.in_flight)
        if self._more and free > 0:
            look = self._look
            claimed, due = await self._read(due_effects, self.clock.now(), free, self._mine(), self._keys, look)
            self._claimed = time.monotonic()
            self._more = len(claimed) >= free  # fewer than asked for: none other was due
            if look:
                self._look, self._due = False, due
            # Rate-limit tokens are taken here, on the loop, in one go, in claim order.
            now = time.monotonic()
            waits = {c.effect.key: self._reserve(c.effect.connector, now) for c in claimed}
            for item in claimed:
                self._keys.add(item.effect.key)
                task = asyncio.create_task(self.perform(item, waits[item.effect.key]))
                self.in_flight.add(task)
                task.add_done_callback(self._ended_call)
            return
        # A settle rides on the next start mark; with every slot taken it frees its slot at once.
        if self._ended and (free <= 0 or self._settle_by is None):
            await self._write_settles()
            return
        await self._wait(self._sleep_for() if free > 0 else None, stopping)

    def _sleep_for(self) -> float:
        """Seconds until the loop must look again by itself: the next known retry, a look, a reap."""
        now = time.monotonic()
        timeout = min(self._claimed + LOOK_EVERY, self._reaped + REAP_EVERY) - now
        if self._due is not None:
            timeout = min(timeout, (self._due - self.clock.now()).total_seconds())
        return max(0.0, timeout)

    def _ended_call(self, task: asyncio.Task[None]) -> None:
        # A slot is free: a loop waiting because all were taken must hear of it, or pending effects wait for ever
        # (the settle that preceded it may have found no slot to claim with).
        self.in_flight.discard(task)
        self._poke()

    async def _wait(self, timeout: float | None, stopping: asyncio.Event) -> None:
        """Until woken (effects committed, a try ended, a settle's wait over), stopped, or `timeout` seconds."""
        if self.wake.is_set() or self._stirred or timeout == 0 or stopping.is_set():
            return
        loop = asyncio.get_running_loop()
        self._sleeper = loop.create_future()
        timer = None if timeout is None else loop.call_later(timeout, self._poke)
        try:
            await self._sleeper
        finally:
            self._sleeper = None
            if timer is not None:
                timer.cancel()

    async def settle(self, effect: Effect, outcome: Settlement, taken: bool = True) -> list[Event]:
        """Have one try's outcome written with the outbox's next write (within SETTLE_RIDE seconds); the events it
        journaled. `taken`: the try took its effect on disk (else the settle takes it, if it still waits)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Event]] = loop.create_future()
        self._ended.append(((effect, outcome, taken), future))
        if self._settle_by is None:
            self._settle_by = loop.call_later(SETTLE_RIDE, self._ride_over)
        return await future

    def _ride_over(self) -> None:
        self._settle_by = None
        self._poke()

    def _mine(self) -> list[str] | None:
        """The connectors whose effects this outbox performs (None: all of them)."""
        if self.handles is None:
            return None
        return [name for name, connector in self.connectors().items() if self.handles(connector)]

    async def perform(self, claimed: Claimed, wait: float = 0.0) -> None:
        """One try of one effect (after `wait` seconds, its rate-limit token's), settled whatever happens (unless
        its effect turned out to be another outbox's)."""
        effect = claimed.effect
        try:
            connector = self.connectors().get(effect.connector)
            taken = False
            if connector is None:
                outcome = Settlement("dead", error=f"no connector named {effect.connector!r} is configured")
            else:
                if claimed.attempts > 1:
                    self.metrics.effect_retries.labels(effect.connector).inc()
                if wait > 0:
                    await asyncio.sleep(wait)
                try:
                    outcome, taken = await self._try(connector, claimed)
                except _Taken:
                    log.info("effect %s was taken by another outbox; not performed here", effect.key,
                             extra={"effect": effect.key})
                    return
                if outcome.error:  # an error may quote the request (a webhook URL holds its key): stored and shown
                    outcome = dataclasses.replace(outcome, error=connector.redact(outcome.error))
            self.metrics.effects.labels(effect.connector, effect.action, outcome.status).inc()
            for attempt in range(3):
                try:
                    await self.settle(effect, outcome, taken)
                    worklog.settled(effect, outcome, claimed.attempts)
                    return
                except Exception:  # the outcome must be written: its lease would otherwise retry (or park) it
                    log.exception("effect %s could not be settled (try %d of 3)", effect.key, attempt + 1,
                                  extra={"effect": effect.key})
                    await asyncio.sleep(1.0)
        finally:
            self._keys.discard(effect.key)

    async def _try(self, connector: Connector, claimed: Claimed) -> tuple[Settlement, bool]:
        """Make the call, its effect taken on disk and marked started at the last moment before the call may reach
        the system, and say how it ended, and whether the effect was taken (raises _Taken when another outbox
        had taken it)."""
        effect = claimed.effect
        mark = None
        if not connector.in_store:  # one in the store is taken in its call's own transaction
            mark = _CallMark(self._start_one, effect, expected_echo(effect.action, effect.params))
        token = CALL_START.set(mark) if mark is not None and connector.starts_on_send else None
        try:
            if mark is not None and token is None:
                await mark()
            crashpoints.reached("effect.before_call")
            result = await self._call(connector, effect, claimed.interrupted)
            crashpoints.reached("effect.after_call")
            return Settlement("done", result=dict(result.data), events=result.events), mark is None or mark.taken
        except asyncio.CancelledError:
            raise
        except _Taken:
            raise
        except Exception as exc:  # every failure is a settlement; nothing escapes the loop
            if mark is not None and isinstance(mark.failed, _Taken):
                raise mark.failed from exc
            if mark is not None and mark.failed is not None:  # not started, so not called: tried again later
                return classify(Retryable(f"the call could not be marked started: {mark.failed}"), claimed,
                                self.policy, self.clock.now()), False
            if mark is not None and not mark.taken and not isinstance(exc, (Rejected, Retryable)):
                # Its mark comes before the call's first byte, and was never written: whatever ended the try (a
                # deadline spent waiting for a connection, a bug), nothing was sent, so it is tried again.
                return classify(Retryable(f"before the call began: {type(exc).__name__}: {exc}"), claimed,
                                self.policy, self.clock.now()), False
            return classify(exc, claimed, self.policy, self.clock.now(), repeatable=connector.deduplicates), \
                mark is not None and mark.taken
        finally:
            if token is not None:
                CALL_START.reset(token)

    async def _call(self, connector: Connector, effect: Effect, interrupted: bool) -> ActionResult:
        if connector.in_store:  # writes into the daemon's own database: on its thread, in turn with the others
            return await self.engine.call(_perform_in_store, connector, effect, interrupted, self.worker,
                                          self.clock.now())
        try:
            async with asyncio.timeout(self.deadline):
                return await _recover_or_perform(connector, effect, interrupted)
        except TimeoutError as exc:
            raise Uncertain(f"no answer within {self.deadline:g} s") from exc

    def _bucket(self, connector: Connector) -> TokenBucket:
        bucket = self.buckets.get(connector.name)
        if bucket is None:
            bucket = self.buckets[connector.name] = TokenBucket(*connector.rate_limit)  # type: ignore[misc]
        return bucket

    def _reserve(self, name: str, now: float) -> float:
        """Take a token of connector `name`'s rate limit: seconds until it may be used (0: at once)."""
        connector = self.connectors().get(name)
        if connector is None or connector.rate_limit is None:
            return 0.0
        return max(0.0, self._bucket(connector).reserve(now))

