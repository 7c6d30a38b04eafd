"""Shared fixtures: small real projects written into tmp_path."""
from __future__ import annotations

import signal
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

CONFIG = """\
timezone: {tz}
branches:
  main: {{hours: "09:00-21:00", days: mon-sat}}
default_branch: main
connectors:
  crm: {{type: local}}
  sms: {{type: local}}
  # What the tests' own forms post (a `local` connector's `events:`), so that rules on them validate.
  forms:
    type: local
    events:
      nps.received: {{entity: client, data: {{score: number, comment: text, label: text}}}}
      nps.logged: {{entity: client, data: {{score: number}}}}
      payment.received: {{entity: client, data: {{amount: money}}}}
      order.paid: {{data: {{amount: money}}}}
      visit.completed: {{entity: client}}
      guest.arrived: {{data: {{name: text}}}}
      probe.sent: {{}}
settings: {{review_url: "https://example.com/review"}}
limits: {{chain_depth: 5}}
"""

PIPELINES = """\
pipelines:
  sales:
    connector: crm
    stages:
      new: {id: "NEW"}
      in_progress: {id: "PREPARATION"}
      booked: {id: "BOOKED"}
      won: {id: "WON", outcome: won}
      lost: {id: "LOSE", outcome: lost}
  other:
    connector: crm
    stages:
      new: {id: "C2:NEW"}
      in_progress: {id: "C2:PREPARATION"}
"""


@pytest.fixture
def make_project(tmp_path: Path) -> Callable[..., Path]:
    """Write automator.yaml, a pipeline file and rule files; returns the project folder."""
    def make(rules: str | dict[str, str], *, tz: str = "Europe/Moscow", config: str | None = None,
             pipelines: str = PIPELINES, segments: str | None = None) -> Path:
        (tmp_path / "automator.yaml").write_text(config if config is not None else CONFIG.format(tz=tz))
        (tmp_path / "pipelines").mkdir(exist_ok=True)
        (tmp_path / "pipelines" / "sales.yaml").write_text(pipelines)
        if segments is not None:
            (tmp_path / "segments.yaml").write_text(textwrap.dedent(segments))
        files = {"rules.yaml": rules} if isinstance(rules, str) else rules
        (tmp_path / "rules").mkdir(exist_ok=True)
        for name, text in files.items():
            (tmp_path / "rules" / name).write_text(textwrap.dedent(text))
        return tmp_path
    return make


_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "0.0.0.0", ""}


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests talk to 127.0.0.1 only: a name or address outside it fails at once instead of reaching out."""
    import ipaddress
    import socket

    real_getaddrinfo, real_connect, real_connect_ex = socket.getaddrinfo, socket.socket.connect, socket.socket.connect_ex

    def outside(host: object) -> bool:
        text = host.decode() if isinstance(host, bytes) else str(host)
        if text in _LOOPBACK_NAMES:
            return False
        try:
            return not ipaddress.ip_address(text.split("%")[0]).is_loopback
        except ValueError:
            return True

    def getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
        if host is not None and outside(host):
            raise socket.gaierror(socket.EAI_NONAME, f"tests are loopback-only: {host!r} refused")
        return real_getaddrinfo(host, *args, **kwargs)  # type: ignore[arg-type]

    def guard(sock: socket.socket, address: object) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple) and outside(address[0]):
            raise ConnectionRefusedError(f"tests are loopback-only: {address!r} refused")

    def connect(sock: socket.socket, address: object) -> None:
        guard(sock, address)
        return real_connect(sock, address)  # type: ignore[arg-type]

    def connect_ex(sock: socket.socket, address: object) -> int:
        guard(sock, address)
        return real_connect_ex(sock, address)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)


HANG_S = 5  # the hostile inputs these tests feed take microseconds when sound, and ages when not


@pytest.fixture
def hang_alarm() -> Iterator[None]:
    """Fails the test if it runs HANG_S seconds: a hang detector for hostile inputs (catastrophic backtracking,
    an alias bomb expanded, a file parsed that should have been refused), not a time bound. How fast a refusal is
    belongs in a benchmark. Needs SIGALRM (the tests that use it skip without it)."""
    if not hasattr(signal, "setitimer"):
        pytest.skip("needs SIGALRM to stop a hang")

    def hung(signum: int, frame: Any) -> None:
        raise AssertionError(f"still running after {HANG_S} s: the hostile input was not refused in time")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.setitimer(signal.ITIMER_REAL, HANG_S)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
