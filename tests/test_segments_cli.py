"""`automator segments compute|show|explain` on a project folder with visits imported by `automator import visits`,
the shipped segments.yaml as a salon uses it, and the full rescoring (DuckDB) agreeing client by client with the
rescoring one visit does (automator.client_segment), by thresholds and by quantiles."""
from __future__ import annotations

import json
import random
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

from automator.client_segment import rescore
from automator.config.load import load_project
from automator.model import EntityRef
from automator.rescoring import context, rescore_all
from automator.store.sqlite import SqliteStore
from tests.cli_support import invoke

ROOT = Path(__file__).resolve().parents[1]
CONFIG = """\
timezone: Europe/Moscow
store: automator.db
connectors:
  crm: {type: local}
"""


def _at(days_ago: int) -> str:
    """A moment `days_ago` days and a half before now (whole days stay whole while the test runs)."""
    return (datetime.now(timezone.utc) - timedelta(days=days_ago, hours=12)).isoformat(timespec="seconds")


def _project(tmp_path: Path, segments: str | None = None) -> Path:
    (tmp_path / "automator.yaml").write_text(CONFIG)
    if segments is None:
        shutil.copy(ROOT / "segments.yaml", tmp_path / "segments.yaml")  # the shipped file, as a salon uses it
    else:
        (tmp_path / "segments.yaml").write_text(segments)
    return tmp_path


def _import(root: Path, rows: list[str]) -> None:
    (root / "visits.csv").write_text("client,phone,at,amount,kind\n" + "\n".join(rows) + "\n", encoding="utf-8")
    code, out = invoke("import", "visits", str(root / "visits.csv"), "--config", str(root / "automator.yaml"))
    assert code == 0, out


SALON = [
    # Анна: a visit a month for six months, 5000 each: r 5 (10 days), f 4 (6 visits), m 4 (30000) → champions
    *(f"1,+79161234567,{_at(10 + 30 * i)},5000.00,visit" for i in range(6)),
    # Борис: once, 5 days ago → new
    f"2,+79162223344,{_at(5)},1500.00,visit",
    # Вера: three visits, the latest 150 days ago → r 2, f 3 → at_risk
    *(f"3,+79031112233,{_at(150 + 30 * i)},2000.00,visit" for i in range(3)),
    # Глеб: one visit 400 days ago, outside the window → 0, 0, 0 → lost
    f"4,+79035554433,{_at(400)},2000.00,visit",
    # Дина: a purchase alone: never came, no segment
    f"5,+79037778899,{_at(20)},300.00,purchase",
]


def test_compute_show_and_explain_on_the_shipped_segments(tmp_path: Path) -> None:
    root = _project(tmp_path)
    _import(root, SALON)
    config = str(root / "automator.yaml")
    code, out = invoke("segments", "compute", "--config", config)
    assert code == 0, out
    assert out.splitlines() == [
        "4 clients scored (3 with a visit in the window), 4 moved, 0 rescored in place",
        "  champions              1   +1 −0",
        "  loyal                  0   +0 −0",
        "  new                    1   +1 −0",
        "  promising              0   +0 −0",
        "  at_risk                1   +1 −0",
        "  hibernating            0   +0 −0",
        "  lost                   1   +1 −0"]
    store = SqliteStore(str(root / "automator.db"))
    anna = store.entity(EntityRef("client", "1"))
    assert anna is not None and anna.fields["segment"] == "champions" and anna.fields["rfm"] == {"r": 5, "f": 4, "m": 4}
    dina = store.entity(EntityRef("client", "5"))
    assert dina is not None and "segment" not in dina.fields
    store.close()

    code, out = invoke("segments", "compute", "--config", config)  # nothing changed since: nothing written
    assert code == 0 and out.splitlines()[0] == "4 clients scored (3 with a visit in the window), 0 moved, " \
                                                "0 rescored in place", out

    code, out = invoke("segments", "show", "--format", "csv", "--config", config)
    assert code == 0, out
    # Revenue and the average check over the window (Глеб's visit is outside it); recency in days, averaged.
    assert out.splitlines() == [
        "segment,title,clients,share,average_check,recency,revenue",
        "champions,Чемпионы,1,25.0,5000.00,10.0,30000.00",
        "loyal,Лояльные,0,0.0,,,0.00",
        "new,Новые,1,25.0,1500.00,5.0,1500.00",
        "promising,Перспективные,0,0.0,,,0.00",
        "at_risk,Под угрозой,1,25.0,2000.00,150.0,6000.00",
        "hibernating,Спящие,0,0.0,,,0.00",
        "lost,Потерянные,1,25.0,,,0.00"]

    code, out = invoke("segments", "explain", "8 903 111-22-33", "--config", config)  # Вера, by her phone
    assert code == 0, out
    assert out.splitlines() == [
        "client 3",
        "  R = 2: 150 days since the latest visit",
        "  F = 3: 3 visits in the window",
        "  M = 2: 6000.00 ₽ (сумма; 6000.00 ₽ over 3 visits and purchases)",
        "  cuts r: at most [180, 90, 60, 30] for scores 2..5",
        "  cuts f: at least [2, 3, 6, 12] for scores 2..5",
        "  cuts m: at least [5000.00, 15000.00, 30000.00, 60000.00] for scores 2..5",
        "  ✘ champions: r 4–5: r is 2; f 4–5: f is 3; m 4–5: m is 2",
        "  ✘ loyal: r 3–5: r is 2",
        "  ✘ new: r 4–5: r is 2; f = 1: f is 3",
        "  ✘ promising: r 3–5: r is 2",
        "  ✔ at_risk",
        "segment: at_risk"]
    code, out = invoke("segments", "explain", "2", "--format", "json", "--config", config)
    assert code == 0, out
    data = json.loads(out)
    assert data["segment"] == "new" and data["scores"] == {"r": 5, "f": 1, "m": 1}
    assert data["values"] == {"days": 5, "visits": 1, "money": "1500.00", "total": "1500.00", "paid": 1}
    assert [c["segment"] for c in data["checks"]] == ["champions", "loyal", "new"]
    assert data["checks"][0]["failed"] == ["f 4–5: f is 1", "m 4–5: m is 1"]

    code, out = invoke("segments", "explain", "+79990000000", "--config", config)
    assert code == 1 and "no client has the id or phone '+79990000000'" in out, out
    code, out = invoke("segments", "explain", "5", "--config", config)  # Дина: a purchase alone
    assert code == 1 and "client 5 has no visit (a purchase alone, or none)" in out, out


QUANTILES = """\
rfm:
  window: 180d
  scale: 4
  recency: {quantiles: 4}
  frequency: {quantiles: 4}
  monetary: {of: average, quantiles: 4}
segments:
  best: {r: 4, f: ">=3"}
  spenders: {when: "money >= 3000 and r >= 2"}
  rest: {}
"""


def test_the_full_rescoring_agrees_with_one_clients_rescoring_client_by_client(tmp_path: Path) -> None:
    root = _project(tmp_path, QUANTILES)
    rng = random.Random(16)
    rows = []
    for client in range(1, 301):
        for _ in range(rng.choice([1, 1, 1, 2, 3, 5, 8])):
            kind = "purchase" if rng.random() < 0.1 else "visit"
            rows.append(f"{client},,{_at(rng.randrange(0, 260))},{rng.choice([990, 1500, 2500, 4000])}.00,{kind}")
    _import(root, rows)
    code, out = invoke("segments", "show", "--config", str(root / "automator.yaml"))
    assert code == 0 and "clients in no segment have not been scored yet" in out, out
    code, out = invoke("segments", "explain", "1", "--config", str(root / "automator.yaml"))
    assert code == 1 and "run `automator segments compute`" in out, out  # by quantiles: no cut points yet
    code, out = invoke("segments", "compute", "--config", str(root / "automator.yaml"))
    assert code == 0, out

    project, problems = load_project(root)
    assert project is not None and project.segments is not None, problems
    now = datetime.now(timezone.utc)
    store = SqliteStore(str(root / "automator.db"))
    ectx = context(project, now)
    found = rescore_all(root / "automator.db", project.segments, now, project.config.timezone, ectx)
    assert found.changes == []  # compute wrote every change: the same rescoring finds none left
    assert all(p is not None for p in found.cuts.f[:1])  # the population gives cut points
    compared = 0
    for client in range(1, 301):
        entity = store.entity(EntityRef("client", str(client)))
        assert entity is not None
        if not entity.fields.get("visit_count"):
            assert "segment" not in entity.fields  # purchases alone: not scored
            continue
        one = rescore(project.segments, store, str(client), now, project.config.timezone, ectx)
        assert (entity.fields["segment"], entity.fields["rfm"]) == (one.segment, one.scores), client
        compared += 1
    assert compared > 250
    assert sum(found.sizes.values()) == compared
