"""The `smtp` connector: e-mail through the salon's mail server, for staff notices and the weekly reports.

Contract (connector-contracts-2.md §4, RFC 5321) and the choices made where it leaves room:

* Client: aiosmtplib, one connection per message (a report a week and a few notices a day: no pool to keep).
  `security: starttls` (the default, port 587), `tls` (implicit TLS, port 465) or `none` (a relay on the local
  network, or the emulator). `username`/`password` log in when set; they are `${env:…}` in automator.yaml.
* Recipients: `to` is a name under `recipients:` (owner, admin), an address, or several separated by commas.
  A name it does not know and that is no address is refused before connecting.
* Answers: a 4xx reply (greylisting, a full queue, "too many connections") and a connection that cannot be made
  are Retryable; a 5xx reply is Rejected at once and never tried again (the server refuses that message for good);
  every recipient refused is Rejected, some refused is done, the refused ones listed in the result. A connection
  lost or a reply not read in time after the conversation began is Uncertain: the server may have taken the
  message, and an e-mail is sent at most once.
* Actions: `email.send` (to, subject, text, optional html), `notify` (to a recipient; the text's first line is the
  subject) and `report.send` (the report's page attached as an .html file, the summary as the body, the subject
  "Отчёт «Каналы» за 24.11–30.11.2026").
* Sandbox: `automator run --sandbox` starts the SMTP emulator (connectors/smtp/emulator.py) on 127.0.0.1 on a free
  port and points the connector at it; what it accepted is at /_sandbox/<name>/_emulator/state.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from automator.checks import CheckContext, ParamProblem
from automator.connector import ActionResult, ConfigError, Connector, action
from automator.errors import Rejected, Retryable, Uncertain
from automator.report_delivery import ReportRequest

from .checks import ADDRESS

__all__ = ["SANDBOX_FROM", "Smtp"]

SECURITY = ("starttls", "tls", "none")
DEFAULT_PORTS = {"starttls": 587, "tls": 465, "none": 25}
SANDBOX_FROM = "automator@sandbox.test"
_SECRET = {"type": "string", "pattern": r"^\$\{env:[A-Z_][A-Z0-9_]{0,127}\}$",
           "x-pattern-message": "a secret, written as ${env:NAME}: never the value itself"}
_ADDRESS = {"type": "string", "pattern": ADDRESS.pattern, "x-pattern-message": "an e-mail address, such as "
                                                                               "owner@salon.ru"}


_SANDBOXES: dict[str, Any] = {}  # the SMTP emulators `sandbox` started, by the address their messages are shown at


class Smtp(Connector):
    """E-mail through an SMTP server (see the module docstring for the contract points)."""

    type = "smtp"
    config_schema = {
        "type": "object",
        "required": ["type", "host", "from"],
        "additionalProperties": False,
        "properties": {
            "type": {"const": "smtp"},
            "host": {"type": "string", "minLength": 1, "description": "The mail server, such as smtp.yandex.ru."},
            "port": {"type": "integer", "minimum": 1, "maximum": 65535,
                     "description": "Its port (default 587 for starttls, 465 for tls, 25 for none)."},
            "security": {"enum": list(SECURITY), "description": "starttls (default), tls (implicit) or none."},
            "username": {"type": "string", "minLength": 1, "description": "The login, when the server asks one."},
            "password": {**_SECRET, "description": "The password, as \"${env:SMTP_PASSWORD}\"."},
            "from": {**_ADDRESS, "description": "The sender's address, such as reports@salon.ru."},
            "recipients": {"type": "object", "additionalProperties": _ADDRESS,
                           "description": "Addresses by name (owner, admin): what `to:` may name."},
            "timeout": {"type": "number", "exclusiveMinimum": 0,
                        "description": "Seconds for one message's whole conversation (default 60)."},
        },
    }

    def __init__(self, name: str, config: Mapping[str, Any]) -> None:
        super().__init__(name, config)
        self.host = str(config.get("host") or "")
        if not self.host:
            raise ConfigError(f"connector {name!r}: host is required")
        self.security = str(config.get("security") or "starttls")
        if self.security not in SECURITY:
            raise ConfigError(f"connector {name!r}: security must be one of {', '.join(SECURITY)}")
        self.port = int(config.get("port") or DEFAULT_PORTS[self.security])
        self.sender = str(config.get("from") or "")
        if not ADDRESS.match(self.sender):
            raise ConfigError(f"connector {name!r}: from must be an e-mail address, not {self.sender!r}")
        self.username = config.get("username") or None
        self.password = config.get("password") or None
        self.recipients = {str(k): str(v) for k, v in (config.get("recipients") or {}).items()}
        self.timeout = float(config.get("timeout") or 60)

    @classmethod
    def check_params(cls, action: str, params: Mapping[str, Any], options: Mapping[str, Any],
                     context: CheckContext) -> list[ParamProblem]:
        """A `to` that is neither a name under `recipients:` nor an address (connectors/smtp/checks.py)."""
        from .checks import check

        return check(action, params, options, context)

    # ---- actions -----------------------------------------------------------------------------------
    @action("email.send")
    async def email_send(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """Send `text` (and `html`, when given) under `subject` to `to`."""
        message = self._message(params["to"], str(params["subject"]), str(params["text"]), key)
        if params.get("html"):
            message.add_alternative(str(params["html"]), subtype="html")
        return await self._send(message)

    @action("notify")
    async def notify(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """E-mail a member of staff named under `recipients:`; the text's first line is the subject."""
        if str(params["to"]) not in self.recipients:
            known = ", ".join(sorted(self.recipients)) or "none"
            raise Rejected(f"no address for {params['to']!r} in connector {self.name!r}'s recipients (known: {known})")
        text = str(params["text"])
        first = text.strip().splitlines()[0] if text.strip() else "Уведомление"
        return await self._send(self._message(params["to"], first[:78], text, key))

    @action("report.send")
    async def report_send(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """E-mail a report: the summary (after the rule's `text` line) as the body, the page attached."""
        recipients = self._addresses(params["to"])  # refused before a report is computed for nobody
        composed = await self.compose(ReportRequest.of(params))
        text = params.get("text")
        message = self._message(params["to"], composed.subject(), composed.body(None if text is None else str(text)),
                                key, recipients)
        message.add_attachment(composed.html, maintype="text", subtype="html", filename=composed.filename)
        result = await self._send(message)
        return ActionResult({**result.data, "report": params["report"], "period": composed.period,
                             "attachment": composed.filename})

    # ---- sending -----------------------------------------------------------------------------------
    def _addresses(self, to: Any) -> list[str]:
        found: list[str] = []
        for item in (part.strip() for part in re.split(r"[,;]", str(to))):
            if not item:
                continue
            address = self.recipients.get(item, item)
            if not ADDRESS.match(address):
                known = ", ".join(sorted(self.recipients)) or "none"
                raise Rejected(f"{item!r} is neither an e-mail address nor a name of connector {self.name!r}'s "
                               f"recipients (known: {known})")
            if address not in found:
                found.append(address)
        if not found:
            raise Rejected("no recipient to send the e-mail to")
        return found

    def _message(self, to: Any, subject: str, text: str, key: str, recipients: list[str] | None = None
                 ) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = ", ".join(recipients if recipients is not None else self._addresses(to))
        message["Subject"] = subject
        message["Date"] = formatdate(localtime=False)
        # The effect key in the Message-ID: a copy delivered twice (an uncertain try sent again by hand) is one
        # message to the mail clients that deduplicate by it.
        message["Message-ID"] = make_msgid(idstring=re.sub(r"[^A-Za-z0-9.-]", "-", key)[:64],
                                           domain=self.sender.rsplit("@", 1)[-1])
        message.set_content(text)
        return message

    async def _send(self, message: EmailMessage) -> ActionResult:
        import aiosmtplib

        what = f"smtp {self.host}:{self.port}"
        try:
            refused, reply = await aiosmtplib.send(
                message, hostname=self.host, port=self.port, username=self.username, password=self.password,
                use_tls=self.security == "tls", start_tls=True if self.security == "starttls" else False,
                timeout=self.timeout)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            said = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
            if any(400 <= r.code < 500 for r in exc.recipients) and all(r.code < 500 for r in exc.recipients):
                raise Retryable(f"{what}: recipients refused for now: {said}") from None
            raise Rejected(f"{what}: every recipient refused: {said}") from None
        except aiosmtplib.SMTPConnectError as exc:  # nothing was said yet: safe to try again
            raise Retryable(f"{what}: cannot connect: {exc}") from None
        except aiosmtplib.SMTPResponseException as exc:
            text = f"{what}: {exc.code} {exc.message}"
            if 400 <= exc.code < 500:
                raise Retryable(text) from None
            raise Rejected(text) from None
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError) as exc:
            raise Uncertain(f"{what}: {type(exc).__name__}: {exc}; the server may have taken the message") from None
        except aiosmtplib.SMTPException as exc:  # STARTTLS not offered and the like: our settings, not the moment
            raise Rejected(f"{what}: {exc}") from None
        except OSError as exc:
            raise Retryable(f"{what}: {exc}") from None
        return ActionResult({"message_id": message["Message-ID"], "to": message["To"], "reply": reply,
                             "refused": {address: f"{r.code} {r.message}" for address, r in refused.items()}})

    # ---- sandbox -----------------------------------------------------------------------------------
    @classmethod
    def sandbox(cls, name: str, options: Mapping[str, Any], *, base_url: str, hook_url: str
                ) -> tuple[dict[str, Any], Any]:
        """Settings aimed at an SMTP emulator started now on 127.0.0.1 (no TLS, no login), and the emulator, whose
        messages the daemon shows at `base_url`/_emulator/state."""
        from .emulator import SmtpEmulator

        # A reload asks again: the server already serving at this address is kept (its messages, its port), as the
        # daemon keeps an HTTP emulator.
        emulator = _SANDBOXES.get(base_url)
        if emulator is None or not emulator.serving:
            emulator = _SANDBOXES[base_url] = SmtpEmulator()
        port = emulator.start()
        settings: dict[str, Any] = {"host": "127.0.0.1", "port": port, "security": "none",
                                    "from": options.get("from") or SANDBOX_FROM,
                                    "recipients": dict(options.get("recipients") or {})}
        return settings, emulator
