"""`automator validate` asks each action step's connector what it would refuse (`Connector.check_params`): every
check through the CLI on a real project folder, at the param's exact line and column, with its hint."""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from automator.checks import CheckContext, ParamProblem
from automator.cli import cli
from automator.config.load import builtin_connectors, load_project
from automator.connector import Connector, action

ROOT = Path(__file__).resolve().parents[1]

CONFIG = """\
timezone: Europe/Moscow
connectors:
  crm:
    type: bitrix24
    webhook_url: "${env:B24_WEBHOOK_URL}"
    application_token: "${env:B24_APP_TOKEN}"
    roles: {admin: 1, quality: 7}
    fields: {visit_at: UF_CRM_VISIT_AT}
  amo: {type: amocrm, subdomain: clinic, token: "${env:AMO}", hook_secret: "${env:AMO_HOOK}", users: {olga: 42}}
  booking:
    type: yclients
    company_id: 1
    partner_token: "${env:YP}"
    user_token: "${env:YU}"
    hook_secret: "${env:YH}"
    categories: [VIP, Постоянный]
  staff: {type: telegram, token: "${env:TG}", secret_token: "${env:TG_SECRET}", chats: {admin: -1001, quality: -1002}}
  ads: {type: http, allow: [ads.example.com]}
  sms: {type: smsru, api_id: "${env:SMSRU}"}
settings:
  ads_url: https://ads.example.com/audience
  tracker_url: https://tracker.example.org/hit
"""

PIPELINES = """\
pipelines:
  rehabilitation:
    connector: crm
    id: 4
    stages:
      new: {id: "C4:NEW"}
      booked: {id: "C4:UC_BOOKED"}
      old: {id: "UC_OLD"}
  amo_sales:
    connector: amo
    id: 7001
    stages:
      new: {id: "142001"}
      won: {id: won, outcome: won}
"""


def validate(tmp_path: Path, rules: str, config: str = CONFIG, pipelines: str = PIPELINES
             ) -> tuple[int, list[str], list[str]]:
    """Write the project, run `automator validate` on it: the exit code, stdout's and stderr's lines."""
    (tmp_path / "automator.yaml").write_text(config)
    (tmp_path / "pipelines").mkdir(exist_ok=True)
    (tmp_path / "pipelines" / "main.yaml").write_text(pipelines)
    (tmp_path / "rules").mkdir(exist_ok=True)
    (tmp_path / "rules" / "main.yaml").write_text(textwrap.dedent(rules))
    result = CliRunner().invoke(cli, ["validate", str(tmp_path)], catch_exceptions=False)
    shown = [text.replace(f"{tmp_path}/", "") for text in (result.stdout, result.stderr)]
    return result.exit_code, shown[0].splitlines(), shown[1].splitlines()


def rule(*steps: str, when: str = "{changed: booking.status, to: arrived}") -> str:
    """One rule whose `do:` holds these steps, each a line of YAML (the first on line 5)."""
    return "rules:\n  - id: r\n    when: " + when + "\n    do:\n" + "".join(f"      - {s}\n" for s in steps)


ON_REHABILITATION = "{changed: deal.stage, pipeline: rehabilitation, to: booked}"


def test_a_deal_field_the_connector_does_not_map(tmp_path: Path) -> None:
    code, out, _ = validate(tmp_path, rule('deal.update: {fields: {visit_time: "{{ deal.title }}"}}',
                                           when=ON_REHABILITATION))
    assert code == 1
    assert out[:2] == [
        "rules/main.yaml:5:32: error: connector 'crm' (bitrix24) maps no Bitrix24 field 'visit_time'",
        "    hint: did you mean 'visit_at'? Or map it under `fields:` of connector 'crm' in automator.yaml "
        "(visit_time: UF_CRM_…) or write the Bitrix24 code"]
    # A mapped name, a standard one and a Bitrix24 code are all written by the connector.
    code, out, _ = validate(tmp_path, rule('deal.update: {fields: {visit_at: "{{ deal.title }}", amount: 10, '
                                           "UF_CRM_17: x}}", when=ON_REHABILITATION))
    assert code == 0, out


def test_an_amocrm_deal_field_not_mapped(tmp_path: Path) -> None:
    code, out, _ = validate(tmp_path, rule("deal.create: {pipeline: amo_sales, stage: new, title: T, "
                                           'contact: "{{ client.phone }}", fields: {phone: "{{ client.phone }}", '
                                           "colour: red}}"))
    assert code == 1
    assert out[:2] == [
        "rules/main.yaml:5:135: error: connector 'amo' (amocrm) has no amoCRM field for 'colour'",
        "    hint: map it to a custom field of leads under `fields:` of connector 'amo' in automator.yaml "
        "(colour: <field id>); known: amount, client_name, email, phone, responsible, tags, title, "
        "utm_campaign, utm_content, utm_medium, utm_source, utm_term"]


def test_an_assignee_that_is_no_role_nor_user_id(tmp_path: Path) -> None:
    code, out, _ = validate(tmp_path, rule("task.create: {assignee: amdin, title: Позвонить}"))
    assert code == 1
    assert out[:2] == [
        "rules/main.yaml:5:33: error: assignee 'amdin' is neither a role under `roles:` of connector 'crm' "
        "(bitrix24) nor a Bitrix24 user id",
        "    hint: did you mean 'admin'? (`roles:` maps a name to a Bitrix24 user id)"]
    # A literal in disguise is one too; a template reading the run's data is left to the run; an id passes.
    code, out, _ = validate(tmp_path, rule("""task.create: {assignee: "{{ 'amdin' }}", title: Позвонить}"""))
    assert code == 1 and out[0].startswith("rules/main.yaml:5:33: error: assignee 'amdin' is neither")
    code, out, _ = validate(tmp_path, rule('task.create: {assignee: "{{ deal.responsible }}", title: T}',
                                           'task.create: {assignee: 12, title: T}'))
    assert code == 0, out


def test_an_amocrm_assignee_not_among_users(tmp_path: Path) -> None:
    code, out, _ = validate(tmp_path, rule("{task.create: {assignee: olgа, title: T}, via: amo}"))
    assert code == 1  # the last letter of olgа is Cyrillic
    assert out[:2] == [
        "rules/main.yaml:5:34: error: assignee 'olgа' is neither a name under `users:` or `roles:` of connector 'amo' "
        "(amocrm) nor an amoCRM user id",
        "    hint: did you mean 'olga'? (`users:` and `roles:` map a name to an amoCRM user id)"]


def test_a_notify_to_a_name_not_among_the_chats(tmp_path: Path) -> None:
    code, out, _ = validate(tmp_path, rule("notify: {to: quallity, text: NPS 3}",
                                           "message.send: {to: kitchen, text: Заказ готов}",
                                           "message.send: {to: -1003, text: Заказ готов}"))
    assert code == 1
    assert out[:4] == [
        "rules/main.yaml:5:22: error: connector 'staff' (telegram) has no chat named 'quallity' under `chats:`",
        "    hint: `chats:` of connector 'staff' in automator.yaml names each staff chat (name: chat id); "
        "did you mean 'quality'?",
        "rules/main.yaml:6:28: error: 'kitchen' is neither a Telegram chat id nor a name under `chats:` of "
        "connector 'staff' (telegram)",
        "    hint: `chats:` of connector 'staff' in automator.yaml names each staff chat (name: chat id); "
        "known chats: admin, quality"]
    assert len(out) == 4  # a chat id is an address: no problem with the third step


def test_a_client_sent_to_a_crm_is_a_person_the_engine_names_as_the_crm_knows_them(tmp_path: Path) -> None:
    # Issue 13: a client is one person; the engine gives each CRM its own contact id of them, or their phone to
    # find or create the contact by, so neither `{{ client.id }}` nor a deal.create without `contact:` is refused.
    for written in ('contact: "{{ client.id }}"', 'contact: "{{ booking.client }}"', 'contact: "{{ client.phone }}"',
                    ""):
        code, out, _ = validate(tmp_path, rule(
            f"deal.create: {{pipeline: rehabilitation, stage: new, title: T{', ' if written else ''}{written}}}",
            when="{changed: booking.status, to: no_show}"))
        assert code == 0, (written, out)
    code, out, _ = validate(tmp_path, rule("deal.create: {pipeline: amo_sales, stage: new, title: T}"))
    assert code == 0, out


def test_a_crm_deals_client_goes_to_yclients_as_the_person(tmp_path: Path) -> None:
    # A rule on Bitrix24's deals: the run's client is a person, sent to YCLIENTS as its own client id of them.
    code, out, _ = validate(tmp_path, rule(
        "deal.create: {pipeline: rehabilitation, stage: new, title: T}",
        'deal.create: {pipeline: rehabilitation, stage: new, title: T, contact: "{{ deal.client }}"}',
        'task.create: {assignee: admin, title: T, client: "{{ client.id }}"}',
        "client.set_category: {category: VIP}", when=ON_REHABILITATION))
    assert code == 0, out


def test_a_category_yclients_is_not_given(tmp_path: Path) -> None:
    code, out, _ = validate(tmp_path, rule("client.set_category: {category: Постояный}"))
    assert code == 1
    assert out[:2] == [
        "rules/main.yaml:5:41: error: 'Постояный' is not among the client categories of connector 'booking' "
        "(yclients) `categories:`",
        "    hint: did you mean 'Постоянный'? (add it to `categories:` in automator.yaml once the company has it)"]
    # Compared as YCLIENTS compares its labels (case aside); without `categories:` any category may be made.
    assert validate(tmp_path, rule("client.set_category: {category: vip}"))[0] == 0
    assert validate(tmp_path, rule("client.set_category: {category: Постояный}"),
                    config=CONFIG.replace("    categories: [VIP, Постоянный]\n", ""))[0] == 0


def test_a_booking_status_the_schema_refuses_is_reported_once(tmp_path: Path) -> None:
    code, out, _ = validate(tmp_path, rule("booking.set_status: {status: noshow}"))
    assert code == 1
    assert [line for line in out if line.startswith("rules/")] == [
        "rules/main.yaml:5:38: error: status: 'noshow' is not one of confirmed, arrived, waiting, no_show, cancelled"]


def test_a_url_to_a_host_off_the_allow_list(tmp_path: Path) -> None:
    code, out, _ = validate(tmp_path, rule(
        "http.request: {method: POST, url: https://tracker.example.org/hit}",
        'http.request: {method: POST, url: "{{ settings.tracker_url }}"}',
        'http.request: {method: GET, url: "https://ads.example.com.evil.io/a?phone={{ client.phone }}"}',
        'http.request: {method: POST, url: "{{ settings.ads_url }}", json: {phone: "{{ client.phone }}"}}',
        "http.request: {method: GET, url: \"{{ get(event, 'callback', '') }}\"}"))
    assert code == 1
    hint = "    hint: add \"{}\" to its `allow:` in automator.yaml (now: ads.example.com), or correct the URL"
    assert out == [
        "rules/main.yaml:5:43: error: host 'tracker.example.org' is not on the allow-list of connector 'ads' "
        "(http): the call would be refused", hint.format("tracker.example.org"),
        "rules/main.yaml:6:43: error: host 'tracker.example.org' is not on the allow-list of connector 'ads' "
        "(http): the call would be refused", hint.format("tracker.example.org"),
        "rules/main.yaml:7:42: error: host 'ads.example.com.evil.io' is not on the allow-list of connector 'ads' "
        "(http): the call would be refused", hint.format("ads.example.com.evil.io")]


def test_a_long_sms_is_a_warning_with_its_parts_and_encoding(tmp_path: Path) -> None:
    text = "Здравствуйте, {{ client.name }}! Напоминаем о визите завтра в клинику. Ждём вас по адресу: " \
           "ул. Ленина, 1. Если планы изменились, позвоните нам: +7 495 123-45-67. Ваша клиника"
    code, out, err = validate(tmp_path, rule(f'sms.send: {{to: "{{{{ client.phone }}}}", text: "{text}"}}'))
    assert code == 0, out
    assert err == [
        "rules/main.yaml:5:52: warning: the text goes out in at least 3 SMS: its own words alone are 157 characters "
        "in UCS-2, before what its 1 placeholder(s) add, more than 2",
        "    hint: shorten it (UCS-2 fits 70 characters in one SMS and 67 in each part of a longer one), or raise "
        "`max_parts:` of connector 'sms' in automator.yaml: each part is billed"]
    assert out[-1].startswith("ok: 1 rule")
    # The connector's `max_parts:` decides; an English text in GSM-7 fits 160 characters in one SMS.
    code, _, err = validate(tmp_path, rule(f'sms.send: {{to: "{{{{ client.phone }}}}", text: "{text}"}}'),
                            config=CONFIG.replace('api_id: "${env:SMSRU}"', 'api_id: "${env:SMSRU}", max_parts: 3'))
    assert code == 0 and err == []
    code, _, err = validate(tmp_path, rule('sms.send: {to: "{{ client.phone }}", text: "' + "Thanks! " * 20 + '"}'))
    assert code == 0 and err == []


def test_an_sms_the_gateway_refuses_is_an_error(tmp_path: Path) -> None:
    code, out, _ = validate(tmp_path, rule('sms.send: {to: "{{ client.phone }}", text: "' + "Спасибо! " * 70 + '"}',
                                           'sms.send: {to: "8 916 12", text: "Hi"}'))
    assert code == 1
    assert out[:4] == [
        "rules/main.yaml:5:52: error: the text goes out in 10 SMS: 630 characters in UCS-2; SMS.ru: the message takes "
        "10 SMS (630 characters, UCS-2); SMS.ru sends at most 8",
        "    hint: shorten it: UCS-2 fits 70 characters in one SMS and 67 in each part of a longer one",
        "rules/main.yaml:6:24: error: not valid phone numbers: '8 916 12'",
        "    hint: write it as +79161234567, or a template such as \"{{ client.phone }}\""]


def test_a_stage_whose_id_belongs_to_another_bitrix24_pipeline(tmp_path: Path) -> None:
    code, out, _ = validate(tmp_path, rule("deal.create: {pipeline: rehabilitation, stage: old, title: T, "
                                           'contact: "{{ client.phone }}"}'))
    assert code == 1
    assert out[:2] == [
        "rules/main.yaml:5:56: error: stage 'old' of pipeline 'rehabilitation' has the id 'UC_OLD', which is not a "
        "stage of Bitrix24 pipeline 4 (its stage ids are C4:…)",
        "    hint: correct the stage's `id:` in pipelines/main.yaml"]


def test_other_refusals_decidable_from_the_params(tmp_path: Path) -> None:
    # A deal id that is no number, an amoCRM stage without a status id, an HTML text Telegram cannot parse.
    config = CONFIG.replace('chats: {admin: -1001', 'parse_mode: HTML, chats: {admin: -1001')
    pipelines_with_text_id = "      lost: {id: LOST}\n"
    code, out, _ = validate(tmp_path, rule(
        "deal.move: {deal: D-15, stage: booked}",
        "deal.create: {pipeline: amo_sales, stage: lost, title: T, contact: \"{{ client.phone }}\"}",
        "notify: {to: admin, text: \"<b>NPS 3</i>\"}", when=ON_REHABILITATION),
        config=config, pipelines=PIPELINES + pipelines_with_text_id)
    assert code == 1
    assert out == [
        "rules/main.yaml:5:27: error: 'D-15' is not a Bitrix24 deal id (a number)",
        "    hint: leave `deal:` out for the run's deal, or write one such as \"{{ event.deal }}\"",
        "rules/main.yaml:6:51: error: stage 'lost' of pipeline 'amo_sales' has the id 'LOST': amoCRM status ids are "
        "numbers",
        "    hint: correct its `id:` in pipelines/main.yaml (or give it `outcome: won` or `lost`, amoCRM's 142 and 143)",
        "rules/main.yaml:7:35: error: the text is not valid HTML: Unmatched end tag at byte offset 8, expected "
        "\"</b>\", found \"</i>\"",
        "    hint: close every tag, and write <, > and & in the text as &lt; &gt; &amp;"]


def test_a_deal_action_is_checked_by_its_pipelines_connector(tmp_path: Path) -> None:
    # The same deal.update goes to amoCRM in a rule on amo_sales deals, to Bitrix24 on rehabilitation deals.
    step = "deal.update: {fields: {visit_at: x}}"
    code, out, _ = validate(tmp_path, rule(step, when="{changed: deal.stage, pipeline: amo_sales, to: won}"))
    assert code == 1 and out[0].startswith("rules/main.yaml:5:32: error: connector 'amo' (amocrm) has no amoCRM "
                                           "field for 'visit_at'")
    code, out, _ = validate(tmp_path, rule(step, when="{changed: deal.stage, pipeline: rehabilitation, to: booked}"))
    assert code == 0, out


def test_the_example_project_passes_every_check() -> None:
    result = CliRunner().invoke(cli, ["validate", str(ROOT)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    # The one warning is the `staff` connector's, which accepts no webhooks (tested in test_cli.py).
    assert [line for line in result.stderr.splitlines() if ": warning: " in line] == [
        line for line in result.stderr.splitlines() if "connector 'staff' (local) has no `secret`" in line]


class Broken(Connector):
    """A third-party type whose check itself fails."""

    type = "broken"

    @action("broken.do", schema="actions/sms.send.json")
    def do(self, params: Any, key: str) -> None:
        """Nothing."""

    @classmethod
    def check_params(cls, action: str, params: Any, options: Any, context: CheckContext) -> list[ParamProblem]:
        raise KeyError("to")


def test_a_check_that_fails_is_reported_where_the_step_is(tmp_path: Path) -> None:
    (tmp_path / "automator.yaml").write_text("timezone: UTC\nconnectors:\n  b: {type: broken}\n")
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "r.yaml").write_text(rule('broken.do: {to: "+79161234567", text: hi}'))
    _, problems = load_project(tmp_path, connector_types={**builtin_connectors(), "broken": Broken})
    assert [(p.line, p.col, p.message) for p in problems] == [
        (5, 9, "connector 'b' (broken) failed to check 'broken.do': KeyError: 'to'")]
