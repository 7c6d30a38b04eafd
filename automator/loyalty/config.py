"""loyalty.yaml compiled: the programs, the gift certificate and abonement types, and what the product keeps in
step with a booking system (config/loyalty.py compiles it)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

# How long before points, a certificate or an abonement lapse their "expiring" event comes, unless loyalty.yaml
# says otherwise (`notice: 7d`).
DEFAULT_NOTICE = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class LoyaltyConfig:
    """loyalty.yaml compiled."""

    programs: Mapping[str, Any] = field(default_factory=dict)  # name -> programs.Program
    certificates: Mapping[str, Any] = field(default_factory=dict)  # type name -> instruments.CertificateType
    abonements: Mapping[str, Any] = field(default_factory=dict)  # type name -> instruments.AbonementType
    # The connector whose loyalty cards, categories and abonements mirror the product's ledger (`sync: yclients`);
    # None: the ledger is the product's alone.
    sync: str | None = None
    # The actions that connector performs (its vendor actions included): a mirror is planned only for those.
    sync_actions: frozenset[str] = frozenset()
    notice: timedelta = DEFAULT_NOTICE

    def mirrors(self, action: str) -> str | None:
        """The connector an action is mirrored to: `sync:`'s, when it performs `action`; else None."""
        return self.sync if self.sync is not None and action in self.sync_actions else None

    def program(self, name: str | None) -> Any:
        """The program called `name`, or None."""
        return self.programs.get(name) if name else None
