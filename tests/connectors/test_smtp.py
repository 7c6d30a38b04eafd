"""The smtp connector against its emulator over a real SMTP socket on 127.0.0.1: e-mails, notices and reports
delivered as a mail client reads them, recipients refused, 4xx retried and 5xx refused for good, the contract."""
from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from typing import Any

import jsonschema
import pytest

from automator.checks import CheckContext
from automator.connector_contract import ConnectorContract, Sandbox, Sandboxes, sandboxes
from automator.errors import Rejected, Retryable, Uncertain
from automator.report_delivery import Composed, ReportRequest
from automator_connectors.smtp import Smtp
from automator_connectors.smtp.emulator import SmtpEmulator

PAGE = "<!doctype html><html lang=\"ru\"><title>Каналы</title><p>Лиды: 12</p></html>".encode()
ASKED: list[ReportRequest] = []


async def fake_compose(request: ReportRequest) -> Composed:
    """A composed report as the child process would give it (the reports' own figures are tested apart)."""
    ASKED.append(request)
    return Composed(summary="Лиды: 12\nВыручка: 84 000,00 ₽\nROMI: 180,0 %", html=PAGE,
                    filename="report-channels-2026-11-24-2026-11-30.html", title="Каналы", period="24.11–30.11.2026")


@pytest.fixture
def emu() -> Iterator[SmtpEmulator]:
    emulator = SmtpEmulator()
    emulator.start()
    yield emulator
    emulator.close()


def connector(emu: SmtpEmulator, **extra: Any) -> Smtp:
    made = Smtp("mail", {"type": "smtp", "host": "127.0.0.1", "port": emu.port, "security": "none",
                         "from": "reports@salon.ru",
                         "recipients": {"owner": "owner@salon.ru", "admin": "admin@salon.ru",
                                        "gone": "nobody@reject.test"}, **extra})
    made.compose = fake_compose
    return made


def perform(made: Smtp, action: str, params: Mapping[str, Any]) -> Any:
    return asyncio.run(made.perform(action, params, "run-1/do/0"))


def test_email_send_delivers_text_and_html_to_names_and_addresses(emu: SmtpEmulator) -> None:
    result = perform(connector(emu), "email.send", {"to": "owner, anna@example.com", "subject": "Заявка с сайта",
                                                    "text": "Анна, +79161234567", "html": "<b>Анна</b>"})
    [sent] = emu.messages
    assert sent["to"] == ["owner@salon.ru", "anna@example.com"] and sent["from"] == "reports@salon.ru"
    assert sent["subject"] == "Заявка с сайта" and sent["text"].strip() == "Анна, +79161234567"
    html = emu.parsed[0].get_body(preferencelist=("html",))
    assert html is not None and html.get_content().strip() == "<b>Анна</b>"
    assert "run-1-do-0" in result.data["message_id"] and result.data["refused"] == {}


def test_report_send_attaches_the_page_and_puts_the_summary_in_the_body(emu: SmtpEmulator) -> None:
    ASKED.clear()
    result = perform(connector(emu), "report.send", {"report": "channels", "period": "last_week", "to": "owner",
                                                     "text": "Доброе утро! Итоги недели:"})
    assert ASKED == [ReportRequest("channels", "last_week")]
    [sent] = emu.messages
    assert sent["to"] == ["owner@salon.ru"]
    assert sent["subject"] == "Отчёт «Каналы» за 24.11–30.11.2026"
    assert sent["text"].strip() == "Доброе утро! Итоги недели:\n\nЛиды: 12\nВыручка: 84 000,00 ₽\nROMI: 180,0 %"
    [attached] = list(emu.parsed[0].iter_attachments())
    assert attached.get_filename() == "report-channels-2026-11-24-2026-11-30.html"
    assert attached.get_content_type() == "text/html" and attached.get_payload(decode=True) == PAGE
    assert result.data["attachment"] == "report-channels-2026-11-24-2026-11-30.html"
    assert result.data["period"] == "24.11–30.11.2026"


def test_report_send_to_nobody_known_is_refused_before_computing(emu: SmtpEmulator) -> None:
    ASKED.clear()
    with pytest.raises(Rejected, match="neither an e-mail address nor a name"):
        perform(connector(emu), "report.send", {"report": "channels", "period": "last_week", "to": "boss"})
    assert ASKED == [] and emu.messages == []


def test_notify_names_a_recipient_and_takes_the_first_line_as_subject(emu: SmtpEmulator) -> None:
    perform(connector(emu), "notify", {"to": "admin", "text": "Лид ждёт 5 минут\nАнна, +79161234567"})
    assert emu.messages[0]["subject"] == "Лид ждёт 5 минут" and emu.messages[0]["to"] == ["admin@salon.ru"]
    with pytest.raises(Rejected, match="no address for 'olga'"):
        perform(connector(emu), "notify", {"to": "olga", "text": "Лид"})


def test_refused_recipients(emu: SmtpEmulator) -> None:
    # Every recipient refused (550): refused for good. Some refused: sent to the others, the refused listed.
    with pytest.raises(Rejected, match="550"):
        perform(connector(emu), "email.send", {"to": "gone", "subject": "Тема", "text": "Текст"})
    assert emu.messages == []
    result = perform(connector(emu), "email.send", {"to": "owner, gone", "subject": "Тема", "text": "Текст"})
    assert emu.messages[0]["to"] == ["owner@salon.ru"]
    assert list(result.data["refused"]) == ["nobody@reject.test"] and "550" in result.data["refused"]["nobody@reject.test"]


@pytest.mark.parametrize("status, error", [(500, Retryable), (400, Rejected)])
def test_a_4xx_reply_is_retried_and_a_5xx_refused_for_good(emu: SmtpEmulator, status: int, error: type) -> None:
    # The emulator answers an HTTP-like 5xx fault with 451 (try later) and a 4xx one with 554 (never).
    emu.faults.update({"fail": {"status": status, "count": 1}})
    with pytest.raises(error, match="451" if error is Retryable else "554"):
        perform(connector(emu), "email.send", {"to": "owner", "subject": "Тема", "text": "Текст"})
    perform(connector(emu), "email.send", {"to": "owner", "subject": "Тема", "text": "Текст"})
    assert len(emu.messages) == 1


def test_login_and_security_settings() -> None:
    guarded = SmtpEmulator(username="reports@salon.ru", password="right")
    guarded.start()
    try:
        good = perform(connector(guarded, username="reports@salon.ru", password="right"), "email.send",
                       {"to": "owner", "subject": "Тема", "text": "Текст"})
        assert good.data["to"] == "owner@salon.ru"
        with pytest.raises(Rejected, match="535"):
            perform(connector(guarded, username="reports@salon.ru", password="wrong"), "email.send",
                    {"to": "owner", "subject": "Тема", "text": "Текст"})
        # A server that offers no STARTTLS to a connector that requires it: our settings, refused, not retried.
        with pytest.raises(Rejected, match="(?i)starttls"):
            perform(connector(guarded, security="starttls"), "email.send",
                    {"to": "owner", "subject": "Тема", "text": "Текст"})
    finally:
        guarded.close()
    assert len(guarded.messages) == 1


def test_settings_schema_and_validate_checks() -> None:
    good = {"type": "smtp", "host": "smtp.yandex.ru", "port": 465, "security": "tls", "username": "reports@salon.ru",
            "password": "${env:SMTP_PASSWORD}", "from": "reports@salon.ru", "recipients": {"owner": "owner@salon.ru"}}
    jsonschema.validate(good, Smtp.config_schema)
    for bad in ({**good, "password": "hunter2"}, {**good, "security": "ssl"}, {**good, "from": "reports"},
                {**good, "recipients": {"owner": "not an address"}}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, Smtp.config_schema)
    assert Smtp("m", {"host": "h", "from": "a@b.ru"}).port == 587  # starttls by default
    context = CheckContext(connector="mail")
    found = Smtp.check_params("report.send", {"to": "ownr", "report": "channels", "period": "last_week"}, good,
                              context)
    assert [p.path for p in found] == [("to",)] and "did you mean 'owner'" in (found[0].hint or "")
    assert Smtp.check_params("email.send", {"to": "owner, a@b.ru", "subject": "s", "text": "t"}, good, context) == []
    assert [p.path for p in Smtp.check_params("notify", {"to": "anna@example.com", "text": "t"}, good, context)] \
        == [("to",)]


def test_sandbox_starts_the_emulator_and_points_the_connector_at_it() -> None:
    settings, emulator = Smtp.sandbox("mail", {"host": "smtp.yandex.ru", "from": "reports@salon.ru",
                                               "password": "${env:SMTP_PASSWORD}",
                                               "recipients": {"owner": "owner@salon.ru"}},
                                      base_url="http://127.0.0.1:1/_sandbox/mail", hook_url="http://127.0.0.1:1/hooks")
    try:
        assert settings == {"host": "127.0.0.1", "port": emulator.port, "security": "none",
                            "from": "reports@salon.ru", "recipients": {"owner": "owner@salon.ru"}}
        perform(connector(emulator), "email.send", {"to": "owner", "subject": "Тема", "text": "Текст"})
        assert emulator.state()["messages"][0]["subject"] == "Тема"
        # A reload asks again: the same server, its port and its messages are kept.
        again, kept = Smtp.sandbox("mail", {"host": "smtp.yandex.ru", "from": "reports@salon.ru"},
                                   base_url="http://127.0.0.1:1/_sandbox/mail", hook_url="http://127.0.0.1:1/hooks")
        assert kept is emulator and again["port"] == settings["port"]
    finally:
        emulator.close()


class TestContract(ConnectorContract):
    """The contract suite, where SMTP differs from HTTP: no Retry-After in an overload answer, a deadline that is
    the client's timeout, an address that is a host and port."""

    type = "smtp"
    settings = {"from": "reports@salon.ru", "recipients": {"owner": "owner@salon.ru"}}
    written = {"host": "smtp.yandex.ru", "username": "reports@salon.ru", "password": "${env:SMTP_PASSWORD}",
               "from": "reports@salon.ru"}
    secret_settings = ("password",)

    @pytest.fixture
    def sandbox(self) -> Iterator[Sandboxes]:
        """The suite's sandboxes, each SMTP server stopped after the test."""
        made: list[Sandbox] = []
        with sandboxes() as make:
            def tracked(*args: Any, **kwargs: Any) -> Sandbox:
                made.append(make(*args, **kwargs))
                return made[-1]
            yield tracked
        for box in made:
            box.emulator.close()

    async def samples(self, box: Sandbox) -> dict[str, Mapping[str, Any]]:
        return {"email.send": {"to": "owner", "subject": "Заявка", "text": "Анна"},
                "notify": {"to": "owner", "text": "Лид ждёт"},
                "report.send": {"report": "channels", "period": "last_week", "to": "owner"}}

    def unreachable(self, settings: Mapping[str, Any], url: str) -> dict[str, Any]:
        return {**settings, "host": "127.0.0.1", "port": int(url.rsplit(":", 1)[1])}

    def test_an_overload_answer_is_retryable_after_its_wait(self, sandbox: Sandboxes) -> None:
        # SMTP's "421 too many connections" names no wait: retried on the outbox's own backoff.
        error = self._fails(self.build(sandbox), {"storm": {"status": 421, "count": 100}})
        assert isinstance(error, Retryable) and "421" in str(error), repr(error)

    def test_no_answer_in_time_or_a_dropped_connection_is_uncertain(self, sandbox: Sandboxes) -> None:
        box = self.build(sandbox)
        assert isinstance(box.connector, Smtp)
        box.connector.timeout = 0.2
        assert isinstance(self._fails(box, {"delay": 1.0}), Uncertain)
        assert isinstance(self._fails(self.build(sandbox), {"delay": 0.0, "drop": 100}), Uncertain)
