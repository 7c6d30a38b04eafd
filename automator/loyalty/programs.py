"""loyalty.yaml's programs as pure mechanics: what a paid visit, a refund or a timer earns, spends, expires or
changes in a client's ledger (tiers, points, cashback, discounts, every Nth visit, referral)."""
from __future__ import annotations

from automator.loyalty.config import LoyaltyConfig
from automator.loyalty.decision import Happening, Outcome, Reading


def on_event(config: LoyaltyConfig, reading: Reading, happening: Happening) -> Outcome:
    """What the programs make of one event (built on their own branch: nothing yet)."""
    return Outcome()


def on_timer(config: LoyaltyConfig, reading: Reading, happening: Happening) -> Outcome:
    """What the programs make of one of their timers firing (built on their own branch: nothing yet)."""
    return Outcome()
