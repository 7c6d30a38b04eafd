"""The guest book keeps the connector contract: automator's own suite, imported from the installed automator as any
third-party package's tests would, run against the package as installed."""
from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from automator.connector import Inbound
from automator.connector_contract import ConnectorContract, Hooks, Sandbox, Sandboxes

SECRET = "s3cret"


class TestGuestbookContract(ConnectorContract):
    type = "guestbook"
    written = {"file": "book.txt", "secret": "${env:BOOK_SECRET}"}

    @pytest.fixture(autouse=True)
    def _book(self, tmp_path: Path) -> None:
        self.book = tmp_path / "book.txt"

    def build(self, sandbox: Sandboxes) -> Sandbox:
        # No remote system: it writes a local file.
        return Sandbox(self.cls()("it", {"file": str(self.book), "secret": SECRET}), None, "", Hooks("it"))

    def webhook(self, box: Sandbox, secret: str | None) -> Inbound:
        return self._inbound(json.dumps({"guest": "Анна", "id": "g1"}).encode(), secret)

    def malformed(self, box: Sandbox) -> list[Inbound]:
        return [self._inbound(body, SECRET) for body in (b"{not json", b"[]", b'{"guest": "Anna"}')]

    async def samples(self, box: Sandbox) -> dict[str, Mapping[str, Any]]:
        return {"guestbook.write": {"line": "Спасибо, Анна!"}}

    @staticmethod
    def _inbound(body: bytes, secret: str | None) -> Inbound:
        headers = {"content-type": "application/json", **({} if secret is None else {"x-guestbook-secret": secret})}
        return Inbound("it", "POST", "/hooks/it", {}, headers, body, datetime(2026, 3, 2, 12, tzinfo=timezone.utc))
