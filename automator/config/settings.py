"""automator.yaml compiled: the project's Config (timezone, business hours, connectors, settings, limits), and
which configured connector an action goes to."""
from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from automator.actions.spec import ActionSpec
from automator.catalogue import CORE, Catalogue
from automator.channels import DEFAULTS as DEFAULT_CHANNELS, ChannelMap
from automator.model import Location, Pipeline

if TYPE_CHECKING:
    from automator.clock import BusinessHours

DEFAULT_CHAIN_DEPTH = 10


@dataclass(frozen=True, slots=True)
class ConnectorConfig:
    """One named connector instance from automator.yaml."""

    name: str
    type: str
    options: Mapping[str, Any]
    actions: Mapping[str, ActionSpec]
    location: Location | None = None
    own_ids: bool = True  # the type's `Connector.own_ids`: its records' ids are its system's, not persons'


@dataclass(frozen=True, slots=True)
class Config:
    """automator.yaml compiled: timezone, business hours, connectors, settings, limits."""

    timezone: ZoneInfo
    branches: Mapping[str, BusinessHours] = field(default_factory=dict)
    default_branch: str | None = None
    connectors: Mapping[str, ConnectorConfig] = field(default_factory=dict)
    settings: Mapping[str, Any] = field(default_factory=dict)
    store: str | None = None
    chain_depth: int = DEFAULT_CHAIN_DEPTH
    daemon: Mapping[str, Any] = field(default_factory=dict)  # `daemon:` of automator.yaml, read by automator run
    # What the rules can read: the engine's events and fields and those of every connector named above.
    catalogue: Catalogue = CORE
    # Where leads come from: automator.yaml's `channels:`, else the built-in set (automator/channels.py).
    channels: ChannelMap = DEFAULT_CHANNELS

    def branch(self, name: str | None) -> BusinessHours | None:
        """Hours of the named branch, else the default branch, else the only one."""
        if name and name in self.branches:
            return self.branches[name]
        if self.default_branch:
            return self.branches.get(self.default_branch)
        if len(self.branches) == 1:
            return next(iter(self.branches.values()))
        return None

    @property
    def systems(self) -> frozenset[str]:
        """The connectors whose ids are their systems' own (every one but `local`): their events are resolved to
        persons when journaled, and they are sent each person's id in their system (`automator.identity`)."""
        return frozenset(name for name, conf in self.connectors.items() if conf.own_ids)


def choose_connector(action: str, via: str | None, pipeline: Any, pipelines: Mapping[str, Pipeline],
                     connectors: Mapping[str, ConnectorConfig]) -> str | None:
    """The connector an action goes to: `via`, else (for a deal action) the connector of the deal's pipeline,
    else the first connector in automator.yaml that performs it; None when none does. The daemon decides with
    the rendered params and the run's deal, `validate` with what the rule says (so both choose alike)."""
    if via:
        return via
    if action.startswith("deal."):
        found = pipelines.get(str(pipeline)) if pipeline else None
        if found is not None and found.connector:
            return found.connector
    for connector in connectors.values():
        if action in connector.actions:
            return connector.name
    return None
