"""A minimal third-party connector: a guest book that receives greetings and writes thank-you lines to a file."""
from __future__ import annotations

import hmac
import json
from pathlib import Path
from typing import Any

from automator import ActionResult, CheckContext, Connector, EntityRef, Event, ParamProblem, action
from automator.checks import literal
from automator.errors import InboundRejected, Rejected


class Guestbook(Connector):
    """`type: guestbook` — webhooks `{"guest": "Анна", "id": "g1"}` in, `guestbook.write` lines out."""

    type = "guestbook"
    config_schema = {
        "type": "object",
        "required": ["type", "file", "secret"],
        "additionalProperties": False,
        "properties": {"type": {"const": "guestbook"}, "file": {"type": "string"},
                       "secret": {"type": "string", "pattern": r"^\$\{env:[A-Za-z_][A-Za-z0-9_]*\}$"}},
    }
    rate_limit = (50.0, 10)
    webhook_auth = ("secret",)  # the daemon refuses every webhook while it is unset

    def parse(self, request: Any) -> list[Event]:
        """A greeting, authenticated by the `X-Guestbook-Secret` header."""
        if not hmac.compare_digest(request.headers.get("x-guestbook-secret", "").encode(),
                                   str(self.config["secret"]).encode()):
            raise InboundRejected(401, "wrong secret", "auth")
        try:
            body = json.loads(request.body)
            guest, ident = str(body["guest"]), str(body["id"])
        except (ValueError, KeyError, TypeError) as exc:
            raise InboundRejected(400, f"expected {{guest, id}}: {exc}") from exc
        return [Event(id=f"{self.name}:{ident}", type="guest.arrived", at=request.received_at,
                      entity=EntityRef("client", ident), data={"guest": guest}, source=self.name,
                      delivery_id=ident)]

    @classmethod
    def check_params(cls, action: str, params: Any, options: Any, context: CheckContext) -> list[ParamProblem]:
        """`automator validate`'s question: a line that is blank whatever the run is refused by guestbook.write."""
        line = literal(params.get("line"))
        if action == "guestbook.write" and isinstance(line, str) and not line.strip():
            return [ParamProblem(("line",), f"connector '{context.connector}' writes no empty line",
                                 "write what the guest book should say, such as \"Спасибо, {{ event.guest }}!\"")]
        return []

    @action("guestbook.write", schema="actions/guestbook.write.json", delivery="at_least_once")
    def guestbook_write(self, params: dict[str, Any], key: str) -> ActionResult:
        """Append one line, once per effect key."""
        path = Path(self.config["file"])
        done = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        if any(line.startswith(f"{key}\t") for line in done):
            return ActionResult({"written": False})
        if not params["line"].strip():
            raise Rejected("an empty line")
        with path.open("a", encoding="utf-8") as out:
            out.write(f"{key}\t{params['line']}\n")
        return ActionResult({"written": True})
