"""Telegram message text: the visible text and entities of an HTML-formatted message, and its length rules."""
from __future__ import annotations

from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any

MAX_TEXT = 4096  # characters of a message "after entities parsing" (Bot API, sendMessage)
MAX_CAPTION = 1024  # characters of a document's caption "after entities parsing" (Bot API, sendDocument)
MAX_UPLOAD = 50 * 1024 * 1024  # bytes of a file a bot uploads (Bot API, "Sending files")
PARSE_MODES = ("HTML", "MarkdownV2", "Markdown")

# The HTML tags the Bot API accepts, and the entity type each makes ("formatting options" in the Bot API).
TAGS = {"b": "bold", "strong": "bold", "i": "italic", "em": "italic", "u": "underline", "ins": "underline",
        "s": "strikethrough", "strike": "strikethrough", "del": "strikethrough", "tg-spoiler": "spoiler",
        "span": "spoiler", "a": "text_link", "code": "code", "pre": "pre", "blockquote": "blockquote",
        "tg-emoji": "custom_emoji"}


class EntitiesError(ValueError):
    """The text does not parse in its parse_mode; the message is Telegram's words after "can't parse entities: "."""


def utf16_length(text: str) -> int:
    """Length in UTF-16 code units, the unit of the Bot API's entity offsets."""
    return len(text.encode("utf-16-le")) // 2


@dataclass
class _Open:
    tag: str
    offset: int
    attrs: dict[str, str | None]
    byte: int


class _Html(HTMLParser):
    """Collects the visible text and entities of Bot API HTML, refusing what Telegram refuses."""

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self.source = source
        self.text: list[str] = []
        self.entities: list[dict[str, Any]] = []
        self.stack: list[_Open] = []
        self.length = 0  # UTF-16 units of the visible text so far

    def _byte(self) -> int:
        line, col = self.getpos()
        lines = self.source.split("\n")
        prefix = "\n".join(lines[:line - 1]) + ("\n" if line > 1 else "") + lines[line - 1][:col]
        return len(prefix.encode())

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in TAGS or (tag == "span" and dict(attrs).get("class") != "tg-spoiler"):
            raise EntitiesError(f'Unsupported start tag "{tag}" at byte offset {self._byte()}')
        self.stack.append(_Open(tag, self.length, dict(attrs), self._byte()))

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1].tag != tag:
            raise EntitiesError(f'Unmatched end tag at byte offset {self._byte()}, expected "</'
                                f'{self.stack[-1].tag if self.stack else tag}>", found "</{tag}>"')
        opened = self.stack.pop()
        if self.length == opened.offset:  # Telegram drops empty entities
            return
        entity: dict[str, Any] = {"offset": opened.offset, "length": self.length - opened.offset,
                                  "type": TAGS[tag]}
        if tag == "a":
            entity["url"] = opened.attrs.get("href") or ""
        if tag == "pre" and opened.attrs.get("language"):
            entity["language"] = opened.attrs["language"]
        if tag == "tg-emoji":
            entity["custom_emoji_id"] = opened.attrs.get("emoji-id") or ""
        self.entities.append(entity)

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        self.length += utf16_length(data)


def parse_html(source: str) -> tuple[str, list[dict[str, Any]]]:
    """The visible text and the entities (offsets in UTF-16 units, sorted by offset) of Bot API HTML."""
    parser = _Html(source)
    parser.feed(source)
    parser.close()
    if parser.stack:
        raise EntitiesError(f'Can\'t find end tag corresponding to start tag "{parser.stack[-1].tag}"')
    return "".join(parser.text), sorted(parser.entities, key=lambda e: (e["offset"], -e["length"]))


def visible(text: str, parse_mode: str | None) -> str | None:
    """What the reader sees of `text`: exact for plain text and HTML; None for Markdown, whose markup only
    Telegram itself parses exactly (the raw text is then only an upper bound)."""
    if not parse_mode:
        return text
    if parse_mode == "HTML":
        return parse_html(text)[0]
    return None
