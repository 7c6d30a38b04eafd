"""`automator validate` as editors, CI and admins read it: JSON output, files that do nothing, YAML layout mistakes."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from automator.cli import cli

CONFIG = """\
timezone: Europe/Moscow
connectors:
  crm: {type: local, secret: "${env:CRM_HOOK}"}
  sms: {type: local, secret: "${env:SMS_HOOK}"}
"""

RULES = """\
rules:
  - id: welcome
    when: {event: booking.created}
    do:
      - sms.send: {to: "{{ client.phone }}", text: Hi}
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """write({"rules/x.yaml": text, ...}) -> the project folder, with automator.yaml; paths show relative."""
    monkeypatch.chdir(tmp_path)

    def write(files: dict[str, str]) -> Path:
        (tmp_path / "automator.yaml").write_text(CONFIG, encoding="utf-8")
        for name, text in files.items():
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_text(textwrap.dedent(text), encoding="utf-8")
        return tmp_path
    return write


def validate(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["validate", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.stdout, result.stderr


# ---------------------------------------------------------------- --format json

def test_json_output_of_a_broken_project_lists_every_problem_with_its_place(project) -> None:  # type: ignore[no-untyped-def]
    root = project({"rules/main.yaml": RULES.replace("sms.send", "sms.sned"), "rules/todo.yaml": "# later\n"})
    code, out, err = validate(str(root), "--format", "json")
    assert code == 1 and err == ""
    assert json.loads(out) == {
        "version": 1, "ok": False,
        "problems": [
            {"path": "rules/main.yaml", "line": 5, "col": 9, "severity": "error",
             "message": "unknown action 'sms.sned'", "hint": "did you mean 'sms.send'?"},
            {"path": "rules/todo.yaml", "line": 1, "col": 1, "severity": "warning",
             "message": "rules/todo.yaml is empty: it has no rules",
             "hint": "write rules under `rules:` (see README: A rule in five minutes), or delete the file"},
        ],
        "summary": {"errors": 1, "warnings": 1, "rules": None, "pipelines": None, "connectors": None, "files": None},
    }


def test_json_output_of_a_clean_project_has_its_counts_and_warnings(project) -> None:  # type: ignore[no-untyped-def]
    root = project({"rules/main.yaml": RULES})
    (root / "automator.yaml").write_text(CONFIG.replace(', secret: "${env:SMS_HOOK}"', ""), encoding="utf-8")
    code, out, err = validate(str(root), "--format", "json")
    assert code == 0 and err == ""
    report = json.loads(out)
    assert report["ok"] is True
    assert report["summary"] == {"errors": 0, "warnings": 1, "rules": 1, "pipelines": 0, "connectors": 2, "files": 2}
    assert [(p["path"], p["line"], p["col"], p["severity"]) for p in report["problems"]] == [
        ("automator.yaml", 4, 3, "warning")]
    assert "accepts no webhooks" in report["problems"][0]["message"]


# ---------------------------------------------------------------- files that hold no rules

@pytest.mark.parametrize("text, line, col, what", [
    ("", 1, 1, "is empty"),
    ("# yaml-language-server: $schema=../schemas/rules.schema.json\n# TODO: the no-show rules\n", 1, 1, "is empty"),
    ("rules: []\n", 1, 1, "has an empty `rules:` list"),
    ("# every rule commented out\nrules:\n#  - id: old\n#    when: {event: booking.created}\n", 2, 1,
     "has an empty `rules:` list"),
], ids=["empty", "comments-only", "empty-list", "rules-key-with-nothing"])
def test_a_rule_file_with_no_rules_is_a_warning_and_the_exit_stays_0(project, text: str, line: int, col: int,  # type: ignore[no-untyped-def]
                                                                     what: str) -> None:
    root = project({"rules/main.yaml": RULES, "rules/no-shows.yaml": text})
    code, out, err = validate(str(root))
    assert (code, out) == (0, "ok: 1 rule, 0 pipelines, 2 connectors in 2 files\n")
    assert err == (f"rules/no-shows.yaml:{line}:{col}: warning: rules/no-shows.yaml {what}: it has no rules\n"
                   "    hint: write rules under `rules:` (see README: A rule in five minutes), or delete the file\n")


def test_with_errors_elsewhere_the_warning_is_listed_among_the_problems(project) -> None:  # type: ignore[no-untyped-def]
    root = project({"rules/a.yaml": "", "rules/b.yaml": RULES.replace("booking.created", "booking.created}")})
    code, out, err = validate(str(root))
    assert code == 1
    assert out.startswith("rules/a.yaml:1:1: warning: rules/a.yaml is empty: it has no rules\n")
    assert "rules/b.yaml:3:" in out and err == "1 problem found (and 1 warning)\n"


# ---------------------------------------------------------------- duplicate keys

def test_the_duplicate_key_hint_says_the_file_is_refused_and_names_both_lines(project) -> None:  # type: ignore[no-untyped-def]
    root = project({"rules/main.yaml": """\
        rules:
          - id: welcome
            when: {event: booking.created}
            do:
              - sms.send: {to: "{{ client.phone }}", text: Hi}
            do:
              - notify: {to: admin, text: Hi}
        """})
    code, out, _ = validate(str(root))
    assert code == 1
    assert out == ("rules/main.yaml:6:5: error: duplicate key 'do' (first defined at line 4)\n"
                   "    hint: the file is refused: a key may appear once in a mapping; keep the 'do' of line 4 or of "
                   "line 6, or merge the two\n")


# ---------------------------------------------------------------- indentation

STEPS = """\
rules:
  - id: welcome
    when: {event: booking.created}
    do:
"""
ITEM_HINT = "the items of one list start their '-' in the same column: indent this line {n} spaces, as line {sib}"
KEY_HINT = "the keys of one mapping start in the same column: indent this line {n} spaces, as line {sib}"
DEEPER = "; a key goes inside the one above it only if that one ends in ':' with nothing after it"


def _bad(line: int, indent: int, sibling: int, sibling_indent: int) -> str:
    return (f"bad indentation: line {line} is indented {indent} space{'' if indent == 1 else 's'}, but its sibling, "
            f"line {sibling}, {sibling_indent} spaces")


INDENTATION = [
    pytest.param(STEPS + "      - sms.send: {to: x, text: y}\n     - notify: {to: admin, text: z}\n",
                 6, 6, _bad(6, 5, 5, 6), ITEM_HINT.format(n=6, sib=5), id="step-one-space-less"),
    pytest.param(STEPS + "      - sms.send: {to: x, text: y}\n       - notify: {to: admin, text: z}\n",
                 6, 8, _bad(6, 7, 5, 6), ITEM_HINT.format(n=6, sib=5), id="step-one-space-more"),
    pytest.param(STEPS + "      - sms.send: {to: x, text: y}\n    - notify: {to: admin, text: z}\n",
                 6, 5, _bad(6, 4, 5, 6), ITEM_HINT.format(n=6, sib=5), id="step-at-the-depth-of-do"),
    pytest.param(STEPS + "    - sms.send: {to: x, text: y}\n      - notify: {to: admin, text: z}\n",
                 6, 7, _bad(6, 6, 5, 4), ITEM_HINT.format(n=4, sib=5), id="dash-not-under-its-siblings"),
    pytest.param(STEPS + "      - sms.send:\n          to: x\n         text: y\n",
                 7, 10, _bad(7, 9, 6, 10), KEY_HINT.format(n=10, sib=6), id="param-one-space-less"),
    pytest.param(STEPS + "      - sms.send:\n          to: x\n           text: y\n",
                 7, 12, _bad(7, 11, 6, 10), KEY_HINT.format(n=10, sib=6) + DEEPER, id="param-one-space-more"),
    pytest.param("rules:\n  - id: welcome\n    when: {event: booking.created}\n     do:\n      - stop: x\n",
                 4, 6, _bad(4, 5, 3, 4), KEY_HINT.format(n=4, sib=3) + DEEPER, id="do-one-space-more"),
    pytest.param("rules:\n  - id: welcome\n    when: {event: booking.created}\n   do:\n      - stop: x\n",
                 4, 4, _bad(4, 3, 3, 4), KEY_HINT.format(n=4, sib=3), id="do-one-space-less"),
    pytest.param(STEPS + "      - if: \"1 > 0\"\n        then:\n          - stop: x\n       else:\n          - stop: y\n",
                 8, 8, _bad(8, 7, 6, 8), KEY_HINT.format(n=8, sib=6), id="else-under-then"),
    pytest.param(STEPS + "      - stop: x\n - id: second\n   when: {event: booking.created}\n",
                 6, 2, _bad(6, 1, 2, 2), ITEM_HINT.format(n=2, sib=2), id="rule-one-space-less"),
    pytest.param(" timezone: Europe/Moscow\nconnectors:\n  crm: {type: local}\n",
                 1, 2, "bad indentation: line 1 is indented 1 space, but its sibling, line 2, 0 spaces",
                 KEY_HINT.format(n=0, sib=2), id="first-line-indented"),
]


@pytest.mark.parametrize("text, line, col, message, hint", INDENTATION)
def test_an_indentation_mistake_is_told_as_one(project, text: str, line: int, col: int, message: str,  # type: ignore[no-untyped-def]
                                               hint: str) -> None:
    name = "automator.yaml" if text.lstrip().startswith("timezone") else "rules/main.yaml"
    root = project({})
    (root / name).parent.mkdir(exist_ok=True)
    (root / name).write_text(text, encoding="utf-8")
    code, out, _ = validate(str(root))
    assert code == 1
    assert out == f"{name}:{line}:{col}: error: {message}\n    hint: {hint}\n"


def test_a_list_item_without_a_space_after_its_dash(project) -> None:  # type: ignore[no-untyped-def]
    root = project({"rules/main.yaml": RULES + "  -id: second\n    when: {event: booking.created}\n"})
    code, out, _ = validate(str(root))
    assert code == 1
    assert out == ("rules/main.yaml:6:3: error: '-id' is a key, not a list item: a list item needs a space after "
                   "its '-'\n    hint: write `- id: second`\n")


def test_a_tab_in_the_indentation(project) -> None:  # type: ignore[no-untyped-def]
    root = project({"rules/main.yaml": STEPS + "\t- stop: x\n"})
    code, out, _ = validate(str(root))
    assert code == 1
    assert out == ("rules/main.yaml:5:1: error: a tab in this line's indentation\n"
                   "    hint: YAML does not allow tabs for indentation; use spaces\n")


def test_a_value_with_a_colon_is_not_called_an_indentation_mistake(project) -> None:  # type: ignore[no-untyped-def]
    root = project({"rules/main.yaml": STEPS + "      - sms.send: {to: x, text: y}\n      - notify: {to: admin, text: a}\n"
                                              "        via: crm\n      - stop: note: later\n"})
    code, out, _ = validate(str(root))
    assert code == 1
    assert out == ("rules/main.yaml:8:19: error: mapping values are not allowed here\n"
                   "    hint: put a value that contains ': ' in quotes, or check the indentation\n")


def test_params_indented_like_their_action_are_one_problem_and_still_checked(project) -> None:  # type: ignore[no-untyped-def]
    root = project({"rules/main.yaml": STEPS + """\
      - sms.send:
        to: "{{ client.phone }}"
        text: Hi
      - notify:
        to: admin
        via: crm
"""})
    code, out, _ = validate(str(root))
    assert code == 1
    assert out.splitlines() == [
        "rules/main.yaml:6:9: error: 'to' and 'text' are indented like 'sms.send', not under it, so sms.send gets "
        "no params",
        "    hint: indent them 10 spaces (2 more than 'sms.send'), or write `sms.send: {to: …, text: …}`",
        # moved under notify, its params are checked as any others: `text` is missing
        "rules/main.yaml:8:16: error: missing required key 'text'",
        "    hint: text: the notification (up to 4000 characters); may use templates",
        "rules/main.yaml:9:9: error: 'to' is indented like 'notify', not under it, so notify gets no params",
        "    hint: indent it 10 spaces (2 more than 'notify'), or write `notify: {to: …}`",
    ]


def test_a_rule_key_indented_under_when_says_where_it_belongs(project) -> None:  # type: ignore[no-untyped-def]
    root = project({"rules/main.yaml": """\
        rules:
          - id: welcome
            when:
              event: booking.created
              if: "event.data.status == 'new'"
            do:
              - stop: done
        """})
    code, out, _ = validate(str(root))
    assert code == 1
    assert out == ("rules/main.yaml:5:7: error: unknown key 'if'\n"
                   "    hint: 'if' is a key of the rule: indent it as far as `when:` and `do:`, not under `when:`\n")


def test_steps_written_without_their_dashes(project) -> None:  # type: ignore[no-untyped-def]
    root = project({"rules/main.yaml": STEPS + "      sms.send: {to: x, text: y}\n      stop: done\n"})
    code, out, _ = validate(str(root))
    assert code == 1
    assert out == ("rules/main.yaml:5:7: error: do: expected a list, got a mapping\n"
                   "    hint: start each item with '- ' on its own line: `- sms.send: …`\n")


def test_a_colon_inside_braces_asks_for_quotes(project) -> None:  # type: ignore[no-untyped-def]
    root = project({"rules/main.yaml": STEPS + "      - sms.send: {to: x, text: Внимание: клиент пришёл}\n"})
    code, out, _ = validate(str(root))
    assert code == 1
    assert out == ("rules/main.yaml:5:41: error: did not find expected ',' or '}'\n"
                   "    hint: put a value that contains ': ', ',', '{', '}', '[' or ']' in quotes\n")


def test_via_indented_among_the_params_says_it_belongs_to_the_step(project) -> None:  # type: ignore[no-untyped-def]
    root = project({"rules/main.yaml": STEPS + "      - sms.send:\n          to: x\n          text: y\n          via: sms\n"})
    code, out, _ = validate(str(root))
    assert code == 1
    assert out == ("rules/main.yaml:8:11: error: unknown key 'via'\n"
                   "    hint: 'via' belongs to the step, not to the params of sms.send: indent it as far as 'sms.send'\n")


@pytest.mark.parametrize("text, line, key, key_line, spaces", [
    (STEPS + "      - sms.send:\n          to: x\n          text: >\n            Здравствуйте!\n          Ждём вас\n",
     9, "text", 7, 12),
    ("rules:\n  - id: welcome\n    description: |\n      Greets new clients.\n    On their first booking.\n"
     "    when: {event: booking.created}\n    do: [{stop: x}]\n", 5, "description", 3, 6),
], ids=["folded-param", "literal-description"])
def test_a_line_of_a_block_text_indented_too_little(project, text: str, line: int, key: str, key_line: int,  # type: ignore[no-untyped-def]
                                                    spaces: int) -> None:
    root = project({"rules/main.yaml": text})
    code, out, _ = validate(str(root))
    assert code == 1
    indent = len(text.split("\n")[line - 1]) - len(text.split("\n")[line - 1].lstrip())
    assert out == (f"rules/main.yaml:{line}:{indent + 1}: error: line {line} is not indented more than '{key}:' "
                   f"(line {key_line}), so it is not part of its text\n"
                   f"    hint: indent every line of a '|' or '>' text more than its key: {spaces} spaces, as line "
                   f"{key_line + 1}\n")
