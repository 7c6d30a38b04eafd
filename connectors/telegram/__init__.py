"""The `telegram` connector: messages and staff notifications through a Telegram bot, and updates it receives.

Contract (reference §4.3, §6.1) and the choices made where it leaves room:

* Sending: `message.send` and `notify` both POST `/bot{token}/sendMessage` as JSON `{chat_id, text,
  parse_mode?, disable_web_page_preview?}` (the older spelling of `link_preview_options`, still accepted).
  `message.send`'s `to` is a name of `chats:` or a chat id (an integer, or "@channelusername"). `notify`'s
  `to` must be a name of `chats:` (a role such as `admin`, or a CRM user id written as a key): an employee id
  from the CRM is never taken for a chat id, which would message a stranger.
* Text over 4096 characters is Rejected before sending, never split: a reminder cut in two arrives as two
  messages that may be rate-limited apart. Plain and HTML text are measured exactly (HTML by its visible text,
  in code points); Markdown text is sent as is and a "message is too long" answer is Rejected.
* Delivery is at most once: Telegram has no idempotency key. 429 and 5xx are Retryable as §6.1 says (a 5xx
  from Telegram's front end may follow a delivered message; a duplicate is the price of not losing it).
* A group upgraded to a supergroup answers 400 with `migrate_to_chat_id`: the same `perform` sends once more
  to the new id and reports `migrated_from` in the result; the connector remembers the new id until it stops
  and logs a warning to update `chats:`. A second migration answer is Rejected.
* Rate limit: `rate_limit` is the overall ~30 messages/s, as (25/s, burst 5) so that no second holds more
  than 30. The per-chat limits (1 message/s per chat, 20/min per group) are not tracked here: Telegram (and
  the emulator, which enforces both) answers 429 with `retry_after`, the outbox waits that long.
* Inbound: Telegram POSTs Update objects with the `X-Telegram-Bot-Api-Secret-Token` header given to
  `setWebhook` (set it once to `secret_token`). A missing or wrong header is refused with 401 (the brief's
  choice; the reference suggests 403 — either makes Telegram re-send, which is harmless with a wrong secret);
  without `secret_token` configured every update is refused. A `message` becomes `message.received` with
  delivery id = `update_id` and no entity: a Telegram chat is not a CRM client, so the event carries `chat_id`,
  `from_id`, `username`, `text` (and `staff` when the chat is one of `chats:`) for rules to match on and
  reply to (`per: event.chat_id`). Every other kind of update is accepted and makes no event.
"""
from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping
from typing import Any

from automator.checks import CheckContext, ParamProblem
from automator.connector import ActionResult, ConfigError, Inbound, WebConnector, action
from automator.errors import InboundRejected, Rejected, Uncertain
from automator.model import Event
from automator.report_delivery import ReportRequest, fit

from . import api
from .mapping import chat_address, update_events
from .text import MAX_CAPTION, MAX_TEXT, MAX_UPLOAD, PARSE_MODES, EntitiesError, utf16_length, visible

__all__ = ["DEFAULT_BASE_URL", "SANDBOX_SECRET", "SANDBOX_TOKEN", "Telegram"]

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.telegram.org"
SECRET_HEADER = "x-telegram-bot-api-secret-token"
# Fixed on both sides of `automator run --sandbox`: nothing secret, the emulator accepts only these.
SANDBOX_TOKEN = "100000001:AAsandbox-emulator-token-0123456789ab"
SANDBOX_SECRET = "sandbox-secret-token"

_SECRET = {"type": "string", "pattern": r"^\$\{env:[A-Z_][A-Z0-9_]{0,127}\}$"}
_CHAT = {"type": ["integer", "string"], "pattern": r"^(-?[0-9]{1,20}|@[A-Za-z][A-Za-z0-9_]{3,31})$"}


class Telegram(WebConnector):
    """A Telegram bot: `message.send` to clients' chats, `notify` to staff chats, `message.received` from
    updates. See the module docstring for the contract points."""

    type = "telegram"
    webhook_auth = ("secret_token",)  # the secret-token header of every update
    default_base_url = DEFAULT_BASE_URL  # or a local Bot API server, or the emulator
    config_schema = {
        "type": "object",
        "required": ["type", "token"],
        "additionalProperties": False,
        "properties": {
            "type": {"const": "telegram"},
            "token": {**_SECRET, "description": "The bot token from @BotFather, as \"${env:TELEGRAM_BOT_TOKEN}\"."},
            "secret_token": {**_SECRET, "description": "The secret_token given to setWebhook, which Telegram "
                                                       "sends with every update, as \"${env:TELEGRAM_SECRET}\"."},
            "base_url": {"type": "string", "pattern": "^https?://", "description": "The Bot API server."},
            "parse_mode": {"enum": list(PARSE_MODES), "description": "How Telegram formats the text."},
            "disable_web_page_preview": {"type": "boolean", "description": "No link previews under messages."},
            "chats": {"type": "object", "additionalProperties": _CHAT,
                      "description": "Staff chats by name (a role such as admin, or a CRM user id): notify "
                                     "and message.send may use the name."},
        },
    }
    rate_limit = (25.0, 5)

    def __init__(self, name: str, config: Mapping[str, Any], *, transport: Any = None) -> None:
        super().__init__(name, config, transport=transport)
        token = config.get("token")
        if not isinstance(token, str) or not token:
            raise ConfigError(f"connector {name!r}: token is required")
        self.token = token
        secret = config.get("secret_token")
        self.secret_token = secret if isinstance(secret, str) and secret else None
        self.parse_mode = config.get("parse_mode") or None
        if self.parse_mode is not None and self.parse_mode not in PARSE_MODES:
            raise ConfigError(f"connector {name!r}: parse_mode must be one of {', '.join(PARSE_MODES)}")
        self.disable_preview = bool(config.get("disable_web_page_preview", False))
        self.chats: dict[str, int | str] = {}
        for key, value in (config.get("chats") or {}).items():
            address = chat_address(value)
            if address is None:
                raise ConfigError(f"connector {name!r}: chats.{key} is not a chat id: {value!r}")
            self.chats[str(key)] = address
        self._staff = {str(chat): key for key, chat in self.chats.items()}
        # Groups Telegram said were upgraded to supergroups while we ran: old id → new id.
        self.moved: dict[str, int] = {}

    @classmethod
    def check_params(cls, action: str, params: Mapping[str, Any], options: Mapping[str, Any],
                     context: CheckContext) -> list[ParamProblem]:
        """A `notify` to a name not among `chats:`, a message to no chat, a text it cannot send
        (connectors/telegram/checks.py)."""
        from .checks import check

        return check(action, params, options, context)

    # ---- actions -----------------------------------------------------------------------------------
    @action("message.send")
    async def message_send(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """Send a message to a chat id or a chat named in `chats:`."""
        channel = params.get("channel")
        if channel not in (None, "", "telegram"):
            raise Rejected(f"connector {self.name!r} sends Telegram messages, not {channel!r}")
        return await self._send(self._chat(params["to"]), params["text"])

    @action("notify")
    async def notify(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """Notify a member of staff in the chat `chats:` names for them (or their role)."""
        chat = self.chats.get(str(params["to"]))
        if chat is None:
            known = ", ".join(sorted(self.chats)) or "none"
            raise Rejected(f"no chat for {params['to']!r} in connector {self.name!r}'s chats (known: {known})")
        return await self._send(chat, params["text"])

    @action("report.send")
    async def report_send(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """Send a report's page as a document (sendDocument) to a chat id or a chat named in `chats:`, with the
        rule's `text` line and the headline figures as its caption."""
        chat = self._chat(params["to"])
        composed = await self.compose(ReportRequest.of(params))
        if len(composed.html) > MAX_UPLOAD:
            raise Rejected(f"telegram sendDocument: the report's page is {len(composed.html)} bytes, over the "
                           f"{MAX_UPLOAD // 1024 // 1024} MB a bot may upload")
        caption = fit(composed.body(_str(params.get("text"))), lambda t: utf16_length(t) <= MAX_CAPTION)
        payload: dict[str, Any] = {"caption": caption} if caption.strip() else {}  # plain text: figures, no markup
        files = {"document": (composed.filename, composed.html, "text/html")}
        message, migrated_from = await self._to_chat(chat, "sendDocument", payload, files)
        result = self._result(message, migrated_from)
        document = found if isinstance(message, dict) and isinstance(found := message.get("document"), dict) else {}
        return ActionResult({**result.data, "report": params["report"], "period": composed.period,
                             "file_name": document.get("file_name", composed.filename),
                             "file_id": document.get("file_id")})

    def _chat(self, to: Any) -> int | str:
        chat = self.chats.get(str(to))
        if chat is None:
            chat = chat_address(to)
        if chat is None:
            raise Rejected(f"{to!r} is neither a Telegram chat id nor a name of connector {self.name!r}'s chats")
        return chat

    async def _send(self, chat: int | str, text: Any) -> ActionResult:
        text = str(text)
        self._check_text(text)
        payload: dict[str, Any] = {"text": text}
        if self.parse_mode:
            payload["parse_mode"] = self.parse_mode
        if self.disable_preview:
            payload["disable_web_page_preview"] = True
        return self._result(*await self._to_chat(chat, "sendMessage", payload))

    async def _to_chat(self, chat: int | str, method: str, payload: Mapping[str, Any],
                       files: Mapping[str, tuple[str, bytes, str]] | None = None) -> tuple[Any, int | str | None]:
        """Call `method` for `chat` (the supergroup it became, once Telegram said so): its result, and the chat id
        it was sent to first when Telegram answered that the group had moved."""
        target: int | str = self.moved.get(str(chat), chat)
        try:
            return await api.call(self, self.token, method, {"chat_id": target, **payload}, files), None
        except api.ChatMigrated as moved:
            log.warning("telegram chat %s became supergroup %s: update connector %s's chats", target,
                        moved.new_chat_id, self.name, extra={"connector": self.name})
            self.moved[str(chat)] = moved.new_chat_id
            try:
                return await api.call(self, self.token, method, {"chat_id": moved.new_chat_id, **payload}, files), \
                    target
            except api.ChatMigrated as again:
                raise Rejected(f"telegram {method}: chat {target} moved to {moved.new_chat_id}, which moved "
                               f"again to {again.new_chat_id}") from None

    def _check_text(self, text: str) -> None:
        if not text.strip():
            raise Rejected("telegram sendMessage: the text is empty")
        try:
            shown = visible(text, self.parse_mode)
        except EntitiesError as exc:
            raise Rejected(f"telegram sendMessage: the text is not valid {self.parse_mode}: {exc}") from None
        if shown is not None and len(shown) > MAX_TEXT:
            raise Rejected(f"telegram sendMessage: the text is {len(shown)} characters, over Telegram's "
                           f"{MAX_TEXT}; shorten the template")

    @staticmethod
    def _result(message: Any, migrated_from: int | str | None = None) -> ActionResult:
        if not isinstance(message, dict) or not isinstance(message.get("message_id"), int):
            raise Uncertain(f"telegram sendMessage: ok without a message: {str(message)[:200]!r}")
        chat = found if isinstance(found := message.get("chat"), dict) else {}
        data: dict[str, Any] = {"message_id": message["message_id"], "chat_id": chat.get("id"),
                                "date": message.get("date")}
        if migrated_from is not None:
            data["migrated_from"] = migrated_from
        return ActionResult(data)

    # ---- inbound -----------------------------------------------------------------------------------
    def parse(self, request: Inbound) -> list[Event]:
        """Authenticate an update by its secret header and turn it into events (see the module docstring)."""
        if self.secret_token is None:
            raise InboundRejected(401, "no secret_token is configured: updates cannot be authenticated", "auth")
        given = request.headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(given.encode(), self.secret_token.encode()):
            raise InboundRejected(401, "missing or wrong X-Telegram-Bot-Api-Secret-Token", "auth")
        return update_events(self.name, request.body, self._staff, request.received_at)

    # ---- sandbox -----------------------------------------------------------------------------------
    @classmethod
    def sandbox(cls, name: str, options: Mapping[str, Any], *, base_url: str, hook_url: str
                ) -> tuple[dict[str, Any], Any]:
        """Settings aimed at a TelegramEmulator (the chats of `chats:` exist in it) with a fixed token and
        secret it shares, and the emulator, which sends users' messages to `hook_url`."""
        from .emulator import TelegramEmulator

        chats = dict(options.get("chats") or {})
        emulator = TelegramEmulator(token=SANDBOX_TOKEN, secret_token=SANDBOX_SECRET, hook_url=hook_url,
                                    chats=[c for c in (chat_address(v) for v in chats.values()) if c is not None])
        settings: dict[str, Any] = {"token": SANDBOX_TOKEN, "secret_token": SANDBOX_SECRET, "base_url": base_url,
                                    "chats": chats}
        for key in ("parse_mode", "disable_web_page_preview"):
            if key in options:
                settings[key] = options[key]
        return settings, emulator


def _str(value: Any) -> str | None:
    return None if value is None else str(value)
