"""What every SMS gateway connector needs: phones in E.164 and the gateway's digits, and SMS parts of a text."""
from __future__ import annotations

import re
from dataclasses import dataclass

from collections.abc import Callable, Mapping
from typing import Any

from automator.checks import CheckContext, ParamProblem, literal_text
from automator.connector import ActionResult, action, retry_after
from automator.errors import Rejected, Retryable, Uncertain
from automator.phone import Policy, to_e164
from automator.report_delivery import Composed, ReportRequest, fit

__all__ = ["DEFAULT_MAX_PARTS", "ReportBySms", "GSM7_BASIC", "GSM7_EXTENDED", "MAX_PARTS_SETTING", "MAX_RECIPIENTS", "Segments",
           "check_gateway_status", "check_sms", "gateway_digits", "normalize_phone", "normalize_phones", "segments",
           "split_phones"]

DEFAULT_REGION = "RU"
# Both gateways take at most 100 numbers in one request (SMS.ru: codes 207/213; SMSC: the same cap is assumed).
MAX_RECIPIENTS = 100

# GSM 03.38: the default alphabet (one septet each) and its extension table (an escape septet plus one).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = frozenset("\f^{}\\[~]|€")

GSM7_SINGLE, GSM7_PART = 160, 153  # septets: a part of a long message loses 7 to the concatenation header
UCS2_SINGLE, UCS2_PART = 70, 67  # UTF-16 code units, likewise


@dataclass(frozen=True, slots=True)
class Segments:
    """How a text goes out as SMS: its encoding, its length in characters and in the encoding's units
    (septets or UTF-16 code units), and the number of parts a phone receives and the gateway bills."""

    encoding: str  # "GSM-7" or "UCS-2"
    length: int  # characters as a person counts them
    units: int  # septets (GSM-7, an extension character counts 2) or UTF-16 code units (UCS-2)
    parts: int

    def to_json(self) -> dict[str, object]:
        """Plain data for an action's result."""
        return {"encoding": self.encoding, "length": self.length, "units": self.units, "parts": self.parts}


def segments(text: str) -> Segments:
    """The parts `text` takes: GSM-7 when every character is in the GSM alphabet (160 septets in one SMS,
    153 per part), else UCS-2 (70 code units in one, 67 per part). A character never straddles two parts:
    an extension character's escape pair and an emoji's surrogate pair move to the next part whole."""
    if all(ch in GSM7_BASIC or ch in GSM7_EXTENDED for ch in text):
        sizes = [2 if ch in GSM7_EXTENDED else 1 for ch in text]
        return Segments("GSM-7", len(text), sum(sizes), _parts(sizes, GSM7_SINGLE, GSM7_PART))
    sizes = [2 if ord(ch) > 0xFFFF else 1 for ch in text]
    return Segments("UCS-2", len(text), sum(sizes), _parts(sizes, UCS2_SINGLE, UCS2_PART))


def _parts(sizes: list[int], single: int, per_part: int) -> int:
    total = sum(sizes)
    if total == 0:
        return 0
    if total <= single:
        return 1
    parts, used = 1, 0
    for size in sizes:
        if used + size > per_part:
            parts, used = parts + 1, 0
        used += size
    return parts


def normalize_phone(raw: str, region: str = DEFAULT_REGION) -> str:
    """A phone as written by a person (`8 916 123-45-67`, `+7 (916) 123-45-67`, `9161234567`) in E.164
    (`+79161234567`); numbers without a country code are read as `region`'s. Raises ValueError when the text
    is not a valid number of any numbering plan."""
    # An SMS to a number no plan assigns would be charged and lost: only valid numbers are sent to.
    number = to_e164(str(raw), policy=Policy.VALID, region=region)
    if number is None:
        raise ValueError(f"not a valid phone number: {raw!r}")
    return number


def split_phones(raw: str) -> list[str]:
    """The numbers of a `to:` that lists several, separated by commas or semicolons (blank items dropped)."""
    return [item.strip() for item in re.split(r"[,;]", str(raw)) if item.strip()]


def normalize_phones(raw: str, region: str = DEFAULT_REGION) -> list[str]:
    """Every number of a `to:` in E.164, each once, in the order written; ValueError names the bad ones."""
    found: list[str] = []
    bad: list[str] = []
    for item in split_phones(raw):
        try:
            phone = normalize_phone(item, region)
        except ValueError:
            bad.append(item)
            continue
        if phone not in found:
            found.append(phone)
    if bad:
        raise ValueError(f"not valid phone numbers: {', '.join(repr(b) for b in bad)}")
    if not found:
        raise ValueError("no phone number to send to")
    if len(found) > MAX_RECIPIENTS:
        raise ValueError(f"{len(found)} numbers: at most {MAX_RECIPIENTS} in one message")
    return found


def prepare(params: Any, gateway: str) -> tuple[list[str], Segments]:
    """The recipients in E.164 and the text's parts of an `sms.send`, or Rejected before anything is sent."""
    try:
        phones = normalize_phones(str(params.get("to") or ""))
    except ValueError as exc:
        raise Rejected(f"{gateway}: {exc}") from exc
    text = str(params.get("text") or "")
    if not text.strip():
        raise Rejected(f"{gateway}: the message has no text")
    return phones, segments(text)


# Parts past which `validate` warns about an SMS text: each part is billed, and a reminder in three parts costs
# three. A gateway's `max_parts:` setting changes it.
DEFAULT_MAX_PARTS = 2
MAX_PARTS_SETTING = {"type": "integer", "minimum": 1,
                     "description": f"validate warns about a text that goes out in more SMS parts than this "
                                    f"(default {DEFAULT_MAX_PARTS}); each part is billed."}


def check_sms(params: Mapping[str, Any], options: Mapping[str, Any], context: CheckContext,
              too_long: Callable[[Segments], str | None]) -> list[ParamProblem]:
    """What `validate` can tell of an `sms.send` before a run: a `to` that is no phone number, an empty text, and
    the parts the text goes out in: a refusal (`too_long`, the gateway's limit) is an error, more parts than
    `max_parts` a warning. Of a template only its own words are counted, which what its placeholders add can only
    lengthen (and turn into UCS-2): so the count is "at least", and is never guessed beyond that."""
    found: list[ParamProblem] = []
    to = context.literal(params.get("to"))
    if isinstance(to, (str, int)) and str(to).strip():
        try:
            normalize_phones(str(to))
        except ValueError as exc:
            found.append(ParamProblem(("to",), str(exc), "write it as +79161234567, or a template such as "
                                                         '"{{ client.phone }}"'))
    if params.get("text") is None:
        return found
    text, placeholders = literal_text(params.get("text"))
    if not placeholders and not text.strip():
        return [*found, ParamProblem(("text",), "the message has no text", "write what the SMS says")]
    parts = segments(text)
    refusal = too_long(parts)
    limit = int(options.get("max_parts") or DEFAULT_MAX_PARTS)
    if refusal is None and parts.parts <= limit:
        return found
    if placeholders:
        said = (f"the text goes out in at least {parts.parts} SMS: its own words alone are {parts.length} "
                f"characters in {parts.encoding}, before what its {placeholders} placeholder(s) add")
    else:
        said = f"the text goes out in {parts.parts} SMS: {parts.length} characters in {parts.encoding}"
    single, per_part = (GSM7_SINGLE, GSM7_PART) if parts.encoding == "GSM-7" else (UCS2_SINGLE, UCS2_PART)
    why = f"{parts.encoding} fits {single} characters in one SMS and {per_part} in each part of a longer one"
    outside = [ch for ch in text if ch not in GSM7_BASIC and ch not in GSM7_EXTENDED]
    if parts.encoding == "UCS-2" and len(outside) <= 3:  # a quote or an emoji in a Latin text: worth saying
        why += f" ({' '.join(dict.fromkeys(outside))} is outside the GSM alphabet and makes the whole text UCS-2)"
    if refusal is not None:
        return [*found, ParamProblem(("text",), f"{said}; {refusal}", f"shorten it: {why}")]
    return [*found, ParamProblem(("text",), f"{said}, more than {limit}",
                                 f"shorten it ({why}), or raise `max_parts:` of connector '{context.connector}' "
                                 "in automator.yaml: each part is billed", severity="warning")]


def gateway_digits(e164: str) -> str:
    """The digits-only international form Russian gateways take (`+79161234567` → `79161234567`)."""
    return e164.lstrip("+")


def check_gateway_status(response: Any, what: str) -> None:
    """Classify an HTTP status other than 200. Both gateways answer 200 even for failures, so another status
    is their front proxy talking: 429/500/502/503 retry (the request did not get through), 504 and other 5xx
    are uncertain (the proxy gave up waiting: the send may have happened), other statuses are refused."""
    status = response.status_code
    if status == 200:
        return
    text = f"{what}: HTTP {status} {response.text[:200]!r}"
    if status in (429, 500, 502, 503):
        raise Retryable(text, retry_after(response))
    if status >= 500:
        raise Uncertain(text)
    raise Rejected(text)


def report_text(composed: Composed, text: str | None, max_parts: int) -> str:
    """A report as an SMS: the rule's line and the headline figures, cut by whole lines to `max_parts` parts (each
    part is billed; the HTML page cannot travel by SMS)."""
    return fit(composed.brief(text), lambda t: segments(t).parts <= max_parts)


class ReportBySms:
    """`report.send` for an SMS gateway connector (one with `sms_send`, `compose` and `config`): the summary as the
    SMS text, within the connector's `max_parts:`."""

    @action("report.send")
    async def report_send(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """Send a report's headline figures (and the rule's `text` line) as an SMS to the phone in `to`."""
        connector: Any = self
        composed = await connector.compose(ReportRequest.of(params))
        limit = int(connector.config.get("max_parts") or DEFAULT_MAX_PARTS)
        result: ActionResult = await connector.sms_send(
            {"to": params["to"], "text": report_text(composed, _str(params.get("text")), limit)}, key)
        return ActionResult({**result.data, "report": params["report"], "period": composed.period}, result.events)


def _str(value: Any) -> str | None:
    return None if value is None else str(value)
