"""Gift certificates and abonements as pure mechanics: issue, partial spending, visits used, expiry, freeze."""
from __future__ import annotations

from automator.loyalty.config import LoyaltyConfig
from automator.loyalty.decision import Happening, Outcome, Reading


def on_event(config: LoyaltyConfig, reading: Reading, happening: Happening) -> Outcome:
    """What certificates and abonements make of one event (built on their own branch: nothing yet)."""
    return Outcome()


def on_timer(config: LoyaltyConfig, reading: Reading, happening: Happening) -> Outcome:
    """What certificates and abonements make of one of their timers firing (built on their own branch)."""
    return Outcome()
