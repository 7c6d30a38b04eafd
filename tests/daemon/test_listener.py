"""The daemon's HTTP side over a real socket: an answer's head and body leave in one write, every kind of answer
(a body, none for HEAD, a 100 Continue, a body that comes later) still arrives whole, and the server sleeps until
it is told to stop."""
from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from email.utils import parsedate_to_datetime
from typing import Any

import uvicorn

from automator.daemon.listener import Limits, guarded_protocol
from automator.daemon.metrics import Metrics
from automator.daemon.process import NoSignals

Send = Callable[[dict[str, Any]], Awaitable[None]]


async def _app(scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]], send: Send) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    answer = b"got " + body
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(answer))]})
    if scope["path"] == "/later":
        await asyncio.sleep(0.05)  # a body that does not follow at once: the head is not held for it
    await send({"type": "http.response.body", "body": answer})


async def _exchange(port: int, request: bytes, *, then: bytes = b"", head: bool = False) -> tuple[bytes, list[bytes]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    seen = b""
    if then:  # Expect: 100-continue: the body goes only once the server said to go on
        seen = await reader.readuntil(b"\r\n\r\n")
        writer.write(then)
    answer = b""
    while not answer.endswith((b"got ", b"got hi")) and not (head and answer.endswith(b"\r\n\r\n")):
        chunk = await asyncio.wait_for(reader.read(65536), 5)
        if not chunk:
            break
        answer += chunk
    writer.close()
    return seen, [answer]


def test_answers_arrive_whole_in_one_write() -> None:
    writes: list[bytes] = []

    async def main() -> list[tuple[bytes, list[bytes]]]:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        port = sock.getsockname()[1]
        protocol = guarded_protocol(Limits(), Metrics())
        made = protocol.connection_made

        def spying(self: Any, transport: asyncio.Transport) -> None:
            real_write = transport.write

            def write(data: bytes) -> None:
                writes.append(bytes(data))
                real_write(data)
            transport.write = write  # type: ignore[method-assign]
            made(self, transport)
        protocol.connection_made = spying  # type: ignore[method-assign, assignment]
        server = uvicorn.Server(uvicorn.Config(_app, lifespan="off", log_config=None, access_log=False,
                                               http=protocol, loop="none"))
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            await asyncio.sleep(0.01)
        try:
            return [
                await _exchange(port, b"POST /hook HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\nhi"),
                await _exchange(port, b"HEAD /hook HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n", head=True),
                await _exchange(port, b"POST /hook HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n"
                                      b"expect: 100-continue\r\n\r\n", then=b"hi"),
                await _exchange(port, b"POST /later HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\nhi"),
            ]
        finally:
            server.should_exit = True
            await serving

    (_, [posted]), (_, [head]), (go_on, [continued]), (_, [later]) = asyncio.run(main())
    assert posted.startswith(b"HTTP/1.1 200 OK\r\n") and posted.endswith(b"\r\n\r\ngot hi")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"content-length: 4" in head and head.endswith(b"\r\n\r\n")
    assert go_on == b"HTTP/1.1 100 Continue\r\n\r\n" and continued.endswith(b"\r\n\r\ngot hi")
    assert later.endswith(b"\r\n\r\ngot hi")
    # The plain answer went in one write, head and body; the later body found its head sent before it.
    assert writes[0].startswith(b"HTTP/1.1 200 OK\r\n") and writes[0].endswith(b"\r\n\r\ngot hi")
    assert writes[-2].startswith(b"HTTP/1.1 200 OK\r\n") and writes[-2].endswith(b"\r\n\r\n")
    assert writes[-1] == b"got hi"


def test_the_server_sleeps_until_told_to_stop_and_still_dates_its_answers(monkeypatch: Any) -> None:
    ticks: list[int] = []
    monkeypatch.setattr(NoSignals, "on_tick", lambda self, counter: ticks.append(counter))

    async def main() -> bytes:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        server = NoSignals(uvicorn.Config(_app, lifespan="off", log_config=None, access_log=False,
                                          http=guarded_protocol(Limits(), Metrics()), loop="none"))
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            await asyncio.sleep(0.01)
        _, [answer] = await _exchange(sock.getsockname()[1], b"POST /hook HTTP/1.1\r\nhost: x\r\n"
                                                              b"content-length: 2\r\n\r\nhi")
        await asyncio.sleep(0.3)  # idle: uvicorn's own loop would have ticked three times by now
        threading.Thread(target=setattr, args=(server, "should_exit", True)).start()  # as a stop from anywhere
        await asyncio.wait_for(serving, 5)
        return answer

    answer = asyncio.run(main())
    assert ticks == []
    head = dict(line.split(b": ", 1) for line in answer.split(b"\r\n\r\n")[0].split(b"\r\n")[1:])
    assert abs(parsedate_to_datetime(head[b"date"].decode()).timestamp() - time.time()) < 5
    assert head[b"server"] == b"uvicorn" and answer.endswith(b"got hi")
