"""loyalty.yaml's `certificates:` and `abonements:` compiled (gift certificate and abonement types): nominals exact,
lives in whole days, weeks or months, freeze limits in days, each problem at its file:line:col with a hint."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from automator.clock import Duration
from automator.config.context import CompileContext
from automator.history import HistoryError, minor_units
from automator.loyalty.instrument_types import AbonementType, CertificateType, FreezeLimits

ANY_NOMINAL = "any"
DAYS_HINT = "an instrument lapses at the end of a day: write days, weeks or months, such as 90d, 2w or 12mo"


def compile_certificates(data: Any, ctx: CompileContext) -> dict[str, CertificateType]:
    """`certificates:` into type name -> CertificateType."""
    found: dict[str, CertificateType] = {}
    for name, raw in (data.items() if isinstance(data, Mapping) else ()):
        path = ("certificates", name)
        if not isinstance(raw, Mapping) or ctx.is_broken(path):
            continue
        nominal: int | None = None
        if raw.get("nominal") != ANY_NOMINAL:
            try:
                nominal = minor_units(raw.get("nominal"), "nominal")
            except HistoryError as exc:
                ctx.error((*path, "nominal"), str(exc), "write the nominal as decimal text, such as \"3000.00\"")
                continue
            if nominal <= 0:
                ctx.error((*path, "nominal"), "a certificate's nominal must be above zero",
                          "write what it is worth, such as \"3000.00\", or any for a nominal given at issue")
                continue
        found[str(name)] = CertificateType(name=str(name), title=str(raw["title"]), nominal=nominal,
                                           expires=_life(raw, path, ctx), partial=bool(raw.get("partial", True)),
                                           prefix=str(raw.get("prefix") or ""))
    return found


def compile_abonements(data: Any, ctx: CompileContext) -> dict[str, AbonementType]:
    """`abonements:` into type name -> AbonementType."""
    found: dict[str, AbonementType] = {}
    for name, raw in (data.items() if isinstance(data, Mapping) else ()):
        path = ("abonements", name)
        if not isinstance(raw, Mapping) or ctx.is_broken(path):
            continue
        services = tuple(str(s) for s in raw.get("services") or ())
        categories = tuple(str(c) for c in raw.get("categories") or ())
        if not services and not categories:
            ctx.error(path, f"abonement type '{name}' names no services",
                      "add `services: [Массаж спины]` (service titles as the booking system names them) or "
                      "`categories: [Массаж]`", key=True)
            continue
        for key, titles in (("services", services), ("categories", categories)):
            seen: set[str] = set()
            for index, title in enumerate(titles):
                if title.casefold() in seen:
                    ctx.warning((*path, key, index), f"'{title}' is listed twice")
                seen.add(title.casefold())
        found[str(name)] = AbonementType(name=str(name), title=str(raw["title"]), visits=int(raw["visits"]),
                                         services=services, categories=categories, expires=_life(raw, path, ctx),
                                         freeze=_freeze(raw.get("freeze"), (*path, "freeze"), ctx),
                                         prefix=str(raw.get("prefix") or ""), synced=bool(raw.get("synced", False)))
        top = ctx.doc.data if isinstance(ctx.doc.data, Mapping) else {}
        if raw.get("synced") and top.get("sync") in (None, ""):
            ctx.error((*path, "synced"), "synced: true, but loyalty.yaml has no `sync:`",
                      "add `sync: <connector>` (the booking system the abonements are sold in), or remove synced")
    return found


def _life(raw: Mapping[str, Any], path: tuple[str | int, ...], ctx: CompileContext) -> Duration | None:
    """`expires:` as whole calendar days, weeks or months; None (never lapses) when absent or wrong."""
    if "expires" not in raw:
        return None
    life = ctx.duration(raw["expires"], (*path, "expires"))
    if life is None:
        return None
    if life.seconds or (not life.days and not life.months):
        ctx.error((*path, "expires"), f"expires {life} is not whole days", DAYS_HINT)
        return None
    return life


def _freeze(raw: Any, path: tuple[str | int, ...], ctx: CompileContext) -> FreezeLimits | None:
    """`freeze: {max: 30d, times: 2}` as limits in days; None (cannot be frozen) when absent."""
    if not isinstance(raw, Mapping) or ctx.is_broken(path):
        return None
    most = ctx.duration(raw.get("max"), (*path, "max"))
    if most is None:
        return None
    if most.seconds or most.months or most.days <= 0:
        ctx.error((*path, "max"), f"freeze max {most} is not a number of days",
                  "write it in days or weeks, such as 30d or 4w: a month has no fixed number of days")
        return None
    return FreezeLimits(max_days=most.days, times=int(raw.get("times", 1)))
