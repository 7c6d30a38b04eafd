"""The deciding half of the daemon: the worker loop (decide journaled events, write the decisions) and the timers
loop (fire due waits, `held` timers and schedules; prune history), on one store thread. Both sleep until woken
(events journaled, a timer set, a reload), not polling.

The daemon runs it in its own process by default (automator/daemon/engine_process.py), so that deciding rules
has a core of its own while the first process serves webhooks and performs effects; with `--processes 1` it
runs in the daemon's process. Either way it is the same loops: what they report goes to the hooks given.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from automator.clock import Clock
from automator.config.project import Project
from automator.daemon import segments_daily, worklog
from automator.daemon.storethread import StoreThread
from automator.daemon.timers import fire_due
from automator.daemon.worker import BatchReport, process_batch

log = logging.getLogger(__name__)
PRUNE_EVERY = 3600.0  # seconds between prunings of old history
# The loops are woken when there is work: events journaled (by this daemon, or by an operator's command, which
# nudges it), a timer set earlier than the next one, a reload. These are the longest they sleep in any case.
WORK_SAFETY_NET = 60.0
TIMERS_SAFETY_NET = 60.0
SEGMENTS_SAFETY_NET = 60.0  # a reload that adds or changes segments.yaml is seen within this


class Engine:
    """Decides what is journaled and fires what is due, until stopped.

    `project` gives the rules in force (a reload swaps them); `metrics` needs `runs`, `timers_fired` and
    `schedule_catch_up` counters (prometheus_client's shape); `on_decided(report)` hears of every batch written
    (the backlog, the outbox's wake-up).
    """

    def __init__(self, store: StoreThread, project: Callable[[], Project], *, worker: str, clock: Clock,
                 metrics: Any, retention: timedelta, on_decided: Callable[[BatchReport], None],
                 wake: asyncio.Event | None = None, wake_timers: asyncio.Event | None = None) -> None:
        self.store = store
        self.project = project
        self.worker = worker
        self.clock = clock
        self.metrics = metrics
        self.retention = retention
        self.on_decided = on_decided
        self.wake = wake or asyncio.Event()  # events were journaled: decide them
        self.wake_timers = wake_timers or asyncio.Event()  # a timer may be due earlier than the loop thought
        self._pruned = time.monotonic()
        self.wake_segments = asyncio.Event()  # the daily rescoring's sleep: stopping ends it

    async def run(self, stopping: asyncio.Event) -> None:
        """Both loops, until `stopping` is set; each outlives its failures."""
        relay = asyncio.create_task(self._wake_on(stopping))
        try:
            await asyncio.gather(survive("worker", stopping, lambda: self._work_once(stopping)),
                                 survive("timers", stopping, lambda: self._timers_once(stopping)),
                                 survive("segments", stopping, lambda: self._segments_once(stopping)))
        finally:
            relay.cancel()

    async def _wake_on(self, stopping: asyncio.Event) -> None:
        # The loops sleep on their own wake-up alone (one wait, no task per sleep): stopping wakes them too.
        await stopping.wait()
        self.wake.set()
        self.wake_timers.set()
        self.wake_segments.set()

    async def _work_once(self, stopping: asyncio.Event) -> None:
        # Cleared before the look, not after: what is journaled while a batch is decided wakes the next look.
        self.wake.clear()
        report = await self.store.call(process_batch, self.project(), self.worker, self.clock.now())
        if report.events or report.failed:
            for decision in report.decisions:
                for run in decision.runs:
                    self.metrics.runs.labels(run.rule_id, run.status).inc()
            worklog.decided(report.decisions)
            if report.earliest_timer is not None:
                self.wake_timers.set()
            self.on_decided(report)
        if report.more or report.emitted:
            return  # pending events are left (the batch was cut, or it journaled events of its own): at once
        # Nothing is left: asleep until events are journaled (the daemon's pipe, the outbox, the timers), not a look
        # a second (each one a store query and a thread hop; at 500 events/s one in two looks found nothing).
        await sleep_until_woken(self.wake, stopping, WORK_SAFETY_NET)

    async def _timers_once(self, stopping: asyncio.Event) -> None:
        self.wake_timers.clear()  # as in _work_once: a timer set from now on wakes the next look
        now = self.clock.now()
        report = await self.store.call(fire_due, self.project(), now)
        for kind, count in report.by_kind.items():
            self.metrics.timers_fired.labels(kind).inc(count)
        for rule_id, policy, _missed in report.catch_ups:
            self.metrics.schedule_catch_up.labels(rule_id, policy).inc()
        if report.events:
            self.wake.set()
        if time.monotonic() - self._pruned > PRUNE_EVERY:
            self._pruned = time.monotonic()
            await self.store.call(lambda s: s.prune(now, self.retention))
        if report.by_kind:
            return  # more may be due
        # Asleep until the next timer is due, or a decision sets an earlier one, or the rules are reloaded.
        timeout = TIMERS_SAFETY_NET
        if report.next_due is not None:
            timeout = min(timeout, max(0.0, (report.next_due - self.clock.now()).total_seconds()))
        timeout = min(timeout, max(0.0, PRUNE_EVERY - (time.monotonic() - self._pruned)))
        await sleep_until_woken(self.wake_timers, stopping, timeout)


    async def _segments_once(self, stopping: asyncio.Event) -> None:
        """The daily rescoring when one is due (segments.yaml's `rescore:`, a day missed, a new configuration),
        then asleep until the next."""
        self.wake_segments.clear()
        project = self.project()
        config = project.segments if project is not None else None
        timeout = SEGMENTS_SAFETY_NET
        if config is not None:
            tz = project.config.timezone
            try:
                when = await self.store.call(segments_daily.due, config, self.clock.now(), tz)
                if when is not None:
                    await segments_daily.rescore_daily(self.store, project, self.clock.now(), when)
                    self.wake.set()  # the worker decides the segment.rescore events
            except Exception:  # tried again at the next look (a minute), not every second
                log.exception("the daily rescoring of segments failed; it is tried again in %g s", SEGMENTS_SAFETY_NET)
                await sleep_until_woken(self.wake_segments, stopping, SEGMENTS_SAFETY_NET)
                return
            timeout = min(timeout, (segments_daily.next_run(config, self.clock.now(), tz)
                                    - self.clock.now()).total_seconds())
        await sleep_until_woken(self.wake_segments, stopping, max(0.0, timeout))


async def sleep_until_woken(wake: asyncio.Event, stopping: asyncio.Event, timeout: float) -> None:
    """Until `wake` is set (it is not cleared here: the caller clears it before it looks), the daemon stops or
    `timeout` seconds; one wait on the event, no task made (`stopping` is expected to set `wake` too)."""
    if wake.is_set() or stopping.is_set():
        return
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await wake.wait()


async def survive(name: str, stopping: asyncio.Event, step: Callable[[], Awaitable[None]]) -> None:
    """Run `step` until the daemon stops, outliving its failures: an error (the database held too long by another
    process, a bug) is logged and the loop goes on after a second, as huey's worker does. Nothing committed is
    lost, and what was not is claimed again."""
    while not stopping.is_set():
        try:
            await step()
        except Exception:
            log.exception("the %s loop failed; it goes on in 1 s", name)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=1.0)
