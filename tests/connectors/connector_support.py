"""What only the built-in connector tests share (the contract suite's own helpers ship in
`automator.connector_contract`): one event loop per module on which each connector keeps its HTTP client, the
SMS gateways' shorthands, and a project's tests run through `automator test --sandbox`."""
from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx

from automator.connector import Connector
from automator.emulator import Emulator


class Loop:
    """One event loop for the module, and the connectors made on it (each makes its HTTP client once, as in
    the daemon); all closed at the end."""

    runner: asyncio.Runner | None = None
    made: dict[str, Connector] = {}
    web: httpx.Client | None = None  # for the test's own requests to the emulator
    opened: list[Connector] = []

    @classmethod
    def connector(cls, make: Callable[[dict[str, Any]], Connector], url: str, **extra: Any) -> Connector:
        """The module's connector for these settings, made once by `make(extra)`."""
        key = json.dumps([url, extra], sort_keys=True)
        if key not in cls.made:
            cls.made[key] = make(extra)
        return cls.made[key]

    @classmethod
    def run(cls, conn: Connector, make: Callable[[], Awaitable[Any]]) -> Any:
        """Run `make()` on the module's loop; `conn` is closed when the module ends."""
        if conn not in cls.opened:
            cls.opened.append(conn)
        assert cls.runner is not None
        return cls.runner.run(make())

    @classmethod
    def post(cls, url: str, **kwargs: Any) -> httpx.Response:
        """The test's own POST (to an emulator)."""
        assert cls.web is not None
        return cls.web.post(url, **kwargs)

    @classmethod
    def get(cls, url: str, **kwargs: Any) -> httpx.Response:
        """The test's own GET (to an emulator)."""
        assert cls.web is not None
        return cls.web.get(url, **kwargs)


def run(conn: Connector, make: Callable[[], Awaitable[Any]]) -> Any:
    """Run `make()` on the module's loop (the `loop` fixture); `conn` is closed when the module ends."""
    return Loop.run(conn, make)


def post(url: str, **kwargs: Any) -> httpx.Response:
    """The test's own POST (to an emulator), on the module's client."""
    return Loop.post(url, **kwargs)


def get(url: str, **kwargs: Any) -> httpx.Response:
    """The test's own GET (to an emulator), on the module's client."""
    return Loop.get(url, **kwargs)


def send(conn: Any, to: str, text: str, key: str = "effect-1") -> dict[str, Any]:
    """What an SMS connector's `sms.send` answered for one text."""
    return dict(run(conn, lambda: conn.sms_send({"to": to, "text": text}, key)).data)


def form_of(emu: Emulator, index: int = -1) -> dict[str, str]:
    """The form an emulator received in its `index`th request."""
    return dict(parse_qsl(emu.calls[index].body.decode()))


def sandbox_test(root: Path, config: str, rules: str, test: str) -> tuple[int, str]:
    """Write a project (automator.yaml, rules/main.yaml and its test) and run `automator test --sandbox` on its
    rules: the exit code and the output."""
    from click.testing import CliRunner

    from automator.cli import cli

    (root / "automator.yaml").write_text(config)
    (root / "rules").mkdir(exist_ok=True)
    (root / "rules" / "main.yaml").write_text(rules)
    (root / "rules" / "main.test.yaml").write_text(test)
    result = CliRunner().invoke(cli, ["test", str(root / "rules"), "--sandbox"], catch_exceptions=False)
    return result.exit_code, result.output
