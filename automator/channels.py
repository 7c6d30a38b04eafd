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
# The fields that say where a record came from: an event carrying one of them is a touch (automator/facts.py).
UTM_FIELDS = ("utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term")
SOURCE_FIELDS = frozenset({*MATCH_FIELDS, *UTM_FIELDS, "campaign"})
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
    # (field, lower-case value) -> the place of the first channel that matches it: classify() runs on every deal,
    # lead and booking event the engine decides.
    _first: Mapping[tuple[str, str], int] = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        first: dict[tuple[str, str], int] = {}
        for place, channel in enumerate(self.channels):
            for field, values in (channel.match or {}).items():
                for value in values:
                    first.setdefault((field, value), place)
        object.__setattr__(self, "_first", first)

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
        """The channel a record's source fields name: an explicit `channel` that is a known name first, then the
        first channel (in automator.yaml's order) whose `match:` one of the fields (MATCH_FIELDS) meets; None when
        nothing says where it came from."""
        explicit = fields.get("channel")
        if isinstance(explicit, str) and self.get(explicit) is not None:
            return explicit
        # The first channel in order, so that the owner decides which wins: a Bitrix24 deal from the site form
        # (WEB) that came by a VK advert (utm_source=vk) is VK's when `vk` is listed before `site`, as the defaults
        # list it.
        best = len(self.channels)
        first = self._first
        for field in MATCH_FIELDS:
            value = fields.get(field)
            if not value:
                continue
            for text in value if isinstance(value, (list, tuple)) else (value,):
                place = first.get((field, str(text).strip().lower()))
                if place is not None and place < best:
                    best = place
        return self.channels[best].name if best < len(self.channels) else None


def campaign_of(fields: Mapping[str, Any]) -> str | None:
    """The campaign a record's source fields name: `campaign` (a rule's set_source), else `utm_campaign`."""
    for name in ("campaign", "utm_campaign"):
        value = fields.get(name)
        if value not in (None, "") and not isinstance(value, (Mapping, list, bool)):
            return str(value)
    return None


def carries_source(fields: Mapping[str, Any]) -> bool:
    """True when the fields say anything about where the record came from (a value in a SOURCE_FIELDS field)."""
    return any(fields.get(name) not in (None, "", [], ()) for name in SOURCE_FIELDS)


def overlaps(channels: ChannelMap) -> list[tuple[str, str]]:
    """A value two channels both match, as (the later one's path, a hint): the first channel wins, so the later
    one never gets it. Validation shows them as warnings."""
    seen: dict[tuple[str, str], str] = {}
    found = []
    for channel in channels.channels:
        for field, values in (channel.match or {}).items():
            for value in sorted(values):
                first = seen.setdefault((field, value), channel.name)
                if first != channel.name:
                    found.append((f"channels.{channel.name}.match.{field}",
                                  f"{field} {value!r} is matched by channel '{first}' first: '{channel.name}' never "
                                  f"gets it"))
    return found


def _channel(name: str, title: str, aggregator: bool = False, **match: tuple[str, ...]) -> Channel:
    return Channel(name, title, aggregator, {f: frozenset(v.lower() for v in vs) for f, vs in match.items()})


# The set a project gets without `channels:`, in the order classify() tries it: the channels a source value
# names exactly (an advert's utm_source, a messenger, a portal) before the general ones (a site form, a call, an
# "other"), so that a site form filled in after a VK advert is VK's. It covers:
# - Bitrix24's default SOURCE_IDs (connector-contracts-2.md §2.6): CALL, EMAIL, WEB, ADVERTISING, PARTNER,
#   RECOMMENDATION, TRADE_SHOW, WEBFORM, CALLBACK, RC_GENERATOR, STORE, OTHER (a portal's own `UC_…` or numeric
#   ones mean what its owner says: they go under `channels:`);
# - the utm_source values ad cabinets, site builders and link shorteners write most often;
# - YCLIENTS's booking sources as the connector reports them in `lead_source`: its own online booking (`online`,
#   `widget`, `bookform`, `mobile_app`), a record the administrator made (`admin`), and the portals it takes
#   bookings from (Yandex Maps, 2GIS, VK, Instagram, Avito, ProDoctorov, …) by name.
DEFAULTS = ChannelMap((
    _channel("vk", "ВКонтакте", channel=("vkontakte", "vk.com"), lead_source=("vk", "vkontakte", "vk_ads"),
             utm_source=("vk", "vkontakte", "vk.com", "vk_ads", "vkads", "mytarget"), tags=("vk", "вк", "вконтакте")),
    _channel("instagram", "Instagram", channel=("ig",), lead_source=("instagram", "ig"), utm_source=("instagram", "ig"),
             tags=("instagram", "инстаграм")),
    _channel("facebook", "Facebook", channel=("fb",), lead_source=("facebook", "fb", "facebook_leads"),
             utm_source=("facebook", "fb"), tags=("facebook",)),
    _channel("whatsapp", "WhatsApp", channel=("wa",), lead_source=("whatsapp", "wa"), utm_source=("whatsapp", "wa"),
             tags=("whatsapp",)),
    _channel("telegram", "Telegram", channel=("tg",), lead_source=("telegram", "tg"), utm_source=("telegram", "tg"),
             tags=("telegram",)),
    _channel("yandex_maps", "Яндекс Карты", channel=("yamaps",), lead_source=("yandex_maps", "yamaps", "yandex_business"),
             utm_source=("yandex_maps", "yamaps", "maps.yandex"), tags=("яндекс карты",)),
    _channel("2gis", "2ГИС", channel=("dgis",), lead_source=("2gis", "dgis"), utm_source=("2gis", "dgis"),
             tags=("2гис", "2gis")),
    _channel("avito", "Авито", lead_source=("AVITO", "avito"), utm_source=("avito",), tags=("авито", "avito")),
    _channel("aggregator", "Агрегаторы", True,
             lead_source=("aggregator", "prodoctorov", "napopravku", "zoon", "docdoc", "sberzdorovie", "yell",
                          "yclients_marketplace"),
             utm_source=("prodoctorov", "napopravku", "zoon", "docdoc", "sberzdorovie", "yell")),
    _channel("yandex_direct", "Яндекс Директ", channel=("direct",),
             lead_source=("ADVERTISING", "yandex_direct", "direct"),
             utm_source=("yandex", "yandex_direct", "direct", "ya", "yandex.direct")),
    _channel("email", "E-mail", lead_source=("EMAIL", "email"), utm_source=("email", "mail", "newsletter"),
             utm_medium=("email",)),
    _channel("recommendation", "Рекомендации", lead_source=("RECOMMENDATION", "PARTNER", "referral", "recommendation"),
             utm_source=("referral",)),
    _channel("call_tracking", "Коллтрекинг", channel=("call", "phone", "call_tracking"),
             lead_source=("CALL", "call", "phone", "calltracking", "call_tracking"),
             utm_source=("calltracking", "call_tracking", "calltouch", "comagic", "roistat", "mango")),
    _channel("site", "Сайт",
             channel=("site", "website", "online_booking"),
             lead_source=("WEB", "WEBFORM", "CALLBACK", "site", "website", "form", "online", "widget", "bookform",
                          "online_booking", "mobile_app", "app"),
             utm_source=("site", "website", "seo", "organic"), utm_medium=("organic",)),
    _channel("walk_in", "С улицы", channel=("walk-in",), lead_source=("STORE", "walk_in", "walk-in", "admin")),
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
