"""A faithful SMSC on 127.0.0.1: /sys/send.php, /sys/status.php, /sys/balance.php with SMSC's errors (§4.2).

Every answer is HTTP 200: `{"id", "cnt"[, "cost", "balance"][, "phones"]}` or `{"error", "error_code"[, "id"]}`
(`id` for errors 3, 6, 7, 8, as SMSC's docs show). Without `charset=utf-8` the form is read as windows-1251,
as SMSC does, so a connector forgetting it stores mojibake. It keeps the messages sent (per phone: text,
parts, sender, status) and the balance; refuses an identical send within a minute (9) and more than five
identical cost requests a minute (9); blocks the caller (4) for 30 minutes after 5 failed logins in 30
minutes and for 10 after 100 failed requests in a row within 10 minutes (SMSC's FAQ). `cost=1` prices
without sending (SMSC's way to try a message). Knobs in `faults.extra`: `{"error": 3}` (or `{"error":
{"code": 4, "count": 2}}`) answers the next sends with that error. Control routes: GET /_emulator/messages
[?phone=7…], POST /_emulator/settings {balance, senders, undeliverable, forbidden}, POST /_emulator/deliver
{id, phone, status}.
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl

import phonenumbers

from automator.emulator import Call, Emulator, Reply, route
from ..sms import segments

SANDBOX_LOGIN = "sandbox"
SANDBOX_PSW = "sandbox-password"
SANDBOX_APIKEY = "sandbox-apikey"
PRICE_PER_PART = 3.5  # roubles; (assume) as in the reference's sample answer
MAX_LENGTH = 1000

# (assume) the `error` words; only "authorise error" and "ip is blocked" are quoted by the sources.
ERRORS = {1: "parameters error", 2: "authorise error", 3: "no money", 4: "ip is blocked",
          5: "invalid date format", 6: "message is denied", 7: "invalid phone number",
          8: "message can't be delivered", 9: "duplicate request, wait a minute"}
WITH_ID = frozenset({3, 6, 7, 8})
TIME_FORMATS = (r"\d{10}", r"\d{2}\.\d{2}\.\d{2} \d{2}:\d{2}", r"0\d+", r"\+\d+", r"\d{1,2}-\d{1,2}")


class SmscEmulator(Emulator):
    """SMSC: one account (login/psw and an API key), its approved senders, balance and messages."""

    system = "smsc"

    def __init__(self, *, login: str = SANDBOX_LOGIN, psw: str = SANDBOX_PSW, apikey: str | None = SANDBOX_APIKEY,
                 balance: float = 1000.0, senders: Iterable[str] = (), price: float = PRICE_PER_PART,
                 now: Callable[[], float] = time.time, hook_url: str | None = None, limits: bool = True,
                 transport: Any = None) -> None:
        super().__init__(hook_url=hook_url, limits=limits, transport=transport)
        self.login, self.psw, self.apikey = login, psw, apikey
        self.balance = float(balance)
        self.senders = set(senders)
        self.price = price
        self.now = now
        self.messages: list[dict[str, Any]] = []
        self.undeliverable: set[str] = set()
        self.forbidden: set[str] = set()  # words that make a text forbidden (6)
        self.blocked_until = 0.0
        self._auth_failures: list[float] = []
        self._failed_in_row: list[float] = []
        self._recent: list[tuple[float, tuple[str, ...]]] = []  # identical-request detection
        self._seq = 0

    def state(self) -> dict[str, Any]:
        """Balance, senders, the block and the messages grouped by phone."""
        by_phone: dict[str, list[dict[str, Any]]] = {}
        for message in self.messages:
            by_phone.setdefault(message["phone"], []).append(message)
        return {"balance": round(self.balance, 2), "senders": sorted(self.senders),
                "blocked": self.blocked_until > self.now(), "messages": by_phone}

    def limit(self, call: Call) -> Reply | None:
        """Error 4 while the caller's IP is blocked."""
        if call.path.startswith("/sys/") and self.blocked_until > self.now():
            return self._reply(_params(call)[0], 4)
        return None

    def storm_reply(self, status: int, retry_after: float | None) -> Reply:
        """SMSC's front proxy when overloaded: an HTML page."""
        headers = {"Retry-After": str(int(retry_after))} if retry_after is not None else {}
        return Reply(status, f"<html><body><h1>{status}</h1>Service Unavailable</body></html>", headers,
                     content_type="text/html")

    def error_reply(self, status: int) -> Reply:
        """The proxy's page for a broken backend."""
        return Reply(status, f"<html><body><h1>{status}</h1>Internal Server Error</body></html>",
                     content_type="text/html")

    # ---- routes --------------------------------------------------------------------------------
    @route("ANY", r"/sys/send\.php")
    async def send(self, call: Call) -> Reply:
        """Send (cost 0/2/3) or price (cost 1) one text to a list of numbers."""
        params, _ = _params(call)
        if not self._authorised(params):
            return self._failed(params, 2, auth=True)
        knob = self._forced_error()
        if knob is not None:
            return self._failed(params, knob)
        text, sender = params.get("mes", ""), params.get("sender") or None
        numbers = [n.strip().lstrip("+") for n in re.split(r"[,;]", params.get("phones", "")) if n.strip()]
        cost_mode = params.get("cost", "0")
        msg_id = params.get("id") or None
        if not text or not numbers or len(text) > MAX_LENGTH or cost_mode not in ("0", "1", "2", "3"):
            return self._failed(params, 1)
        if params.get("time") and not any(re.fullmatch(f, params["time"]) for f in TIME_FORMATS):
            return self._failed(params, 5)
        if (sender is not None and sender not in self.senders) or any(w in text.lower() for w in self.forbidden):
            return self._failed(params, 6, msg_id)
        now = self.now()
        fingerprint = (self._account(params), "cost" if cost_mode == "1" else "send", ",".join(numbers), text,
                       sender or "", msg_id or "")
        self._recent = [(at, f) for at, f in self._recent if now - at < 60]
        identical = sum(f == fingerprint for _, f in self._recent)
        if cost_mode == "1":
            self._recent.append((now, fingerprint))  # every price request counts; only sends that went out do
        if identical >= (5 if cost_mode == "1" else 1):
            return self._failed(params, 9)
        parts = segments(text).parts
        per_phone = [(n, 7 if not _valid(n) else 8 if n in self.undeliverable else 0) for n in numbers]
        good = [n for n, code in per_phone if not code]
        if not good:
            return self._failed(params, per_phone[0][1], msg_id)
        total = round(parts * len(good) * self.price, 2)
        if cost_mode != "1" and total > self.balance + 1e-9:
            return self._failed(params, 3, msg_id)
        self._failed_in_row.clear()
        if cost_mode != "1":
            self._recent.append((now, fingerprint))
        body: dict[str, Any] = {"cnt": parts * len(good)}
        if cost_mode == "1":
            body["cost"] = f"{total:g}"
        else:
            if msg_id is None:
                self._seq += 1
                msg_id = str(self._seq)
            for number in good:
                self.messages.append({"id": msg_id, "phone": number, "text": text, "parts": parts, "sender": sender,
                                      "status": "sent", "status_code": 0, "at": now,
                                      "cost": round(parts * self.price, 2)})
            self.balance -= total
            body = {"id": int(msg_id) if msg_id.isdigit() else msg_id, **body}
            if cost_mode in ("2", "3"):
                body["cost"] = f"{total:g}"
            if cost_mode == "3":
                body["balance"] = f"{self.balance:.2f}"
        if params.get("op") == "1":
            body["phones"] = [{"phone": n, "mccmnc": "25001" if not code else "0",
                               "cost": f"{parts * self.price:g}" if not code else "0",
                               **({"error": str(code)} if code else {})} for n, code in per_phone]
        return self._reply(params, None, body)

    @route("ANY", r"/sys/status\.php")
    async def status(self, call: Call) -> Reply:
        """A message's delivery status by phone and id."""
        params, _ = _params(call)
        if not self._authorised(params):
            return self._failed(params, 2, auth=True)
        phone, msg_id = params.get("phone", "").strip(",").lstrip("+"), params.get("id", "").strip(",")
        if not phone or not msg_id:
            return self._failed(params, 1)
        found = next((m for m in self.messages if m["id"] == msg_id and m["phone"] == phone), None)
        if found is None:
            return self._reply(params, None, {"status": -3, "err": 0})
        stamp = int(found["at"])
        return self._reply(params, None, {"status": found["status_code"], "last_date": time.strftime(
            "%d.%m.%Y %H:%M:%S", time.localtime(stamp)), "last_timestamp": stamp})

    @route("ANY", r"/sys/balance\.php")
    async def balance_php(self, call: Call) -> Reply:
        """The account's balance, `{"balance": "…"}` (assume, §7.5)."""
        params, _ = _params(call)
        if not self._authorised(params):
            return self._failed(params, 2, auth=True)
        return self._reply(params, None, {"balance": f"{self.balance:.2f}"})

    # ---- helpers -------------------------------------------------------------------------------
    def _account(self, params: dict[str, str]) -> str:
        return params.get("apikey") or params.get("login", "")

    def _authorised(self, params: dict[str, str]) -> bool:
        if self.apikey and params.get("apikey"):
            return params["apikey"] == self.apikey
        return params.get("login") == self.login and params.get("psw") == self.psw

    def _forced_error(self) -> int | None:
        knob = self.faults.extra.get("error")
        if knob is None:
            return None
        if isinstance(knob, dict):
            if knob.get("count", 1) <= 0:
                return None
            knob["count"] = knob.get("count", 1) - 1
            return int(knob["code"])
        return int(knob)

    def _failed(self, params: dict[str, str], code: int, msg_id: str | None = None, *, auth: bool = False) -> Reply:
        """An error answer, counted towards the IP block."""
        now = self.now()
        if auth:
            self._auth_failures = [t for t in self._auth_failures if now - t < 1800] + [now]
            if len(self._auth_failures) >= 5:
                self.blocked_until = max(self.blocked_until, now + 1800)
        if code != 9:
            self._failed_in_row = [t for t in self._failed_in_row if now - t < 600] + [now]
            if len(self._failed_in_row) >= 100:
                self.blocked_until = max(self.blocked_until, now + 600)
        return self._reply(params, code, msg_id=msg_id if code in WITH_ID else None)

    def _reply(self, params: dict[str, str], code: int | None, body: dict[str, Any] | None = None, *,
               msg_id: str | None = None) -> Reply:
        """The answer in the format asked for: fmt=3 JSON, 0 text (the default), 1 numbers, 2 XML."""
        fmt = params.get("fmt", "0")
        if code is not None:
            body = {"error": ERRORS[code], "error_code": code}
            if msg_id is not None:
                body["id"] = int(msg_id) if msg_id.isdigit() else msg_id
        assert body is not None
        if fmt == "3":
            return Reply(200, body)
        if fmt == "2":
            inner = "".join(f"<{k}>{v}</{k}>" for k, v in body.items() if not isinstance(v, list))
            return Reply(200, f"<result>{inner}</result>", content_type="text/xml; charset=utf-8")
        if fmt == "1":
            line = f"0,-{code}" if code is not None else f"{body.get('id', 0)},{body.get('cnt', 0)}"
            return Reply(200, line, content_type="text/plain; charset=utf-8")
        if code is not None:
            return Reply(200, f"ERROR = {code} ({ERRORS[code]})", content_type="text/plain; charset=utf-8")
        return Reply(200, f"OK - {body.get('cnt', 0)} SMS, ID - {body.get('id', '')}",
                     content_type="text/plain; charset=utf-8")

    async def control(self, call: Call, what: str) -> Reply:
        """messages (read), settings and deliver (change)."""
        if what == "messages" and call.method == "GET":
            phone = call.query.get("phone")
            return Reply(200, [m for m in self.messages if phone is None or m["phone"] == phone.lstrip("+")])
        if what == "settings" and call.method == "POST":
            data = call.json() or {}
            if "balance" in data:
                self.balance = float(data["balance"])
            for key in ("senders", "undeliverable", "forbidden"):
                if key in data:
                    setattr(self, key, set(data[key]))
            if data.get("unblock"):
                self.blocked_until = 0.0
                self._auth_failures.clear()
                self._failed_in_row.clear()
            return Reply(200, {"ok": True})
        if what == "deliver" and call.method == "POST":
            data = call.json() or {}
            for message in self.messages:
                if message["id"] == str(data.get("id")) and message["phone"] == str(data.get("phone", "")).lstrip("+"):
                    message["status_code"] = int(data.get("status", 1))
                    message["status"] = "delivered" if message["status_code"] in (1, 2, 4) else message["status"]
                    return Reply(200, {"ok": True})
            return Reply(404, {"error": "no such message"})
        return await super().control(call, what)


def _params(call: Call) -> tuple[dict[str, str], str]:
    """Query and form together, decoded as the request's `charset` says (SMSC's default is windows-1251)."""
    raw = call.body.decode("latin-1")
    probe = dict(parse_qsl(raw, keep_blank_values=True, encoding="latin-1"))
    charset = call.query.get("charset") or probe.get("charset") or "windows-1251"
    encoding = {"utf-8": "utf-8", "koi8-r": "koi8-r"}.get(charset.lower(), "cp1251")
    form = dict(parse_qsl(raw, keep_blank_values=True, encoding=encoding, errors="replace"))
    return {**call.query, **form}, encoding


def _valid(number: str) -> bool:
    if not number.isdigit():
        return False
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse("+" + number))
    except phonenumbers.NumberParseException:
        return False
