"""The floor the daemon's webhook path is compared with: uvicorn (httptools, uvloop) and a raw ASGI app, in the
daemon's style, that journals each webhook's event into SQLite (WAL) and answers once it is committed.

  --mode normal   synchronous=NORMAL, one transaction per request, committed inline on the event loop
  --mode group    synchronous=FULL, group commit: one writer thread, every request that arrived while the
                  previous batch was being written goes into the next transaction (one fsync for the lot)

Run by bench/daemon_throughput.py as `python bench/_bare_asgi.py --port P --db FILE --mode M`.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

import uvicorn

SCHEMA = ("create table if not exists journal (seq integer primary key, id text not null unique, key text, "
          "type text, body text, status text, received_at text)")
INSERT = "insert or ignore into journal (id, key, type, body, status, received_at) values (?, ?, ?, ?, 'pending', ?)"


def connect(path: str, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute(SCHEMA)
    return conn


def row(body: bytes) -> list[Any]:
    event = json.loads(body)
    entity = event.get("entity") or {}
    return [hashlib.sha256(body).hexdigest()[:20], f"{entity.get('kind')}:{entity.get('id')}", event.get("event"),
            body.decode(), datetime.now(timezone.utc).isoformat()]


class App:
    def __init__(self, path: str, mode: str) -> None:
        self.mode = mode
        self.conn = connect(path, "NORMAL" if mode == "normal" else "FULL")
        self.writer = ThreadPoolExecutor(1)
        self.pending: list[tuple[list[Any], asyncio.Future[None]]] = []
        self.flushing = False

    def write(self, rows: list[list[Any]]) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.executemany(INSERT, rows)
        self.conn.execute("COMMIT")

    async def flush(self) -> None:
        loop = asyncio.get_running_loop()
        self.flushing = True
        try:
            while self.pending:
                batch, self.pending = self.pending, []
                await loop.run_in_executor(self.writer, self.write, [r for r, _ in batch])
                for _, future in batch:
                    future.set_result(None)
        finally:
            self.flushing = False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/healthz":
            await self.answer(send, 200, b'{"status":"ok"}')
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        record = row(b"".join(chunks))
        if self.mode == "normal":
            self.write([record])
        else:
            future = asyncio.get_running_loop().create_future()
            self.pending.append((record, future))
            if not self.flushing:
                asyncio.ensure_future(self.flush())
            await future
        await self.answer(send, 200, b'{"accepted":1,"duplicates":0}')

    @staticmethod
    async def answer(send: Any, status: int, data: bytes) -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(data))]})
        await send({"type": "http.response.body", "body": data})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--mode", choices=("normal", "group"), required=True)
    args = parser.parse_args()
    config = uvicorn.Config(App(args.db, args.mode), host="127.0.0.1", port=args.port, lifespan="off",
                            log_config=None, access_log=False, http="httptools", loop="uvloop")
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
