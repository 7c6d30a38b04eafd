"""What the outbound HTTP layer refuses before anything is sent: a request head that would not reach the server
as the request that was meant, and an address its caller may not connect to.

A header value rendered from a webhook can hold anything: `a\\r\\nContent-Length: 0\\r\\n\\r\\nGET /admin ...`
written as it is ends the request early and starts a second one on the same connection. So every request, on
every engine, is checked by `check_head` before a connection is taken (by automator/http1.py on the very bytes
it is about to write; by automator.http.send for httpx's own), against the grammar of RFC 9110/9112: the
method and header names are tokens, the target is visible ASCII, header values hold no control character but
HTAB, and the framing is the transport's (one Content-Length, equal to the body's; Transfer-Encoding only for a
streamed body).

An address check (`AddressCheck`) is given to automator.http.new_transport by a caller that must not reach some
addresses (the `http` connector: not the loopback or the private network unless its allow-list names them). It
is applied where the connection is made, to every address the host resolves to, and the socket is opened to an
address that passed: a name that resolves to a public address for a check and to 127.0.0.1 for the connect
(DNS rebinding) cannot slip between the two.
"""
from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Callable, Iterable, Sequence
from typing import NoReturn

import httpx

__all__ = ["AddressCheck", "AddressRefused", "UnsafeRequest", "allowed_addresses", "check_head", "request_head",
           "resolve_checked"]

# Host, port and one address it resolved to -> why it may not be connected to, or None when it may.
AddressCheck = Callable[[str, int, str], str | None]


class UnsafeRequest(httpx.LocalProtocolError):
    """A request whose head cannot be written as meant (a CR, LF or NUL in a header, a method or target that is
    not one word, framing headers that contradict the body); refused before anything was sent."""


class AddressRefused(httpx.LocalProtocolError):
    """Every address the host resolves to is one the caller may not connect to; nothing was sent."""


_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 5.6.2
_TARGET = re.compile(rb"[\x21-\x7e]+")  # visible ASCII: no space, CR, LF or NUL can end the request line
_NOT_IN_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")  # RFC 9110 5.5: controls other than HTAB
_NOT_IN_HEAD = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # the same, but CR and LF (counted apart)
_CONTROL_NAMES = {0: "NUL", 10: "LF", 13: "CR"}
# Header names seen valid, with what framing each is (0 none, 1 Host, 2 Content-Length, 3 Transfer-Encoding):
# the same dozen names come with every request, so each is checked once, not per request.
_FRAMING = {b"host": 1, b"content-length": 2, b"transfer-encoding": 3}
_NAMES: dict[bytes, int] = {}
NAMES_KEPT = 1024


def request_head(method: str, target: bytes, headers: Sequence[tuple[bytes, bytes]]) -> bytes:
    """The request line and headers as HTTP/1.1 puts them on the wire, ending with the blank line."""
    return b"".join((method.encode("ascii", "replace"), b" ", target, b" HTTP/1.1\r\n",
                     *(b"%s: %s\r\n" % pair for pair in headers), b"\r\n"))


def check_head(method: str, target: bytes, headers: Sequence[tuple[bytes, bytes]], body_length: int | None,
               head: bytes | None = None) -> bytes:
    """The head (`head`, when the caller has made it with request_head already) if it parses, for any HTTP/1.1
    server, as exactly this request; else UnsafeRequest. `headers` are raw name/value pairs, as httpx keeps
    them; `body_length` is the body's size in bytes, None when it is streamed (chunked). Values are never
    echoed: they may hold secrets."""
    if head is None:
        head = request_head(method, target, headers)
    lines = len(headers) + 2
    # request_head writes one CR LF per line: any other CR or LF came in with a method, target, name or value.
    if (head.count(b"\n") != lines or head.count(b"\r") != lines or _NOT_IN_HEAD.search(head) is not None
            or not _TARGET.fullmatch(target)):
        _explain(method, target, headers)
    if not _TOKEN.fullmatch(method.encode("ascii", "replace")):
        _explain(method, target, headers)
    hosts = lengths = encodings = 0
    for name, value in headers:
        kind = _NAMES.get(name)
        if kind is None:
            if not _TOKEN.fullmatch(name):
                _explain(method, target, headers)
            if len(_NAMES) >= NAMES_KEPT:
                _NAMES.clear()
            kind = _NAMES[name] = _FRAMING.get(name.lower(), 0)
        if not kind:
            continue
        if kind == 1:
            hosts += 1
            continue
        value = value.strip(b" \t")
        if kind == 2:
            lengths += 1
            if body_length is not None and value != b"%d" % body_length:
                raise UnsafeRequest(f"Content-Length says {value[:20]!r}, the body has {body_length} bytes")
        else:
            encodings += 1
            if body_length is not None or value.lower() != b"chunked":
                raise UnsafeRequest("Transfer-Encoding is the transport's to set, for a streamed body only")
    if hosts != 1 or lengths > 1 or encodings > 1 or (lengths and encodings):
        raise UnsafeRequest(f"the head has {hosts} Host, {lengths} Content-Length and {encodings} "
                            "Transfer-Encoding headers (one Host, and one way of framing the body at most)")
    return head


def _explain(method: str, target: bytes, headers: Sequence[tuple[bytes, bytes]]) -> NoReturn:
    """Raise UnsafeRequest saying which part of a refused head is wrong (the slow path)."""
    if not _TOKEN.fullmatch(method.encode("ascii", "replace")):
        raise UnsafeRequest(f"the method {method[:40]!r} is not an HTTP method name")
    if not _TARGET.fullmatch(target):
        raise UnsafeRequest("the request target (path and query) holds a space or a control character")
    for name, value in headers:
        if not _TOKEN.fullmatch(name):
            raise UnsafeRequest(f"the header name {name[:60]!r} is not an HTTP token (letters, digits, -, _ ...)")
        bad = _NOT_IN_VALUE.search(value)
        if bad is not None:
            code = bad.group()[0]
            raise UnsafeRequest(f"the value of header {name.decode('ascii')} holds "
                                f"{_CONTROL_NAMES.get(code, f'the control character 0x{code:02x}')}")
    raise UnsafeRequest("the request head is not HTTP/1.1")


def allowed_addresses(host: str, port: int, addresses: Iterable[str], check: AddressCheck) -> list[str]:
    """The `addresses` of `host` that `check` lets through, in their order; AddressRefused when none is."""
    kept: list[str] = []
    refusals: list[str] = []
    for address in addresses:
        reason = check(host, port, address)
        if reason is None:
            kept.append(address)
        else:
            refusals.append(reason)
    if not kept:
        raise AddressRefused(refusals[0] if refusals else f"{host} resolves to no address")
    return kept


async def resolve_checked(host: str, port: int, check: AddressCheck) -> list[str]:
    """Resolve `host` (an IP literal is its own answer) and keep the addresses `check` allows; socket.gaierror
    when the name does not resolve, AddressRefused when no address is allowed."""
    try:
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    return allowed_addresses(host, port, addresses, check)
