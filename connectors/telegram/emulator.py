"""A faithful Telegram Bot API stand-in: sendMessage and getMe, its envelopes, limits, and updates to the webhook.

    POST|GET /bot{token}/{method}     getMe, sendMessage, sendDocument (method names in any case, JSON, form,
                                      multipart/form-data or query params)
        wrong token      401 {"ok":false,"error_code":401,"description":"Unauthorized"}
        malformed token  404 {"ok":false,"error_code":404,"description":"Not Found"} (and unknown methods)
        limits           429 "Too Many Requests: retry after N" + parameters.retry_after: more than 30
                         messages in a second overall, 1 per second in a chat, 20 per minute in a group
        unknown chat     400 "Bad Request: chat not found"
        migrated group   400 "Bad Request: group chat was upgraded to a supergroup chat" + migrate_to_chat_id
        blocked chat     403 "Forbidden: bot was blocked by the user"
        text             400 "message text is empty", "message is too long" (over 4096 UTF-16 units of
                         visible text, the stricter reading), "can't parse entities: ..." (HTML only;
                         Markdown text is taken as plain text)
        document         sendDocument with the file uploaded as the multipart part `document`: 400 "there is no
                         document in the request" without it, "wrong file identifier/HTTP URL specified" for a
                         text (no file_id is known here), "file must be non-empty", "message caption is too
                         long" (over 1024 UTF-16 units); 413 "Request Entity Too Large" over 50 MB. The file's
                         bytes are kept (`documents`, by file_id) for tests to read.
Control routes (besides the base's state/requests/webhooks/faults/reset), all POST with a JSON body:
    /_emulator/chats     {"id", "type"?, "first_name"?, "title"?, "username"?}   a chat the bot may write to
    /_emulator/block     {"chat_id", "blocked"?: true}                           the user blocked the bot
    /_emulator/migrate   {"chat_id", "to"?}      the group became a supergroup (sends the service updates)
    /_emulator/write     {"chat_id", "text", "from"?}   a user writes to the bot: the Update goes to hook_url
    /_emulator/update    {...}                   any Update (edited_message, callback_query...) to hook_url
"""
from __future__ import annotations

import math
import re
import time
from collections import deque
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import default
from collections.abc import Callable, Iterable
from typing import Any

from automator.emulator import Call, Emulator, Reply, route

from .text import MAX_CAPTION, MAX_TEXT, MAX_UPLOAD, PARSE_MODES, EntitiesError, parse_html, utf16_length

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
DEFAULT_TOKEN = "123456789:AAEemulator-default-token-abcdefgh"
GLOBAL_PER_SECOND = 30
GROUP_PER_MINUTE = 20
CHAT_INTERVAL = 1.0  # seconds between two messages to one chat
_TOKEN = re.compile(r"[0-9]+:[A-Za-z0-9_-]+")
_REASONS = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}


def error(code: int, description: str, **parameters: Any) -> Reply:
    """The Bot API's error envelope, with the HTTP status equal to `error_code`."""
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if parameters:
        body["parameters"] = parameters
    return Reply(code, body)


def ok(result: Any) -> Reply:
    """The Bot API's success envelope."""
    return Reply(200, {"ok": True, "result": result})


def too_many(retry_after: float) -> Reply:
    """429 as Telegram words it, with whole seconds to wait."""
    seconds = max(1, math.ceil(retry_after))
    return error(429, f"Too Many Requests: retry after {seconds}", retry_after=seconds)


class TelegramEmulator(Emulator):
    """One bot: the chats it may write to, the messages it sent, and users writing to it."""

    system = "telegram"

    def __init__(self, *, token: str = DEFAULT_TOKEN, secret_token: str | None = None, hook_url: str | None = None,
                 chats: Iterable[int | str] = (), limits: bool = True, transport: Any = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(hook_url=hook_url, limits=limits, transport=transport)
        self.token = token
        self.secret_token = secret_token
        self.clock = clock  # monotonic seconds, for the rate limits; tests may replace it
        self.bot = {"id": int(token.split(":")[0]), "is_bot": True, "first_name": "Automator",
                    "username": "automator_emulator_bot", "can_join_groups": True,
                    "can_read_all_group_messages": False, "supports_inline_queries": False,
                    "can_connect_to_business": False, "has_main_web_app": False}
        self.chats: dict[str, dict[str, Any]] = {}
        self.messages: dict[str, list[dict[str, Any]]] = {}
        self.blocked: set[str] = set()
        self.migrated: dict[str, int] = {}
        self.updates: list[dict[str, Any]] = []
        self.documents: dict[str, bytes] = {}  # uploaded files by file_id
        self._update_id = 700000000
        self._last_sent: dict[str, float] = {}
        self._group_sent: dict[str, deque[float]] = {}
        self._all_sent: deque[float] = deque()
        for chat in chats:
            self.add_chat(chat)

    # ---- data -------------------------------------------------------------------------------------
    def add_chat(self, chat_id: int | str, **fields: Any) -> dict[str, Any]:
        """Make a chat known to the bot: a private chat for a positive id, a group or supergroup (-100...) for
        a negative one, a channel for "@username"."""
        if isinstance(chat_id, str) and chat_id.startswith("@"):
            ident = -1000000000000 - len(self.chats) - 1
            chat = {"id": ident, "title": chat_id[1:], "username": chat_id[1:], "type": "channel"}
        else:
            ident = int(chat_id)
            if ident > 0:
                chat = {"id": ident, "first_name": f"User {ident}", "type": "private"}
            else:
                kind = "supergroup" if str(ident).startswith("-100") else "group"
                chat = {"id": ident, "title": f"Group {-ident}", "type": kind}
        chat.update({k: v for k, v in fields.items() if v is not None})
        self.chats[str(chat["id"])] = chat
        return chat

    def state(self) -> dict[str, Any]:
        """Chats, the messages sent to each, blocked and migrated chats, and the updates sent to the webhook."""
        return {"bot": self.bot, "chats": self.chats, "messages": self.messages, "blocked": sorted(self.blocked),
                "migrated": self.migrated, "updates": self.updates}

    def _chat_key(self, chat_id: Any) -> str | None:
        if isinstance(chat_id, str) and chat_id.startswith("@"):
            name = chat_id[1:].lower()
            return next((key for key, chat in self.chats.items() if str(chat.get("username", "")).lower() == name),
                        None)
        try:
            return str(int(chat_id))
        except (TypeError, ValueError):
            return None

    # ---- the Bot API ------------------------------------------------------------------------------
    def _params(self, call: Call) -> dict[str, Any] | Reply:
        params: dict[str, Any] = dict(call.query)
        kind = call.headers.get("content-type", "").split(";")[0].strip().lower()
        if call.body and kind == "application/json":
            try:
                body = call.json()
            except ValueError:
                return error(400, "Bad Request: can't parse JSON")
            if not isinstance(body, dict):
                return error(400, "Bad Request: JSON object expected")
            params.update(body)
        elif call.body and kind == "multipart/form-data":
            parts = multipart_fields(call.headers.get("content-type", ""), call.body)
            if parts is None:
                return error(400, "Bad Request: can't parse multipart/form-data")
            params.update(parts)
        elif call.body:
            params.update(dict(call.form()))
        return params

    def _authorized(self, token: str) -> Reply | None:
        if token == self.token:
            return None
        if _TOKEN.fullmatch(token):
            return error(401, "Unauthorized")
        return error(404, "Not Found")

    @route("ANY", r"/bot(?P<token>[^/]*)/(?P<method>[A-Za-z]+)")
    async def bot_method(self, call: Call, token: str, method: str) -> Reply:
        """Dispatch a Bot API method; names are case-insensitive."""
        refused = self._authorized(token)
        if refused is not None:
            return refused
        params = self._params(call)
        if isinstance(params, Reply):
            return params
        name = method.lower()
        if name == "getme":
            return ok(self.bot)
        if name == "sendmessage":
            return self.send_message(params)
        if name == "senddocument":
            return self.send_document(params)
        return error(404, "Not Found")

    def _writable(self, params: dict[str, Any]) -> str | Reply:
        """The key of the chat a send names, or why it cannot be written to."""
        if params.get("chat_id") in (None, ""):
            return error(400, "Bad Request: chat_id is empty")
        key = self._chat_key(params["chat_id"])
        if key is not None and key in self.migrated:
            return error(400, "Bad Request: group chat was upgraded to a supergroup chat",
                         migrate_to_chat_id=self.migrated[key])
        if key is None or key not in self.chats:
            return error(400, "Bad Request: chat not found")
        if key in self.blocked:
            return error(403, "Forbidden: bot was blocked by the user")
        return key

    def _sent(self, key: str, fields: dict[str, Any]) -> Reply:
        """Store a message the bot sent to a chat and answer with it."""
        chat = self.chats[key]
        sent = self.messages.setdefault(key, [])
        message: dict[str, Any] = {"message_id": len(sent) + 1,
                                   "from": {k: self.bot[k] for k in ("id", "is_bot", "first_name", "username")},
                                   "chat": chat, "date": int(time.time()), **fields}
        sent.append(message)
        self._count(key, chat)
        return ok(message)

    def send_document(self, params: dict[str, Any]) -> Reply:
        """sendDocument: check the chat, the uploaded file and the caption, keep the file, answer with the message."""
        key = self._writable(params)
        if isinstance(key, Reply):
            return key
        document = params.get("document")
        if document is None:
            return error(400, "Bad Request: there is no document in the request")
        if not isinstance(document, Upload):
            return error(400, "Bad Request: wrong file identifier/HTTP URL specified")
        if len(document.content) > MAX_UPLOAD:
            return error(413, "Request Entity Too Large")
        if not document.content:
            return error(400, "Bad Request: file must be non-empty")
        caption = str(params.get("caption") or "")
        if utf16_length(caption) > MAX_CAPTION:
            return error(400, "Bad Request: message caption is too long")
        file_id = f"BQACAgIAAxkBAAI{len(self.documents) + 1:06d}"
        self.documents[file_id] = document.content
        fields: dict[str, Any] = {"document": {"file_name": document.filename, "mime_type": document.content_type,
                                               "file_id": file_id, "file_unique_id": f"AgAD{len(self.documents):06d}",
                                               "file_size": len(document.content)}}
        if caption:
            fields["caption"] = caption
        return self._sent(key, fields)

    def send_message(self, params: dict[str, Any]) -> Reply:
        """sendMessage: check the chat and the text, store the message, answer with it."""
        key = self._writable(params)
        if isinstance(key, Reply):
            return key
        raw = params.get("text")
        parse_mode = params.get("parse_mode") or None
        if parse_mode is not None and parse_mode not in PARSE_MODES:
            return error(400, f"Bad Request: unsupported parse_mode \"{parse_mode}\"")
        text, entities = str(raw or ""), list[dict[str, Any]]()
        if parse_mode == "HTML":
            try:
                text, entities = parse_html(text)
            except EntitiesError as exc:
                return error(400, f"Bad Request: can't parse entities: {exc}")
        if not text.strip():
            return error(400, "Bad Request: message text is empty")
        if utf16_length(text) > MAX_TEXT:
            return error(400, "Bad Request: message is too long")
        return self._sent(key, {"text": text, **({"entities": entities} if entities else {})})

    # ---- limits -----------------------------------------------------------------------------------
    def limit(self, call: Call) -> Reply | None:
        """429 for a sendMessage past 30/s overall, 20/min in a group or 1/s in a chat."""
        match = re.fullmatch(r"/bot(?P<token>[^/]*)/send(message|document)", call.path, re.IGNORECASE)
        if match is None or match["token"] != self.token:
            return None
        params = self._params(call)
        if isinstance(params, Reply):
            return None
        now = self.clock()
        _expire(self._all_sent, now - 1.0)
        if len(self._all_sent) >= GLOBAL_PER_SECOND:
            return too_many(self._all_sent[0] + 1.0 - now)
        key = self._chat_key(params.get("chat_id"))
        if key is None or key not in self.chats:
            return None
        group = self._group_sent.get(key)
        if group is not None:
            _expire(group, now - 60.0)
            if len(group) >= GROUP_PER_MINUTE:
                return too_many(group[0] + 60.0 - now)
        last = self._last_sent.get(key)
        if last is not None and now - last < CHAT_INTERVAL:
            return too_many(last + CHAT_INTERVAL - now)
        return None

    def _count(self, key: str, chat: dict[str, Any]) -> None:
        now = self.clock()
        self._all_sent.append(now)
        self._last_sent[key] = now
        if chat.get("type") in ("group", "supergroup"):
            self._group_sent.setdefault(key, deque()).append(now)

    # ---- faults in Telegram's own words ----------------------------------------------------------
    def storm_reply(self, status: int, retry_after: float | None) -> Reply:
        """429 with parameters.retry_after, or a 5xx in the Bot API envelope."""
        if status == 429:
            return too_many(retry_after if retry_after is not None else 1)
        return self.error_reply(status)

    def error_reply(self, status: int) -> Reply:
        """A server error in the Bot API envelope."""
        return error(status, _REASONS.get(status, "Internal Server Error"))

    def not_found(self, call: Call) -> Reply:
        """Telegram's answer for any address that is not /bot{token}/{method}."""
        return error(404, "Not Found")

    # ---- a user's side ----------------------------------------------------------------------------
    async def control(self, call: Call, what: str) -> Reply:
        """Chats, blocking, migration and users writing to the bot (see the module docstring)."""
        if call.method != "POST":
            return await super().control(call, what)
        try:
            body = call.json() or {}
        except ValueError:
            return Reply(400, {"error": "the body is not JSON"})
        if not isinstance(body, dict):
            return Reply(400, {"error": "expected a JSON object"})
        try:
            if what == "chats":
                return Reply(200, self.add_chat(body["id"], **{k: v for k, v in body.items() if k != "id"}))
            if what == "block":
                key = str(int(body["chat_id"]))
                (self.blocked.add if body.get("blocked", True) else self.blocked.discard)(key)
                return Reply(200, {"blocked": sorted(self.blocked)})
            if what == "migrate":
                return Reply(200, self.migrate(int(body["chat_id"]), body.get("to")))
            if what == "write":
                return Reply(200, self.write(body["chat_id"], str(body["text"]), body.get("from")))
            if what == "update":
                return Reply(200, self.send_update(body))
        except (KeyError, TypeError, ValueError) as exc:
            return Reply(400, {"error": f"{what}: bad or missing {exc}"})
        return await super().control(call, what)

    def send_update(self, update: dict[str, Any]) -> dict[str, Any]:
        """Send one Update to the webhook with the secret header, as Telegram does (numbering it if needed)."""
        if "update_id" not in update:
            self._update_id += 1
            update = {"update_id": self._update_id, **update}
        self.updates.append(update)
        headers = {SECRET_HEADER: self.secret_token} if self.secret_token else {}
        self.webhook(update, headers=headers)
        return update

    def write(self, chat_id: int | str, text: str, sender: dict[str, Any] | None = None) -> dict[str, Any]:
        """A user writes `text` to the bot (the private chat appears if new): the `message` Update."""
        key = str(int(chat_id))
        known = sender or {}
        chat = self.chats.get(key) or self.add_chat(int(chat_id), first_name=known.get("first_name"),
                                                    last_name=known.get("last_name"), username=known.get("username"))
        user = sender or {"id": int(chat_id), "is_bot": False, "first_name": chat.get("first_name", "User"),
                          "language_code": "ru"}
        if chat.get("username") and "username" not in user and sender is None:
            user["username"] = chat["username"]
        sent = self.messages.setdefault(key, [])
        message = {"message_id": len(sent) + 1, "from": user, "chat": chat, "date": int(time.time()), "text": text}
        sent.append(message)
        return self.send_update({"message": message})

    def migrate(self, chat_id: int, to: int | None = None) -> dict[str, Any]:
        """The group becomes a supergroup: sends to the old id are refused with migrate_to_chat_id, and the
        bot gets the two service messages Telegram sends (which carry no text)."""
        key = str(chat_id)
        old = self.chats.get(key) or self.add_chat(chat_id)
        new_id = int(to) if to is not None else int(f"-100{abs(chat_id)}")
        self.migrated[key] = new_id
        new = self.add_chat(new_id, title=old.get("title"), type="supergroup")
        now = int(time.time())
        self.send_update({"message": {"message_id": len(self.messages.get(key, [])) + 1, "chat": old, "date": now,
                                      "migrate_to_chat_id": new_id}})
        self.send_update({"message": {"message_id": 1, "chat": new, "date": now, "migrate_from_chat_id": chat_id}})
        return {"chat_id": chat_id, "migrate_to_chat_id": new_id}


@dataclass(frozen=True, slots=True)
class Upload:
    """A file uploaded in a multipart/form-data part."""

    filename: str
    content_type: str
    content: bytes


def multipart_fields(content_type: str, body: bytes) -> dict[str, str | Upload] | None:
    """The parts of a multipart/form-data body by name: a text part as its text, a file part as an Upload; None
    when the body is not multipart/form-data (no boundary, no parts)."""
    parsed = BytesParser(policy=default).parsebytes(b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n"
                                                    + body)
    if not parsed.is_multipart():
        return None
    found: dict[str, str | Upload] = {}
    for part in parsed.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        content = part.get_payload(decode=True)
        content = content if isinstance(content, bytes) else b""
        filename = part.get_filename()
        if filename is None:
            found[name] = content.decode(part.get_content_charset() or "utf-8", "replace")
        else:
            found[name] = Upload(filename, part.get_content_type(), content)
    return found or None


def _expire(window: deque[float], before: float) -> None:
    while window and window[0] <= before:
        window.popleft()
