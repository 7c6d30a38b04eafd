"""The funnel report: per pipeline, for the leads and deals created in a period, how many entered each stage, how
many got that far, where they dropped off, how long they stayed in each stage (median and p90), and the cycle time
from lead to won; optionally by manager.

Stages come in the order pipelines/*.yaml lists them (else in the order the records went through them on average);
a stage with `outcome: lost` is where records drop out, so it is not a step of the funnel: it shows its entries
only. Moves are counted up to the end of the period, so a past period's report stays as it was.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from collections.abc import Mapping, Sequence
from typing import Any

from automator.channels import ChannelMap
from automator.reports.figures import days, percent
from automator.reports.model import Chart, Column, Report, Table
from automator.reports.period import Period
from automator.reports.snapshot import Snapshot, literal, within


@dataclass(frozen=True, slots=True)
class StageInfo:
    """A stage as the report orders and titles it."""

    name: str
    title: str = ""
    lost: bool = False


def stages_of(pipelines: Mapping[str, Any]) -> dict[str, tuple[StageInfo, ...]]:
    """The stages of the project's pipelines (automator.model.Pipeline), in order, for `options["stages"]`."""
    return {name: tuple(StageInfo(s.name, s.title or s.name, s.outcome == "lost") for s in p.stages.values())
            for name, p in pipelines.items()}


def read(snapshot: Snapshot, period: Period, pipeline: str | None) -> None:
    """Load the period's leads and deals that are in a pipeline, and their stage moves up to the period's end."""
    lo, hi = period.start_at, period.end_at
    only = f" and pipeline = {literal(pipeline)}" if pipeline else ""
    cohort = within("created_at", lo, hi, period.days)
    snapshot.read("fn_leads", "leads", {"id": "text", "responsible": "text", "outcome": "text", "created_at": "int",
                                        "closed_at": "int", "pipeline": "text"},
                  f"{cohort} and pipeline is not null{only}")
    snapshot.read("fn_moves", "stage_moves", {"id": "int", "record": "text", "pipeline": "text", "stage": "text",
                                              "at as moved_at": "int"},
                  within("at", lo, hi, period.days) + only)  # a record moves after it is created: at >= lo


def report(snapshot: Snapshot, period: Period, options: Mapping[str, Any], channels: ChannelMap,
           now: datetime) -> Report:
    """The funnel report; options: `pipeline` (one pipeline, default each), `by` (None | manager), `stages`
    (pipeline → its StageInfo in order, from pipelines/*.yaml)."""
    pipeline = options.get("pipeline")
    by_manager = options.get("by") == "manager"
    read(snapshot, period, pipeline)
    hi = period.end_at
    known: Mapping[str, Sequence[StageInfo]] = options.get("stages") or {}
    snapshot.run("""create or replace table fn_m as
        select m.record, m.pipeline, m.stage, m.moved_at, coalesce(l.responsible, '') as manager,
               lead(m.moved_at) over (partition by m.record order by m.moved_at, m.id) - m.moved_at as stay
        from fn_moves m join fn_leads l on l.id = m.record""")
    order = _order(snapshot, known)
    snapshot.run("create or replace table fn_rank (pipeline varchar, stage varchar, rank int, lost boolean)")
    for (pipe, stage), (rank, info) in order.items():
        snapshot.run(f"insert into fn_rank values ({literal(pipe)}, {literal(stage)}, {rank}, {info.lost})")
    group = "pipeline, manager" if by_manager else "pipeline, ''"
    per_stage = snapshot.rows(f"""
        select {group} as manager_key, stage, count(distinct record) as entries,
               quantile_disc(stay, 0.5) as median, quantile_disc(stay, 0.9) as p90
        from fn_m group by all""")
    tops = snapshot.rows(f"""
        select {group} as manager_key, top, count(*) as records from (
            select m.record, m.pipeline, m.manager, max(r.rank) filter (where not r.lost) as top
            from fn_m m join fn_rank r using (pipeline, stage) group by all)
        where top is not null group by all""")
    cycles = snapshot.rows(f"""
        select pipeline, {"coalesce(responsible, '')" if by_manager else "''"} as manager_key, count(*) as records,
               count(*) filter (where won) as won, count(*) filter (where lost) as lost,
               quantile_disc(closed_at - created_at, 0.5) filter (where won) as median,
               quantile_disc(closed_at - created_at, 0.9) filter (where won) as p90
        from (select *, coalesce(outcome = 'won' and closed_at < {hi}, false) as won,
                        coalesce(outcome = 'lost' and closed_at < {hi}, false) as lost from fn_leads)
        group by all order by pipeline, manager_key""")
    stage_rows = _stage_rows(order, per_stage, tops, by_manager)
    cycle_rows = tuple({"pipeline": c["pipeline"], **({"manager": c["manager_key"] or None} if by_manager else {}),
                        "records": c["records"], "won": c["won"], "lost": c["lost"],
                        "open": c["records"] - c["won"] - c["lost"], "conversion": percent(c["won"], c["records"]),
                        "cycle_median": days(c["median"]), "cycle_p90": days(c["p90"])} for c in cycles)
    manager_col = (Column("manager", "Менеджер", "text", "ответственный за лид или сделку"),) if by_manager else ()
    stages = Table("stages", "Этапы воронки", (
        Column("pipeline", "Воронка", "text", "воронка (pipelines/*.yaml)"), *manager_col,
        Column("stage", "Код этапа", "text", "этап"), Column("title", "Этап", "text", "название этапа"),
        Column("entries", "Вошли", "int", "лиды и сделки периода, входившие в этап (каждый один раз)"),
        Column("reached", "Дошли", "int", "вошли в этот этап или в любой следующий (кроме этапа отказа)"),
        Column("conversion_next", "В следующий, %", "percent", "дошли до следующего этапа / дошли до этого × 100"),
        Column("conversion_first", "От первого, %", "percent", "дошли до этого этапа / дошли до первого × 100"),
        Column("dropoff", "Отвалились", "int", "дошли до этого этапа, но не до следующего"),
        Column("median_days", "Медиана в этапе, дн.", "days",
               "медиана времени от входа в этап до следующего перехода (кто ещё в этапе, не считается); "
               "медиана и p90 — по методу ближайшего ранга: ⌈n·p⌉-е значение по возрастанию"),
        Column("p90_days", "p90 в этапе, дн.", "days", "90-й перцентиль того же времени")), stage_rows)
    cycle = Table("cycle", "Цикл сделки", (
        Column("pipeline", "Воронка", "text", "воронка"), *manager_col,
        Column("records", "Лиды", "int", "лиды и сделки периода в воронке"),
        Column("won", "Выиграны", "int", "выиграны к концу периода"),
        Column("lost", "Проиграны", "int", "проиграны к концу периода"),
        Column("open", "В работе", "int", "не закрыты к концу периода"),
        Column("conversion", "Конверсия, %", "percent", "выиграны / лиды × 100"),
        Column("cycle_median", "Цикл, медиана, дн.", "days", "от создания до выигрыша, медиана"),
        Column("cycle_p90", "Цикл, p90, дн.", "days", "от создания до выигрыша, 90-й перцентиль")), cycle_rows)
    records = sum(c["records"] for c in cycles)
    won = sum(c["won"] for c in cycles)
    notes = () if records else ("За период нет лидов и сделок в воронках.",)
    headline = (("Лиды и сделки", records, "int"), ("Выиграны", won, "int"),
                ("Конверсия, %", percent(won, records), "percent"))
    chart = Chart("funnel", "Воронка", "funnel", "stages", "title", ("reached",),
                  "manager" if by_manager else "pipeline")
    return Report("funnel", "Воронка: где теряются лиды", period.start, period.end, now, (stages, cycle), (chart,),
                  headline, {"pipeline": pipeline, "by": "manager" if by_manager else None}, notes=notes)


def _order(snapshot: Snapshot, known: Mapping[str, Sequence[StageInfo]]) -> dict[tuple[str, str], tuple[int, StageInfo]]:
    """(pipeline, stage) → (its rank, StageInfo): the configured order, then stages only the data has, by the
    average position records entered them at; a stage every record ending in it lost is a stage of loss."""
    seen = snapshot.rows("""
        with pos as (select record, pipeline, stage,
                            row_number() over (partition by record order by moved_at) as n,
                            row_number() over (partition by record order by moved_at desc) = 1 as last
                     from fn_m),
        ends as (select p.pipeline, p.stage, bool_and(l.outcome = 'lost') as lost
                 from pos p join fn_leads l on l.id = p.record where p.last group by all)
        select pos.pipeline, pos.stage, avg(n) as position, coalesce(ends.lost, false) as lost
        from pos left join ends using (pipeline, stage) group by all
        order by pos.pipeline, lost, position, pos.stage""")
    order: dict[tuple[str, str], tuple[int, StageInfo]] = {}
    pipes = list(dict.fromkeys([*(r["pipeline"] for r in seen)]))
    for pipe in pipes:
        configured = list(known.get(pipe, ()))
        names = {s.name for s in configured}
        extra = [StageInfo(r["stage"], r["stage"], bool(r["lost"])) for r in seen
                 if r["pipeline"] == pipe and r["stage"] not in names]
        ranked = [s for s in configured + extra if not s.lost] + [s for s in configured + extra if s.lost]
        for rank, info in enumerate(ranked):
            order[(pipe, info.name)] = (rank, info)
    return order


def _stage_rows(order: Mapping[tuple[str, str], tuple[int, StageInfo]], per_stage: list[dict[str, Any]],
                tops: list[dict[str, Any]], by_manager: bool) -> tuple[dict[str, Any], ...]:
    groups = sorted({(r["pipeline"], r["manager_key"]) for r in per_stage})
    found = {(r["pipeline"], r["manager_key"], r["stage"]): r for r in per_stage}
    rows = []
    for pipe, manager in groups:
        stages = sorted(((rank, info) for (p, _), (rank, info) in order.items() if p == pipe), key=lambda x: x[0])
        steps = [info for _, info in stages if not info.lost]
        reached = {info.name: sum(t["records"] for t in tops if t["pipeline"] == pipe and
                                  t["manager_key"] == manager and t["top"] >= rank)
                   for rank, info in stages if not info.lost}
        first = reached[steps[0].name] if steps else 0
        for rank, info in stages:
            entry = found.get((pipe, manager, info.name))
            row: dict[str, Any] = {"pipeline": pipe, "stage": info.name, "title": info.title or info.name,
                                   "entries": entry["entries"] if entry else 0,
                                   "median_days": days(entry["median"]) if entry else None,
                                   "p90_days": days(entry["p90"]) if entry else None,
                                   "reached": None, "conversion_next": None, "conversion_first": None,
                                   "dropoff": None}
            if by_manager:
                row["manager"] = manager or None
            if not info.lost:
                here = reached[info.name]
                index = steps.index(info)
                after = reached[steps[index + 1].name] if index + 1 < len(steps) else None
                row.update(reached=here, conversion_first=percent(here, first),
                           conversion_next=percent(after, here) if after is not None else None,
                           dropoff=here - after if after is not None else None)
            rows.append(row)
    return tuple(rows)
