"""The daemon ↔ engine process lines: every message round-trips through its bytes, the framing keeps a torn line
for later, and a line that is no message is refused with a ProtocolError that quotes it."""
from __future__ import annotations

import os

import pytest

from automator.daemon import protocol
from automator.daemon.protocol import (EFFECTS_COMMITTED, JOURNALED, NUDGE, RELOAD, Counters, Decided, Lines, ProtocolError,
                                       decode_command, decode_reply, send)

COMMANDS = [JOURNALED, RELOAD, NUDGE]
REPLIES = [EFFECTS_COMMITTED, Decided(0), Decided(1), Decided(123456),
           Counters([]), Counters([["effects_total", ["crm", "ok"], 3.0], ["lock_wait_seconds", [], 0.25]])]


@pytest.mark.parametrize("command", COMMANDS, ids=repr)
def test_a_command_round_trips(command: protocol.Command) -> None:
    line = command.line
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode_command(line[:-1]) == command


@pytest.mark.parametrize("reply", REPLIES, ids=repr)
def test_a_reply_round_trips(reply: protocol.Reply) -> None:
    line = reply.line
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode_reply(line[:-1]) == reply


def test_the_lines_stay_a_letter_where_a_letter_says_it() -> None:
    # The daemon's throughput rides on them: no JSON for what has no data.
    assert (JOURNALED.line, RELOAD.line, NUDGE.line, EFFECTS_COMMITTED.line, Decided(42).line) == \
        (b"j\n", b"r\n", b"n\n", b"w\n", b"d42\n")


@pytest.mark.parametrize("line", [b"", b"x", b"jj", b"w", b"d3", b"J"])
def test_an_unknown_command_is_refused(line: bytes) -> None:
    with pytest.raises(ProtocolError, match="not a command"):
        decode_command(line)


@pytest.mark.parametrize("line", [b"", b"j", b"r", b"n", b"d", b"d-1", b"d1.5", b"dx", b"ww", b"q"])
def test_an_unknown_reply_is_refused(line: bytes) -> None:
    with pytest.raises(ProtocolError, match="not a reply"):
        decode_reply(line)


@pytest.mark.parametrize("line, why", [(b'm[["a", [], 1', "not JSON"), (b"m{}", "not as"), (b"m[[1, [], 1]]", "not as"),
                                       (b'm[["a", "b", 1]]', "not as"), (b'm[["a", [], true]]', "not as"),
                                       (b'm[["a", []]]', "not as")])
def test_counters_that_cannot_be_read_are_refused(line: bytes, why: str) -> None:
    with pytest.raises(ProtocolError, match=why):
        decode_reply(line)


def test_the_framing_cuts_whole_lines_and_keeps_a_torn_one() -> None:
    lines = Lines()
    assert lines.feed(b"d1") == [] and lines.torn == b"d1"
    assert lines.feed(b"2\nw\nm[") == [b"d12", b"w"] and lines.torn == b"m["
    assert lines.feed(b"]\n") == [b"m[]"] and lines.torn == b""
    assert [decode_reply(x) for x in lines.feed(Decided(5).line + EFFECTS_COMMITTED.line)] == \
        [Decided(5), EFFECTS_COMMITTED]


def test_send_writes_the_line_and_tells_when_the_reader_is_gone() -> None:
    read, write = os.pipe()
    os.set_blocking(write, False)
    try:
        assert send(write, Decided(7)) and send(write, JOURNALED)
        assert os.read(read, 100) == b"d7\nj\n"
        # A full pipe drops the message (the reader is behind) without blocking or failing.
        while True:
            try:
                os.write(write, b"x" * 65536)
            except BlockingIOError:
                break
        assert send(write, EFFECTS_COMMITTED)
        os.close(read)
        assert not send(write, EFFECTS_COMMITTED)  # the reader is gone
    finally:
        os.close(write)


def test_a_line_that_is_no_message_is_said_and_skipped_and_the_rest_still_heard(
        caplog: pytest.LogCaptureFixture) -> None:
    lines = Lines()
    assert lines.messages(b"d2\nzap\nw\nd\n", decode_reply) == [Decided(2), EFFECTS_COMMITTED]
    assert [r.getMessage() for r in caplog.records] == ["not a reply of the engine process: b'zap'",
                                                         "not a reply of the engine process: b'd'"]
    assert lines.messages(b"j\nr\nw\n", decode_command) == [JOURNALED, RELOAD]
    assert caplog.records[-1].getMessage() == "not a command of the daemon: b'w'"
