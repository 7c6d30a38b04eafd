"""The daemon's Prometheus metrics, kept in a registry of their own per daemon."""
from __future__ import annotations

from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from automator.store.base import LockTimes

# A webhook is acked once its event is journalled: well under a millisecond when healthy, a second is alarming.
ACK_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class Metrics:
    """Counters, gauges and the ack histogram of one daemon; `render()` gives the /metrics response."""

    def __init__(self) -> None:
        # A private registry, not the global one: several daemons (in tests) live in one process.
        self.registry = CollectorRegistry()

        def counter(name: str, doc: str, labels: tuple[str, ...]) -> Counter:
            return Counter(f"automator_{name}", doc, labels, registry=self.registry)

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(f"automator_{name}", doc, registry=self.registry)

        self.events_accepted = counter(
            "events_accepted", "Webhook events accepted and journalled, by connector.", ("connector",))
        self.events_rejected = counter(
            "events_rejected", "Webhook requests refused, by connector and reason "
            "(auth, too_large, malformed, incomplete, unstorable, unknown_connector, method).", ("connector", "reason"))
        self.events_duplicate = counter(
            "events_duplicate", "Webhook events already journalled (a sender's retry), acked and dropped.",
            ("connector",))
        self.server_errors = counter(
            "http_server_errors", "Answers with a 5xx status, by status: 500 a request that failed (see the log), "
            "503 stopping, a system a webhook needs unreachable, or past daemon.max_connections.", ("status",))
        self.http_timeouts = counter(
            "http_timeouts", "Connections let go because a request's headers or body did not arrive in time "
            "(daemon.header_timeout, daemon.body_timeout), by phase (headers, body).", ("phase",))
        self.runs = counter("runs", "Rule runs that ended, by rule and final status.", ("rule", "status"))
        self.effects = counter(
            "effects", "Actions sent to external systems, by outcome "
            "(done, retry, dead, uncertain, rejected).", ("connector", "action", "status"))
        self.effect_retries = counter(
            "effect_retries", "Attempts at an action repeated after a failure, by connector.", ("connector",))
        self.timers_fired = counter("timers_fired", "Timers that came due and were fired, by kind.", ("kind",))
        self.reloads = counter("reloads", "Rule reloads, by result (ok, failed).", ("result",))
        self.schedule_catch_up = counter(
            "schedule_catch_up", "Scheduled firings missed while the daemon was down, by rule and the "
            "catch-up policy applied.", ("rule", "policy"))

        self.store_write_lock_seconds = counter(
            "store_write_lock_seconds", "Seconds the database's one write lock was waited for and held, by process "
            "(daemon, engine) and state (waited, held); held near all the time, the store is what limits the daemon.",
            ("process", "state"))

        self.timers_pending = gauge("timers_pending", "Timers waiting to fire (waits, schedules, retries).")
        self.journal_pending = gauge("journal_pending", "Events accepted but not yet processed.")
        self.journal_lag_seconds = gauge(
            "journal_lag_seconds", "Age in seconds of the oldest event not yet processed; 0 when none waits.")
        self.effects_pending = gauge("effects_pending", "Actions decided but not yet done, dead or parked.")
        self.dead_letters = gauge(
            "dead_letters", "Actions given up on after their retries, waiting for an operator.")
        self.rule_load_errors = gauge(
            "rule_load_errors", "Problems found by the last rule load; the previous good rules stay in force.")
        self.rules_loaded = gauge("rules_loaded", "Rules in force.")

        self.ack_seconds = Histogram(
            "automator_ack_seconds", "Seconds from receiving a webhook request to sending its 2xx answer.",
            buckets=ACK_BUCKETS, registry=self.registry)

        self._gauges = {name: value for name, value in vars(self).items() if isinstance(value, Gauge)}
        # Both results shown from the start, so a first failed reload is an increase an alert can see.
        for result in ("ok", "failed"):
            self.reloads.labels(result=result)

    def set_gauges(self, **values: float) -> None:
        """Set gauges by attribute name, e.g. `set_gauges(timers_pending=3)`; an unknown name raises KeyError."""
        unknown = sorted(set(values) - set(self._gauges))
        if unknown:
            # Checked before setting any, so a typo does not leave half the figures updated.
            raise KeyError(f"no such gauge: {', '.join(unknown)}; gauges are {', '.join(sorted(self._gauges))}")
        for name, value in values.items():
            self._gauges[name].set(value)

    def render(self) -> tuple[bytes, str]:
        """The exposition body and its content type, for the /metrics response."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class LockTime:
    """Adds what a write lock's running totals grew by since the last call to `store_write_lock_seconds`."""

    def __init__(self, lock: LockTimes | None, process: str) -> None:
        self.lock, self.process = lock, process
        self._seen = (0.0, 0.0)

    def feed(self, metrics: Any) -> None:
        """Count the growth into `metrics` (the daemon's Metrics, or the engine process's Tally)."""
        if self.lock is None:
            return
        now = (self.lock.waited, self.lock.held)
        counter = metrics.store_write_lock_seconds
        for state, value, seen in zip(("waited", "held"), now, self._seen):
            if value > seen:
                counter.labels(self.process, state).inc(value - seen)
        self._seen = now
