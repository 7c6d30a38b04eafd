"""Tests for automator.config.source: safe YAML with marks, limits and YAML 1.2 resolution."""
from __future__ import annotations

import copy
import json
import math
import pickle
from pathlib import Path
from typing import Any

import pytest

from automator.config.problems import Problem
from automator.config.source import (
    Document,
    Mark,
    SourceFloat,
    SourceInt,
    SourceNumber,
    load_document,
)


def load(text: str) -> tuple[Document | None, list[Problem]]:
    return load_document("rules/x.yaml", text=text)


def load_ok(text: str) -> Document:
    doc, problems = load(text)
    assert problems == []
    assert doc is not None
    return doc


def where(problems: list[Problem]) -> list[tuple[int, int, str]]:
    return [(p.line, p.col, p.message) for p in problems]


# --- YAML 1.2 core resolution ----------------------------------------------------------------

@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("9:30", "9:30"),
        ("1:20:30", "1:20:30"),
        ("NO", "NO"),
        ("no", "no"),
        ("yes", "yes"),
        ("on", "on"),
        ("off", "off"),
        ("y", "y"),
        ("n", "n"),
        ("+79161234567", "+79161234567"),
        ("0123", "0123"),
        ("007", "007"),
        ("0", 0),
        ("-5", -5),
        ("89161234567", 89161234567),
        ("0.5", 0.5),
        ("1.5", 1.5),
        ("1e3", 1000.0),
        ("0x1F", 31),
        ("0o17", 15),
        ("1_000", "1_000"),
        (".inf", math.inf),
        ("-.inf", -math.inf),
        ("2026-03-02", "2026-03-02"),
        ("2026-03-02T09:00:00+03:00", "2026-03-02T09:00:00+03:00"),
        ("~", None),
        ("null", None),
        ("Null", None),
        ("NULL", None),
        ("", None),
        ("true", True),
        ("True", True),
        ("TRUE", True),
        ("false", False),
        ("FALSE", False),
        ("tRuE", "tRuE"),
        ('"123"', "123"),
        ("'true'", "true"),
    ],
)
def test_core_schema_resolution(written: str, expected: Any) -> None:
    doc = load_ok(f"value: {written}\n")
    value = doc.data["value"]
    assert value == expected
    assert type(value) is type(expected) or isinstance(value, type(expected))
    if isinstance(expected, bool):
        assert value is expected


def test_nan_is_a_float() -> None:
    value = load_ok("v: .nan\n").data["v"]
    assert isinstance(value, float) and math.isnan(value)


def test_numbers_keep_their_source_text() -> None:
    doc = load_ok("phone: 89161234567\nrate: 1.50\nbig: 0x1F\ntext: abc\n")
    phone, rate, big = doc.data["phone"], doc.data["rate"], doc.data["big"]
    assert isinstance(phone, SourceInt) and isinstance(phone, SourceNumber)
    assert phone == 89161234567 and phone.source == "89161234567"
    assert hash(phone) == hash(89161234567) and phone + 1 == 89161234568
    assert type(phone + 1) is int
    assert isinstance(rate, SourceFloat) and rate == 1.5 and rate.source == "1.50"
    assert big == 31 and big.source == "0x1F"
    assert json.dumps(doc.data) == '{"phone": 89161234567, "rate": 1.5, "big": 31, "text": "abc"}'
    assert repr(phone) == "89161234567"
    assert pickle.loads(pickle.dumps(phone)).source == "89161234567"
    assert copy.deepcopy(rate).source == "1.50"


def test_booleans_are_not_source_numbers() -> None:
    doc = load_ok("a: true\nb: 1\n")
    assert doc.data["a"] is True
    assert not isinstance(doc.data["a"], SourceNumber)


def test_explicit_tags_of_the_core_schema() -> None:
    doc, problems = load("a: !!str 12\nb: !!int 0123\nc: !!float 2\nd: !!bool yes\ne: ! 7\n")
    assert doc is not None
    assert doc.data == {"a": "12", "b": 123, "c": 2.0, "d": "yes", "e": "7"}
    assert where(problems) == [(4, 4, "'yes' is not true or false (tag !!bool)")]


# --- marks ------------------------------------------------------------------------------------

RULES = """\
rules:
  - id: no-show
    when: {held: booking.status, is: waiting, until: end_of_day}
    do:
      - booking.set_status:
          status: no_show
"""


def test_marks_of_values_and_keys() -> None:
    doc = load_ok(RULES)
    assert doc.data["rules"][0]["when"]["held"] == "booking.status"
    assert doc.marks[()] == Mark(1, 1)
    assert doc.marks[("rules",)] == Mark(2, 3)
    assert doc.key_marks[("rules",)] == Mark(1, 1)
    assert doc.marks[("rules", 0)] == Mark(2, 5)
    assert doc.marks[("rules", 0, "id")] == Mark(2, 9)
    assert doc.key_marks[("rules", 0, "id")] == Mark(2, 5)
    assert doc.marks[("rules", 0, "when")] == Mark(3, 11)
    assert doc.marks[("rules", 0, "when", "held")] == Mark(3, 18)
    assert doc.key_marks[("rules", 0, "when", "held")] == Mark(3, 12)
    assert doc.marks[("rules", 0, "when", "until")] == Mark(3, 54)
    assert doc.marks[("rules", 0, "do", 0, "booking.set_status", "status")] == Mark(6, 19)
    assert doc.key_marks[("rules", 0, "do", 0, "booking.set_status")] == Mark(5, 9)
    assert ("rules", 0) not in doc.key_marks  # list items have no key


def test_mark_falls_back_to_the_nearest_ancestor() -> None:
    doc = load_ok(RULES)
    assert doc.mark(["rules", 0, "when", "missing", 3]) == Mark(3, 11)
    assert doc.mark(("rules", 0, "when", "held"), key=True) == Mark(3, 12)
    assert doc.mark(("rules", 0), key=True) == Mark(2, 5)  # no key: the value's mark
    assert doc.mark(()) == Mark(1, 1)
    problem = doc.problem(("rules", 0, "when", "is"), "unknown stage 'waiting'", "did you mean 'wait'?")
    assert problem == Problem("rules/x.yaml", 3, 38, "unknown stage 'waiting'", "did you mean 'wait'?")
    assert problem.format().startswith("rules/x.yaml:3:38: error: unknown stage")


def test_empty_file_and_empty_value_marks() -> None:
    doc = load_ok("")
    assert doc.data is None and doc.mark(("a", 1)) == Mark(1, 1)
    assert load_ok("# only a comment\n").data is None
    doc = load_ok("a:\nb: 1\n")
    assert doc.data == {"a": None, "b": 1}
    assert doc.marks[("a",)] == Mark(1, 3)


def test_scalar_keys_become_strings() -> None:
    doc = load_ok("stages:\n  1: first\n  true: yes\n  0123: x\n")
    assert doc.data == {"stages": {"1": "first", "true": "yes", "0123": "x"}}
    assert doc.key_marks[("stages", "1")] == Mark(2, 3)


def test_complex_key_is_a_problem() -> None:
    doc, problems = load("? [a, b]\n: 1\nc: 2\n")
    assert doc is not None and doc.data == {"c": 2}
    assert where(problems) == [(1, 3, "a key must be a single value, not a mapping or a list")]


# --- duplicates, anchors, merges ----------------------------------------------------------------

def test_duplicate_keys_are_all_reported_and_the_last_value_kept() -> None:
    text = "id: a\nwhen: {event: x}\nid: b\ndo:\n  - stop: {}\n    stop: {}\nid: c\n"
    doc, problems = load(text)
    assert doc is not None
    assert doc.data["id"] == "c"
    assert where(problems) == [
        (3, 1, "duplicate key 'id' (first defined at line 1)"),
        (6, 5, "duplicate key 'stop' (first defined at line 5)"),
        (7, 1, "duplicate key 'id' (first defined at line 1)"),
    ]
    assert doc.marks[("id",)] == Mark(7, 5)


def test_merge_key_works_and_explicit_keys_win() -> None:
    text = """\
defaults: &sms
  connector: sms
  sender: Clinic
  retry: {times: 3}
other: &more {sender: Other, extra: 1}
rules:
  - <<: *sms
    sender: Salon
  - <<: [*sms, *more]
copy: *sms
"""
    doc = load_ok(text)
    first, second = doc.data["rules"]
    assert first == {"connector": "sms", "sender": "Salon", "retry": {"times": 3}}
    assert second == {"connector": "sms", "sender": "Clinic", "retry": {"times": 3}, "extra": 1}
    assert doc.data["copy"] == doc.data["defaults"]
    assert doc.data["copy"] is not doc.data["defaults"]  # aliases give independent copies
    assert "<<" not in first
    assert doc.marks[("rules", 0, "sender")] == Mark(8, 13)
    assert doc.marks[("rules", 0, "connector")] == Mark(2, 14)  # where the merged value is written
    assert doc.marks[("rules", 0, "retry", "times")] == Mark(4, 18)
    assert doc.key_marks[("rules", 1, "extra")] == Mark(5, 30)
    assert doc.marks[("copy",)] == Mark(10, 7)  # an alias is marked where it is used
    assert doc.marks[("copy", "sender")] == Mark(3, 11)


def test_bad_merge_and_unknown_alias_are_problems() -> None:
    doc, problems = load("a: &x 5\nb:\n  <<: *x\nc: *nope\n")
    assert doc is not None and doc.data == {"a": 5, "b": {}, "c": None}
    assert where(problems) == [
        (3, 7, "'<<' (merge) needs a mapping or a list of mappings"),
        (4, 4, "unknown alias *nope"),
    ]


def test_recursive_anchor_is_refused() -> None:
    doc, problems = load("a: &x\n  b: *x\nc: *x\n")
    assert doc is not None
    assert doc.data == {"a": {"b": None}, "c": {"b": None}}
    assert where(problems) == [(2, 6, "alias *x is used inside its own anchor")]


def test_alias_bomb_is_refused_before_it_expands(hang_alarm: None) -> None:
    # 9**9 strings if expanded: refused by counting the expansions, at the line where the count runs over.
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    doc, problems = load("\n".join(lines) + "\n")
    assert doc is None
    assert len(problems) == 1
    assert problems[0].message.startswith("too many alias expansions")
    assert problems[0].line in (6, 7)


# --- limits and refusals --------------------------------------------------------------------------

def test_fifty_megabyte_file_is_refused_before_parsing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      hang_alarm: None) -> None:
    big = tmp_path / "big.yaml"
    big.write_bytes(b"a: 1\n" * (50 * 1024 * 1024 // 5))

    from automator.config import source

    def no_parser(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the file was handed to the YAML parser")

    monkeypatch.setattr(source, "_Parser", no_parser)
    doc, problems = load_document(big, display_path="rules/big.yaml")
    assert doc is None
    assert [p.format().splitlines()[0] for p in problems] == [
        "rules/big.yaml:1:1: error: file is too large (52,428,800 bytes; the limit is 2,000,000)"
    ]


def test_size_limit_applies_to_text_and_is_configurable(tmp_path: Path) -> None:
    doc, problems = load_document("t.yaml", text="a: 12345\n", max_bytes=5)
    assert doc is None and where(problems) == [(1, 1, "file is too large (9 bytes; the limit is 5)")]
    path = tmp_path / "ok.yaml"
    path.write_text("a: 1\n")
    doc, problems = load_document(path, max_bytes=5)
    assert problems == [] and doc is not None and doc.path == str(path) and doc.data == {"a": 1}


@pytest.mark.parametrize("text", ["[" * 5000 + "]" * 5000, "[" * 200_000, "- " * 300 + "x\n"])
def test_deep_nesting_is_refused(text: str) -> None:
    doc, problems = load(text)
    assert doc is None
    assert [p.message for p in problems] == ["the data is nested too deeply (more than 100 levels)"]


def test_nesting_up_to_the_limit_is_fine() -> None:
    doc = load_ok("[" * 100 + "]" * 100)
    assert doc.data is not None


def test_syntax_error_at_the_parser_mark() -> None:
    doc, problems = load("rules:\n  - id: a\n    when: event: x\n")
    assert doc is None
    assert where(problems) == [(3, 16, "mapping values are not allowed here")]
    assert problems[0].hint


def test_unclosed_flow_sequence_hint_names_its_start() -> None:
    doc, problems = load("a: [1, 2\nb: 3\n")
    assert doc is None and len(problems) == 1
    assert (problems[0].line, problems[0].col) == (2, 2)
    assert problems[0].hint == "the [ at line 1, column 4 is not closed: end it with ']'"


def test_missing_colon_points_at_the_key() -> None:
    doc, problems = load("a: 1\nb\nc: 2\n")
    assert doc is None
    assert where(problems) == [(2, 1, "expected ':' after this key")]


@pytest.mark.parametrize("text", ["a:\n\tb: 1\n", "rules:\n  - id: x\n\t  when: y\n"])
def test_tab_indentation_gets_a_hint(text: str) -> None:
    doc, problems = load(text)
    assert doc is None and len(problems) == 1
    assert (problems[0].line, problems[0].col) == (text.count("\n", 0, text.index("\t")) + 1, 1)
    assert problems[0].hint == "YAML does not allow tabs for indentation; use spaces"


def test_unknown_and_python_tags_are_refused() -> None:
    text = "a: !foo 3\nb: !!python/object:os.system {}\nc: !!python/name:os.system ''\nd: !!set {x: null}\n"
    doc, problems = load(text)
    assert doc is not None
    assert where(problems) == [
        (1, 4, "tag !foo is not allowed"),
        (2, 4, "tag !!python/object:os.system is not allowed"),
        (3, 4, "tag !!python/name:os.system is not allowed"),
        (4, 4, "tag !!set is not allowed"),
    ]
    assert doc.data == {"a": "3", "b": {}, "c": "", "d": {"x": None}}


def test_several_documents_are_refused() -> None:
    doc, problems = load("a: 1\n---\nb: 2\n")
    assert doc is None
    assert where(problems) == [(2, 1, "the file holds more than one YAML document")]
    assert load_ok("---\na: 1\n").data == {"a": 1}


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "cp1251.yaml"
    path.write_bytes("title: ok\nname: Анна\n".encode("cp1251"))
    doc, problems = load_document(path, display_path="pipelines/p.yaml")
    assert doc is None
    assert [(p.path, p.line, p.col) for p in problems] == [("pipelines/p.yaml", 2, 7)]
    assert problems[0].message.startswith("file is not valid UTF-8")


def test_bom_and_utf8_text_are_fine(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes("\ufefftitle: Клиент прогрет\n".encode("utf-8"))
    doc, problems = load_document(path)
    assert problems == [] and doc is not None
    assert doc.data == {"title": "Клиент прогрет"} and doc.marks[("title",)] == Mark(1, 8)


def test_control_character_is_a_problem() -> None:
    doc, problems = load("name: Анна\nnote: a\x01b\n")
    assert doc is None
    assert where(problems) == [(2, 8, "character U+0001 is not allowed in YAML")]


def test_missing_file_is_a_problem(tmp_path: Path) -> None:
    doc, problems = load_document(tmp_path / "nope.yaml", display_path="nope.yaml")
    assert doc is None and len(problems) == 1
    assert problems[0].path == "nope.yaml" and problems[0].message.startswith("cannot read the file")


@pytest.mark.parametrize(
    "text",
    ["{", "a: [", "'", "&a", "*", "!<tag:x> a", "a: *b\nb: &b 1", "? ? ?\n", ": :\n", "%YAML 9.9\n---\na\n",
     "- &a a\n- &a b\n", "[a, b]: c\n", "<<: 1\n<<: 2\n", "\x00", "a: \ud800\n"],
)
def test_bad_input_never_raises(text: str) -> None:
    doc, problems = load(text)
    assert doc is not None or problems


# --- volume --------------------------------------------------------------------------------------

RULE = """\
  - id: follow-up-{i}
    when: {{changed: booking.status, to: arrived, pipeline: first_visit}}
    per: client
    mode: restart
    if:
      - "client.visits > {i}"
      - not client.do_not_call
    do:
      - segment.recompute: {{client: "{{{{ client.id }}}}"}}
      - wait: 14d
      - deal.create:
          pipeline: regular_client
          stage: new
          title: "Повторный визит: {{{{ client.name }}}}"
      - sms.send: {{to: "{{{{ client.phone }}}}", text: Hi, phone: +79161234567, at: "9:30"}}
"""


def test_loads_a_thousand_rules() -> None:
    text = "rules:\n" + "".join(RULE.format(i=i) for i in range(1000))
    doc = load_ok(text)
    rules = doc.data["rules"]
    assert len(rules) == 1000
    assert rules[999]["id"] == "follow-up-999"
    assert rules[5]["do"][3]["sms.send"]["phone"] == "+79161234567"
    assert doc.marks[("rules", 999, "do", 1, "wait")] == Mark(2 + 999 * 15 + 9, 15)


def test_pure_python_parser_gives_the_same_result(monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml

    from automator.config import source

    fast = load_ok(RULES)
    monkeypatch.setattr(source, "_Parser", yaml.SafeLoader)
    slow = load_ok(RULES)
    assert (slow.data, slow.marks, slow.key_marks) == (fast.data, fast.marks, fast.key_marks)
    doc, problems = load("a: b: c\n")
    assert doc is None and where(problems) == [(1, 5, "mapping values are not allowed here")]
    doc, problems = load("name: Анна\nnote: a\x01b\n")
    assert doc is None and [(p.line, p.col) for p in problems] == [(2, 8)]
