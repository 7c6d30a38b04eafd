"""What a Telegram action would refuse, found by `validate` from the params as written and the connector's settings
(`Telegram.check_params`): a staff name that is not among `chats:`, an address that is no chat, a text that cannot
be sent."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from automator.checks import UNKNOWN, CheckContext, ParamProblem, choice_hint, literal, literal_text
from .mapping import chat_address
from .text import MAX_TEXT, EntitiesError, visible


def check(action: str, params: Mapping[str, Any], options: Mapping[str, Any], context: CheckContext
          ) -> list[ParamProblem]:
    """The problems Telegram would have with one `notify`, `message.send` or `report.send` step's params."""
    chats = {str(k) for k in (options.get("chats") or {})}
    found: list[ParamProblem] = []
    to = literal(params.get("to"))
    if action == "notify" and to is not UNKNOWN and to not in (None, "") and str(to) not in chats:
        found.append(ParamProblem(("to",), f"connector '{context.connector}' (telegram) has no chat named '{to}' "
                                           "under `chats:`", _chats_hint(str(to), chats, context)))
    if action in ("message.send", "report.send"):
        if to is not UNKNOWN and to not in (None, "") and str(to) not in chats and chat_address(to) is None:
            found.append(ParamProblem(("to",), f"'{to}' is neither a Telegram chat id nor a name under `chats:` of "
                                               f"connector '{context.connector}' (telegram)",
                                      _chats_hint(str(to), chats, context)))
    if action == "message.send":
        channel = literal(params.get("channel"))
        if channel not in (UNKNOWN, None, "", "telegram"):
            found.append(ParamProblem(("channel",), f"connector '{context.connector}' sends Telegram messages, "
                                                    f"not {channel}",
                                      "leave `channel:` out, or send through a connector of that channel (`via:`)"))
    if action == "report.send":  # its text is a caption's first line, sent as plain text
        return found
    return found + _text(params.get("text"), options.get("parse_mode"))


def _chats_hint(name: str, chats: set[str], context: CheckContext) -> str:
    return (f"`chats:` of connector '{context.connector}' in automator.yaml names each staff chat (name: chat id); "
            + choice_hint(name, chats, "chats"))


def _text(value: Any, parse_mode: Any) -> list[ParamProblem]:
    """An empty text, HTML Telegram cannot parse, or a fixed text already longer than Telegram's 4096 characters is
    refused before sending. Of a template only its own words are known: what its placeholders add only makes it
    longer, and may open or close a tag, so its HTML is left to the run."""
    if value is None:
        return []
    text, placeholders = literal_text(value)
    if not placeholders and not text.strip():
        return [ParamProblem(("text",), "the message has no text", "write what the message says")]
    shown: str | None = text
    if parse_mode and placeholders:
        shown = None
    elif parse_mode:
        try:
            shown = visible(text, str(parse_mode))
        except EntitiesError as exc:
            return [ParamProblem(("text",), f"the text is not valid {parse_mode}: {exc}",
                                 "close every tag, and write <, > and & in the text as &lt; &gt; &amp;")]
    if shown is not None and len(shown) > MAX_TEXT:
        more = f" before its {placeholders} placeholder(s) add theirs" if placeholders else ""
        return [ParamProblem(("text",), f"the text is {len(shown)} characters{more}, over Telegram's {MAX_TEXT}",
                             "shorten it: Telegram refuses a longer message, and it is never split")]
    return []
