"""The `smsru` connector: `sms.send` through SMS.ru's /sms/send, and the price of a message through /sms/cost.

Contract (reference §4.1, §6.1): a form POST carrying `api_id`, `to` (comma-separated international digits),
`msg`, `json=1`, `from` and `test=1`; HTTP 200 even for failures, read from the body, per number as well.
Choices made where the reference is silent or unconfirmed:
- Rate limit: SMS.ru publishes none (it protects itself with codes 206/230-233). (assume) 5 requests a second,
  bursts of 10: far above what a salon sends, and gentle enough never to look like abuse.
- `deduplicates` stays False: SMS.ru takes no key. Its anti-flood codes 231/232 (the same text to the same
  number within a minute / a day) are read as "already sent", but they are not a key: a repeat outside
  those windows, or of a text that changed, would reach the client twice.
- 206/230 (daily limits) retry after the next midnight, Moscow time (assume: SMS.ru is a Moscow service).
- Several numbers in `to` (comma- or semicolon-separated): when some go out and others fail, the action is
  done and its result lists the failures (a retry would send again to those that got it); when none goes
  out, it retries if any failure is worth retrying, else it is refused.
- HTTP statuses other than 200 come from SMS.ru's proxies (unconfirmed, §7.4): 429/500/502/503 retry; 504 and
  an unreadable 200 are uncertain (the send may have happened).
- Phones are read as Russian when they carry no country code; invalid ones are refused before sending, as is
  a text longer than 8 SMS (code 205).

`cost(params)` is vendor-free and has no effect: what `sms.send` with the same params would cost. `automator
dry-run` computes plans without connectors or network, so it does not call it; a daemon or a CLI command that
wants prices (e.g. to show the cost of a planned mass mailing) builds the connector and awaits `cost`.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from automator.connector import ActionResult, WebConnector, action
from automator.errors import Rejected
from automator.checks import CheckContext, ParamProblem
from ..sms import MAX_PARTS_SETTING, ReportBySms, Segments, check_sms, gateway_digits, prepare
from . import api

DEFAULT_BASE_URL = "https://sms.ru"
ENV_REFERENCE = r"^\$\{env:[A-Za-z_][A-Za-z0-9_]*\}$"


class Smsru(ReportBySms, WebConnector):
    """SMS through SMS.ru: one request per message, however many numbers; every answer code classified."""

    type = "smsru"
    default_base_url = DEFAULT_BASE_URL
    config_schema = {
        "type": "object",
        "required": ["type", "api_id"],
        "additionalProperties": False,
        "properties": {
            "type": {"const": "smsru"},
            "api_id": {"type": "string", "pattern": ENV_REFERENCE,
                       "description": "The account's api_id, as an environment reference: \"${env:SMSRU_API_ID}\"."},
            "sender": {"type": "string", "minLength": 1,
                       "description": "An approved sender name (sent as `from`); the account's default without it."},
            "test": {"type": "boolean",
                     "description": "SMS.ru's test mode: validated and answered like a send, not sent, not charged."},
            "base_url": {"type": "string", "format": "uri", "description": "The API's address (default https://sms.ru)."},
            "timeout": {"type": "number", "exclusiveMinimum": 0, "description": "Seconds for the whole call."},
            "max_parts": MAX_PARTS_SETTING,
        },
    }
    rate_limit = (5.0, 10)
    deduplicates = False

    def __init__(self, name: str, config: Mapping[str, Any], *, transport: Any = None) -> None:
        super().__init__(name, config, transport=transport)
        self.api_id = str(config.get("api_id") or "")
        self.sender = config.get("sender") or None
        self.test = bool(config.get("test", False))

    @action("sms.send")
    async def sms_send(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """Send `text` to `to` (one number or several); the result lists each number's outcome and the parts."""
        phones, parts = self._prepare(params)
        what = "SMS.ru sms/send"
        response = await self.request("POST", api.SEND_PATH, what, data=self._form(phones, str(params["text"])))
        answer = api.read(response, phones, what)
        numbers = [n.to_json() for n in answer.numbers]
        data: dict[str, Any] = {
            "gateway": self.type, "test": self.test, "to": phones, **parts.to_json(), "messages": numbers,
            "sent": sum(n.outcome == "sent" for n in answer.numbers),
            "duplicates": sum(n.outcome == "duplicate" for n in answer.numbers),
            "failed": sum(n.outcome == "failed" for n in answer.numbers),
        }
        if "balance" in answer.extra:
            data["balance"] = answer.extra["balance"]
        return ActionResult(data)

    async def cost(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """What `sms.send` with these params would cost (SMS.ru /sms/cost): nothing is sent or charged.

        Returns `{to, encoding, length, units, parts, total_cost, total_sms, messages: [{phone, status ("ok" or
        "failed"), code, cost, sms}]}`; raises the same errors as `sms.send` (an invalid number or a text too long is refused
        before any call)."""
        phones, parts = self._prepare(params)
        what = "SMS.ru sms/cost"
        response = await self.request("POST", api.COST_PATH, what, data=self._form(phones, str(params["text"])))
        answer = api.read(response, phones, what)
        return {"gateway": self.type, "to": phones, **parts.to_json(),
                "total_cost": answer.extra.get("total_cost"), "total_sms": answer.extra.get("total_sms"),
                "messages": [{**n.to_json(), "status": "ok" if n.outcome == "sent" else n.outcome}
                             for n in answer.numbers]}

    def _prepare(self, params: Mapping[str, Any]) -> tuple[list[str], Segments]:
        phones, parts = prepare(params, "SMS.ru")
        refusal = _too_long(parts)
        if refusal is not None:
            raise Rejected(refusal)
        return phones, parts

    @classmethod
    def check_params(cls, action: str, params: Mapping[str, Any], options: Mapping[str, Any],
                     context: CheckContext) -> list[ParamProblem]:
        """A `to` that is no phone, an empty text, a text over 8 SMS (refused) or over `max_parts` (a warning)."""
        if action == "report.send":  # its `to` is a phone too; its text is made when the report is
            return check_sms({"to": params.get("to")}, options, context, _too_long)
        return check_sms(params, options, context, _too_long) if action == "sms.send" else []

    def _form(self, phones: list[str], text: str) -> dict[str, str]:
        return api.form(self.api_id, [gateway_digits(p) for p in phones], text, sender=self.sender, test=self.test)

    @classmethod
    def sandbox(cls, name: str, options: Mapping[str, Any], *, base_url: str, hook_url: str
                ) -> tuple[dict[str, Any], Any]:
        """Settings aimed at a fresh SMS.ru emulator with a fixed sandbox api_id; the configured sender is
        approved there. SMS.ru sends no webhooks the connector reads, so `hook_url` goes unused."""
        from .emulator import SANDBOX_API_ID, SmsruEmulator

        sender = options.get("sender")
        settings: dict[str, Any] = {"api_id": SANDBOX_API_ID, "base_url": base_url, "test": bool(options.get("test"))}
        if sender:
            settings["sender"] = sender
        return settings, SmsruEmulator(api_id=SANDBOX_API_ID, senders=[sender] if sender else [], hook_url=hook_url)


def _too_long(parts: Segments) -> str | None:
    """Why SMS.ru refuses a text of these parts (code 205), or None."""
    if parts.parts > api.MAX_PARTS:
        return (f"SMS.ru: the message takes {parts.parts} SMS ({parts.length} characters, {parts.encoding}); "
                f"SMS.ru sends at most {api.MAX_PARTS}")
    return None
