"""SMSC's HTTP API: the form of /sys/send.php, the id derived from the effect key, error codes → errors.py.

SMSC answers HTTP 200 for business failures: `{"error", "error_code"}` in the body says what happened.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from automator.errors import Rejected, Retryable, Uncertain
from ..sms import check_gateway_status

SEND_PATH = "/sys/send.php"
# (assume) SMSC's documented cap on `mes` is 1000 characters; the reference names none.
MAX_LENGTH = 1000
# Error 4: the IP is blocked for 10 minutes after 100 failed requests in a row, 30 after 5 failed logins
# (SMSC's FAQ). Ten minutes first: the daemon's backoff lengthens the waits that follow.
BLOCKED_WAIT = 600.0
DUPLICATE = 9  # an identical request within a minute: the first one was sent
MAX_ID = 2_147_483_647

TEXTS = {
    1: "error in parameters", 2: "wrong login or password (or API access from a disallowed IP)",
    3: "insufficient funds", 4: "IP temporarily blocked because of frequent errors", 5: "wrong date format",
    6: "message forbidden (by text or sender name)", 7: "wrong phone number format",
    8: "message to this number cannot be delivered", 9: "identical request within a minute",
}


def message_id(key: str) -> int:
    """The `id` SMSC gets for an effect: the same key always gives the same id, so a repeated request is
    identical and SMSC refuses it (error 9). (assume) An integer from 1 to 2^31-1 fits every reading of
    SMSC's id rules (a number, or a short string)."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % MAX_ID + 1


def credentials(login: str | None, psw: str | None, apikey: str | None) -> dict[str, str]:
    """`apikey` alone when set (it replaces the login and password), else `login` and `psw`."""
    if apikey:
        return {"apikey": apikey}
    return {"login": login or "", "psw": psw or ""}


def form(auth: Mapping[str, str], phones: list[str], text: str, *, sender: str | None, msg_id: int | None,
         cost: int) -> dict[str, str]:
    """The form of /sys/send.php: UTF-8 (the default is windows-1251!), a JSON answer (fmt=3), per-number
    details (op=1); `cost` 3 sends and returns the cost and balance, 1 only prices the message."""
    data = {**auth, "phones": ",".join(phones), "mes": text, "charset": "utf-8", "fmt": "3", "op": "1",
            "cost": str(cost)}
    if msg_id is not None:
        data["id"] = str(msg_id)
    if sender:
        data["sender"] = sender
    return data


def error_for(code: int, text: str | None, what: str) -> Exception | None:
    """The error an `error_code` stands for (None for 9: the identical request before this one was sent)."""
    if code == DUPLICATE:
        return None
    message = f"{what}: SMSC refused with error {code} ({TEXTS.get(code, 'unknown error')}: {text or ''})"
    if code == 4:
        return Retryable(message, BLOCKED_WAIT)
    return Rejected(message)


@dataclass(frozen=True, slots=True)
class Answer:
    """A read answer: `duplicate` when SMSC said 9, each number's outcome, and id/cnt/cost/balance."""

    duplicate: bool
    numbers: list[dict[str, Any]]
    extra: dict[str, Any] = field(default_factory=dict)


def read(response: Any, phones: list[str], what: str) -> Answer:
    """Read an answer of /sys/send.php (fmt=3, op=1); raise what a failed request means.

    (assume, §7.5) With op=1 the answer lists `phones: [{phone, mccmnc, cost[, error]}]`; a number carrying a
    non-zero `error` did not go out. Without the list every number counts as sent.
    """
    check_gateway_status(response, what)
    try:
        body = response.json()
    except (ValueError, json.JSONDecodeError) as exc:
        raise Uncertain(f"{what}: not SMSC's JSON answer: {response.text[:200]!r}") from exc
    if not isinstance(body, Mapping):
        raise Uncertain(f"{what}: not SMSC's JSON answer: {response.text[:200]!r}")
    extra = {k: body[k] for k in ("id", "cnt", "cost", "balance") if k in body}
    if "error_code" in body or "error" in body:
        try:
            code = int(body.get("error_code", 0))
        except (TypeError, ValueError):
            code = 0
        error = error_for(code, body.get("error"), what)
        if error is not None:
            raise error
        return Answer(True, [{"phone": p, "status": "duplicate", "code": DUPLICATE} for p in phones], extra)
    if "id" not in body and "cnt" not in body:
        raise Uncertain(f"{what}: SMSC's answer has neither id nor error: {response.text[:200]!r}")
    listed = {str(item.get("phone", "")).lstrip("+"): item for item in body.get("phones") or []
              if isinstance(item, Mapping)}
    numbers = [_number(phone, listed.get(phone.lstrip("+")), bool(listed)) for phone in phones]
    if numbers and all(n["status"] == "failed" for n in numbers):
        raise Rejected("; ".join(f"{what} to {n['phone']}: SMSC error {n['code']} "
                                 f"({TEXTS.get(n['code'], 'unknown error')})" for n in numbers))
    return Answer(False, numbers, extra)


def _number(phone: str, item: Mapping[str, Any] | None, listed: bool) -> dict[str, Any]:
    if item is None:
        # Listed answers name every number they took; one missing from the list did not go out.
        return {"phone": phone, "status": "failed", "code": 0} if listed else {"phone": phone, "status": "sent"}
    error = item.get("error")
    try:
        code = int(error) if error not in (None, "") else 0
    except (TypeError, ValueError):
        code = 1
    out: dict[str, Any] = {"phone": phone, "status": "failed" if code else "sent"}
    if code:
        out["code"] = code
    if item.get("cost") is not None:
        out["cost"] = item["cost"]
    return out
