"""Telegram Update objects → `message.received` events, and chat addresses (ids, @usernames, staff names)."""
from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from automator.errors import InboundRejected
from automator.model import EntityRef, Event
from automator.phone import Policy, Reading, to_e164

# Update fields that carry no message from a person to the bot (edits, button presses, membership changes...):
# accepted with 200 and turned into no event, as is any kind of update a later Bot API version adds, since
# Telegram keeps re-sending an update its webhook refused.
IGNORED_UPDATES = ("edited_message", "channel_post", "edited_channel_post", "business_connection",
                   "business_message", "edited_business_message", "deleted_business_messages",
                   "message_reaction", "message_reaction_count", "inline_query", "chosen_inline_result",
                   "callback_query", "shipping_query", "pre_checkout_query", "purchased_paid_media", "poll",
                   "poll_answer", "my_chat_member", "chat_member", "chat_join_request", "chat_boost",
                   "removed_chat_boost")
# What a person can send; a `message` with none of these is a service message (members joined, the group
# was upgraded to a supergroup, a pinned message...) and makes no event.
CONTENT = ("text", "photo", "document", "voice", "audio", "video", "video_note", "animation", "sticker",
           "contact", "location", "venue", "poll", "dice")

_CHAT_ID = re.compile(r"-?[0-9]{1,20}")
_USERNAME = re.compile(r"@[A-Za-z][A-Za-z0-9_]{3,31}")


def chat_address(value: Any) -> int | str | None:
    """A chat id as the Bot API takes it (an integer, or "@channelusername"); None when `value` is neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if _CHAT_ID.fullmatch(text):
        return int(text)
    if _USERNAME.fullmatch(text):
        return text
    return None


def update_events(source: str, body: bytes, staff: Mapping[str, int | str], received_at: datetime | None
                  ) -> list[Event]:
    """The events of one Update: `message.received` for a person's message, nothing for the other kinds.

    `staff` maps chat ids (as text) to the names of `chats:`, so a rule can tell a colleague from a client.
    Raises InboundRejected(400) for a body that is not an Update.
    """
    import json

    try:
        update = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InboundRejected(400, f"the body is not JSON: {exc}") from exc
    if not isinstance(update, dict):
        raise InboundRejected(400, "an Update must be a JSON object")
    update_id = update.get("update_id")
    if not isinstance(update_id, int) or isinstance(update_id, bool) or update_id < 0:
        raise InboundRejected(400, "the Update has no integer update_id")
    if "message" not in update:
        return []
    message = update["message"]
    if not isinstance(message, dict):
        raise InboundRejected(400, "message must be an object")
    chat = message.get("chat")
    if not isinstance(chat, dict) or not isinstance(chat.get("id"), int) or isinstance(chat.get("id"), bool):
        raise InboundRejected(400, "message.chat.id must be an integer")
    if not isinstance(message.get("message_id"), int):
        raise InboundRejected(400, "message.message_id must be an integer")
    content = next((kind for kind in CONTENT if kind in message), None)
    if content is None:
        return []
    sender = found if isinstance(found := message.get("from"), dict) else {}
    data: dict[str, Any] = {
        "channel": "telegram",
        "chat_id": chat["id"],
        "chat_type": chat.get("type"),
        "message_id": message["message_id"],
        "content": content,
        "text": _text(message.get("text") if content == "text" else message.get("caption")),
        "from_id": sender.get("id"),
        "username": sender.get("username"),
        "first_name": sender.get("first_name"),
        "last_name": sender.get("last_name"),
        "language_code": sender.get("language_code"),
        "update_id": update_id,
    }
    name = staff.get(str(chat["id"]))
    if name is not None:
        data["staff"] = name
    contact = message.get("contact")
    if content == "contact" and isinstance(contact, dict):
        data["phone"] = e164(contact.get("phone_number"))
        data["contact_user_id"] = contact.get("user_id")
    at = _moment(message, received_at)
    events = []
    if name is None and chat.get("type") == "private":
        # A client's own chat is one of the ways the store knows the person (`client.ids.<connector>`, the chat id
        # a `message.send` reaches them at): the journal links it to the person, by the phone when they share
        # their own contact (told before the message, so the message already names that person).
        data["client"] = str(chat["id"])
        if data.get("phone") and data.get("contact_user_id") == sender.get("id"):
            person = {"phone": data["phone"], "name": " ".join(
                str(n) for n in (sender.get("first_name"), sender.get("last_name")) if n) or None}
            events.append(Event(id=f"{source}:update:{update_id}:contact", type="client.updated", at=at,
                                entity=EntityRef("client", str(chat["id"])),
                                data={k: v for k, v in person.items() if v}, source=source,
                                delivery_id=f"{update_id}:contact"))
    events.append(Event(id=f"{source}:update:{update_id}", type="message.received", at=at, entity=None,
                        data={k: v for k, v in data.items() if v is not None}, source=source,
                        delivery_id=str(update_id)))
    return events


def e164(phone: Any) -> str | None:
    """A shared contact's phone in E.164; Telegram sends it with or without the leading "+"."""
    if not isinstance(phone, str):
        return None
    # The number the account was registered with: Telegram has checked it, and always writes its country code.
    return to_e164(phone, policy=Policy.POSSIBLE, reading=Reading.INTERNATIONAL)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _moment(message: Mapping[str, Any], received_at: datetime | None) -> datetime:
    date = message.get("date")
    if isinstance(date, int) and not isinstance(date, bool) and date > 0:
        return datetime.fromtimestamp(date, timezone.utc)
    return received_at or datetime.now(timezone.utc)
