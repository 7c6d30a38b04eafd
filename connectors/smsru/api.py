"""SMS.ru's HTTP API: the form a send or cost request carries, and its answer's codes mapped onto errors.py.

SMS.ru answers HTTP 200 for business failures: the body's `status_code` says what happened, both for the
whole request and for each number (`sms: {phone: {status, status_code, sms_id, status_text}}`).
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from automator.errors import Rejected, Retryable, Uncertain
from ..sms import check_gateway_status

SEND_PATH = "/sms/send"
COST_PATH = "/sms/cost"
MAX_PARTS = 8  # code 205: "message too long (> 8 SMS)"

OK = 100
DUPLICATE = frozenset({231, 232})  # identical text to this number within a minute / a day: the first went out
RETRY = frozenset({220, 500})  # service unavailable, server error: try again with backoff
TOMORROW = frozenset({206, 230})  # daily limits (the account's, this number's): try again after midnight
# Every other 2xx/3xx code refuses for good: bad api_id (200, 300-302), no money (201), bad number (202, 207,
# 209), no text (203), sender not approved (204), too long (205), bad time (208), request bugs (210-213) and the
# anti-fraud block of repeated code messages (233).
SMSRU_TZ = ZoneInfo("Europe/Moscow")  # (assume) the daily limits reset at midnight Moscow time
MIDNIGHT_MARGIN = 60.0  # seconds past midnight before the retry, so that it lands after the reset

TEXTS = {
    200: "wrong api_id", 201: "insufficient funds", 202: "wrong recipient number", 203: "no message text",
    204: "sender name not approved", 205: "message too long (more than 8 SMS)", 206: "daily sending limit exceeded",
    207: "no route to this number", 208: "bad time", 209: "number is in the stop-list",
    210: "GET used where POST is required", 211: "method not found", 212: "text must be UTF-8",
    213: "more than 100 numbers", 220: "service temporarily unavailable",
    230: "daily limit of messages to this number exceeded",
    231: "limit of identical messages to this number per minute", 232: "limit of identical messages to this number per day",
    233: "repeated code messages too fast (anti-fraud)", 300: "wrong token", 301: "wrong api_id or login/password",
    302: "account not confirmed", 500: "server error",
}


def form(api_id: str, phones: list[str], text: str, *, sender: str | None, test: bool) -> dict[str, str]:
    """The form of /sms/send and /sms/cost: `to` as comma-separated digits, UTF-8 `msg`, a JSON answer."""
    data = {"api_id": api_id, "to": ",".join(phones), "msg": text, "json": "1"}
    if sender:
        data["from"] = sender
    if test:
        data["test"] = "1"
    return data


def seconds_to_midnight(now: datetime | None = None) -> float:
    """Seconds until just after the next midnight in Moscow, when SMS.ru's daily limits start again."""
    now = (now or datetime.now(timezone.utc)).astimezone(SMSRU_TZ)
    midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), SMSRU_TZ)
    return (midnight - now).total_seconds() + MIDNIGHT_MARGIN


def describe(code: int, text: str | None = None) -> str:
    """`code (meaning)` in English, with SMS.ru's own words when it sent them."""
    meaning = TEXTS.get(code, "unknown code")
    return f"{code} ({meaning}{': ' + text if text and text != meaning else ''})"


def error_for(code: int, text: str | None, what: str, *, now: datetime | None = None) -> Exception | None:
    """The error a failing code stands for (None for 100 and the duplicates 231/232, which mean sent)."""
    if code == OK or code in DUPLICATE:
        return None
    message = f"{what}: SMS.ru refused with code {describe(code, text)}"
    if code in RETRY:
        return Retryable(message)
    if code in TOMORROW:
        return Retryable(message, seconds_to_midnight(now))
    return Rejected(message)


@dataclass(frozen=True, slots=True)
class NumberResult:
    """One number's outcome: `sent`, `duplicate` (already sent: 231/232) or `failed`."""

    phone: str  # E.164
    outcome: str
    code: int
    sms_id: str | None = None
    text: str | None = None
    cost: float | None = None
    sms: int | None = None

    def to_json(self) -> dict[str, Any]:
        """Plain data for an action's result."""
        out: dict[str, Any] = {"phone": self.phone, "status": self.outcome, "code": self.code}
        for key in ("sms_id", "cost", "sms"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.text and self.outcome != "sent":
            out["error" if self.outcome == "failed" else "reason"] = self.text
        return out


@dataclass(frozen=True, slots=True)
class Answer:
    """A read answer: the number results and the request-level extras (balance, totals)."""

    numbers: list[NumberResult]
    extra: dict[str, Any] = field(default_factory=dict)


def read(response: Any, phones: list[str], what: str, *, now: datetime | None = None) -> Answer:
    """Read an answer of /sms/send or /sms/cost; raise what a failed request means.

    An HTTP status other than 200 is SMS.ru's proxy (`check_gateway_status`); a 200 that is not the JSON
    envelope is uncertain (something answered, and the send may have happened).
    """
    check_gateway_status(response, what)
    try:
        body = response.json()
        code = int(body["status_code"])
    except (ValueError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise Uncertain(f"{what}: not SMS.ru's JSON answer: {response.text[:200]!r}") from exc
    if code in DUPLICATE:  # 231/232 for the whole request: every number already got this text
        return Answer([NumberResult(p, "duplicate", code, text=body.get("status_text")) for p in phones],
                      _extra(body))
    if code != OK:
        raise error_for(code, body.get("status_text"), what, now=now) or Rejected(what)
    if body.get("status") != "OK":
        raise Uncertain(f"{what}: SMS.ru answered status {body.get('status')!r} with code 100")
    by_digits = body.get("sms") or {}
    numbers = [_number(phone, by_digits.get(phone.lstrip("+"))) for phone in phones]
    answer = Answer(numbers, _extra(body))
    if not any(n.outcome != "failed" for n in numbers):
        raise _all_failed(numbers, what, now)
    return answer


def _number(phone: str, item: Any) -> NumberResult:
    if not isinstance(item, Mapping):
        # A number the answer does not mention: not known to be sent, so it counts as failed.
        return NumberResult(phone, "failed", -1, text="missing from SMS.ru's answer")
    code = int(item.get("status_code", -1))
    ok = item.get("status") == "OK" and code == OK
    outcome = "sent" if ok else "duplicate" if code in DUPLICATE else "failed"
    cost = item.get("cost")
    return NumberResult(phone, outcome, code, sms_id=item.get("sms_id"), text=item.get("status_text"),
                        cost=float(cost) if cost is not None else None,
                        sms=int(item["sms"]) if item.get("sms") is not None else None)


def _all_failed(numbers: list[NumberResult], what: str, now: datetime | None) -> Exception:
    # No number went out, so a retry repeats nothing: retry when any number's failure is worth it.
    errors = [error_for(n.code, n.text, f"{what} to {n.phone}", now=now) or Rejected(n.phone) for n in numbers]
    retryable = [e for e in errors if isinstance(e, Retryable)]
    if retryable:
        waits = [e.retry_after for e in retryable if e.retry_after is not None]
        return Retryable("; ".join(str(e) for e in retryable), max(waits) if waits else None)
    return Rejected("; ".join(str(e) for e in errors))


def _extra(body: Mapping[str, Any]) -> dict[str, Any]:
    return {key: body[key] for key in ("balance", "total_cost", "total_sms") if key in body}
