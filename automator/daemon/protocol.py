"""The lines between the daemon and its engine process: the messages named, their bytes, and the framing.

Two pipes, one line per message, a newline ending each. The daemon sends commands: `j` (events were journaled:
decide them now), `r` (the rules were reloaded: load them too), `n` (another process, an operator's command,
wrote work into the store: look for it now); end of file means the daemon is gone. The engine
process sends replies: `d<n>` (n events decided: the backlog shrank), `w` (effects were committed: perform them),
`m<json>` (counters for /metrics, `[[name, [labels...], amount], ...]`). Everything else goes through the store.

The daemon's throughput rides on these lines (one `j` per group commit, one `d<n>` and maybe one `w` per batch
decided), so they stay a letter each: no JSON where a letter says it, and the messages without data are
singletons whose bytes are computed once. Both ends read and write them only through this module.
"""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

log = logging.getLogger(__name__)
M = TypeVar("M")


class ProtocolError(ValueError):
    """A line that is no message of this protocol (unknown, or its data unreadable)."""


@dataclass(frozen=True)
class Journaled:
    """Daemon → engine: events were journaled; decide them now rather than at the next look."""

    line: ClassVar[bytes] = b"j\n"


@dataclass(frozen=True)
class Reload:
    """Daemon → engine: the daemon swapped in new rules; load them too."""

    line: ClassVar[bytes] = b"r\n"


@dataclass(frozen=True)
class Nudge:
    """Daemon → engine: another process wrote work into the store (a replayed effect); look for it now rather than
    at the loops' next look."""

    line: ClassVar[bytes] = b"n\n"


@dataclass(frozen=True)
class EffectsCommitted:
    """Engine → daemon: effects were committed; the outbox performs them now."""

    line: ClassVar[bytes] = b"w\n"


@dataclass(frozen=True)
class Decided:
    """Engine → daemon: `count` events were decided (the daemon's backlog estimate shrinks by as many)."""

    count: int

    @property
    def line(self) -> bytes:
        """The message's bytes on the wire."""
        return b"d%d\n" % self.count


@dataclass(frozen=True)
class Counters:
    """Engine → daemon: counter increments for /metrics, as `[name, labels, amount]` triples."""

    counts: list[list[Any]]

    @property
    def line(self) -> bytes:
        """The message's bytes on the wire."""
        return b"m" + json.dumps(self.counts).encode() + b"\n"


Command = Journaled | Reload | Nudge
Reply = EffectsCommitted | Decided | Counters
Message = Command | Reply

JOURNALED = Journaled()
RELOAD = Reload()
NUDGE = Nudge()
EFFECTS_COMMITTED = EffectsCommitted()
_COMMANDS: dict[bytes, Command] = {b"j": JOURNALED, b"r": RELOAD, b"n": NUDGE}


def decode_command(line: bytes) -> Command:
    """A line from the daemon (without its newline) as its command; ProtocolError for anything else."""
    command = _COMMANDS.get(line)
    if command is None:
        raise ProtocolError(f"not a command of the daemon: {line[:80]!r}")
    return command


def decode_reply(line: bytes) -> Reply:
    """A line from the engine process (without its newline) as its reply; ProtocolError for anything else."""
    if line == b"w":
        return EFFECTS_COMMITTED
    kind, data = line[:1], line[1:]
    if kind == b"d" and data.isdigit():
        return Decided(int(data))
    if kind == b"m":
        try:
            counts = json.loads(data)
        except ValueError:
            raise ProtocolError(f"counters that are not JSON: {line[:80]!r}") from None
        if not isinstance(counts, list) or not all(_is_count(c) for c in counts):
            raise ProtocolError(f"counters not as [name, labels, amount]: {line[:80]!r}")
        return Counters(counts)
    raise ProtocolError(f"not a reply of the engine process: {line[:80]!r}")


def _is_count(item: Any) -> bool:
    return isinstance(item, list) and len(item) == 3 and isinstance(item[0], str) and isinstance(item[1], list) \
        and isinstance(item[2], (int, float)) and not isinstance(item[2], bool)


class Lines:
    """Framing: bytes as they arrive from a pipe, cut into whole lines; a torn end waits for the rest."""

    def __init__(self) -> None:
        self._pending = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """The lines completed by `data`, without their newlines, in order."""
        self._pending.extend(data)
        *lines, rest = bytes(self._pending).split(b"\n")
        self._pending[:] = rest
        return lines

    def messages(self, data: bytes, decode: Callable[[bytes], M]) -> list[M]:
        """The messages completed by `data`, read with `decode_command` or `decode_reply`. A line that is none
        is logged and skipped: a bug on the other end, whose other messages are still heard."""
        out: list[M] = []
        for line in self.feed(data):
            try:
                out.append(decode(line))
            except ProtocolError as exc:
                log.error("%s", exc)
        return out

    @property
    def torn(self) -> bytes:
        """What arrived after the last newline (a message cut short when the pipe ends)."""
        return bytes(self._pending)


def send(fd: int, message: Message) -> bool:
    """Write one message to a non-blocking pipe; False when the other end is gone.

    A full pipe drops the message rather than block the sender's event loop: the reader is far behind then, and
    the messages still unread in the pipe wake it as a dropped `j` or `n` would.
    """
    try:
        os.write(fd, message.line)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return True
