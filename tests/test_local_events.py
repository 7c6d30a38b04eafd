"""`local`'s `events:` setting: the custom events a form or a site posts, declared in automator.yaml, known to the
project's catalogue, and every mistake in them reported by `automator validate` at its line."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from automator.cli import cli
from automator.config.load import load_project

CONFIG = """\
timezone: Europe/Moscow
connectors:
  forms:
    type: local
    secret: "${{env:FORMS_HOOK_TOKEN}}"
    events:
{events}
"""

NPS = """\
      nps.received:
        entity: client
        doc: the client rated the visit
        data:
          score: number
          comment: {type: text, doc: what the client wrote}
"""


def _project(root: Path, events: str) -> Path:
    (root / "automator.yaml").write_text(CONFIG.format(events=textwrap.indent(textwrap.dedent(events), " " * 6)),
                                         encoding="utf-8")
    (root / "rules").mkdir(exist_ok=True)
    return root


def _validate(root: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    monkeypatch.chdir(root)
    result = CliRunner().invoke(cli, ["validate", "."], catch_exceptions=False)
    return result.exit_code, result.output


def test_declared_events_join_the_projects_catalogue(tmp_path: Path) -> None:
    project, problems = load_project(_project(tmp_path, textwrap.indent(textwrap.dedent(NPS), "")))
    assert problems == [] and project is not None
    catalogue = project.config.catalogue
    spec = catalogue.events["nps.received"]
    assert (spec.entity, spec.doc, spec.producers) == ("client", "the client rated the visit", ("local",))
    assert {name: f.type for name, f in spec.data.items()} == {"score": "number", "comment": "text"}
    assert spec.data["comment"].doc == "what the client wrote"
    # The client's own fields travel with it, and the canonical events are still there.
    assert catalogue.event_fields("nps.received")["phone"].type == "phone"
    assert "booking.created" in catalogue.events


@pytest.mark.parametrize(("events", "line", "col", "message", "hint"), [
    ("""\
     nps.received:
       entity: client
       data: {score: nmber}
     """, 9, 23, "unknown field type 'nmber'", "did you mean 'number'?"),
    ("""\
     nps.received:
       entity: client
       data:
         score: {type: numbr, doc: 0 to 10}
     """, 10, 25, "unknown field type 'numbr'", "did you mean 'number'?"),
    ("""\
     nps.received:
       entity: clinet
     """, 8, 17, "unknown entity kind 'clinet'", "did you mean 'client'?"),
    ("""\
     nps.received:
       entity: visit
     """, 8, 17, "unknown entity kind 'visit'", "one of client, booking, deal, task, or no `entity:` for an event "
                                                  "about no record"),
    ("""\
     nps.received:
       entity: client
       data: {score: integer}
     """, 9, 23, "unknown field type 'integer'", "write number (the catalogue's word for integer)"),
    ("""\
     nps.received:
       entity: client
       data: {comment: {type: String}}
     """, 9, 32, "unknown field type 'String'", "write text (the catalogue's word for String)"),
    ("""\
     nps.received:
       entity: client
       data: [score, comment]
     """, 9, 15, "expected a mapping of field names to their types", "such as data: {score: number, comment: text}"),
    ("""\
     nps.received:
       entity: client
       data:
         source: text
     """, 10, 11, "'source' is a name of the event's envelope (event.source is the event's own)",
     "give the field another name, such as 'nps_source'"),
    ("""\
     nps.received:
       entitty: client
     """, 8, 9, "unknown key 'entitty'", "did you mean 'entity'?"),
    ("""\
     nps.received:
       entity: client
       data:
         score: {type: number, dok: 0 to 10}
     """, 10, 33, "unknown key 'dok'", "did you mean 'doc'?"),
    ("""\
     NPS received:
       entity: client
     """, 7, 7, "'NPS received' is not an event type", "write <kind>.<verb> in lower case, such as nps.received"),
    ("""\
     timer.fired:
       entity: client
     """, 7, 7, "timer.* events are the engine's own", "name the event after what happened, such as nps.received"),
    ("""\
     nps.received: [score, comment]
     """, 7, 21, "expected a mapping of entity, doc, data, with_fields",
     "such as {entity: client, data: {score: number}}"),
])
def test_a_mistake_in_the_events_setting_is_reported_at_its_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, events: str, line: int, col: int, message: str,
        hint: str) -> None:
    code, out = _validate(_project(tmp_path, events), monkeypatch)
    assert code == 1, out
    assert out.splitlines()[:2] == [f"automator.yaml:{line}:{col}: error: connector 'forms' (local): {message}",
                                    f"    hint: {hint}"]


def test_events_must_be_a_mapping(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "automator.yaml").write_text("timezone: UTC\nconnectors:\n  forms: {type: local, events: [nps.received]}\n")
    code, out = _validate(tmp_path, monkeypatch)
    assert code == 1
    assert out.splitlines()[:2] == [
        "automator.yaml:3:32: error: connector 'forms' (local): expected a mapping of event types",
        "    hint: such as events: {nps.received: {entity: client, data: {score: number}}}"]


def test_a_connector_packages_broken_catalogue_is_reported_at_the_connector(tmp_path: Path) -> None:
    """A third-party catalogue.yaml that is not in the documented form names its file and entry, at the connector
    that uses the type (its author's mistake, not the admin's: the admin sees which package to report)."""
    from automator.catalogue import load_text
    from automator.config.load import builtin_connectors
    from automator.connector import Connector

    class Broken(Connector):
        type = "broken"
        config_schema = {"type": "object"}

        @classmethod
        def produces(cls, name: str, options: object) -> object:  # type: ignore[override]
            return load_text("entities:\n  deal:\n    source: text\n", cls.type, "automator_broken/catalogue.yaml")

    (tmp_path / "automator.yaml").write_text("timezone: UTC\nconnectors:\n  crm: {type: broken}\n")
    _, problems = load_project(tmp_path, connector_types={**builtin_connectors(), "broken": Broken})
    assert [(p.line, p.col, p.message, p.hint) for p in problems] == [(
        3, 8, "connector 'crm' (broken): automator_broken/catalogue.yaml: entities.deal.source: 'source' is a name "
              "of the event's envelope (event.source is the event's own)", "give the field another name, such as "
                                                                          "'deal_source'")]
