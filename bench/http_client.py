"""Benchmark: CPU per outbound request of each HTTP engine a connector could use, against a loopback server."""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from automator.http import new_client, new_transport, send

REQUESTS = 3000
CONCURRENCY = (1, 32)
WARM_UP = 64
RUN_CAP_S = 15.0  # one option at one concurrency stops after this, whatever it has done
TOTAL_CAP_S = 240.0  # the whole benchmark, every loop and option
SERVER_LIFETIME_S = TOTAL_CAP_S + 60  # the server stops by itself even if this process is killed
BODY = {"event": "booking.updated", "entity": {"kind": "booking", "id": "1"}, "data": {"status": "arrived"}}
RESPONSE = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok":true}'


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


# --- the server: its own process, so its CPU is not the client's ---------------------------------------------

class _Server(asyncio.Protocol):
    def __init__(self, accepted: Any) -> None:
        self.accepted = accepted
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        with self.accepted.get_lock():
            self.accepted.value += 1

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        # Loop: a client may pipeline, and one read may hold several requests.
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            length = _content_length(bytes(self.buffer[:end]))
            if len(self.buffer) < end + 4 + length:
                return
            del self.buffer[:end + 4 + length]
            assert self.transport is not None
            self.transport.write(RESPONSE)


def _serve(port_out: Any, accepted: Any) -> None:
    try:
        import uvloop  # the server should cost as little as possible: it shares two cores with the client
        uvloop.install()
    except ImportError:
        pass

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _Server(accepted), "127.0.0.1", 0, backlog=512)
        port_out.send(server.sockets[0].getsockname()[1])
        port_out.close()
        await asyncio.sleep(SERVER_LIFETIME_S)

    asyncio.run(main())


def start_server() -> tuple[multiprocessing.process.BaseProcess, int, Any]:
    """A keep-alive HTTP/1.1 server on 127.0.0.1 in a child process: (process, port, accepted-connections)."""
    context: Any = multiprocessing.get_context("fork" if sys.platform != "win32" else "spawn")
    accepted = context.Value("i", 0)
    parent, child = context.Pipe(duplex=False)
    process = context.Process(target=_serve, args=(child, accepted), daemon=True)
    process.start()
    if not parent.poll(10):
        process.kill()
        raise RuntimeError("the benchmark server did not start")
    return process, parent.recv(), accepted


# --- the floor: a hand-written keep-alive client, one connection per worker -----------------------------------

class _FloorConnection(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[bytes] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        length = _content_length(bytes(self.buffer[:end]))
        if len(self.buffer) >= end + 4 + length and self.waiter is not None:
            body = bytes(self.buffer[end + 4:end + 4 + length])
            status = bytes(self.buffer[9:12])
            del self.buffer[:end + 4 + length]
            self.waiter.set_result(status + b" " + body)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc or ConnectionError("closed"))


class FloorClient:
    """POSTs JSON over one keep-alive connection per worker; no pooling logic, no header model."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.connections: list[_FloorConnection] = []

    async def post(self, worker: int, path: str, body: Any) -> int:
        while worker >= len(self.connections):
            _, conn = await asyncio.get_running_loop().create_connection(_FloorConnection, "127.0.0.1", self.port)
            self.connections.append(conn)
        conn = self.connections[worker]
        payload = json.dumps(body).encode()
        conn.waiter = asyncio.get_running_loop().create_future()
        assert conn.transport is not None
        conn.transport.write(b"POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (path.encode(), self.port, len(payload), payload))
        answer = await conn.waiter
        return int(answer[:3])

    async def aclose(self) -> None:
        for conn in self.connections:
            assert conn.transport is not None
            conn.transport.close()


# --- the options ----------------------------------------------------------------------------------------------

Post = Callable[[int], Awaitable[int]]


@dataclass(frozen=True)
class Option:
    """One way of sending: a name, what it needs installed, and how to build a poster and close it."""

    name: str
    key: str
    needs: str | None
    make: Callable[[int], tuple[Post, Callable[[], Awaitable[None]]]]


def _httpx_default(port: int) -> tuple[Post, Callable[[], Awaitable[None]]]:
    client = httpx.AsyncClient()
    url = f"http://127.0.0.1:{port}/hook"

    async def post(worker: int) -> int:
        return (await client.post(url, json=BODY)).status_code
    return post, client.aclose


def _tuned(engine: str) -> Callable[[int], tuple[Post, Callable[[], Awaitable[None]]]]:
    def make(port: int) -> tuple[Post, Callable[[], Awaitable[None]]]:
        client = new_client(base_url=f"http://127.0.0.1:{port}", transport=new_transport(engine))

        async def post(worker: int) -> int:
            # Through send(), as connectors will call it: the deadline's cost is part of the figure.
            return (await send(client, "POST", "/hook", json=BODY, deadline=10.0)).status_code
        return post, client.aclose
    return make


def _pyreqwest(port: int) -> tuple[Post, Callable[[], Awaitable[None]]]:
    # Measured, not offered by new_transport: cancelling a request (send's deadline) does not stop reqwest's
    # task, which holds its connection and its pool slot until the server ends the body. Configured so that
    # httpx still decides redirects, proxies and decompression, as with the other engines.
    from pyreqwest.client import ClientBuilder
    from pyreqwest.compatibility.httpx import HttpxTransport

    builder = (ClientBuilder().follow_redirects(False).no_proxy().referer(False)
               .gzip(False).brotli(False).zstd(False).deflate(False).max_connections(100))
    client = new_client(base_url=f"http://127.0.0.1:{port}", transport=HttpxTransport(builder.build()))

    async def post(worker: int) -> int:
        return (await send(client, "POST", "/hook", json=BODY, deadline=10.0)).status_code
    return post, client.aclose


def _floor(port: int) -> tuple[Post, Callable[[], Awaitable[None]]]:
    client = FloorClient(port)

    async def post(worker: int) -> int:
        return await client.post(worker, "/hook", BODY)
    return post, client.aclose


OPTIONS = (
    Option("httpx.AsyncClient() default", "httpx_default", None, _httpx_default),
    Option("new_client, httpx transport", "httpx", None, _tuned("httpx")),
    Option("new_client, pyreqwest", "pyreqwest", "pyreqwest", _pyreqwest),
    Option("floor: raw asyncio client", "floor", None, _floor),
)


@dataclass
class Figures:
    """One option at one concurrency."""

    done: int
    wall_s: float
    cpu_s: float
    connections: int
    capped: bool

    @property
    def rps(self) -> float:
        return self.done / self.wall_s if self.done else 0.0

    @property
    def cpu_us(self) -> float:
        return self.cpu_s / self.done * 1e6 if self.done else float("nan")


async def _drive(post: Post, concurrency: int, count: int, stop_at: float) -> int:
    left = count
    done = 0

    async def worker(index: int) -> None:
        nonlocal left, done
        while left > 0 and time.perf_counter() < stop_at:
            left -= 1
            status = await post(index)
            if status != 200:
                raise RuntimeError(f"server answered {status}")
            done += 1
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return done


async def _measure(option: Option, port: int, accepted: Any, concurrency: int, count: int,
                   deadline: float) -> Figures:
    post, close = option.make(port)
    try:
        # Warm up at the same concurrency: imports, pool filled, first-call caches, as in a running daemon.
        await _drive(post, concurrency, max(WARM_UP, concurrency * 2), deadline)
        before = accepted.value
        stop_at = min(deadline, time.perf_counter() + RUN_CAP_S)
        cpu, wall = time.process_time(), time.perf_counter()
        done = await _drive(post, concurrency, count, stop_at)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        return Figures(done, wall, cpu, accepted.value - before, done < count)
    finally:
        await close()


def _runner(loop: str) -> Callable[[Awaitable[Figures]], Figures]:
    if loop == "uvloop":
        import uvloop
        return lambda coro: uvloop.run(coro)  # type: ignore[arg-type]
    return lambda coro: asyncio.run(coro)  # type: ignore[arg-type]


def _available(option: Option) -> bool:
    if option.needs is None:
        return True
    try:
        __import__(option.needs)
    except ImportError:
        return False
    return True


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=REQUESTS, help="requests per option and concurrency")
    parser.add_argument("--loop", choices=("asyncio", "uvloop", "both"), default="both")
    # run_all.py calls main() with no arguments: its own command line is not ours.
    args = parser.parse_args(argv or [])
    loops: tuple[str, ...] = ("asyncio", "uvloop") if args.loop == "both" else (args.loop,)
    try:
        import uvloop  # noqa: F401
    except ImportError:
        loops = tuple(loop for loop in loops if loop != "uvloop") or ("asyncio",)

    process, port, accepted = start_server()
    deadline = time.perf_counter() + TOTAL_CAP_S
    results: dict[str, float] = {}
    try:
        for loop in loops:
            print(f"{args.requests:,} POSTs of a {len(json.dumps(BODY))}-byte JSON body to 127.0.0.1 "
                  f"(server in its own process), {loop} loop; CPU = this process's time.process_time() / N:")
            header = "".join(f"  | c={c}: req/s  CPU µs/req  conns" for c in CONCURRENCY)
            print(f"  {'option':<30}{header}")
            for option in OPTIONS:
                if not _available(option):
                    print(f"  {option.name:<30}  (not installed: {option.needs})")
                    continue
                cells = []
                for concurrency in CONCURRENCY:
                    if time.perf_counter() >= deadline:
                        cells.append(f"  | {'(over the ' + format(TOTAL_CAP_S, 'g') + ' s cap)':>31}")
                        continue
                    figures = _runner(loop)(_measure(option, port, accepted, concurrency, args.requests, deadline))
                    mark = "*" if figures.capped else " "
                    cells.append(f"  | {figures.rps:>11,.0f}{mark} {figures.cpu_us:>11,.0f}  {figures.connections:>5}")
                    results[f"http_{loop}_{option.key}_c{concurrency}_cpu_us"] = figures.cpu_us
                print(f"  {option.name:<30}{''.join(cells)}")
            print()
        print("  conns = connections the server accepted during the measured requests (0 = all reused); "
              f"* = stopped by the {RUN_CAP_S:g} s cap")
    finally:
        process.kill()
        process.join(5)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
