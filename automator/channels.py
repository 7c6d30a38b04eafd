"""The channels a business gets its clients from (pure): automator.yaml's `channels:` (or the built-in set), and
which channel a lead, deal or booking came from by the source fields the connectors fill (`lead_source`,
`utm_source`, `utm_medium`, …) or a rule's `set_source` (`channel`).

The reports group by these names; a channel marked `aggregator` (a booking portal, a doctors' directory) is
shown apart where the owner compares own channels with aggregators.
"""
from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Mapping
from typing import Any

# The fields a channel's `match:` may look at, in the order classify() tries them when a channel names several.
MATCH_FIELDS = ("channel", "lead_source", "utm_source", "utm_medium", "source_description", "tags")
_KEYS = frozenset({"title", "aggregator", "match"})


class ChannelsError(ValueError):
    """`channels:` of automator.yaml that cannot be used; `path` is where (`channels.vk.match`)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


@dataclass(frozen=True, slots=True)
class Channel:
    """One channel: its name in reports and rules, its title as the owner reads it, whether it is an aggregator,
    and the source values (by field, lower case) that mean it."""

    name: str
    title: str
    aggregator: bool = False
    match: Mapping[str, frozenset[str]] = None  # type: ignore[assignment]

    def matches(self, field: str, value: str) -> bool:
        """True when `value` of `field` names this channel (case-insensitive)."""
        return value.strip().lower() in (self.match or {}).get(field, frozenset())


@dataclass(frozen=True, slots=True)
class ChannelMap:
    """The project's channels, in the order automator.yaml lists them (the first match wins)."""

    channels: tuple[Channel, ...]

    def names(self) -> tuple[str, ...]:
        """Every channel's name, in order."""
        return tuple(c.name for c in self.channels)

    def get(self, name: str | None) -> Channel | None:
        """The channel called `name`."""
        return next((c for c in self.channels if c.name == name), None)

    def title(self, name: str | None) -> str:
        """The channel's title; the name itself for one the map does not know; "не указан" for none."""
        if not name:
            return "не указан"
        channel = self.get(name)
        return channel.title if channel is not None else name

    def is_aggregator(self, name: str | None) -> bool:
        """True when the channel is an aggregator."""
        channel = self.get(name)
        return bool(channel and channel.aggregator)

    def classify(self, fields: Mapping[str, Any]) -> str | None:
        """The channel a record's source fields name: an explicit `channel` that is a known name first, then each
        channel's `match:` in order, field by field (MATCH_FIELDS); None when nothing says where it came from."""
        explicit = fields.get("channel")
        if isinstance(explicit, str) and self.get(explicit) is not None:
            return explicit
        for field in MATCH_FIELDS:
            value = fields.get(field)
            values = [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)] if value else []
            for text in values:
                for channel in self.channels:
                    if channel.matches(field, text):
                        return channel.name
        return None


def _channel(name: str, title: str, aggregator: bool = False, **match: tuple[str, ...]) -> Channel:
    return Channel(name, title, aggregator, {f: frozenset(v.lower() for v in vs) for f, vs in match.items()})


# The set a project gets without `channels:`. Bitrix24's default SOURCE_IDs (connector-contracts-2.md §2.6) and the
# utm_source values ad cabinets and site builders write most often.
DEFAULTS = ChannelMap((
    _channel("site", "Сайт", lead_source=("WEB", "WEBFORM", "CALLBACK", "site", "website", "form"),
             utm_source=("site", "website", "seo", "organic")),
    _channel("call_tracking", "Коллтрекинг", lead_source=("CALL", "calltracking", "call_tracking"),
             utm_source=("calltracking", "call_tracking", "calltouch", "comagic", "roistat")),
    _channel("vk", "ВКонтакте", lead_source=("vk", "vkontakte"), utm_source=("vk", "vkontakte", "vk.com", "vk_ads"),
             tags=("vk", "вк", "вконтакте")),
    _channel("instagram", "Instagram", lead_source=("instagram",), utm_source=("instagram", "ig"),
             tags=("instagram", "инстаграм")),
    _channel("facebook", "Facebook", lead_source=("facebook",), utm_source=("facebook", "fb"),
             tags=("facebook",)),
    _channel("whatsapp", "WhatsApp", lead_source=("whatsapp",), utm_source=("whatsapp", "wa"),
             tags=("whatsapp",)),
    _channel("telegram", "Telegram", lead_source=("telegram",), utm_source=("telegram", "tg"),
             tags=("telegram",)),
    _channel("yandex_direct", "Яндекс Директ", utm_source=("yandex", "yandex_direct", "direct", "ya"),
             lead_source=("ADVERTISING",)),
    _channel("yandex_maps", "Яндекс Карты", lead_source=("yandex_maps",), utm_source=("yandex_maps", "yamaps"),
             tags=("яндекс карты",)),
    _channel("2gis", "2ГИС", lead_source=("2gis",), utm_source=("2gis", "dgis"), tags=("2гис", "2gis")),
    _channel("aggregator", "Агрегаторы", True, lead_source=("aggregator", "prodoctorov", "napopravku", "zoon"),
             utm_source=("prodoctorov", "napopravku", "zoon")),
    _channel("recommendation", "Рекомендации", lead_source=("RECOMMENDATION", "PARTNER", "referral"),
             utm_source=("referral",)),
    _channel("walk_in", "С улицы", lead_source=("STORE", "walk_in", "walk-in", "admin")),
    _channel("email", "E-mail", lead_source=("EMAIL", "email"), utm_source=("email", "mail", "newsletter"),
             utm_medium=("email",)),
    _channel("other", "Другое", lead_source=("OTHER", "TRADE_SHOW", "RC_GENERATOR")),
))


def load(raw: Mapping[str, Any] | None) -> ChannelMap:
    """automator.yaml's `channels:` compiled; None (no `channels:`) gives DEFAULTS. A ChannelsError names the bad
    entry's path."""
    if raw is None:
        return DEFAULTS
    if not isinstance(raw, Mapping):
        raise ChannelsError("channels", "must be a mapping of channel names to {title, aggregator, match}")
    channels = []
    for name, spec in raw.items():
        path = f"channels.{name}"
        spec = {} if spec is None else spec
        if not isinstance(spec, Mapping):
            raise ChannelsError(path, "must be a mapping with title, aggregator and match")
        unknown = sorted(set(spec) - _KEYS)
        if unknown:
            raise ChannelsError(f"{path}.{unknown[0]}", f"unknown key (a channel has {', '.join(sorted(_KEYS))})")
        aggregator = spec.get("aggregator", False)
        if not isinstance(aggregator, bool):
            raise ChannelsError(f"{path}.aggregator", "must be true or false")
        match: dict[str, frozenset[str]] = {}
        for field, values in (spec.get("match") or {}).items():
            if field not in MATCH_FIELDS:
                raise ChannelsError(f"{path}.match.{field}", f"unknown field (one of {', '.join(MATCH_FIELDS)})")
            listed = values if isinstance(values, (list, tuple)) else [values]
            match[field] = frozenset(str(v).strip().lower() for v in listed)
        channels.append(Channel(str(name), str(spec.get("title") or name), aggregator, match))
    return ChannelMap(tuple(channels))
