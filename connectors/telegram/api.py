"""Telegram Bot API calls: the request to /bot{token}/{method}, its envelope, and its errors mapped onto errors.py.

Every answer is `{"ok": true, "result": ...}` or `{"ok": false, "error_code", "description"[, "parameters":
{"retry_after" | "migrate_to_chat_id"}]}` with the HTTP status equal to `error_code`. The Bot API says the
codes "are subject to change", so the HTTP status decides (reference §4.3, §6.1):

    429                         Retryable, after `parameters.retry_after` (or a Retry-After header)
    5xx                         Retryable (the reference's classification; see the module docstring of the
                                connector for what that means for at-most-once messages)
    400 + migrate_to_chat_id    ChatMigrated: the caller sends once more, to the new chat id
    other 4xx                   Rejected with Telegram's description
    2xx without the envelope    Uncertain: the request was accepted and we cannot tell what came of it

The bot token is part of the URL, so no error raised from here carries the URL or the exception chain that
holds it: messages name the method only.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from automator.connector import json_body, retry_after as header_retry_after
from automator.errors import Rejected, Retryable, Uncertain

if TYPE_CHECKING:
    import httpx

    from automator.connector import WebConnector


class ChatMigrated(Exception):
    """A group was upgraded to a supergroup: Telegram names the chat id to use from now on."""

    def __init__(self, new_chat_id: int, description: str) -> None:
        super().__init__(description)
        self.new_chat_id = new_chat_id
        self.description = description


def redact(text: str, token: str) -> str:
    """`text` with the bot token replaced, for messages that quote a URL."""
    return text.replace(token, "<token>") if token else text


async def call(connector: WebConnector, token: str, method: str, payload: Mapping[str, Any],
               files: Mapping[str, tuple[str, bytes, str]] | None = None) -> Any:
    """POST one Bot API method and return its `result`; raises Retryable, Rejected, Uncertain or ChatMigrated.

    The payload goes as JSON, or with `files` (field → (file name, content, MIME type)) as multipart/form-data,
    the only way to upload a file: each other field is then a text part (numbers as digits)."""
    what = f"telegram {method}"
    body: dict[str, Any] = {"json": dict(payload)} if files is None else {
        "data": {key: str(value) for key, value in payload.items()}, "files": dict(files)}
    try:
        response = await connector.request("POST", f"/bot{token}/{method}", what, **body)
    except Retryable as exc:
        raise Retryable(redact(str(exc), token), exc.retry_after) from None
    except Uncertain as exc:
        raise Uncertain(redact(str(exc), token)) from None
    return result_of(response, what)


def result_of(response: httpx.Response, what: str) -> Any:
    """The `result` of a Bot API answer, or the error it stands for."""
    status = response.status_code
    try:
        body = json_body(response)
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("ok"), bool):
        # Not the Bot API's envelope: a proxy's HTML error page, a truncated body.
        if status == 429 or status >= 500:
            raise Retryable(f"{what}: HTTP {status} without the Bot API envelope", header_retry_after(response))
        if 200 <= status < 300:
            raise Uncertain(f"{what}: HTTP {status} with an unreadable body; it may have been performed")
        raise Rejected(f"{what}: HTTP {status} without the Bot API envelope")
    if body["ok"]:
        if not 200 <= status < 300:
            raise Uncertain(f"{what}: HTTP {status} with ok: true; it may have been performed")
        return body.get("result")
    code = status if status >= 400 else _int(body.get("error_code")) or status
    description = str(body.get("description") or f"HTTP {status}")
    parameters = found if isinstance(found := body.get("parameters"), dict) else {}
    message = f"{what}: {code} {description}"
    if code == 429 or code >= 500:
        wait = _number(parameters.get("retry_after"))
        raise Retryable(message, wait if wait is not None else header_retry_after(response))
    migrate_to = _int(parameters.get("migrate_to_chat_id"))
    if code == 400 and migrate_to is not None:
        raise ChatMigrated(migrate_to, description)
    raise Rejected(message)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return max(0.0, float(value))


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
