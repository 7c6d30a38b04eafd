"""The load generator: its own process, asyncio (uvloop) with a hand-written keep-alive HTTP/1.1 client over raw
sockets (httpx costs more CPU per request than the daemon under test). Two modes, both bounded in count and time:

- closed: every connection posts its next webhook as soon as the previous one is answered (the most the server
  takes); `acks` (shared counter) is read by the parent to measure a window.
- paced: open loop at `rate` per second for `duration` seconds; a request waits for a free connection if all
  are busy, and its latency counts from the moment it was due (no coordinated omission) as well as from the
  moment it was written. With `reconnect` (the crash test) a connection that fails is made anew, retried until
  the server is back; with `acked`, the numbers of the webhooks answered 200 come back in `acked`.

Every webhook carries the `local` connector's token (X-Automator-Token, TOKEN); with `delivery`, its own delivery id.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import multiprocessing
import os
import time
from typing import Any

from http_client import _content_length

# The `local` connector's webhook secret in the benchmarks' projects (`secret: "${env:TOKEN_ENV}"`); the daemons
# they start inherit it from this environment.
TOKEN_ENV = "AUTOMATOR_BENCH_HOOK_TOKEN"
TOKEN = os.environ.setdefault(TOKEN_ENV, "bench-hook-token")
REQUEST = (b"POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
           b"X-Automator-Token: " + TOKEN.encode() + b"\r\nContent-Length: %d\r\n\r\n%s")


def body(nonce: str, n: int, delivery: bool = False) -> bytes:
    """One webhook of the `local` connector: a new booking that has arrived (distinct entity each time); with
    `delivery`, its own delivery id (`<nonce>-<n>`, as the entity's id)."""
    if delivery:
        return (b'{"event":"booking.updated","entity":{"kind":"booking","id":"%s-%d"},"data":{"status":"arrived",'
                b'"client":%d},"delivery_id":"%s-%d"}' % (nonce.encode(), n, n % 5000, nonce.encode(), n))
    return (b'{"event":"booking.updated","entity":{"kind":"booking","id":"%s-%d"},"data":{"status":"arrived",'
            b'"client":%d}}' % (nonce.encode(), n, n % 5000))


class Conn(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[int] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        length = _content_length(bytes(self.buffer[:end]))
        if len(self.buffer) >= end + 4 + length:
            status = int(self.buffer[9:12])
            del self.buffer[:end + 4 + length]
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_result(status)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc or ConnectionError("closed"))

    async def post(self, request: bytes) -> int:
        if self.closed:  # the server went away while this connection was idle
            raise ConnectionError("closed")
        self.waiter = asyncio.get_running_loop().create_future()
        assert self.transport is not None
        self.transport.write(request)
        return await self.waiter


async def _connect(port: int, count: int) -> list[Conn]:
    loop = asyncio.get_running_loop()
    out = []
    for _ in range(count):
        _, conn = await loop.create_connection(Conn, "127.0.0.1", port)
        out.append(conn)
    return out


async def closed(spec: dict[str, Any], acks: Any, errors: Any) -> dict[str, Any]:
    conns = await _connect(spec["port"], spec["conns"])
    path, port, nonce = spec["path"].encode(), spec["port"], spec["nonce"]
    cap = spec["cap"]
    start = time.monotonic()
    end = start + spec["duration"]
    sent = 0

    async def worker(conn: Conn) -> None:
        nonlocal sent
        while sent < cap and time.monotonic() < end:
            data = body(nonce, sent)
            sent += 1
            try:
                status = await asyncio.wait_for(conn.post(REQUEST % (path, port, len(data), data)), 30)
            except (OSError, asyncio.TimeoutError):
                errors.value += 1
                return
            if status == 200:
                acks.value += 1
            else:
                errors.value += 1
    await asyncio.gather(*(worker(c) for c in conns))
    for c in conns:
        assert c.transport is not None
        c.transport.close()
    return {"sent": sent, "elapsed": time.monotonic() - start}


async def paced(spec: dict[str, Any], acks: Any, errors: Any, stop: Any) -> dict[str, Any]:
    conns = await _connect(spec["port"], spec["conns"])
    path, port, nonce = spec["path"].encode(), spec["port"], spec["nonce"]
    rate, total = float(spec["rate"]), int(spec["rate"] * spec["duration"])
    delivery, reconnect, keep_acked = bool(spec.get("delivery")), bool(spec.get("reconnect")), bool(spec.get("acked"))
    idle: collections.deque[Conn] = collections.deque(conns)
    free = asyncio.Event()
    from_due: list[float] = []
    from_write: list[float] = []
    acked: list[int] = []
    tasks: set[asyncio.Task[None]] = set()
    clock = time.perf_counter  # uvloop's loop.time() has a millisecond resolution
    hard_stop = clock() + spec["duration"] * 2 + 10

    async def replace(conn: Conn) -> None:
        """A connection that failed (the server was killed): a new one once the server listens again."""
        assert conn.transport is not None
        conn.transport.abort()
        loop = asyncio.get_running_loop()
        while clock() < hard_stop and not stop.value:
            try:
                _, fresh = await loop.create_connection(Conn, "127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.02)
                continue
            conns.append(fresh)
            idle.append(fresh)
            free.set()
            return

    async def one(conn: Conn, due: float, n: int) -> None:
        data = body(nonce, n, delivery)
        written = clock()
        try:
            status = await asyncio.wait_for(conn.post(REQUEST % (path, port, len(data), data)), 30)
        except (OSError, asyncio.TimeoutError):
            errors.value += 1
            if reconnect:
                await replace(conn)
            return
        done = clock()
        if status == 200:
            acks.value += 1
            from_due.append(done - due)
            from_write.append(done - written)
            if keep_acked:
                acked.append(n)
        else:
            errors.value += 1
        idle.append(conn)
        free.set()

    t0 = clock() + 0.05
    n = 0
    while n < total and clock() < hard_stop and not stop.value:
        due = t0 + n / rate
        wait = due - clock()
        if wait > 0.0005:
            await asyncio.sleep(wait)
            continue
        if not idle:  # every connection is busy (or being made anew): wait, looking at `stop` now and then
            free.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(free.wait(), 0.1)
            continue
        task = asyncio.create_task(one(idle.popleft(), due, n))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        n += 1
    if tasks:
        await asyncio.wait(tasks, timeout=30)
    for c in conns:
        assert c.transport is not None
        c.transport.close()
    return {"sent": n, "elapsed": clock() - t0, "from_due": from_due, "from_write": from_write, "acked": acked}


def _main(spec: dict[str, Any], acks: Any, errors: Any, stop: Any, out: Any) -> None:
    with contextlib.suppress(ImportError):
        import uvloop
        uvloop.install()
    coro = closed(spec, acks, errors) if spec["mode"] == "closed" else paced(spec, acks, errors, stop)
    out.send(asyncio.run(coro))
    out.close()


class Load:
    """A load generator process; `acks`/`errors` are live counters, `result()` waits for its figures."""

    def __init__(self, **spec: Any) -> None:
        ctx: Any = multiprocessing.get_context("fork")
        self.acks = ctx.Value("q", 0, lock=False)
        self.errors = ctx.Value("q", 0, lock=False)
        self.stopped = ctx.Value("b", 0, lock=False)
        self._out, child = ctx.Pipe(duplex=False)
        self.spec = spec
        self.process = ctx.Process(target=_main, args=(spec, self.acks, self.errors, self.stopped, child), daemon=True)
        self.process.start()
        self.pid = self.process.pid

    def stop(self) -> None:
        """Paced mode: send no more webhooks (those in flight are still answered); then call `result()`."""
        self.stopped.value = 1

    def result(self, timeout: float) -> dict[str, Any]:
        try:
            if not self._out.poll(timeout):
                raise RuntimeError("the load generator did not finish in time")
            return self._out.recv()  # type: ignore[no-any-return]
        finally:
            if self.process.is_alive():
                self.process.join(2)
            if self.process.is_alive():
                self.process.kill()
                self.process.join(2)
