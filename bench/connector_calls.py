"""Benchmark: CPU per effect of every connector, against its emulator and without the network.

1. emulators: each connector performs N effects at concurrency 16 (`await connector.perform(action, params,
   key)`, unique keys) against its emulator served by uvicorn in another process (rate limits off, state
   seeded), built as the daemon builds it; effects/s and this process's CPU (time.process_time) per effect,
   on each HTTP engine of automator.http, side by side in rounds, medians.
2. canned: the same performs on a transport that answers each request at once with a body recorded from the
   emulator; CPU per effect split into httpx.AsyncClient's handling (bare `client.request(...)` of the same
   requests on the same transport), automator.http's send() + call_http, and the connector's own code (the
   rest). The issue's target for the connector layer: CPU_TARGET_US per effect.
3. per request: ways to send one request through httpx on the canned transport (the client's cost), and
   send() on each engine against a minimal keep-alive server in another process (the engine's cost).

Client-side pacing is kept but cannot make anyone wait (YCLIENTS' per-IP Pace, amoCRM's Pacer: limits
raised), so that the code runs and the figures are CPU, not sleeps; SMS.ru sends in test mode (its emulator's
anti-flood checks scan every message sent); the Bitrix24 and SMSC emulators forget old deals and requests,
whose lookups are linear. `--quick`: 200 effects per connector instead of 2,000.
"""
from __future__ import annotations

import sys
from pathlib import Path

import argparse
import asyncio
import json
import multiprocessing
import socket
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl

import httpx


EFFECTS = 2000
QUICK_EFFECTS = 200
CONCURRENCY = 16
ROUNDS = 3  # each figure is the median of this many rounds; engines take turns within a round
WARM_UP = 48  # effects per connector and engine before measuring: pools filled, first-call caches warm
CPU_TARGET_US = 150.0  # the issue's target: CPU of the connector layer per effect
RUN_CAP_S = 8.0  # one round of one connector on one engine stops after this, whatever it has done
TOTAL_CAP_S = 110.0  # the whole benchmark: later measurements are skipped past it
SERVER_LIFETIME_S = TOTAL_CAP_S + 60  # an emulator process stops by itself even if this one is killed
MICRO_REQUESTS = 3000  # part 3: requests per way of sending
DEALS_KEPT = 64  # the Bitrix24 emulator keeps this many deals made by deal.create (its ORIGIN_ID lookup is linear)

COMPANY, CODE, TOKEN, SECRET = 307626, "s3cr3tc0de42", "jvh9y1ulvt2m6k5or90v9mg8nn32ozas", "hook-secret-1"
TG_TOKEN, TG_CHAT = "123456789:AAEbench-token-for-the-emulator-abc", 222000000
SMS_LOGIN, SMS_PSW, SMSRU_ID = "bench", "bench-password", "00000000-0000-0000-0000-00000000bench"
PHONE = "+79161234567"


# --- the connectors and their emulators ----------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    """One action of one connector: how to seed its emulator, build the connector and make each effect's params."""

    system: str
    action: str
    # In the emulator's process (or in-process, to record answers): the ASGI app and what the params need.
    emulator: Callable[[], tuple[Any, dict[str, Any]]]
    # (base URL, transport or None for the daemon's own way) → the connector.
    connector: Callable[[str, Any], Any]
    # (worker, flip, info, n) → params; `flip` alternates per worker, so each effect changes something.
    params: Callable[[int, bool, dict[str, Any], int], dict[str, Any]]

    @property
    def name(self) -> str:
        return f"{self.system} {self.action}"


def _build(cls: Any, name: str, options: dict[str, Any], transport: Any) -> Any:
    """As the daemon does (`create`, then the pipelines it owns), or with an injected transport."""
    if transport is None:
        return cls.create(name, options, db=None, now=lambda: datetime.now(timezone.utc))
    return cls(name, options, transport=transport)


def _bitrix_pipelines() -> dict[str, Any]:
    from automator.model import Pipeline, Stage

    return {"rehabilitation": Pipeline("rehabilitation", "crm", "4", {
        "new": Stage("new", "C4:NEW"), "thinking": Stage("thinking", "C4:PREPARATION"),
        "booked": Stage("booked", "C4:UC_BOOKED"), "won": Stage("won", "C4:WON", outcome="won")})}


def _bitrix_emulator(create: bool) -> Callable[[], tuple[Any, dict[str, Any]]]:
    def make() -> tuple[Any, dict[str, Any]]:
        from automator_connectors.bitrix24.emulator import Bitrix24Emulator

        emulator = Bitrix24Emulator(code=CODE, application_token=TOKEN, limits=False)
        deals = [str(emulator.portal.deal_add({"fields": {"TITLE": f"bench {w}", "CATEGORY_ID": 4,
                                                          "STAGE_ID": "C4:NEW"}})) for w in range(CONCURRENCY)]
        if create:
            add = emulator.methods["crm.deal.add"]
            keep = set(int(d) for d in deals)

            def add_and_forget(params: Any) -> Any:
                made = add(params)
                extra = [d for d in emulator.portal.deals if d not in keep]
                for old in extra[:-DEALS_KEPT] if len(extra) > DEALS_KEPT else ():
                    del emulator.portal.deals[old]
                return made
            emulator.methods["crm.deal.add"] = add_and_forget
        return emulator, {"deals": deals}
    return make


def _bitrix(url: str, transport: Any) -> Any:
    from automator_connectors.bitrix24 import Bitrix24

    made = _build(Bitrix24, "crm", {"webhook_url": f"{url}/rest/1/{CODE}/", "application_token": TOKEN,
                                    "roles": {"admin": "6"}}, transport)
    made.pipelines = _bitrix_pipelines()
    return made


def _yclients_emulator() -> tuple[Any, dict[str, Any]]:
    from automator_connectors.yclients.emulator import YclientsEmulator

    emulator = YclientsEmulator(company_id=COMPANY, partner_token="partner", user_token="user", limits=False)
    master = emulator.add_staff("Ирина", "Косметолог")
    service = emulator.add_service("Стрижка", 4000)
    records = [str(emulator.make_record({"staff_id": master["id"], "services": [{"id": service["id"]}],
                                         "datetime": "2026-03-02T15:00:00+03:00", "seance_length": 3600,
                                         "client": {"phone": f"7916123{w:04d}", "name": f"Клиент {w}"}},
                                        notify=False)["id"]) for w in range(CONCURRENCY)]
    return emulator, {"records": records}


def _yclients(url: str, transport: Any) -> Any:
    from automator_connectors.yclients import Yclients
    from automator_connectors.yclients import api

    # The per-IP pace (5 requests a second, 200 a minute) still counts every request, but never waits.
    api.LIMITS = ((10**9, 1.05), (10**9, 60.5))
    return _build(Yclients, "yc", {"company_id": COMPANY, "partner_token": "partner", "user_token": "user",
                                   "hook_secret": SECRET, "base_url": f"{url}/api/v1"}, transport)


def _amocrm_emulator() -> tuple[Any, dict[str, Any]]:
    from automator_connectors.amocrm import AmocrmEmulator

    emulator = AmocrmEmulator(token=TOKEN, subdomain="example", limits=False)
    leads = [str(emulator.records.add_lead({"name": f"bench {w}", "pipeline_id": 6950551,
                                            "status_id": 58141807})["id"]) for w in range(CONCURRENCY)]
    return emulator, {"leads": leads}


def _amocrm(url: str, transport: Any) -> Any:
    from automator.model import Pipeline, Stage
    from automator_connectors.amocrm import Amocrm
    from automator_connectors.amocrm.api import Pacer

    made = _build(Amocrm, "crm", {"base_url": url, "subdomain": "example", "token": TOKEN, "hook_secret": SECRET},
                  transport)
    made.api.pacer = Pacer(per_second=10**9)  # counts and locks as always, never waits
    made.pipelines = {"sales": Pipeline("sales", "crm", "6950551", {
        "new": Stage("new", "58141807"), "talks": Stage("talks", "58141811"),
        "won": Stage("won", "142", outcome="won"), "lost": Stage("lost", "143", outcome="lost")})}
    return made


class _SmscEmulator:
    """Made on first use: the SMSC emulator, forgetting all but the last requests for its identical-request check
    (a list it filters on every send)."""

    @staticmethod
    def make() -> tuple[Any, dict[str, Any]]:
        from automator_connectors.smsc.emulator import SmscEmulator

        class Bounded(SmscEmulator):
            async def send(self, call: Any) -> Any:
                del self._recent[:-64]
                return await super().send(call)
        return Bounded(login=SMS_LOGIN, psw=SMS_PSW, balance=1e12, limits=False), {}


def _smsru_emulator() -> tuple[Any, dict[str, Any]]:
    from automator_connectors.smsru.emulator import SmsruEmulator

    return SmsruEmulator(api_id=SMSRU_ID, balance=1e12, limits=False), {}


def _smsru(url: str, transport: Any) -> Any:
    from automator_connectors.smsru import Smsru

    return _build(Smsru, "sms", {"api_id": SMSRU_ID, "base_url": url, "test": True}, transport)


def _smsc(url: str, transport: Any) -> Any:
    from automator_connectors.smsc import Smsc

    return _build(Smsc, "sms", {"login": SMS_LOGIN, "psw": SMS_PSW, "base_url": url}, transport)


def _telegram_emulator() -> tuple[Any, dict[str, Any]]:
    from automator_connectors.telegram.emulator import TelegramEmulator

    return TelegramEmulator(token=TG_TOKEN, chats=[TG_CHAT + w for w in range(CONCURRENCY)], limits=False), {}


def _telegram(url: str, transport: Any) -> Any:
    from automator_connectors.telegram import Telegram

    return _build(Telegram, "tg", {"token": TG_TOKEN, "base_url": url}, transport)


HOOK_BODY = {"event": "booking.updated", "entity": {"kind": "booking", "id": "1"}, "data": {"status": "arrived"}}


async def _ok_app(scope: Any, receive: Any, send: Any) -> None:
    """What bench/http_client.py's minimal server answers, as an ASGI app (for recording the canned answer)."""
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"ok":true}'})


def _http(url: str, transport: Any) -> Any:
    from automator_connectors.http import HttpConnector

    return _build(HttpConnector, "api", {"allow": ["127.0.0.1"]}, transport)


def _sms_text(n: int) -> str:
    return f"Анна, напоминаем: завтра в 15:00 приём у косметолога. Ждём вас! #{n}"


CASES = (
    Case("bitrix24", "deal.move", _bitrix_emulator(False), _bitrix,
         lambda w, flip, info, n: {"deal": info["deals"][w], "pipeline": "rehabilitation",
                                   "stage": "thinking" if flip else "new"}),
    Case("bitrix24", "deal.create", _bitrix_emulator(True), _bitrix,
         lambda w, flip, info, n: {"pipeline": "rehabilitation", "stage": "new", "title": f"Повторный визит #{n}",
                                   "contact": "77", "amount": 1500}),
    Case("yclients", "booking.set_status", _yclients_emulator, _yclients,
         lambda w, flip, info, n: {"booking": info["records"][w], "status": "confirmed" if flip else "arrived"}),
    Case("amocrm", "deal.move", _amocrm_emulator, _amocrm,
         lambda w, flip, info, n: {"deal": info["leads"][w], "pipeline": "sales", "stage": "talks" if flip else "new"}),
    Case("smsru", "sms.send", _smsru_emulator, _smsru, lambda w, flip, info, n: {"to": PHONE, "text": _sms_text(n)}),
    Case("smsc", "sms.send", _SmscEmulator.make, _smsc, lambda w, flip, info, n: {"to": PHONE, "text": _sms_text(n)}),
    Case("telegram", "message.send", _telegram_emulator, _telegram,
         lambda w, flip, info, n: {"to": TG_CHAT + w, "text": f"Запись на завтра, 15:00, подтверждена. #{n}"}),
    Case("http", "http.request", lambda: (_ok_app, {}), _http,
         lambda w, flip, info, n: {"url": f"{info['url']}/hook", "method": "POST", "json": {**HOOK_BODY, "n": n}}),
)


# --- emulators in their own processes ------------------------------------------------------------------------

def _serve_emulator(index: int, out: Any) -> None:
    """The child: one case's seeded emulator on uvicorn (httptools, uvloop where installed), for a bounded time."""
    import uvicorn

    app, info = CASES[index].emulator()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP_NODELAY: see Served
    sock.bind(("127.0.0.1", 0))
    try:
        import httptools  # noqa: F401
        http = "httptools"
    except ImportError:
        http = "h11"
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="off", http=http))

    async def main() -> None:
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            await asyncio.sleep(0.01)
        out.send((sock.getsockname()[1], info))
        out.close()
        await asyncio.wait([task], timeout=SERVER_LIFETIME_S)
        server.should_exit = True
        await task
    _run(main())


def _run(coro: Awaitable[Any]) -> Any:
    try:
        import uvloop  # the daemon's loop
    except ImportError:
        return asyncio.run(coro)  # type: ignore[arg-type]
    return uvloop.run(coro)  # type: ignore[arg-type]


class Served:
    """An emulator in a child process: its URL and what its seeding made. Started before any event loop runs
    here (a fork of a process inside a running loop would copy the loop)."""

    def __init__(self, index: int) -> None:
        context: Any = multiprocessing.get_context("fork" if sys.platform != "win32" else "spawn")
        if CASES[index].system == "http":  # bench/http_client.py's minimal server: the outside end of http.request
            from http_client import start_server

            self.process, port, _ = start_server()
            self.info: dict[str, Any] = {}
        else:
            parent, child = context.Pipe(duplex=False)
            self.process = context.Process(target=_serve_emulator, args=(index, child), daemon=True)
            self.process.start()
            if not parent.poll(15):
                self.process.kill()
                raise RuntimeError(f"the {CASES[index].system} emulator did not start")
            port, self.info = parent.recv()
        self.url = f"http://127.0.0.1:{port}"
        self.info = {**self.info, "url": self.url}

    def close(self) -> None:
        self.process.kill()
        self.process.join(5)


# --- driving performs ----------------------------------------------------------------------------------------

@dataclass
class Drive:
    """What one batch of performs did."""

    done: int
    wall_s: float
    cpu_s: float
    capped: bool = False

    @property
    def eps(self) -> float:
        return self.done / self.wall_s if self.done else 0.0

    @property
    def cpu_us(self) -> float:
        return self.cpu_s / self.done * 1e6 if self.done else float("nan")


@dataclass
class Flips:
    """Per worker: which of two targets comes next, so that every effect changes the emulated state."""

    state: list[bool] = field(default_factory=lambda: [True] * CONCURRENCY)
    serial: int = 0


async def perform_many(case: Case, connector: Any, info: dict[str, Any], flips: Flips, count: int,
                       stop_at: float, tag: str) -> Drive:
    """`count` performs at CONCURRENCY, each with its own key; the first error stops the benchmark."""
    left = count
    done = 0

    async def worker(w: int) -> None:
        nonlocal left, done
        while left > 0 and time.perf_counter() < stop_at:
            left -= 1
            flips.serial += 1
            flip = flips.state[w]
            flips.state[w] = not flip
            n = flips.serial
            params = case.params(w, flip, info, n)
            result = connector.perform(case.action, params, f"bench/{tag}/{n}")
            if asyncio.iscoroutine(result):
                result = await result
            done += 1

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(CONCURRENCY)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return Drive(done, wall, cpu, done < count)


def _median(drives: list[Drive], what: str) -> float:
    values = [getattr(d, what) for d in drives if d.done]
    return statistics.median(values) if values else float("nan")


def _engines() -> list[str]:
    from automator import http

    installed = []
    for engine in http.ENGINES:
        transport = http.new_transport(engine)
        # An engine whose optional packages are missing falls back to httpx's own: measured once, as httpx.
        if engine == "httpx" or type(transport) is not httpx.AsyncHTTPTransport:
            installed.append(engine)
    return installed


# --- part 1: against the emulators ---------------------------------------------------------------------------

async def part_emulators(servers: list[Served], effects: int, deadline: float
                         ) -> tuple[list[str], dict[str, dict[str, list[Drive]]]]:
    from automator.http import default_engine, new_transport

    engines = _engines()
    default = default_engine()
    engines.sort(key=lambda e: e != default)  # the daemon's engine first
    per_round = max(1, effects // ROUNDS)
    results: dict[str, dict[str, list[Drive]]] = {}
    for case, served in zip(CASES, servers):
        if time.perf_counter() >= deadline:
            break
        made: dict[str, Any] = {}
        try:
            flips = Flips()
            for engine in engines:
                # The default engine as the daemon gets it (no transport given); the others injected.
                made[engine] = case.connector(served.url, None if engine == default else new_transport(engine))
                await perform_many(case, made[engine], served.info, flips, WARM_UP, deadline, f"warm/{engine}")
            results[case.name] = {engine: [] for engine in engines}
            for round_ in range(ROUNDS):
                order = engines[round_ % len(engines):] + engines[:round_ % len(engines)]
                for engine in order:
                    if time.perf_counter() >= deadline:
                        break
                    stop_at = min(deadline, time.perf_counter() + RUN_CAP_S)
                    drive = await perform_many(case, made[engine], served.info, flips, per_round, stop_at,
                                               f"{engine}/{round_}")
                    results[case.name][engine].append(drive)
        finally:
            for connector in made.values():
                await connector.aclose()
    return engines, results


def report_emulators(engines: list[str], results: dict[str, dict[str, list[Drive]]], effects: int
                     ) -> dict[str, float]:
    figures: dict[str, float] = {}
    print(f"1. Against each emulator (uvicorn in its own process, limits off): {effects:,} effects per connector "
          f"and engine in {ROUNDS} rounds, concurrency {CONCURRENCY}; medians of the rounds.")
    print(f"   CPU = this process's time.process_time() per effect; '{engines[0]}' is the daemon's default engine.")
    head = "".join(f" | {e + ': eff/s':>14} {'CPU µs':>7}" for e in engines)
    ratios = "".join(f" | {e + '/' + engines[0]:>12}" for e in engines[1:])
    print(f"   {'connector action':<30}{head}{ratios}")
    for name, by_engine in results.items():
        cells, cpu = [], {}
        for engine in engines:
            drives = by_engine.get(engine) or []
            eps, cpu[engine] = _median(drives, "eps"), _median(drives, "cpu_us")
            mark = "*" if any(d.capped for d in drives) else " "
            cells.append(f" | {eps:>13,.0f}{mark} {cpu[engine]:>7,.0f}")
            key = name.replace(" ", "_").replace(".", "_")
            figures[f"conn_{key}_{engine}_eps"] = eps
            figures[f"conn_{key}_{engine}_cpu_us"] = cpu[engine]
        cells += [f" | {cpu[e] / cpu[engines[0]]:>11.2f}x" for e in engines[1:]]
        print(f"   {name:<30}{''.join(cells)}")
    print(f"   ratios: CPU per effect relative to {engines[0]} (lower is cheaper); * = a round stopped by the "
          f"{RUN_CAP_S:g} s cap")
    print()
    return figures


# --- part 2: canned answers, no network ----------------------------------------------------------------------

@dataclass(frozen=True)
class Recorded:
    """One request a perform made, and the emulator's answer to it."""

    method: str
    url: str
    kind: str  # "json", "form" or "" (the body the connector gave httpx)
    body: bytes
    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    answer: bytes


class Recorder(httpx.AsyncBaseTransport):
    """Passes each request to the emulator in-process and keeps request and answer."""

    def __init__(self, app: Any) -> None:
        self.inner = httpx.ASGITransport(app=app)
        self.seen: list[Recorded] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        answer = await response.aread()
        kind = request.headers.get("content-type", "")
        kind = "" if not request.content else "json" if "json" in kind else "form" if "form-urlencoded" in kind else ""
        headers = tuple((k, v) for k, v in response.headers.raw if k.lower() != b"content-length")
        self.seen.append(Recorded(request.method, str(request.url), kind, request.content, response.status_code,
                                  headers + ((b"content-length", str(len(answer)).encode()),), answer))
        return httpx.Response(response.status_code, headers=response.headers.raw, content=answer)


class Canned(httpx.AsyncBaseTransport):
    """Answers every request at once with the recorded answer to the same method and URL (path and query)."""

    def __init__(self, recorded: list[Recorded]) -> None:
        self.answers = {(r.method, httpx.URL(r.url).raw_path): (r.status, list(r.headers), r.answer)
                        for r in recorded}
        self.count = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.count += 1
        status, headers, body = self.answers[(request.method, request.url.raw_path)]
        return httpx.Response(status, headers=headers, content=body)


def _relative(url: str, base: str) -> str:
    return url[len(base):] if base and url.startswith(base) else url


def _kwargs(r: Recorded) -> dict[str, Any]:
    if r.kind == "json":
        return {"json": json.loads(r.body)}
    if r.kind == "form":
        return {"data": dict(parse_qsl(r.body.decode(), keep_blank_values=True))}
    return {"content": r.body} if r.body else {}


@dataclass
class CannedFigures:
    """Part 2 for one connector action: medians of the rounds, µs of CPU per effect."""

    requests: float
    total: float
    httpx_us: float  # the same requests through a bare client.request(): a reference, not a part of `total`
    send_us: float  # the same requests through automator.http.send() and call_http, as connectors make them

    @property
    def own(self) -> float:
        return self.total - self.send_us


async def _loop_cpu(call: Callable[[], Awaitable[Any]], count: int, stop_at: float) -> float:
    """CPU µs per call of `call()` (awaited one after another), the median of ROUNDS rounds."""
    rounds = []
    for _ in range(ROUNDS):
        start, done = time.process_time(), 0
        for _ in range(max(1, count // ROUNDS)):
            await call()
            done += 1
            if time.perf_counter() >= stop_at:
                break
        rounds.append((time.process_time() - start) / done * 1e6)
    return statistics.median(rounds)


async def record(case: Case) -> tuple[list[Recorded], dict[str, Any]]:
    """The requests of one perform against the emulator in-process, with its answers."""
    app, info = case.emulator()
    info = {**info, "url": "http://127.0.0.1:9"}
    recorder = Recorder(app)
    connector = case.connector("http://127.0.0.1:9", recorder)
    try:
        result = connector.perform(case.action, case.params(0, True, info, 0), "bench/record")
        if asyncio.iscoroutine(result):
            await result
    finally:
        await connector.aclose()
    return recorder.seen, info


async def part_canned(effects: int, deadline: float) -> dict[str, CannedFigures]:
    from automator.connector import call_http
    from automator.http import new_client, send

    out: dict[str, CannedFigures] = {}
    for case in CASES:
        if time.perf_counter() >= deadline:
            break
        recorded, info = await record(case)
        params = case.params(0, True, info, 0)  # the recorded effect, again and again (new keys)
        canned = Canned(recorded)
        connector = case.connector(info["url"], canned)
        rounds: list[float] = []
        try:
            for round_ in range(ROUNDS + 1):  # the first round warms up
                count = WARM_UP if round_ == 0 else max(1, effects // ROUNDS)
                before = canned.count
                start = time.process_time()
                for n in range(count):
                    result = connector.perform(case.action, params, f"bench/canned/{round_}/{n}")
                    if asyncio.iscoroutine(result):
                        await result
                if round_:
                    rounds.append((time.process_time() - start) / count * 1e6)
                requests = (canned.count - before) / count
            base = str(connector.http.base_url) if str(connector.http.base_url) not in ("", "/") else ""
            headers = connector.default_headers()
            deadline_s = connector.deadline
        finally:
            await connector.aclose()

        # The same requests, bare: httpx alone, then through automator.http's send() and call_http.
        client = new_client(base_url=base, transport=canned, headers=headers, timeout=deadline_s)
        calls = [(r.method, _relative(r.url, base), _kwargs(r)) for r in recorded]

        async def bare() -> None:
            for method, url, kwargs in calls:
                await client.request(method, url, **kwargs)

        async def wrapped() -> None:
            for method, url, kwargs in calls:
                await call_http(send(client, method, url, deadline=deadline_s, **kwargs), "bench")

        try:
            await _loop_cpu(bare, WARM_UP, deadline)
            httpx_us = await _loop_cpu(bare, effects, deadline)
            wrapped_us = await _loop_cpu(wrapped, effects, deadline)
        finally:
            await client.aclose()
        out[case.name] = CannedFigures(requests, statistics.median(rounds), httpx_us, wrapped_us)
    return out


def report_canned(figures: dict[str, CannedFigures], effects: int) -> dict[str, float]:
    out: dict[str, float] = {}
    print(f"2. The connector layer alone: the same performs on a transport answering at once with the emulator's "
          f"recorded answer ({effects:,} effects, medians of {ROUNDS} rounds); CPU µs per effect.")
    print("   HTTP = the same requests through automator.http.send() + call_http, as connectors make them (the canned "
          "transport's own ~10 µs a request included); own = the rest, the connector's code; client.request() = the "
          "same requests through a bare httpx client, for reference.")
    print(f"   {'connector action':<30} | {'req/eff':>7} | {'total':>6} | {'HTTP':>6} | {'own':>6} | {'target':>9} | "
          f"{'client.request()':>16}")
    for name, f in figures.items():
        verdict = "ok" if f.total <= CPU_TARGET_US else "over"
        print(f"   {name:<30} | {f.requests:>7.1f} | {f.total:>6.0f} | {f.send_us:>6.0f} | {f.own:>6.0f} | "
              f"{CPU_TARGET_US:>4.0f} {verdict:<4} | {f.httpx_us:>16.0f}")
        key = name.replace(" ", "_").replace(".", "_")
        out.update({f"canned_{key}_cpu_us": f.total, f"canned_{key}_http_us": f.send_us,
                    f"canned_{key}_own_us": f.own, f"canned_{key}_bare_httpx_us": f.httpx_us})
    print(f"   target: under {CPU_TARGET_US:.0f} µs of CPU per effect for the connector layer (the issue).")
    print()
    return out


# --- part 3: one request, the client's way and the engine's ----------------------------------------------------

async def part_requests(port: int, count: int, deadline: float
                        ) -> tuple[list[tuple[str, str, float]], list[tuple[str, str, float]]]:
    """CPU µs per request: ways of sending through httpx on a transport that answers at once; send() on each
    engine at CONCURRENCY over loopback against bench/http_client.py's minimal server, and its raw floor."""
    from http_client import BODY, FloorClient

    from automator.http import new_client, new_transport, send

    answer = [(b"content-type", b"application/json"), (b"content-length", b"11")]

    class Instant(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            return httpx.Response(200, headers=answer, content=b'{"ok":true}')

    transport = Instant()
    client = new_client(base_url="https://portal.example.invalid/rest/1/code/", transport=transport,
                        headers={"Accept": "application/json"})
    prebuilt = client.build_request("POST", "crm.deal.update", json=BODY)

    async def transport_alone() -> None:
        await (await transport.handle_async_request(prebuilt)).aread()

    ways: list[tuple[str, str, Callable[[], Awaitable[Any]]]] = [
        ("send", "send(), as connectors call it",
         lambda: send(client, "POST", "crm.deal.update", json=BODY, deadline=10)),
        ("post", "client.post(relative URL, json=)", lambda: client.post("crm.deal.update", json=BODY)),
        ("send_prebuilt", "client.send(prebuilt Request)", lambda: client.send(prebuilt)),
        ("transport", "the instant transport alone", transport_alone),
    ]
    canned: list[tuple[str, str, float]] = []
    for key, label, way in ways:
        if time.perf_counter() >= deadline:
            break
        await _loop_cpu(way, WARM_UP * 4, deadline)
        canned.append((key, label, await _loop_cpu(way, count, deadline)))
    await client.aclose()

    posters: dict[tuple[str, str], tuple[Callable[[int], Awaitable[Any]], Callable[[], Awaitable[None]]]] = {}
    for engine in _engines():
        made = new_client(base_url=f"http://127.0.0.1:{port}", transport=new_transport(engine))

        async def post(worker: int, made: httpx.AsyncClient = made) -> Any:
            return await send(made, "POST", "/hook", json=BODY, deadline=10)
        posters[(engine, f"send() on {engine}")] = (post, made.aclose)
    raw = FloorClient(port)
    posters[("floor", "floor: raw asyncio client")] = (lambda worker: raw.post(worker, "/hook", BODY), raw.aclose)
    samples: dict[tuple[str, str], list[float]] = {key: [] for key in posters}
    try:
        for round_ in range(ROUNDS + 1):  # the first round warms up; the ways take turns
            for key, (post, _) in posters.items():
                if time.perf_counter() >= deadline:
                    break
                per_round = WARM_UP * 2 if round_ == 0 else max(1, count // ROUNDS)
                left = per_round

                async def worker(w: int, post: Callable[[int], Awaitable[Any]] = post) -> None:
                    nonlocal left
                    while left > 0:
                        left -= 1
                        await post(w)
                start = time.process_time()
                await asyncio.gather(*(worker(w) for w in range(CONCURRENCY)))
                if round_:
                    samples[key].append((time.process_time() - start) / per_round * 1e6)
    finally:
        for _, close in posters.values():
            await close()
    return canned, [(key, label, statistics.median(v)) for (key, label), v in samples.items() if v]


def report_requests(canned: list[tuple[str, str, float]], engines: list[tuple[str, str, float]], count: int
                    ) -> dict[str, float]:
    print(f"3. One POST with a JSON body, CPU µs per request ({count:,} requests, medians of {ROUNDS} rounds).")
    print("   a) through httpx on a transport that answers at once (what the client machinery costs):")
    for _, label, value in canned:
        print(f"      {label:<40} {value:>7.1f}")
    print(f"   b) send() on each engine against a minimal keep-alive server in its own process, {CONCURRENCY} in "
          "flight (what the engine adds):")
    for _, label, value in engines:
        print(f"      {label:<40} {value:>7.1f}")
    print()
    return {**{f"req_instant_{key}_cpu_us": v for key, _, v in canned},
            **{f"req_loopback_{key}_cpu_us": v for key, _, v in engines}}


# --- main -----------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_EFFECTS} effects per connector, not {EFFECTS}")
    parser.add_argument("--effects", type=int, help="effects per connector and engine")
    # run_all.py calls main() with its own flags only: ours.
    args = parser.parse_args(argv or [])
    effects = args.effects or (QUICK_EFFECTS if args.quick else EFFECTS)
    started = time.perf_counter()
    import uvicorn  # noqa: F401 - once here, not in every emulator's process

    servers = [Served(index) for index in range(len(CASES))]
    deadline = time.perf_counter() + TOTAL_CAP_S
    print(f"   ({len(servers)} emulator processes started in {time.perf_counter() - started:.1f} s)")

    async def run() -> dict[str, float]:
        figures: dict[str, float] = {}
        engines, results = await part_emulators(servers, effects, deadline)
        figures.update(report_emulators(engines, results, effects))
        figures.update(report_canned(await part_canned(effects, deadline), effects))
        requests = min(MICRO_REQUESTS, effects * 3)
        port = int(next(s for c, s in zip(CASES, servers) if c.system == "http").url.rsplit(":", 1)[1])
        canned, by_engine = await part_requests(port, requests, deadline)
        figures.update(report_requests(canned, by_engine, requests))
        return figures

    try:
        figures = _run(run())
    finally:
        for served in servers:
            served.close()
    missing = [c.name for c in CASES if f"canned_{c.name.replace(' ', '_').replace('.', '_')}_cpu_us" not in figures]
    if missing:
        print(f"   past the {TOTAL_CAP_S:g} s cap, not measured: {', '.join(missing)}")
    print(f"   ({time.perf_counter() - started:.0f} s in all{', --quick' if args.quick else ''})")
    return figures


if __name__ == "__main__":
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.append(here)  # bench/http_client.py
    main(sys.argv[1:])
