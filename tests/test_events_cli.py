"""`automator events` on real project folders, and the README and JSON Schemas generated from the same catalogues."""
from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest

from cli_support import invoke
from automator import docs

ROOT = Path(__file__).resolve().parents[1]

PROJECT = """\
timezone: Europe/Moscow
connectors:
  booking: {type: yclients, company_id: 1, partner_token: "${env:P}", user_token: "${env:U}", hook_secret: "${env:H}"}
  site:
    type: local
    secret: "${env:SITE_TOKEN}"
    events:
      nps.received:
        entity: client
        doc: the client rated the visit
        data: {score: {type: number, doc: 0 to 10}, comment: text}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "automator.yaml").write_text(PROJECT, encoding="utf-8")
    (tmp_path / "rules").mkdir()
    return tmp_path


def test_the_whole_projects_catalogue_as_text(project: Path) -> None:
    code, out = invoke("events", "--project", str(project))
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0] == "events:"
    # Columns are as wide as the longest name of the whole catalogue: compared with single spaces between them.
    words = [" ".join(line.split()) for line in lines]
    # Each event with its entity, its doc and who produces it; a declared event's own fields under it.
    assert "nps.received client the client rated the visit (local)" in words and "score number 0 to 10" in words
    assert lines[words.index("score number 0 to 10")].startswith("      score ")
    # The wording of the connector first in automator.yaml, the producers of all.
    assert "booking.updated booking a record changed (attendance, time, services…) (yclients, local)" in words
    assert ("segment.changed client the client moved to another segment: a visit, the daily rescoring or "
            "segment.recompute rescored them (engine)") in words
    booking = lines.index("booking fields (read as booking.<field>, and as event.<field> in its events):")
    assert words[booking + 1] == "id id the booking's id in the system"
    assert "starts_at datetime when the visit starts" in words[booking:]
    assert ("status text the visit's attendance (cancelled: the record was deleted) "
            "[confirmed, arrived, waiting, no_show, cancelled]") in words[booking:]


def test_one_connector_by_its_name_or_its_type_as_json(project: Path) -> None:
    code, out = invoke("events", "site", "--format", "json", "--project", str(project))
    assert code == 0, out
    shown = json.loads(out)
    nps = next(e for e in shown["events"] if e["type"] == "nps.received")
    assert nps == {"type": "nps.received", "entity": "client", "doc": "the client rated the visit",
                   "producers": ["local"], "with_fields": True,
                   "data": [{"name": "score", "type": "number", "doc": "0 to 10"},
                            {"name": "comment", "type": "text", "doc": ""}]}
    assert "booking.updated" in {e["type"] for e in shown["events"]}  # local's canonical events
    code, out = invoke("events", "telegram", "--format", "json", "--project", str(project))
    assert code == 0, out
    shown = json.loads(out)
    assert [e["type"] for e in shown["events"]] == ["client.updated", "message.received"]
    assert set(shown["entities"]) == {"client"}  # a client's own chat names the person (issue 13)
    phone = next(f for f in shown["events"][1]["data"] if f["name"] == "phone")
    assert phone == {"name": "phone", "type": "phone", "doc": "a shared contact's phone, E.164"}
    code, out = invoke("events", "booking", "--format", "json", "--project", str(project))
    client = json.loads(out)["entities"]["booking"]
    assert next(f for f in client if f["name"] == "client") == {
        "name": "client", "type": "id", "doc": "the YCLIENTS client id", "links": "client", "filled_by": ["yclients"]}


def test_an_unknown_connector_is_a_usage_error_with_a_guess(project: Path) -> None:
    code, out = invoke("events", "bokking", "--project", str(project))
    assert code == 2
    assert out.splitlines()[-1] == ("Error: no connector named 'bokking' in automator.yaml and no connector type of "
                                    "that name; did you mean 'booking'?")


def test_a_broken_project_says_where(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (project / "automator.yaml").write_text(PROJECT.replace("entity: client", "entity: clients"), encoding="utf-8")
    monkeypatch.chdir(project)
    code, out = invoke("events")
    assert code == 1
    assert out.splitlines()[0] == "automator.yaml:9:17: error: connector 'site' (local): unknown entity kind 'clients'"


def test_the_help_example_works(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    code, out = invoke("events", "--help")
    example = next(line.strip() for line in out.splitlines() if line.strip().startswith("Example: "))
    assert example == "Example: automator events booking --format json"
    shutil.copy(ROOT / "automator.yaml", tmp_path / "automator.yaml")
    (tmp_path / "rules").mkdir()
    monkeypatch.chdir(tmp_path)
    code, out = invoke(*example.removeprefix("Example: automator ").split())
    assert code == 0, out
    assert "booking.updated" in {e["type"] for e in json.loads(out)["events"]}


def test_the_example_projects_forms_declare_what_the_nps_rule_reads() -> None:
    code, out = invoke("events", "forms", "--project", str(ROOT))
    assert code == 0, out
    assert "  nps.received        client    the client rated the visit from 0 to 10 on the feedback form  (local)" \
        in out.splitlines()


# ---- the generated README section and schema examples -------------------------------------------------------------

def test_the_readme_and_the_schemas_are_generated_from_the_catalogues() -> None:
    stale = docs.stale()
    assert stale == [], f"{', '.join(stale)} differ from the catalogues: run `python -m automator.docs`"


def test_the_docs_command_runs_as_the_readme_says() -> None:
    """`python -m automator.docs --check`, as the README and every failure message say to run it (run as
    `__main__`, the module once found no shipped connectors and crashed)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "automator.docs", "--check"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and done.stderr == "", done.stdout + done.stderr


def test_the_readme_section_lists_every_built_in_event_and_field() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index(docs.BEGIN):readme.index(docs.END)]
    catalogue = docs.builtin_catalogue()
    for type_ in catalogue.events:
        assert f"| `{type_}` |" in section
    assert ("| `lead_source` | text | where the client came from (Bitrix24: SOURCE_ID; amoCRM: the lead's source_id, "
            "named by the connector's sources: setting) | amocrm, bitrix24 |") in section
    assert "| `starts_at` | datetime | when the visit starts | local, yclients |" in section


@pytest.mark.parametrize("name", docs.EVENT_SCHEMAS)
def test_the_schemas_offer_the_known_event_types_and_still_take_a_custom_one(name: str) -> None:
    from automator.config.schemas import SchemaSet

    schema = json.loads((ROOT / name).read_text(encoding="utf-8"))
    event = (schema["$defs"]["event"] if "$defs" in schema else schema)["properties"]["event"]
    assert event["examples"] == sorted(docs.builtin_catalogue().events)
    assert "booking.updated" in event["examples"] and "nps.received" not in event["examples"]
    relative = name.removeprefix("schemas/")
    custom = {"event": "nps.received"} if relative.startswith("triggers") else \
        {"now": "2026-03-02T18:00:00+03:00", "when": [{"event": "nps.received"}], "expect": [{"no_action": "sms.send"}]}
    assert SchemaSet().errors(relative, custom) == []


def test_regenerating_rewrites_only_the_generated_parts(tmp_path: Path) -> None:
    for name in [docs.README, *docs.EVENT_SCHEMAS, docs.RULES_SCHEMA]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    readme = (tmp_path / docs.README).read_text(encoding="utf-8")
    start = readme.index(docs.BEGIN) + len(docs.BEGIN)
    (tmp_path / docs.README).write_text(readme[:start] + "\n| stale |" + readme[start:], encoding="utf-8")
    schema = (tmp_path / "schemas/triggers/event.json").read_text(encoding="utf-8")
    (tmp_path / "schemas/triggers/event.json").write_text(schema.replace('"booking.created", ', ""), encoding="utf-8")
    rules = (tmp_path / docs.RULES_SCHEMA).read_text(encoding="utf-8")
    (tmp_path / docs.RULES_SCHEMA).write_text(rules.replace('"held", "schedule"]', '"held"]'), encoding="utf-8")
    written = [docs.README, "schemas/triggers/event.json", docs.RULES_SCHEMA]
    assert docs.stale(tmp_path) == written
    assert docs.write(docs.generated(tmp_path), tmp_path) == written
    assert docs.stale(tmp_path) == []
    for name in [docs.README, *docs.EVENT_SCHEMAS, docs.RULES_SCHEMA]:
        assert (tmp_path / name).read_text(encoding="utf-8") == (ROOT / name).read_text(encoding="utf-8")


def test_a_readme_without_the_markers_is_refused() -> None:
    with pytest.raises(ValueError, match="has no section between"):
        docs.with_readme_section(textwrap.dedent("# automator\n"), docs.builtin_catalogue())
