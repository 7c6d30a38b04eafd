"""Bitrix24 REST calls over the inbound-webhook URL: PHP-style params, the envelope, error codes → errors.py.

Classification follows the reference (§1.2–1.4, §6.1):
- 503 `QUERY_LIMIT_EXCEEDED` (the leaky bucket) → Retryable after one drain interval (no Retry-After is
  documented; a header, if one comes, is honoured when longer);
- 429 `OPERATION_TIME_LIMIT` → Retryable until `time.operating_reset_at` last seen for that method, else 60 s
  (assume: the error body carries no `time`);
- 500 `INTERNAL_SERVER_ERROR`/`ERROR_UNEXPECTED_ANSWER`, other 5xx → Retryable;
- auth and plan errors (`NO_AUTH_FOUND`, `expired_token` — a webhook URL has no token to refresh —,
  `insufficient_scope`, `ACCESS_DENIED`, `INVALID_CREDENTIALS`, `user_access_error`), `OVERLOAD_LIMIT` (a manual
  block by support), `PORTAL_DELETED`, method-level 400s (`error: ""`) and every other 4xx → Rejected;
- a 2xx whose body is not the envelope → Uncertain (the call may have been performed).
The webhook URL is the credential: it never appears in an error message.
"""
from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

from automator.connector import json_body, retry_after as header_retry_after
from automator.errors import ConnectorError, Rejected, Retryable, Uncertain

PAGE = 50  # list methods' fixed page size
MAX_BATCH = 50  # sub-calls per batch
PLANS: dict[str, tuple[float, int]] = {"standard": (2.0, 50), "enterprise": (5.0, 250)}  # drain/s, bucket size

RETRY_CODES = frozenset({"INTERNAL_SERVER_ERROR", "ERROR_UNEXPECTED_ANSWER"})
PARK_CODES = frozenset({
    "NO_AUTH_FOUND", "expired_token", "invalid_token", "INVALID_REQUEST", "ACCESS_DENIED", "INVALID_CREDENTIALS",
    "insufficient_scope", "user_access_error", "PORTAL_DELETED", "OVERLOAD_LIMIT", "ERROR_METHOD_NOT_FOUND",
    "ERROR_BATCH_METHOD_NOT_ALLOWED", "ERROR_BATCH_LENGTH_EXCEEDED",
})
DEFAULT_OPERATING_WAIT = 60.0

Send = Callable[..., Awaitable[Any]]


# ---- PHP-style parameters (`fields[TITLE]=…`, `select[0]=ID`) -------------------------------------------------

def php_pairs(params: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Flatten nested params into PHP bracket pairs, as Bitrix reads forms, query strings and batch commands."""
    out: list[tuple[str, str]] = []
    for key, value in params.items():
        name = f"{prefix}[{key}]" if prefix else str(key)
        if isinstance(value, Mapping):
            out.extend(php_pairs(value, name))
        elif isinstance(value, (list, tuple)):
            out.extend(php_pairs({str(i): v for i, v in enumerate(value)}, name))
        elif isinstance(value, bool):
            out.append((name, "Y" if value else "N"))
        elif value is None:
            out.append((name, ""))
        else:
            out.append((name, str(value)))
    return out


def php_query(params: Mapping[str, Any]) -> str:
    """Params as one URL query string (a batch sub-call's `method?query`)."""
    return urlencode(php_pairs(params))


_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")


def php_parse(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Nest PHP bracket pairs back into dicts; a level keyed 0..n-1 (or `[]`) becomes a list."""
    root: dict[str, Any] = {}
    for raw, value in pairs:
        match = _KEY.match(raw)
        if not match:
            root[raw] = value
            continue
        parts = [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))]
        node = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if part == "":
                part = str(len(node))
            if last:
                node[part] = value
            else:
                child = node.get(part)
                if not isinstance(child, dict):
                    child = node[part] = {}
                node = child
    return _listify(root)


def php_parse_query(text: str) -> dict[str, Any]:
    """A query string or form body as nested params."""
    return php_parse(parse_qsl(text, keep_blank_values=True))


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    node = {k: _listify(v) for k, v in node.items()}
    if node and all(k.isdigit() for k in node) and sorted(int(k) for k in node) == list(range(len(node))):
        return [node[str(i)] for i in range(len(node))]
    return node


# ---- envelopes and errors -----------------------------------------------------------------------------------

@dataclass
class BatchResult:
    """One `batch` call's answer: results and errors by command key, totals and next offsets of list sub-calls."""

    result: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, dict[str, Any]] = field(default_factory=dict)
    total: dict[str, int] = field(default_factory=dict)
    next: dict[str, int] = field(default_factory=dict)


def _as_map(value: Any) -> dict[str, Any]:
    # PHP sends an empty map as [] and numeric-keyed maps as lists.
    if isinstance(value, dict):
        return value
    if isinstance(value, list):
        return {str(i): v for i, v in enumerate(value)}
    return {}


def classify(status: int, body: Any, what: str, *, drain: float, header_wait: float | None,
             operating_reset_at: float | None) -> ConnectorError:
    """The error a non-success Bitrix24 answer stands for."""
    code = str(body.get("error", "")) if isinstance(body, dict) else ""
    text = str(body.get("error_description", "")) if isinstance(body, dict) else ""
    message = f"{what}: HTTP {status} {code or '-'}: {text[:300]}"
    if code == "QUERY_LIMIT_EXCEEDED":
        return Retryable(message, max(1.0 / drain, header_wait or 0.0))
    if code == "OPERATION_TIME_LIMIT":
        wait = operating_reset_at - time.time() if operating_reset_at else DEFAULT_OPERATING_WAIT
        return Retryable(message, max(1.0, wait, header_wait or 0.0))
    if code in PARK_CODES:
        return Rejected(message)
    if code in RETRY_CODES or status >= 500 or status == 429:
        return Retryable(message, header_wait)
    return Rejected(message)


class Api:
    """The REST calls of one portal: `call` one method, `batch` up to 50, each one HTTP request."""

    def __init__(self, send: Send, *, drain: float, secret: str) -> None:
        """`send(method, url, what, **httpx_kwargs)` is the connector's deadline-bound request."""
        self._send = send
        self.drain = drain
        self._secret = secret
        self.operating_reset_at: dict[str, float] = {}  # by method, from the last answer's `time`

    def _scrub(self, text: str) -> str:
        return text.replace(self._secret, "…") if self._secret else text

    async def call(self, method: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """POST one method with a JSON body; the whole envelope (`result`, `total`, `next`, `time`)."""
        what = f"bitrix24 {method}"
        try:
            response = await self._send("POST", method, what, json=dict(params or {}))
        except (Retryable, Uncertain) as exc:  # transport errors may quote the URL, which holds the secret
            clean = self._scrub(str(exc))
            raise (Retryable(clean, exc.retry_after) if isinstance(exc, Retryable) else Uncertain(clean)) from None
        try:
            body = json_body(response)
        except ValueError:
            body = None
        status = response.status_code
        if 200 <= status < 300 and isinstance(body, dict) and "result" in body and "error" not in body:
            stamp = body.get("time")
            if isinstance(stamp, dict) and isinstance(stamp.get("operating_reset_at"), (int, float)):
                self.operating_reset_at[method.lower()] = float(stamp["operating_reset_at"])
            return body
        if 200 <= status < 300 and not (isinstance(body, dict) and "error" in body):
            raise Uncertain(f"{what}: HTTP {status} without the result envelope: {response.text[:200]!r}")
        raise classify(status, body, what, drain=self.drain, header_wait=header_retry_after(response),
                       operating_reset_at=self.operating_reset_at.get(method.lower()))

    async def result(self, method: str, params: Mapping[str, Any] | None = None) -> Any:
        """Just the `result` of one method."""
        return (await self.call(method, params))["result"]

    async def batch(self, commands: Mapping[str, tuple[str, Mapping[str, Any]]], *, halt: bool = False
                    ) -> BatchResult:
        """Up to 50 sub-calls in one request (one unit of the rate limit), keyed by name; a sub-call's error is
        reported under its key, not raised."""
        if not commands:
            return BatchResult()
        if len(commands) > MAX_BATCH:
            raise Rejected(f"bitrix24 batch: {len(commands)} commands, at most {MAX_BATCH}")
        cmd = {key: f"{method}?{php_query(params)}" for key, (method, params) in commands.items()}
        answer = (await self.call("batch", {"halt": 1 if halt else 0, "cmd": cmd}))["result"]
        answer = answer if isinstance(answer, dict) else {}
        errors = _as_map(answer.get("result_error"))
        return BatchResult(result=_as_map(answer.get("result")),
                           errors={k: v if isinstance(v, dict) else {"error": "", "error_description": str(v)}
                                   for k, v in errors.items()},
                           total={k: int(v) for k, v in _as_map(answer.get("result_total")).items()},
                           next={k: int(v) for k, v in _as_map(answer.get("result_next")).items()})
