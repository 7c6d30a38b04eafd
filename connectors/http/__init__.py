"""The `http` connector: the generic `http.request` action, to hosts on the connector's allow-list only."""
from __future__ import annotations

import fnmatch
import ipaddress
import json
import socket
from collections.abc import Mapping
from typing import Any

import httpx

from automator.clock import parse_duration
from automator.connector import (ActionResult, ConfigError, WebConnector, action, call_http, check_status, json_body,
                                 resolve_env)
from automator.errors import Rejected
from automator.http import send

MAX_ANSWER = 2000  # characters of the answer kept in the effect's result
CACHED = 1024  # parsed URLs and allow-list answers kept


class HttpConnector(WebConnector):
    """Calls HTTP endpoints a rule names, but only on hosts listed in `allow:` — a rule cannot be turned against
    the daemon's own network (an address in `allow:` is the operator's decision, never the rule's).

    The effect key goes out as the `Idempotency-Key` header, for endpoints that deduplicate.
    """

    type = "http"
    deadline = 10.0
    config_schema = {
        "type": "object",
        "required": ["type", "allow"],
        "additionalProperties": False,
        "properties": {
            "type": {"const": "http"},
            "allow": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                      "description": "Hosts the rules may call: exact names, `*.example.com`, or `host:port`."},
            "timeout": {"type": "number", "exclusiveMinimum": 0, "description": "Seconds for the whole call."},
            "headers": {"type": "object", "additionalProperties": {"type": "string"}},
            "rate": {"type": "number", "exclusiveMinimum": 0, "description": "Calls per second at most."},
        },
    }

    def __init__(self, name: str, config: Mapping[str, Any], *, transport: httpx.AsyncBaseTransport | None = None
                 ) -> None:
        super().__init__(name, config, transport=transport)
        self.allow = [str(a).lower() for a in config.get("allow") or []]
        # Rules call the same few endpoints over and over: each URL is parsed, and each host checked against the
        # allow-list, once (both bounded: a URL with ids in it varies without end).
        self._urls: dict[str, httpx.URL] = {}
        self._allowed: dict[tuple[str, int | None], bool] = {}
        if config.get("rate"):
            self.rate_limit = (float(config["rate"]), max(1, int(config["rate"])))

    def default_headers(self) -> dict[str, str]:
        """The connector's own `headers:` setting."""
        return dict(self.config.get("headers") or {})

    def allowed(self, url: httpx.URL) -> bool:
        """True when the URL's host (or host:port) is on the allow-list."""
        key = (url.host, url.port)
        known = self._allowed.get(key)
        if known is None:
            if len(self._allowed) >= CACHED:
                self._allowed.clear()
            known = self._allowed[key] = self._allowed_now(url)
        return known

    def _allowed_now(self, url: httpx.URL) -> bool:
        host = (url.host or "").lower()
        candidates = {host, f"{host}:{url.port}"} if url.port else {host}
        return any(fnmatch.fnmatchcase(c, pattern) for c in candidates for pattern in self.allow
                   if not _is_ip(host) or pattern == c)  # an IP is allowed only when written out exactly

    @action("http.request")
    async def http_request(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """Send the request; 2xx is done, 429/5xx retry, other 4xx are refused."""
        try:
            url = self._url(str(params["url"]))
        except (httpx.InvalidURL, TypeError) as exc:
            raise Rejected(f"not a URL: {params.get('url')!r}") from exc
        if url.scheme not in ("http", "https"):
            raise Rejected(f"only http and https URLs are allowed, not {url.scheme!r}")
        if not self.allowed(url):
            raise Rejected(f"host {url.host!r} is not on connector {self.name!r}'s allow-list")
        method = str(params.get("method", "POST")).upper()
        try:
            headers = resolve_env({str(k): str(v) for k, v in (params.get("headers") or {}).items()}, "headers")
        except ConfigError as exc:
            raise Rejected(str(exc)) from exc
        extra: dict[str, Any] = {"headers": {**headers, "Idempotency-Key": key}}
        if params.get("json") is not None:
            extra["json"] = params["json"]
        deadline = self.deadline
        if params.get("timeout"):
            deadline = min(deadline, parse_duration(params["timeout"]).approx().total_seconds())
        what = f"{method} {url.scheme}://{url.netloc.decode('ascii')}{url.path}"  # no query: it may hold secrets
        response = await call_http(send(self.http, method, url, deadline=deadline, **extra), what)
        check_status(response, what)
        try:
            body: Any = json_body(response)
        except (ValueError, json.JSONDecodeError):
            body = response.text[:MAX_ANSWER]
        return ActionResult({"status": response.status_code, "body": body})


    def _url(self, text: str) -> httpx.URL:
        url = self._urls.get(text)
        if url is None:
            if len(self._urls) >= CACHED:
                self._urls.clear()
            url = self._urls[text] = httpx.URL(text)
        return url


def _is_ip(host: str) -> bool:
    bare = host.strip("[]")
    try:
        ipaddress.ip_address(bare)
    except ValueError:
        # The resolver also reads short, decimal and hex spellings as IPv4 (127.1, 2130706433, 0x7f000001):
        # they are IP literals too, or a wildcard pattern would let a rule reach the loopback with them.
        try:
            socket.inet_aton(bare)
        except (OSError, ValueError):
            return False
    return True
