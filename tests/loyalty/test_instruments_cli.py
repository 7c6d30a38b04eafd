"""Certificates and abonements as an admin meets them on the command line: `automator validate` pointing at the
line of a wrong type in loyalty.yaml, and `automator dry-run` showing what an issue would do."""
from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from automator.cli import cli
from tests.loyalty.instruments_support import CONFIG

LOYALTY = """\
certificates:
  gift_any: {title: Подарочный сертификат, nominal: any, expires: 365d, prefix: GC-}
abonements:
  massage_10: {title: Массаж спины ×10, visits: 10, services: [Массаж спины], expires: 90d}
"""
RULES = """\
rules:
  - id: sell-gift
    when: {event: gift.sold}
    do:
      - certificate.issue: {type: gift_any, nominal: "{{ event.amount }}"}
  - id: gift-number
    when: {event: certificate.created}
    do:
      - sms.send: {to: "+79161234567", text: "Сертификат № {{ event.number }} на {{ event.nominal }} ₽ по {{ event.last_day }}"}
  - id: sell-package
    when: {event: package.sold}
    do:
      - abonement.issue: {type: massage_10, visits: 12}
"""


def project(root: Path, loyalty: str = LOYALTY) -> Path:
    (root / "automator.yaml").write_text(CONFIG, encoding="utf-8")
    (root / "loyalty.yaml").write_text(loyalty, encoding="utf-8")
    (root / "rules").mkdir(exist_ok=True)
    (root / "rules" / "loyalty.yaml").write_text(RULES, encoding="utf-8")
    (root / "state.yaml").write_text('- {kind: client, id: 77, name: Анна}\n', encoding="utf-8")
    return root


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


def test_dry_run_shows_the_certificate_an_issue_makes_and_the_message_with_its_number(tmp_path: Path) -> None:
    root = project(tmp_path)
    (root / "event.yaml").write_text("event: gift.sold\nentity: {kind: client, id: 77}\ndata: {amount: \"5000.00\"}\n",
                                     encoding="utf-8")
    code, out = run("dry-run", "--project", str(root), "--event", str(root / "event.yaml"), "--state",
                    str(root / "state.yaml"), "--at", "2026-03-02T07:00:00Z")
    assert code == 0, out
    lines = [line.strip() for line in out.splitlines()]
    assert "2026-03-02 10:00 +03:00  certificate.issue {type: gift_any, nominal: 5000.00, client: 77}" in lines
    assert "→ certificate.created" in lines
    sms = next(line for line in lines if "sms.send" in line)
    # The number is made up from the issue's key: GC- and ten digits; good through 2 March 2027.
    number = sms.split("№ ")[1].split(" ")[0]
    assert number.startswith("GC-") and len(number) == 13 and number[3:].isdigit()
    assert sms.endswith(f"Сертификат № {number} на 5000.00 ₽ по 2027-03-02}}")


def test_dry_run_of_an_abonement_issue_with_visits_of_its_own(tmp_path: Path) -> None:
    root = project(tmp_path)
    (root / "event.yaml").write_text("event: package.sold\nentity: {kind: client, id: 77}\n", encoding="utf-8")
    code, out = run("dry-run", "--project", str(root), "--event", str(root / "event.yaml"), "--state",
                    str(root / "state.yaml"), "--at", "2026-03-02T07:00:00Z")
    assert code == 0, out
    assert "abonement.issue {type: massage_10, visits: 12, client: 77}" in out


def test_validate_points_at_each_wrong_type_with_a_hint(tmp_path: Path) -> None:
    root = project(tmp_path, """\
certificates:
  gift_3000: {title: Сертификат, nominal: "3000.00", expires: 12h}
  gift_zero: {title: Ноль, nominal: "0"}
abonements:
  massage_10: {title: Массаж, visits: 10, expires: 90d}
  lfk_5: {title: ЛФК, visits: 5, categories: [ЛФК], freeze: {max: 1mo}}
  pool_8: {title: Бассейн, visits: 8, services: [Бассейн], synced: true}
""")
    code, out = run("validate", str(root))
    assert code != 0
    loyalty = str(root / "loyalty.yaml")
    assert f"{loyalty}:2:63: error: expires 12h is not whole days" in out
    assert f"{loyalty}:3:37: error: a certificate's nominal must be above zero" in out
    assert f"{loyalty}:5:3: error: abonement type 'massage_10' names no services" in out
    assert f"{loyalty}:6:67: error: freeze max 1mo is not a number of days" in out
    assert f"{loyalty}:7:68: error: synced: true, but loyalty.yaml has no `sync:`" in out
    assert "hint: write it in days or weeks, such as 30d or 4w" in out


def test_validate_finds_a_misspelt_type_in_a_rule_and_a_sale_without_loyalty_yaml(tmp_path: Path) -> None:
    root = project(tmp_path)
    (root / "rules" / "loyalty.yaml").write_text(RULES.replace("{type: massage_10, visits: 12}", "{type: masage_10}"),
                                                 encoding="utf-8")
    code, out = run("validate", str(root))
    assert code != 0
    rules = str(root / "rules" / "loyalty.yaml")
    assert f"{rules}:13:33: error: unknown abonement type 'masage_10'\n    hint: did you mean 'massage_10'?" in out
    (root / "loyalty.yaml").unlink()
    code, out = run("validate", str(root))
    assert f"{rules}:5:35: error: certificate.issue needs loyalty.yaml, and there is none" in out
