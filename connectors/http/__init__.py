"""The `http` connector: the generic `http.request` action, to hosts on the connector's allow-list only."""
from __future__ import annotations

import fnmatch
import ipaddress
import json
import re
import socket
from collections.abc import Mapping
from typing import Any

import httpx

from automator.checks import CheckContext, ParamProblem
from automator.clock import parse_duration
from automator.connector import ActionResult, WebConnector, action, call_http, check_status, json_body
from automator.errors import Rejected
from automator.http import new_transport, send

MAX_ANSWER = 2000  # characters of the answer kept in the effect's result
CACHED = 1024  # parsed URLs and allow-list answers kept


class HttpConnector(WebConnector):
    """Calls HTTP endpoints a rule names, but only on hosts listed in `allow:` — a rule cannot be turned against
    the daemon's own network (an address in `allow:` is the operator's decision, never the rule's): a host name
    that resolves to a loopback, private, link-local or other non-public address is refused unless `allow:`
    names that address itself. The check is made by the transport when it connects, on the addresses it then
    connects to, so a name cannot resolve to a public address for the check and to 127.0.0.1 for the call.

    The effect key goes out as the `Idempotency-Key` header, for endpoints that deduplicate. Headers are sent
    as rendered: `${env:NAME}` is resolved in the connector's own `headers:` setting, once, when the daemon
    starts, never in a rule's params (which carry webhook data).
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
                      "description": "Hosts the rules may call: exact names, `*.example.com`, or `host:port`. "
                                     "A loopback, private or link-local address is called only when listed "
                                     "itself (`10.0.0.5`, `127.0.0.1:8080`), whatever name resolves to it."},
            "timeout": {"type": "number", "exclusiveMinimum": 0, "description": "Seconds for the whole call."},
            "headers": {"type": "object", "additionalProperties": {"type": "string"},
                        "description": "Headers every call carries; secrets as \"${env:NAME}\", read when the "
                                       "daemon starts (a rule's own params never read the environment)."},
            "rate": {"type": "number", "exclusiveMinimum": 0, "description": "Calls per second at most."},
        },
    }

    def __init__(self, name: str, config: Mapping[str, Any], *, transport: httpx.AsyncBaseTransport | None = None,
                 engine: str | None = None) -> None:
        """`engine` picks automator.http's engine (the default one when None); a `transport` given instead (a
        test's mock) replaces the network, and with it the check of the addresses connected to."""
        super().__init__(name, config, transport=transport)
        self._engine, self._checked = engine, transport is None
        self.allow = [str(a).lower() for a in config.get("allow") or []]
        self._named_addresses = _named_addresses(self.allow)
        # Rules call the same few endpoints over and over: each URL is parsed, and each host checked against the
        # allow-list, once (both bounded: a URL with ids in it varies without end).
        self._urls: dict[str, httpx.URL] = {}
        self._allowed: dict[tuple[str, int | None], bool] = {}
        if config.get("rate"):
            self.rate_limit = (float(config["rate"]), max(1, int(config["rate"])))

    @property
    def http(self) -> httpx.AsyncClient:
        """The shared client, on a transport (made with it, as the base class makes one) that checks every
        address it connects to with `address_refusal`."""
        if self._client is None and self._checked:
            self._transport = new_transport(self._engine, address_check=self.address_refusal)
        return super().http

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
        return host_allowed(url, self.allow)

    def address_refusal(self, host: str, port: int, address: str) -> str | None:
        """Why the connector may not connect to `address` (one that `host` resolved to), or None when it may:
        a public address may be reached, any other only when the allow-list names it (`10.0.0.5`, or
        `10.0.0.5:8080`), because a host name on the allow-list (or `*`) is no decision about the network behind
        it."""
        ip = _unmapped(ipaddress.ip_address(address.partition("%")[0]))  # a zone (`fe80::1%eth0`) is no part of it
        if (ip.is_global and not ip.is_multicast) or str(ip) in self._named_addresses \
                or f"{ip}:{port}" in self._named_addresses:
            return None
        return (f"host {host!r} resolves to {address}, {_kind(ip)} address, which connector {self.name!r} calls only "
                f"when its allow-list names it: add \"{ip}\" (or \"{ip}:{port}\") to its `allow:`")

    @classmethod
    def check_params(cls, action: str, params: Mapping[str, Any], options: Mapping[str, Any],
                     context: CheckContext) -> list[ParamProblem]:
        """A URL whose host is known before the run (written out, in `settings:`, or before the first placeholder)
        and is not on `allow:`, or that is no http(s) URL: refused when performed."""
        if action != "http.request":
            return []
        allow = [str(a).lower() for a in options.get("allow") or []]
        url = params.get("url")
        known = context.literal(url)
        text = known if isinstance(known, str) else _literal_origin(url)
        if text is None:
            return []
        try:
            parsed = httpx.URL(text)
        except httpx.InvalidURL:
            return [ParamProblem(("url",), f"'{text}' is not a URL", "write it as https://host/path")]
        if parsed.scheme not in ("http", "https"):
            return [ParamProblem(("url",), f"only http and https URLs are allowed, not '{parsed.scheme}'",
                                 "write it as https://host/path")]
        if host_allowed(parsed, allow):
            return []
        origin = parsed.host + (f":{parsed.port}" if parsed.port else "")
        return [ParamProblem(("url",), f"host '{origin}' is not on the allow-list of connector '{context.connector}' "
                                       f"(http): the call would be refused",
                             f"add \"{origin}\" to its `allow:` in automator.yaml (now: {', '.join(allow)}), or "
                             "correct the URL")]

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
        # Sent as rendered: they may carry webhook data, so `${env:…}` in them is text, never a variable.
        headers = {str(k): str(v) for k, v in (params.get("headers") or {}).items()}
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


def host_allowed(url: httpx.URL, allow: list[str]) -> bool:
    """Whether the allow-list (lower case: exact names, `*.example.com`, `host:port`) names the URL's host; an IP
    address only when written out exactly."""
    host = (url.host or "").lower()
    candidates = {host, f"{host}:{url.port}"} if url.port else {host}
    return any(fnmatch.fnmatchcase(c, pattern) for c in candidates for pattern in allow
               if not _is_ip(host) or pattern == c)


_ORIGIN = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://[^/?#]*)[/?#]")


def _literal_origin(url: Any) -> str | None:
    """The scheme and host of a templated URL when its text before the first placeholder holds them whole
    (`https://ads.example.com/{{ … }}`): the host is then the same whatever the run."""
    parts = getattr(url, "parts", ())
    first = parts[0] if parts and isinstance(parts[0], str) else ""
    found = _ORIGIN.match(first)
    return found.group(1) + "/" if found else None


def _named_addresses(allow: list[str]) -> frozenset[str]:
    """The IP addresses the allow-list names, as `ip` and `ip:port` in ipaddress's spelling (`[::1]:8080` and
    `::1:8080` both become `::1:8080`), for `address_refusal` to compare with."""
    named: set[str] = set()
    for entry in allow:
        host, port = entry, ""
        if entry.startswith("["):
            host, _, port = entry[1:].partition("]")
            port = port.removeprefix(":")
        elif entry.count(":") == 1:
            host, _, port = entry.partition(":")
        try:
            ip = _unmapped(ipaddress.ip_address(host))
        except ValueError:
            continue
        named.add(f"{ip}:{port}" if port else str(ip))
    return frozenset(named)


def _unmapped(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An IPv4-mapped IPv6 address (`::ffff:127.0.0.1`) as the IPv4 address it is."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _kind(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """What sort of non-public address `ip` is, with its article, for the refusal."""
    for attribute, words in (("is_loopback", "a loopback"), ("is_unspecified", "an unspecified"),
                             ("is_link_local", "a link-local"), ("is_multicast", "a multicast"),
                             ("is_private", "a private"), ("is_reserved", "a reserved")):
        if getattr(ip, attribute):
            return words
    return "a non-public"


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
