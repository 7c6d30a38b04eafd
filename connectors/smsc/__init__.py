"""The `smsc` connector: `sms.send` through SMSC's /sys/send.php, and a message's price (cost=1, nothing sent).

Contract (reference §4.2, §6.1, §6.2): a form POST carrying `login`+`psw` (or `apikey`), `phones`
(comma-separated international digits), `mes`, `sender`, `charset=utf-8`, `fmt=3`, `op=1`, `cost=3` and `id`,
a stable number derived from the effect key; HTTP 200 even for failures (`{"error", "error_code"}`).
Choices made where the reference is silent or unconfirmed:
- Error 9 (an identical request within a minute) means the first one was sent: the action is done. Error 4
  (IP blocked) retries after 10 minutes; every other code (1-3, 5-8) is refused.
- `deduplicates` stays False. SMSC refuses a repeat of the same request for one minute only; the daemon
  repeats an interrupted effect after its backoff or, when the process died, after a restart or the
  5-minute lease, by which time SMSC would send the SMS again. A client must not get a reminder twice, so an
  interrupted send is parked for an operator, as any at_most_once effect.
- Rate limit: SMSC publishes none per second (it blocks an IP after repeated failures: error 4). (assume) 5
  requests a second, bursts of 10.
- (assume) `mes` is at most 1000 characters (SMSC's own cap; not in the reference): longer is refused before
  sending. `op=1`'s per-number list (§7.5) is read as `phones: [{phone, cost[, error]}]`.
- The backup host www2.smsc.ru is not tried: a failed call is the daemon's to retry; set `base_url` to move.
- Phones are read as Russian when they carry no country code; invalid ones are refused before sending.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from automator.connector import ActionResult, WebConnector, action
from automator.errors import Rejected
from automator.checks import CheckContext, ParamProblem
from ..sms import MAX_PARTS_SETTING, ReportBySms, Segments, check_sms, gateway_digits, prepare
from . import api

DEFAULT_BASE_URL = "https://smsc.ru"
ENV_REFERENCE = r"^\$\{env:[A-Za-z_][A-Za-z0-9_]*\}$"


class Smsc(ReportBySms, WebConnector):
    """SMS through SMSC: one request per message, identified by an id derived from the effect key."""

    type = "smsc"
    default_base_url = DEFAULT_BASE_URL
    config_schema = {
        "type": "object",
        "required": ["type"],
        "additionalProperties": False,
        "anyOf": [{"required": ["login", "psw"]}, {"required": ["apikey"]}],
        "properties": {
            "type": {"const": "smsc"},
            "login": {"type": "string", "minLength": 1,
                      "description": "The account's login, best as \"${env:SMSC_LOGIN}\" (it is not a secret)."},
            "psw": {"type": "string", "pattern": ENV_REFERENCE,
                    "description": "The account's password, as \"${env:SMSC_PSW}\"."},
            "apikey": {"type": "string", "pattern": ENV_REFERENCE,
                       "description": "An API key instead of login and password, as \"${env:SMSC_APIKEY}\"."},
            "sender": {"type": "string", "minLength": 1,
                       "description": "An approved sender name; the account's default without it."},
            "base_url": {"type": "string", "format": "uri", "description": "The API's address (default https://smsc.ru)."},
            "timeout": {"type": "number", "exclusiveMinimum": 0, "description": "Seconds for the whole call."},
            "max_parts": MAX_PARTS_SETTING,
        },
    }
    rate_limit = (5.0, 10)
    deduplicates = False

    def __init__(self, name: str, config: Mapping[str, Any], *, transport: Any = None) -> None:
        super().__init__(name, config, transport=transport)
        self.auth = api.credentials(config.get("login"), config.get("psw"), config.get("apikey"))
        self.sender = config.get("sender") or None

    @action("sms.send")
    async def sms_send(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """Send `text` to `to` (one number or several); the result lists each number's outcome and the parts."""
        phones, parts = self._prepare(params)
        msg_id = api.message_id(key)
        what = "SMSC send.php"
        data = api.form(self.auth, [gateway_digits(p) for p in phones], str(params["text"]), sender=self.sender,
                        msg_id=msg_id, cost=3)
        answer = api.read(await self.request("POST", api.SEND_PATH, what, data=data), phones, what)
        out: dict[str, Any] = {
            "gateway": self.type, "id": msg_id, "to": phones, **parts.to_json(), "messages": answer.numbers,
            "sent": sum(n["status"] == "sent" for n in answer.numbers),
            "duplicates": sum(n["status"] == "duplicate" for n in answer.numbers),
            "failed": sum(n["status"] == "failed" for n in answer.numbers),
        }
        for field in ("cnt", "cost", "balance"):
            if field in answer.extra:
                out[field] = answer.extra[field]
        return ActionResult(out)

    async def cost(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """What `sms.send` with these params would cost (send.php with cost=1): nothing is sent or charged.

        Returns `{to, encoding, length, units, parts, cost, cnt, messages: [{phone, status ("ok" or "failed")}]}`; raises as `sms.send` does."""
        phones, parts = self._prepare(params)
        what = "SMSC send.php cost"
        data = api.form(self.auth, [gateway_digits(p) for p in phones], str(params["text"]), sender=self.sender,
                        msg_id=None, cost=1)
        answer = api.read(await self.request("POST", api.SEND_PATH, what, data=data), phones, what)
        return {"gateway": self.type, "to": phones, **parts.to_json(), "cost": answer.extra.get("cost"),
                "cnt": answer.extra.get("cnt"),
                "messages": [{**n, "status": "ok" if n["status"] == "sent" else n["status"]} for n in answer.numbers]}

    def _prepare(self, params: Mapping[str, Any]) -> tuple[list[str], Segments]:
        phones, parts = prepare(params, "SMSC")
        refusal = _too_long(parts)
        if refusal is not None:
            raise Rejected(refusal)
        return phones, parts

    @classmethod
    def check_params(cls, action: str, params: Mapping[str, Any], options: Mapping[str, Any],
                     context: CheckContext) -> list[ParamProblem]:
        """A `to` that is no phone, an empty text, a text over 1,000 characters (refused) or over `max_parts`
        (a warning)."""
        if action == "report.send":  # its `to` is a phone too; its text is made when the report is
            return check_sms({"to": params.get("to")}, options, context, _too_long)
        return check_sms(params, options, context, _too_long) if action == "sms.send" else []

    @classmethod
    def sandbox(cls, name: str, options: Mapping[str, Any], *, base_url: str, hook_url: str
                ) -> tuple[dict[str, Any], Any]:
        """Settings aimed at a fresh SMSC emulator with fixed sandbox credentials (login and password, or
        an API key when the real settings use one); the configured sender is approved there."""
        from .emulator import SANDBOX_APIKEY, SANDBOX_LOGIN, SANDBOX_PSW, SmscEmulator

        sender = options.get("sender")
        settings: dict[str, Any] = {"base_url": base_url}
        if options.get("apikey"):
            settings["apikey"] = SANDBOX_APIKEY
        else:
            settings.update(login=SANDBOX_LOGIN, psw=SANDBOX_PSW)
        if sender:
            settings["sender"] = sender
        emulator = SmscEmulator(login=SANDBOX_LOGIN, psw=SANDBOX_PSW, apikey=SANDBOX_APIKEY,
                                senders=[sender] if sender else [], hook_url=hook_url)
        return settings, emulator


def _too_long(parts: Segments) -> str | None:
    """Why SMSC refuses a text of this length, or None."""
    if parts.length > api.MAX_LENGTH:
        return (f"SMSC: the message has {parts.length} characters ({parts.parts} SMS, {parts.encoding}); "
                f"SMSC takes at most {api.MAX_LENGTH}")
    return None
