"""The outbound HTTP layer every connector uses: one tuned httpx client per connector and a total deadline."""
from __future__ import annotations

import asyncio
import importlib.util
import os
import weakref
from collections.abc import Mapping
from typing import Any

import httpcore
import httpx
import orjson

from automator.call_start import call_starting
from automator.http_safety import AddressCheck, AddressRefused, UnsafeRequest, check_head, resolve_checked

__all__ = ["DEFAULT_ENGINE", "ENGINES", "ENGINE_VARIABLE", "DeadlineExceeded", "default_engine", "new_client",
           "new_transport", "send"]

# Every engine new_transport knows. "httptools" is ours (automator/http1.py): httpx's Request written as it is
# and the answer read into httpx's Response, framed by httptools' C parser; a tenth of httpx's own CPU per
# request (bench/http_client.py). "httpx" is httpx's own transport (httpcore and h11): slower, and kept as the
# operator's way out should ours misbehave against some server, since it is what the rest of the world runs.
ENGINES = ("httptools", "httpx")
DEFAULT_ENGINE = "httptools"
# The operator's choice of engine, read in both of the daemon's processes (the second inherits the environment).
ENGINE_VARIABLE = "AUTOMATOR_HTTP_ENGINE"

# An idle connection is dropped after this many seconds: sooner than servers usually drop it (nginx: 75 s),
# so we close first rather than send a POST into a socket the server is closing.
KEEPALIVE_EXPIRY = 5.0
# httpcore re-scans every pooled connection, and counts the idle ones again for each, whenever a request
# starts or ends: more idle connections kept is more CPU per request (bench: 1.6 ms at 20, 2.5 ms at 100,
# 32 in flight). Only the httpx engine has this pool.
HTTPCORE_MAX_IDLE = 20


class DeadlineExceeded(httpx.TimeoutException):
    """The whole exchange (connect, send, wait, read the body) took longer than the caller's deadline."""


def default_engine() -> str:
    """The engine `new_client` uses when no transport is injected: the one AUTOMATOR_HTTP_ENGINE names, else
    "httptools". ValueError names the choices when the variable names no engine."""
    engine = os.environ.get(ENGINE_VARIABLE, "").strip().lower() or DEFAULT_ENGINE
    if engine not in ENGINES:
        raise ValueError(f"{ENGINE_VARIABLE}={engine!r} names no HTTP engine; one of {', '.join(ENGINES)}")
    return engine


def new_transport(engine: str | None = None, *, max_connections: int = 100,
                  address_check: AddressCheck | None = None) -> httpx.AsyncBaseTransport:
    """A pooled keep-alive transport on `engine` (one of ENGINES; `default_engine()` when None).

    Neither engine reads proxy or certificate variables, retries, or follows redirects; both raise httpx's
    exception classes for the same failures (a refused connect is httpx.ConnectError, a server hanging up
    before answering is httpx.RemoteProtocolError, ...). `address_check` is asked about every address a host
    resolves to when a connection is made, and the socket goes to one it allowed
    (automator.http_safety.AddressRefused when it allowed none).
    """
    engine = engine or default_engine()
    if engine not in ENGINES:
        raise ValueError(f"unknown HTTP engine {engine!r}; one of {', '.join(ENGINES)}")
    # httptools is a dependency, but a platform without its wheel still gets a client that behaves the same,
    # at more CPU.
    if engine == "httptools" and importlib.util.find_spec("httptools") is not None:
        from automator.http1 import Http1Transport

        return Http1Transport(max_connections=max_connections, keepalive_expiry=KEEPALIVE_EXPIRY,
                              address_check=address_check)
    limits = httpx.Limits(max_connections=max_connections,
                          max_keepalive_connections=min(max_connections, HTTPCORE_MAX_IDLE),
                          keepalive_expiry=KEEPALIVE_EXPIRY)
    transport = httpx.AsyncHTTPTransport(trust_env=False, limits=limits, retries=0)
    if address_check is not None:
        # httpx takes no network backend of its own; its pool (httpx < 0.29, pinned) does.
        pool = transport._pool
        pool._network_backend = _CheckedBackend(pool._network_backend, address_check)
    return transport


class _CheckedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend connecting only to addresses the check allows (the httpx engine's hook)."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend, check: AddressCheck) -> None:
        self.inner = inner
        self.check = check

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None, socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        """Resolve, check, and connect to the first allowed address that answers (TLS still names `host`)."""
        try:
            async with asyncio.timeout(timeout):
                addresses = await resolve_checked(host, port, self.check)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"could not resolve {host} in {timeout:g} s") from exc
        except OSError as exc:
            raise httpcore.ConnectError(f"{host}:{port}: {exc}") from exc
        for address in addresses[:-1]:  # the next one when one does not answer, as create_connection does
            try:
                return await self.inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError:
                pass
        return await self.inner.connect_tcp(addresses[-1], port, timeout, local_address, socket_options)

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        """Not a network address: refused as such."""
        raise AddressRefused("a Unix socket is not an address this client may connect to")

    async def sleep(self, seconds: float) -> None:
        """As the inner backend sleeps."""
        await self.inner.sleep(seconds)


def new_client(*, base_url: str = "", transport: httpx.AsyncBaseTransport | None = None,
               max_connections: int = 100, timeout: float = 10.0,
               headers: Mapping[str, str] | None = None) -> httpx.AsyncClient:
    """The one way a connector gets an HTTP client; create one per connector, share it, close it on stop.

    Redirects are not followed (a CRM API answering 3xx is an error to see, and following one would resend a
    POST and its credentials elsewhere), proxy and certificate environment variables are ignored (the daemon
    must not behave differently with the shell it was started from), and nothing is retried (the daemon's
    outbox owns retries). `timeout` bounds each phase (connect, each read, each write, waiting for the pool);
    `send` bounds the whole exchange. `transport` replaces the engine, e.g. with httpx.MockTransport in tests.
    """
    return httpx.AsyncClient(
        base_url=base_url,
        transport=transport if transport is not None else new_transport(max_connections=max_connections),
        timeout=httpx.Timeout(timeout),
        headers=headers,
        follow_redirects=False,
        trust_env=False,
    )


# Keywords of httpx.AsyncClient.request that go to send() rather than build_request().
_SEND_KEYWORDS = frozenset({"auth", "follow_redirects"})


_MERGED: weakref.WeakKeyDictionary[httpx.AsyncClient, tuple[httpx.URL, dict[str, httpx.URL]]] = \
    weakref.WeakKeyDictionary()
MERGED_PER_CLIENT = 1024  # paths with ids in them vary without end: the cache is emptied when it is full


def _merged(client: httpx.AsyncClient, url: httpx.URL | str) -> httpx.URL | str:
    """The absolute URL of a connector's relative one, merged with the client's base URL once, not per call:
    parsing and merging two URLs is a quarter of httpx's own cost per request (bench/connector_calls.py)."""
    merge = getattr(client, "_merge_url", None)
    if not isinstance(url, str) or merge is None:
        return url
    base, known = _MERGED.get(client, (None, None))
    if base is not client.base_url or known is None or len(known) >= MERGED_PER_CLIENT:
        base, known = client.base_url, {}
        _MERGED[client] = (base, known)
    found = known.get(url)
    if found is None:
        found = known[url] = merge(url)
    return found


async def send(client: httpx.AsyncClient, method: str, url: httpx.URL | str, *, deadline: float,
               **kwargs: Any) -> httpx.Response:
    """Perform one request and read its whole body within `deadline` seconds, or raise DeadlineExceeded.

    `kwargs` are those of httpx.AsyncClient.request (json=, params=, headers=, timeout=, auth=, ...). httpx's
    own timeouts restart with every chunk read, so a server trickling a byte at a time would hold a worker
    for ever; the deadline is what bounds a call. Other httpx errors pass through unchanged. A request whose
    head would not reach the server as meant (a CR or LF in a header, ...) raises
    automator.http_safety.UnsafeRequest, an httpx.LocalProtocolError, before any connection is taken.
    """
    send_kwargs = {key: kwargs.pop(key) for key in _SEND_KEYWORDS & kwargs.keys()}
    if "json" in kwargs and "content" not in kwargs:
        _encode_json(kwargs)
    # Built first so that the exception carries the request, as httpx's own timeouts do.
    try:
        request = client.build_request(method, _merged(client, url), **kwargs)
    except UnicodeEncodeError as exc:  # httpx writes header names and values as ASCII
        raise UnsafeRequest("a header name or value is not ASCII text") from exc
    own_engine = getattr(getattr(client, "_transport", None), "checks_heads", False)
    if not own_engine:
        _check_request(request)  # Http1Transport checks the very bytes it writes: no need to do it twice
        await call_starting()  # Http1Transport waits for it later, with a connection in hand
    try:
        async with asyncio.timeout(deadline) as budget:
            if send_kwargs or not _plain(client):
                return await client.send(request, **send_kwargs)
            return await _send_plain(client, request)
    except TimeoutError as exc:
        if budget.expired():
            raise DeadlineExceeded(f"{method} {request.url} took longer than {deadline:g} s",
                                   request=request) from exc
        raise


def _check_request(request: httpx.Request) -> None:
    """check_head on the request as httpx built it (the client's own headers merged in), before a connection is
    taken: the check of the transports that do not make it themselves (httpx's own, a test's)."""
    try:
        length: int | None = len(request.content)
    except httpx.RequestNotRead:
        length = None
    try:
        check_head(request.method, request.url.raw_path, request.headers.raw, length)
    except UnsafeRequest as exc:
        exc.request = request
        raise


_JSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def _encode_json(kwargs: dict[str, Any]) -> None:
    # The bytes httpx would send for json= (compact, UTF-8), made by orjson: several times faster on a whole CRM
    # record. NaN, which is not JSON, goes as null (as in the store); what orjson refuses (integers past 64 bits,
    # values it does not know) is left to httpx, which raises as it always did.
    try:
        content = orjson.dumps(kwargs["json"], option=_JSON_OPTIONS)
    except (orjson.JSONEncodeError, TypeError):
        return
    del kwargs["json"]
    kwargs["content"] = content
    headers = kwargs.get("headers")
    if not headers:
        kwargs["headers"] = {"Content-Type": "application/json"}
    elif not any(str(name).lower() == "content-type" for name in headers):
        kwargs["headers"] = {**headers, "Content-Type": "application/json"}


def _plain(client: httpx.AsyncClient) -> bool:
    """True for a client as new_client makes it: no auth, no event hooks, the one transport for every URL."""
    return (type(client) is httpx.AsyncClient and client.auth is None and not any(client.event_hooks.values())
            and not getattr(client, "_mounts", True) and hasattr(client, "_transport"))


async def _send_plain(client: httpx.AsyncClient, request: httpx.Request) -> httpx.Response:
    """What client.send does for such a client, without the layers it has no use for (auth flow, redirect
    loop, hooks, the stream wrapper that times the body): half of httpx's own CPU per request
    (bench/connector_calls.py). The answer is read whole and its cookies kept, as client.send does."""
    if client.is_closed:
        raise RuntimeError("Cannot send a request, as the client has been closed.")
    response = await client._transport.handle_async_request(request)
    response.request = request
    response.default_encoding = getattr(client, "_default_encoding", "utf-8")
    try:
        await response.aread()
    finally:
        await response.aclose()
    if "set-cookie" in response.headers:
        client.cookies.extract_cookies(response)
    return response
