"""An SMTP server standing in for the salon's mail server (aiosmtpd on 127.0.0.1, an ephemeral port), and the
control API every emulator has, over HTTP (`/_sandbox/<name>/_emulator/state` lists the messages it accepted).

What it answers, as a mail server would (RFC 5321; the reference, connector-contracts-2.md §4):
    RCPT TO:<…@reject.test>      550 5.1.1 mailbox unavailable (that recipient refused, the others kept)
    faults.fail {status, count}  a status ≥ 500 (a server error) is answered 451 4.3.0 (try again later), a 4xx
                                 554 5.7.1 (refused for good), at MAIL FROM, `count` times
    faults.storm {count}         421 4.7.0 too many connections (try again later), at MAIL FROM
    faults.delay                 seconds before each answer to MAIL FROM
    faults.drop                  connections closed without an answer to MAIL FROM
    AUTH                         accepted when the username and password match the ones it was given (when given)
It keeps each message it accepted: the envelope (sender, recipients) and the message parsed (`messages`).
"""
from __future__ import annotations

import asyncio
import threading
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from automator.emulator import Emulator

REJECTED_DOMAIN = "@reject.test"


class SmtpEmulator(Emulator):
    """A mail server that keeps what it accepted. `start()` serves it on 127.0.0.1 (its `port`); `close()` stops."""

    system = "smtp"

    def __init__(self, *, username: str | None = None, password: str | None = None, hook_url: str | None = None
                 ) -> None:
        super().__init__(hook_url=hook_url)
        self.username, self.password = username, password
        self.messages: list[dict[str, Any]] = []
        self.parsed: list[EmailMessage] = []
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def state(self) -> dict[str, Any]:
        """The messages accepted: envelope, subject, body and attachments' names and sizes."""
        return {"messages": self.messages}

    # ---- the SMTP server ---------------------------------------------------------------------------
    def start(self) -> int:
        """Serve on 127.0.0.1 on a free port, in a thread of its own; returns the port."""
        if self._thread is not None:
            return self.port
        ready = threading.Event()
        loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(loop)
            auth: dict[str, Any] = {"auth_require_tls": False, "authenticator": self._authenticate} \
                if self.username is not None else {}
            server = loop.run_until_complete(loop.create_server(
                lambda: SMTP(_Handler(self), hostname="emulator.smtp.test", **auth), "127.0.0.1", 0))
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            server.close()
            loop.run_until_complete(server.wait_closed())
            loop.close()

        self._loop, self._thread = loop, threading.Thread(target=run, name="smtp-emulator", daemon=True)
        self._thread.start()
        ready.wait(5)
        return self.port

    @property
    def serving(self) -> bool:
        """Whether its SMTP server runs."""
        return self._thread is not None

    def close(self) -> None:
        """Stop serving."""
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            self._loop = self._thread = None

    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                      data: Any) -> AuthResult:
        good = isinstance(data, LoginPassword) and data.login.decode() == self.username \
            and data.password.decode() == (self.password or "")
        return AuthResult(success=good, handled=False)

    def accept(self, envelope: Envelope) -> None:
        """Keep one accepted message."""
        raw = envelope.content if isinstance(envelope.content, bytes) else str(envelope.content or "").encode()
        parsed = message_from_bytes(raw, policy=default)
        assert isinstance(parsed, EmailMessage)
        self.parsed.append(parsed)
        body = parsed.get_body(preferencelist=("plain",))
        self.messages.append({
            "from": envelope.mail_from, "to": list(envelope.rcpt_tos), "subject": str(parsed.get("subject", "")),
            "text": body.get_content().replace("\r\n", "\n") if body is not None else "",
            "attachments": [{"filename": part.get_filename(), "content_type": part.get_content_type(),
                             "size": len(part.get_payload(decode=True) or b"")} for part in parsed.iter_attachments()],
        })

    async def before_mail(self, server: SMTP) -> str | None:
        """The fault to answer MAIL FROM with, if any (None: go on)."""
        faults = self.faults
        if faults.delay:
            await asyncio.sleep(faults.delay)
        if faults.drop:
            faults.drop -= 1
            if server.transport is not None:
                server.transport.close()
            return "421 4.4.2 connection dropped"  # never read: the connection is gone
        if faults.storm and faults.storm.get("count", 0) > 0:
            faults.storm["count"] -= 1
            return "421 4.7.0 too many connections, try again later"
        if faults.fail and faults.fail.get("count", 0) > 0:
            faults.fail["count"] -= 1
            status = int(faults.fail.get("status", 500))
            return "451 4.3.0 temporary server failure" if status >= 500 else "554 5.7.1 message refused"
        return None


class _Handler:
    """aiosmtpd's handler hooks, on the emulator."""

    def __init__(self, emulator: SmtpEmulator) -> None:
        self.emulator = emulator

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          mail_options: list[str]) -> str:
        fault = await self.emulator.before_mail(server)
        if fault is not None:
            return fault
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        if address.lower().endswith(REJECTED_DOMAIN):
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.emulator.accept(envelope)
        return "250 Message accepted for delivery"
