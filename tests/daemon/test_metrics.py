"""Daemon metrics: counters, gauges and the ack histogram in a registry private to each Metrics."""
from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from automator.daemon.metrics import Metrics


def samples(m: Metrics) -> dict[tuple[str, frozenset], float]:
    body, _ = m.render()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(body.decode()) for s in family.samples}


def test_counters_increment_and_render_with_labels() -> None:
    m = Metrics()
    m.events_accepted.labels(connector="crm").inc()
    m.events_accepted.labels(connector="crm").inc()
    m.events_rejected.labels(connector="crm", reason="auth").inc()
    m.effects.labels(connector="sms", action="sms.send", status="done").inc()
    m.runs.labels(rule="welcome", status="done").inc(3)
    got = samples(m)
    assert got[("automator_events_accepted_total", frozenset({("connector", "crm")}))] == 2
    assert got[("automator_events_rejected_total", frozenset({("connector", "crm"), ("reason", "auth")}))] == 1
    assert got[("automator_effects_total",
                frozenset({("connector", "sms"), ("action", "sms.send"), ("status", "done")}))] == 1
    assert got[("automator_runs_total", frozenset({("rule", "welcome"), ("status", "done")}))] == 3
    assert got[("automator_reloads_total", frozenset({("result", "failed")}))] == 0


def test_render_gives_content_type_and_help_for_every_metric() -> None:
    body, content_type = Metrics().render()
    assert content_type.startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    for name in ("automator_events_accepted", "automator_events_duplicate", "automator_effect_retries",
                 "automator_timers_fired", "automator_schedule_catch_up", "automator_timers_pending",
                 "automator_journal_lag_seconds", "automator_dead_letters", "automator_ack_seconds"):
        assert families[name].documentation, name


def test_set_gauges() -> None:
    m = Metrics()
    m.set_gauges(timers_pending=3, journal_pending=2, journal_lag_seconds=1.5, effects_pending=4, dead_letters=1,
                 rule_load_errors=0, rules_loaded=12)
    got = samples(m)
    assert got[("automator_timers_pending", frozenset())] == 3
    assert got[("automator_journal_lag_seconds", frozenset())] == 1.5
    assert got[("automator_rules_loaded", frozenset())] == 12


def test_unknown_gauge_raises_and_sets_nothing() -> None:
    m = Metrics()
    with pytest.raises(KeyError):
        m.set_gauges(rules_loaded=5, rules_lodaed=5)
    with pytest.raises(KeyError):
        m.set_gauges(events_accepted=1)  # a counter is no gauge
    assert samples(m)[("automator_rules_loaded", frozenset())] == 0


def test_two_instances_do_not_share_values() -> None:
    a, b = Metrics(), Metrics()
    a.events_accepted.labels(connector="crm").inc()
    a.set_gauges(rules_loaded=7)
    assert ("automator_events_accepted_total", frozenset({("connector", "crm")})) not in samples(b)
    assert samples(b)[("automator_rules_loaded", frozenset())] == 0


def test_ack_histogram_observes() -> None:
    m = Metrics()
    m.ack_seconds.observe(0.0004)
    m.ack_seconds.observe(0.003)
    got = samples(m)
    assert got[("automator_ack_seconds_count", frozenset())] == 2
    assert got[("automator_ack_seconds_bucket", frozenset({("le", "0.0005")}))] == 1
    assert got[("automator_ack_seconds_bucket", frozenset({("le", "0.005")}))] == 2
    assert got[("automator_ack_seconds_bucket", frozenset({("le", "+Inf")}))] == 2
