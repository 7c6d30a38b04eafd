"""The engine's certificate and abonement actions on a run: the rows they keep, the timers an abonement's issue and
freeze set, a synced abonement's freeze mirrored to the booking system only when it performs the freeze, and
refusals as the run's failure."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from automator.actions import CANONICAL
from automator.actions.instruments import freeze_abonement, issue_abonement, issue_certificate, unfreeze_abonement
from automator.channels import ChannelMap
from automator.clock import parse_duration
from automator.core.outcome import StepError
from automator.expr import EvalContext
from automator.loyalty.config import LoyaltyConfig
from automator.loyalty.instrument_types import AbonementType, CertificateType, FreezeLimits
from automator.loyalty.ledger import Entry
from automator.model import Effect, Entity, EntityRef, Pipeline, Timer
from automator.segments import SegmentsConfig

MSK = ZoneInfo("Europe/Moscow")
NOW = datetime(2026, 3, 2, 7, 0, tzinfo=timezone.utc)
POOL = AbonementType("pool_8", "Бассейн ×8", 8, services=("Бассейн",), expires=parse_duration("60d"),
                     freeze=FreezeLimits(14, 1), synced=True)
GIFT = CertificateType("gift_3000", "Сертификат", 300000, parse_duration("365d"))


@dataclass
class Run:
    """A run as an action's hooks see it (ActionRun), over a ledger in memory."""

    loyalty_config: LoyaltyConfig
    now: datetime = NOW
    rows: list[Entry] = field(default_factory=list)
    effects: list[Effect] = field(default_factory=list)
    timers: list[Timer] = field(default_factory=list)
    entities: dict[EntityRef, Entity] = field(default_factory=dict)
    scope: dict[str, Any] = field(default_factory=lambda: {"event": {"id": "ev-1"}})
    ectx: EvalContext = field(default_factory=lambda: EvalContext(now=NOW, tz=MSK))

    def entity(self, ref: EntityRef) -> Entity | None:
        return self.entities.get(ref)

    def client_of(self, system: str, ext_id: str) -> str | None:
        return None

    def links_of(self, client: str) -> list[tuple[str, str]]:
        return []

    def rule_pipeline(self) -> str | None:
        return None

    def pipeline(self, name: str) -> Pipeline | None:
        return None

    def segments(self) -> SegmentsConfig | None:
        return None

    def channels(self) -> ChannelMap:
        raise NotImplementedError

    def loyalty(self) -> LoyaltyConfig | None:
        return self.loyalty_config

    def ledger_of(self, client: str) -> list[Entry]:
        return sorted((e for e in self.rows if e.client == client), key=lambda e: (e.at, e.id))

    def keep(self, entries: list[Entry]) -> None:
        self.rows.extend(e for e in entries if e.id not in {r.id for r in self.rows})


def effect(action: str, key: str, **params: Any) -> Effect:
    return Effect(key=key, run_id="run-1", rule_id="front-desk", action=action, connector="engine",
                  params={"client": "77", **params}, delivery=CANONICAL[action].delivery, at=NOW,
                  entity=EntityRef("client", "77"))


def config(sync_actions: frozenset[str] = frozenset()) -> LoyaltyConfig:
    return LoyaltyConfig(certificates={"gift_3000": GIFT}, abonements={"pool_8": POOL}, sync="booking",
                         sync_actions=sync_actions)


def test_a_synced_abonements_freeze_is_mirrored_only_to_a_booking_system_that_freezes() -> None:
    for declared, mirrored in ((frozenset({"yclients.abonement_freeze", "yclients.abonement_unfreeze"}), True),
                               (frozenset({"loyalty.accrue"}), False)):
        run = Run(config(declared))
        issue_abonement(effect("abonement.issue", "run-1/do/0", type="pool_8", number="5501"), run)
        assert [t.id for t in run.timers] == ["loyalty/77/abonement:5501/abonement_expire/2026-05-01",
                                              "loyalty/77/abonement:5501/abonement_notice/2026-05-01"]
        freeze_abonement(effect("abonement.freeze", "run-2/do/0", number="5501", until="2026-03-11"), run)
        assert [(e.kind, e.detail["days"]) for e in run.rows if e.kind == "freeze"] == [("freeze", 10)]
        assert run.timers[-2].id == "loyalty/77/abonement:5501/abonement_expire/2026-05-11"  # ten days later
        run.now = datetime(2026, 3, 5, 7, tzinfo=timezone.utc)
        unfreeze_abonement(effect("abonement.unfreeze", "run-3/do/0", number="5501"), run)
        assert run.timers[-2].id == "loyalty/77/abonement:5501/abonement_expire/2026-05-04"  # frozen 2–4 March
        shown = [(e.key, e.action, e.connector, dict(e.params), e.delivery) for e in run.effects]
        assert shown == ([("run-2/do/0>sync", "yclients.abonement_freeze", "booking",
                           {"abonement": "5501", "till": "2026-03-11"}, "at_least_once"),
                          ("run-3/do/0>sync", "yclients.abonement_unfreeze", "booking", {"abonement": "5501"},
                           "at_least_once")] if mirrored else [])


def test_an_unknown_type_and_a_second_issue_of_a_number_fail_the_run_saying_why() -> None:
    run = Run(config())
    with pytest.raises(StepError, match=r"abonement.issue: unknown abonement type 'pool_9' \(the types are pool_8\)"):
        issue_abonement(effect("abonement.issue", "k0", type="pool_9"), run)
    issue_abonement(effect("abonement.issue", "k1", type="pool_8", number="7"), run)
    with pytest.raises(StepError, match="abonement 7 already exists"):
        issue_abonement(effect("abonement.issue", "k2", type="pool_8", number="7"), run)
    with pytest.raises(StepError, match="client 77 has no abonement 8"):
        freeze_abonement(effect("abonement.freeze", "k3", number="8", until="2026-03-05"), run)
    with pytest.raises(StepError, match="visits 'ten' is not a whole number"):
        issue_abonement(effect("abonement.issue", "k5", type="pool_8", visits="ten"), run)
    with pytest.raises(StepError, match="the number of visits must be above zero"):
        issue_abonement(effect("abonement.issue", "k6", type="pool_8", visits="-2"), run)
    with pytest.raises(StepError, match="until 'soon' is not a date"):
        freeze_abonement(effect("abonement.freeze", "k4", number="7", until="soon"), run)


def test_a_certificate_issue_keeps_its_row_and_tells_its_number_and_last_day() -> None:
    run = Run(config())
    [created] = issue_certificate(effect("certificate.issue", "run-1/do/0", type="gift_3000", number="A-1",
                                         expires="2026-12-31"), run)
    [row] = run.rows
    assert (row.id, row.account, row.amount, row.expires_at, row.event, row.rule) == (
        "run-1/do/0", "certificate:A-1", 300000, datetime(2026, 12, 31, 21, tzinfo=timezone.utc), "ev-1",
        "front-desk")
    assert (created.type, created.entity, created.data["last_day"], created.data["nominal"]) == (
        "certificate.created", EntityRef("certificate", "A-1"), "2026-12-31", "3000.00")
    with pytest.raises(StepError, match="certificate A-1 already exists"):
        issue_certificate(effect("certificate.issue", "run-2/do/0", type="gift_3000", number="A-1"), run)
    with pytest.raises(StepError, match="expires 2026-03-01 is before the day it is issued"):
        issue_certificate(effect("certificate.issue", "run-3/do/0", type="gift_3000", expires="2026-03-01"), run)
