"""A faithful SMS.ru on 127.0.0.1: /sms/send, /sms/cost, /sms/status, /my/balance with SMS.ru's codes (§4.1).

Every answer is HTTP 200 with `{"status", "status_code"[, "status_text"]}`, per number under `sms` as well.
It keeps the messages sent (per phone: text, parts, sender, status), the balance (charged per part, never in
test mode), and the anti-flood state: the same text to the same number within a minute answers 231, the
`identical_per_day`-th identical one in a day 232, more than `per_number_per_day` to one number 230, more than
`daily_limit` for the account 206. (assume) The thresholds but the minute's are SMS.ru's secret: they are
settings here. Knobs in `faults.extra`: `{"code": 220}` (or `{"code": {"code": 500, "count": 2}}`) answers
the whole request with that code; `{"numbers": {"79161234567": 207}}` fails one number with a code.
Control routes: GET /_emulator/messages[?phone=7…], POST /_emulator/settings {balance, senders, stop_list,
no_route, daily_limit, per_number_per_day, identical_per_day}, POST /_emulator/deliver {sms_id, status_code}.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl

import phonenumbers

from automator.emulator import Call, Emulator, Reply, route
from ..sms import MAX_RECIPIENTS, segments
from .api import MAX_PARTS, SMSRU_TZ

SANDBOX_API_ID = "00000000-0000-0000-0000-000000000000"
PRICE_PER_PART = 4.0  # roubles; (assume) a round price, the real one depends on the tariff and the operator

# SMS.ru's own words for each code (the table of §4.1; 200 and 207 as the reference quotes them).
TEXTS = {
    -1: "Сообщение не найдено",
    100: "Сообщение находится в нашей очереди", 101: "Сообщение передается оператору",
    102: "Сообщение отправлено (в пути)", 103: "Сообщение доставлено",
    104: "Не может быть доставлено: время жизни истекло", 105: "Не может быть доставлено: удалено оператором",
    106: "Не может быть доставлено: сбой в телефоне", 107: "Не может быть доставлено: неизвестная причина",
    108: "Не может быть доставлено: отклонено", 150: "Не может быть доставлено: не найден маршрут на данный номер",
    200: "Неправильный api_id", 201: "Не хватает средств на лицевом счету",
    202: "Неправильно указан номер телефона получателя, либо на него нет маршрута",
    203: "Нет текста сообщения", 204: "Имя отправителя не согласовано с администрацией",
    205: "Сообщение слишком длинное (превышает 8 СМС)", 206: "Будет превышен или уже превышен дневной лимит на отправку сообщений",
    207: "На этот номер (или один из номеров) нельзя отправлять сообщения, либо указано более 100 номеров в списке получателей",
    208: "Параметр time указан неправильно", 209: "Вы добавили этот номер (или один из номеров) в стоп-лист",
    210: "Используется GET, где необходимо использовать POST", 211: "Метод не найден",
    212: "Текст сообщения необходимо передать в кодировке UTF-8", 213: "Указано более 100 номеров в списке получателей",
    220: "Сервис временно недоступен, попробуйте чуть позже",
    230: "Превышен общий лимит количества сообщений на этот номер в день",
    231: "Превышен лимит одинаковых сообщений на этот номер в минуту",
    232: "Превышен лимит одинаковых сообщений на этот номер в день",
    233: "Превышен лимит отправки повторных сообщений с кодом на этот номер за короткий промежуток времени",
    300: "Неправильный token (возможно истек срок действия, либо ваш IP изменился)",
    301: "Неправильный api_id, либо логин/пароль", 302: "Пользователь авторизован, но аккаунт не подтвержден",
    500: "Ошибка на сервере. Повторите запрос.",
}
MAX_DELAY = 60 * 24 * 3600  # `time` at most 60 days ahead


def _error(code: int) -> dict[str, Any]:
    return {"status": "ERROR", "status_code": code, "status_text": TEXTS.get(code, "")}


class SmsruEmulator(Emulator):
    """SMS.ru: one account (api_id), its approved senders, balance and messages."""

    system = "smsru"

    def __init__(self, *, api_id: str = SANDBOX_API_ID, balance: float = 1000.0, senders: Iterable[str] = (),
                 price: float = PRICE_PER_PART, now: Callable[[], float] = time.time, hook_url: str | None = None,
                 limits: bool = True, transport: Any = None) -> None:
        super().__init__(hook_url=hook_url, limits=limits, transport=transport)
        self.api_id = api_id
        self.balance = float(balance)
        self.senders = set(senders)
        self.price = price
        self.now = now
        self.messages: list[dict[str, Any]] = []  # one per number, in the order sent
        self.stop_list: set[str] = set()
        self.no_route: set[str] = set()
        self.daily_limit: int | None = None
        self.per_number_per_day = 60
        self.identical_per_day = 5
        self._seq = 0

    # ---- the contract's extras -----------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Balance, senders and the messages grouped by phone."""
        by_phone: dict[str, list[dict[str, Any]]] = {}
        for message in self.messages:
            by_phone.setdefault(message["phone"], []).append(message)
        return {"balance": round(self.balance, 2), "senders": sorted(self.senders), "messages": by_phone}

    def storm_reply(self, status: int, retry_after: float | None) -> Reply:
        """SMS.ru's front proxy when overloaded: an HTML page, not the JSON envelope."""
        headers = {"Retry-After": str(int(retry_after))} if retry_after is not None else {}
        return Reply(status, f"<html><body><h1>{status}</h1>Service Temporarily Unavailable</body></html>",
                     headers, content_type="text/html")

    def error_reply(self, status: int) -> Reply:
        """The proxy's page for a broken backend."""
        return Reply(status, f"<html><body><h1>{status}</h1>Internal Server Error</body></html>",
                     content_type="text/html")

    def not_found(self, call: Call) -> Reply:
        """Unknown methods answer 211 in the envelope."""
        return Reply(200, _error(211))

    # ---- routes --------------------------------------------------------------------------------
    @route("ANY", r"/sms/send")
    async def send(self, call: Call) -> Reply:
        """Send one text to up to 100 numbers (or validate only, with test=1)."""
        return self._send(call, charge=True)

    @route("ANY", r"/sms/cost")
    async def cost(self, call: Call) -> Reply:
        """What the same send would cost: per number `cost` and `sms`, `total_cost`, `total_sms`."""
        return self._send(call, charge=False)

    @route("ANY", r"/sms/status")
    async def status(self, call: Call) -> Reply:
        """Delivery status of messages by `sms_id` (comma-separated)."""
        params, problem = self._params(call)
        if problem:
            return problem
        found: dict[str, Any] = {}
        for sms_id in filter(None, (s.strip() for s in params.get("sms_id", "").split(","))):
            message = next((m for m in self.messages if m["sms_id"] == sms_id), None)
            if message is None:
                found[sms_id] = {"status": "ERROR", "status_code": -1, "status_text": TEXTS[-1]}
            else:
                code = message["status_code"]
                found[sms_id] = {"status": "OK", "status_code": code, "status_text": TEXTS.get(code, "")}
        return self._answer(params, {"status": "OK", "status_code": 100, "sms": found, "balance": self._balance()})

    @route("ANY", r"/my/balance")
    async def my_balance(self, call: Call) -> Reply:
        """The account's balance."""
        params, problem = self._params(call)
        return problem or self._answer(params, {"status": "OK", "status_code": 100, "balance": self._balance()})

    # ---- the send itself -----------------------------------------------------------------------
    def _params(self, call: Call) -> tuple[dict[str, str], Reply | None]:
        try:
            pairs = [*call.query.items(), *parse_qsl(call.body.decode("ascii"), keep_blank_values=True,
                                                     encoding="utf-8", errors="strict")]
        except UnicodeDecodeError:
            return {}, Reply(200, _error(212))
        params = dict(pairs)
        if params.get("api_id") != self.api_id:
            return params, self._answer(params, _error(200))
        return params, None

    def _send(self, call: Call, *, charge: bool) -> Reply:
        params, problem = self._params(call)
        if problem:
            return problem
        forced = self._forced_code()
        if forced is not None:
            return self._answer(params, _error(forced))
        text = params.get("msg", params.get("text", ""))
        numbers = [n.strip() for n in params.get("to", "").split(",") if n.strip()]
        sender = params.get("from") or None
        test = params.get("test") == "1"
        if not text.strip():
            return self._answer(params, _error(203))
        if not numbers:
            return self._answer(params, _error(202))
        if len(numbers) > MAX_RECIPIENTS:
            return self._answer(params, _error(213))
        if sender is not None and sender not in self.senders:
            return self._answer(params, _error(204))
        parts = segments(text).parts
        if parts > MAX_PARTS:
            return self._answer(params, _error(205))
        if params.get("time") and not self._time_ok(params["time"]):
            return self._answer(params, _error(208))
        now = self.now()
        if charge and not test and self.daily_limit is not None \
                and len(self._sent_today(now)) + len(numbers) > self.daily_limit:
            return self._answer(params, _error(206))
        valid = [n for n in numbers if _valid(n)]
        if charge and not test and len(valid) * parts * self.price > self.balance + 1e-9:
            return self._answer(params, _error(201))
        results: dict[str, Any] = {}
        for number in numbers:
            # Test sends and cost requests are not sends: the anti-flood limits do not count or apply to them.
            code = self._number_code(number, text, now) if charge and not test else self._static_code(number)
            if code != 100:
                results[number] = _error(code)
            elif charge:
                results[number] = {"status": "OK", "status_code": 100,
                                   "sms_id": self._record(number, text, parts, sender, test, now)}
            else:
                results[number] = {"status": "OK", "status_code": 100, "cost": round(parts * self.price, 2),
                                   "sms": parts}
        if charge:
            return self._answer(params, {"status": "OK", "status_code": 100, "sms": results,
                                         "balance": self._balance()})
        ok = [r for r in results.values() if r["status"] == "OK"]
        return self._answer(params, {"status": "OK", "status_code": 100, "sms": results,
                                     "total_cost": round(sum(r["cost"] for r in ok), 2),
                                     "total_sms": sum(r["sms"] for r in ok)})

    def _forced_code(self) -> int | None:
        knob = self.faults.extra.get("code")
        if knob is None:
            return None
        if isinstance(knob, dict):
            if knob.get("count", 1) <= 0:
                return None
            knob["count"] = knob.get("count", 1) - 1
            return int(knob["code"])
        return int(knob)

    def _static_code(self, number: str) -> int:
        forced = (self.faults.extra.get("numbers") or {}).get(number)
        if forced is not None:
            return int(forced)
        if not _valid(number):
            return 202
        if number in self.stop_list:
            return 209
        if number in self.no_route:
            return 207
        return 100

    def _number_code(self, number: str, text: str, now: float) -> int:
        code = self._static_code(number)
        if code != 100:
            return code
        today = [m for m in self._sent_today(now) if m["phone"] == number]
        if len(today) >= self.per_number_per_day:
            return 230
        same = [m for m in today if m["text"] == text]
        if any(now - m["at"] < 60 for m in same):
            return 231
        if len(same) >= self.identical_per_day:
            return 232
        return 100

    def _record(self, number: str, text: str, parts: int, sender: str | None, test: bool, now: float) -> str:
        self._seq += 1
        sms_id = f"{self._seq:06d}-{10000000 + self._seq}"
        self.messages.append({"sms_id": sms_id, "phone": number, "text": text, "parts": parts, "sender": sender,
                              "status": "test" if test else "sent", "status_code": 100, "test": test, "at": now,
                              "cost": 0.0 if test else round(parts * self.price, 2)})
        if not test:
            self.balance -= parts * self.price
        return sms_id

    def _sent_today(self, now: float) -> list[dict[str, Any]]:
        day = _day(now)
        return [m for m in self.messages if not m["test"] and _day(m["at"]) == day]

    def _time_ok(self, value: str) -> bool:
        try:
            when = int(value)
        except ValueError:
            return False
        return self.now() <= when <= self.now() + MAX_DELAY

    def _balance(self) -> float:
        return round(self.balance, 2)

    def _answer(self, params: dict[str, str], body: dict[str, Any]) -> Reply:
        if params.get("json") == "1":
            return Reply(200, body)
        # Without json=1: the code on the first line, then each sent message's id, then the balance.
        lines = [str(body["status_code"])]
        for item in (body.get("sms") or {}).values():
            lines.append(str(item.get("sms_id") or item["status_code"]))
        if "balance" in body:
            lines.append(f"balance={body['balance']}")
        return Reply(200, "\n".join(lines), content_type="text/plain; charset=utf-8")

    # ---- control routes ------------------------------------------------------------------------
    async def control(self, call: Call, what: str) -> Reply:
        """messages (read), settings and deliver (change)."""
        if what == "messages" and call.method == "GET":
            phone = call.query.get("phone")
            return Reply(200, [m for m in self.messages if phone is None or m["phone"] == phone.lstrip("+")])
        if what == "settings" and call.method == "POST":
            data = call.json() or {}
            if "balance" in data:
                self.balance = float(data["balance"])
            for key in ("daily_limit", "per_number_per_day", "identical_per_day"):
                if key in data:
                    setattr(self, key, data[key])
            for key in ("senders", "stop_list", "no_route"):
                if key in data:
                    setattr(self, key, set(data[key]))
            return Reply(200, {"ok": True})
        if what == "deliver" and call.method == "POST":
            data = call.json() or {}
            for message in self.messages:
                if message["sms_id"] == data.get("sms_id"):
                    message["status_code"] = int(data.get("status_code", 103))
                    message["status"] = "delivered" if message["status_code"] in (103, 110) else message["status"]
                    return Reply(200, {"ok": True})
            return Reply(404, {"error": "no such sms_id"})
        return await super().control(call, what)


def _valid(number: str) -> bool:
    """International digits of a valid number (what SMS.ru routes)."""
    if not number.isdigit():
        return False
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse("+" + number))
    except phonenumbers.NumberParseException:
        return False


def _day(at: float) -> str:
    return datetime.fromtimestamp(at, timezone.utc).astimezone(SMSRU_TZ).date().isoformat()
