"""loyalty.yaml's `programs:` compiled (tiers, points, cashback, discounts, every Nth visit, referral), and the
check that segments.yaml and the programs name each other rightly (`check_segments`, once both are compiled)."""
from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from automator.clock import Duration
from automator.config.context import CompileContext, did_you_mean, known_names
from automator.history import HistoryError, minor_units
from automator.loyalty.terms import Accrual, EveryNth, Program, Referral, Tier, Tiers, TimedDiscount
from automator.segments import SegmentsConfig

Path_ = tuple[str | int, ...]


def compile_programs(data: Any, ctx: CompileContext) -> dict[str, Any]:
    """`programs:` (already schema-checked) into name -> Program; each problem at its file:line:col."""
    if not isinstance(data, Mapping):
        return {}
    programs: dict[str, Any] = {}
    default: str | None = None
    for name, raw in data.items():
        path: Path_ = ("programs", name)
        # A program with a mistake inside is still compiled without the broken part, so that its other mistakes
        # are reported too, and a segment naming it is not told the program does not exist.
        if not isinstance(raw, Mapping) or path in ctx.broken:
            continue
        program = _program(str(name), raw, ctx, path)
        if program.default and default is not None:
            ctx.error((*path, "default"), f"programs {default} and {name} are both `default: true`",
                      "one program is the default: a client whose segment names none is in it")
        default = default or (str(name) if program.default else None)
        programs[str(name)] = program
    return programs


def _program(name: str, raw: Mapping[str, Any], ctx: CompileContext, path: Path_) -> Program:
    raw = {key: value for key, value in raw.items() if not ctx.is_broken((*path, key))}  # the schema said what
    join = raw.get("join_discount")
    nth = raw.get("every_nth")
    return Program(name=name, title=str(raw.get("title") or ""), default=bool(raw.get("default")),
                   segments=tuple(str(s) for s in raw.get("segments") or ()),
                   tiers=_tiers(raw["tiers"], ctx, (*path, "tiers")) if "tiers" in raw else None,
                   points=_accrual(raw["points"], ctx, (*path, "points")) if "points" in raw else None,
                   cashback=_accrual(raw["cashback"], ctx, (*path, "cashback")) if "cashback" in raw else None,
                   spend_cap=_percent(raw.get("spend_cap", 100)),
                   join_discount=TimedDiscount(_percent(join["percent"]),
                                               _duration(join["for"], ctx, (*path, "join_discount", "for")))
                   if isinstance(join, Mapping) else None,
                   first_visit=_percent(raw["first_visit"]) if "first_visit" in raw else None,
                   every_nth=EveryNth(int(nth["every"]), frozenset(str(s) for s in nth.get("services") or ()))
                   if isinstance(nth, Mapping) else None,
                   referral=_referral(raw["referral"], ctx, (*path, "referral")) if "referral" in raw else None)


def _percent(value: Any) -> Decimal:
    # The schema took a number from 0 to 100; a YAML float (2.5) is read by its text, never as binary.
    return Decimal(str(value))


def _duration(value: Any, ctx: CompileContext, path: Path_) -> Duration:
    return ctx.duration(value, path) or Duration(days=0)


def _money(value: Any, ctx: CompileContext, path: Path_) -> int:
    try:
        return minor_units(value, "the amount")
    except HistoryError as exc:
        ctx.error(path, str(exc), "write roubles as decimal text, such as \"500.00\"")
        return 0


def _tiers(raw: Mapping[str, Any], ctx: CompileContext, path: Path_) -> Tiers:
    by = str(raw["by"])
    levels: list[Tier] = []
    for name, level in (raw.get("levels") or {}).items():
        where: Path_ = (*path, "levels", name, "from")
        start = level["from"]
        if by == "visits":
            if not isinstance(start, int):
                ctx.error(where, f"tier {name} starts at {start!r}: tiers by visits start at a whole number of "
                                 "visits", "write a count such as 5, or `by: spend` for roubles")
                start = 0
            threshold = start
        else:
            threshold = _money(start, ctx, where)
        if levels and threshold <= levels[-1].threshold:
            ctx.error(where, f"tier {name} starts at {start} (by {by}), not above tier {levels[-1].name}",
                      "list the tiers from the lowest `from` up, each above the one before")
        levels.append(Tier(str(name), threshold, _percent(level["discount"]), level.get("category"),
                           str(level.get("title") or "")))
    window = ctx.duration(raw["window"], (*path, "window")) if "window" in raw else None
    return Tiers(by=by, levels=tuple(levels), window=window)


def _accrual(raw: Mapping[str, Any], ctx: CompileContext, path: Path_) -> Accrual:
    expires = ctx.duration(raw["expires"], (*path, "expires")) if "expires" in raw else None
    return Accrual(_percent(raw["percent"]), {str(k): _percent(v) for k, v in (raw.get("categories") or {}).items()},
                   expires)


def _referral(raw: Mapping[str, Any], ctx: CompileContext, path: Path_) -> Referral:
    expires = ctx.duration(raw["expires"], (*path, "expires")) if "expires" in raw else None
    return Referral(_money(raw["referrer"], ctx, (*path, "referrer")), _money(raw["referred"], ctx, (*path, "referred")),
                    expires)


def check_segments(programs: Mapping[str, Any], loyalty_ctx: CompileContext, segments: SegmentsConfig | None,
                   segments_ctx: CompileContext | None) -> None:
    """segments.yaml and loyalty.yaml agree: a segment's `loyalty:` names a program, a program's `segments:` name
    segments, and no segment is listed by two programs."""
    if segments is not None and segments_ctx is not None:
        for segment in segments.segments:
            if segment.loyalty and segment.loyalty not in programs:
                segments_ctx.error(("segments", segment.name, "loyalty"),
                                   f"segment {segment.name} names loyalty program '{segment.loyalty}', which "
                                   "loyalty.yaml does not define",
                                   did_you_mean(segment.loyalty, programs) or known_names("programs", programs))
    names = [s.name for s in segments.segments] if segments is not None else []
    listed: dict[str, str] = {}
    for name, program in programs.items():
        for index, segment_name in enumerate(program.segments):
            where = ("programs", name, "segments", index)
            if segment_name not in names:
                loyalty_ctx.error(where, f"program {name} lists segment '{segment_name}', which segments.yaml "
                                         "does not define",
                                  did_you_mean(segment_name, names) or known_names("segments", names))
            elif segment_name in listed:
                loyalty_ctx.error(where, f"segment {segment_name} is listed by programs {listed[segment_name]} and "
                                         f"{name}", "a client is in one program: list the segment in one")
            listed.setdefault(segment_name, name)
