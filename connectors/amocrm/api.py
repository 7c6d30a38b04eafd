"""amoCRM API v4 calls: HAL envelopes, 204 as an empty answer, problem+json and status codes → errors.py."""
from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from automator.connector import json_body, retry_after
from automator.errors import Rejected, Retryable, Uncertain

PER_SECOND = 7  # "not more than 7 requests per second" (developers.kommo.com/docs/limitations)
PAGE_LIMIT = 250  # the most entities one request or page may carry
# A request counted here when sent is counted by amoCRM when it arrives: network jitter can bring two of
# them closer together there, so our window is this much longer than amoCRM's second.
JITTER_MARGIN = 0.15
Request = Callable[..., Awaitable[Any]]


class Pacer:
    """At most PER_SECOND requests in any one-second window from this connector instance.

    The daemon's outbox paces actions, but one action may make several calls (find a contact, create it,
    create the lead) and catch-up polls page on their own: amoCRM answers a burst with 429, and repeated 429s
    with a 403 block of the whole account, so every call waits for its slot here. This waits; it never retries.
    """

    def __init__(self, per_second: int = PER_SECOND, clock: Callable[[], float] = time.monotonic,
                 window: float = 1.0 + JITTER_MARGIN,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.per_second = per_second
        self.clock = clock
        self.sleep = sleep
        self.window = window
        self.sent: deque[float] = deque()
        self.lock = asyncio.Lock()

    async def slot(self) -> None:
        """Wait until one more request fits in the window, and count it."""
        async with self.lock:
            while True:
                now = self.clock()
                while self.sent and now - self.sent[0] >= self.window:
                    self.sent.popleft()
                if len(self.sent) < self.per_second:
                    self.sent.append(now)
                    return
                await self.sleep(self.window - (now - self.sent[0]) + 0.005)


def problem(response: Any) -> dict[str, Any]:
    """The problem+json body of an error answer; {} when the body is not JSON (amoCRM's 429 may not be)."""
    try:
        body = json.loads(response.content or b"null")
    except (ValueError, UnicodeDecodeError):
        return {}
    return body if isinstance(body, dict) else {}


def validation_text(body: Mapping[str, Any]) -> str:
    """`validation-errors` as one line: `[item 0] status_id: This value should be of type int. (InvalidType)`."""
    parts = []
    for group in body.get("validation-errors") or []:
        if not isinstance(group, Mapping):
            continue
        for error in group.get("errors") or []:
            if isinstance(error, Mapping):
                parts.append(f"[item {group.get('request_id', '?')}] {error.get('path', '')}: "
                             f"{error.get('detail', '')} ({error.get('code', '')})")
    return "; ".join(parts)


def classify(response: Any, what: str) -> None:
    """Raise the error an amoCRM answer means; return for 2xx (204 included)."""
    code = response.status_code
    if 200 <= code < 300:
        return
    body = problem(response)
    detail = body.get("detail") or body.get("title") or response.text[:200]
    text = f"{what}: HTTP {code} {body.get('title') or ''}: {detail}".replace(" : ", ": ")
    if code == 429:
        wait = body.get("retry_after")
        seconds = float(wait) if isinstance(wait, (int, float)) and not isinstance(wait, bool) else retry_after(response)
        raise Retryable(f"{text} (amoCRM allows {PER_SECOND} requests per second; repeated 429s get the "
                        f"account blocked with 403)", seconds)
    if code >= 500:
        raise Retryable(text, retry_after(response))
    if code == 400 and body.get("validation-errors"):
        raise Rejected(f"{text}: {validation_text(body)}")
    if code == 401:
        raise Rejected(f"{text}: the token is invalid or expired (a long-lived token cannot be refreshed: "
                       f"issue a new one in the integration's settings)")
    if code == 402:
        raise Rejected(f"{text}: the amoCRM account is not paid")
    if code == 403:
        raise Rejected(f"{text}: amoCRM blocks this IP or account (it does so after repeated 429s or "
                       f"suspicious activity); every call is refused until the block is lifted — stop and check")
    raise Rejected(text)


class AmoApi:
    """The REST calls the connector makes, through the connector's own `request` (deadline, transport
    errors mapped) and its pacer."""

    def __init__(self, request: Request, pacer: Pacer) -> None:
        self._request = request
        self.pacer = pacer

    async def call(self, method: str, path: str, what: str, **kwargs: Any) -> Any:
        """One call: the parsed JSON answer, or None for 204 No Content."""
        await self.pacer.slot()
        response = await self._request(method, path, what, **kwargs)
        classify(response, what)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return json_body(response)
        except ValueError as exc:
            # The change may have been made: a success answer we cannot read is not a refusal.
            raise Uncertain(f"{what}: HTTP {response.status_code} with an unreadable body") from exc

    async def add(self, entity: str, items: list[dict[str, Any]], what: str) -> list[dict[str, Any]]:
        """POST /api/v4/<entity> (an array); the created items of `_embedded.<entity>`, in order."""
        answer = await self.call("POST", f"/api/v4/{entity}", what, json=items)
        made = embedded(answer, entity.rpartition("/")[2])
        if len(made) != len(items):
            raise Uncertain(f"{what}: amoCRM answered {len(made)} created item(s) for {len(items)} sent")
        return made

    async def patch_lead(self, lead_id: int, body: Mapping[str, Any], what: str) -> dict[str, Any]:
        """PATCH /api/v4/leads/{id}; the answer `{id, updated_at, _links}`."""
        answer = await self.call("PATCH", f"/api/v4/leads/{lead_id}", what, json=dict(body))
        return answer if isinstance(answer, dict) else {}

    async def patch_contact(self, contact_id: int, body: Mapping[str, Any], what: str) -> dict[str, Any]:
        """PATCH /api/v4/contacts/{id}; the answer `{id, updated_at, _links}`."""
        answer = await self.call("PATCH", f"/api/v4/contacts/{contact_id}", what, json=dict(body))
        return answer if isinstance(answer, dict) else {}

    async def get_contact(self, contact_id: int, what: str) -> dict[str, Any] | None:
        """GET /api/v4/contacts/{id}; None when amoCRM answers 204 (no such contact)."""
        answer = await self.call("GET", f"/api/v4/contacts/{contact_id}", what)
        return answer if isinstance(answer, dict) else None

    async def add_note(self, entity: str, entity_id: int, note: Mapping[str, Any], what: str) -> dict[str, Any]:
        """POST /api/v4/{leads|contacts}/{id}/notes with one note; the created note (`_embedded.notes[0]`)."""
        made = embedded(await self.call("POST", f"/api/v4/{entity}/{entity_id}/notes", what, json=[dict(note)]),
                        "notes")
        if len(made) != 1:
            raise Uncertain(f"{what}: amoCRM answered {len(made)} created note(s) for 1 sent")
        return made[0]

    async def get_lead(self, lead_id: int, what: str) -> dict[str, Any] | None:
        """GET /api/v4/leads/{id}; None when amoCRM answers 204 (no such lead)."""
        answer = await self.call("GET", f"/api/v4/leads/{lead_id}", what)
        return answer if isinstance(answer, dict) else None

    async def find_contacts(self, query: str, what: str) -> list[dict[str, Any]]:
        """GET /api/v4/contacts?query=…; [] on 204."""
        return embedded(await self.call("GET", "/api/v4/contacts", what, params={"query": query}), "contacts")

    async def list_leads(self, params: Mapping[str, Any], what: str) -> tuple[list[dict[str, Any]], bool]:
        """One page of GET /api/v4/leads: its leads and whether `_links.next` says there is another."""
        answer = await self.call("GET", "/api/v4/leads", what, params=dict(params))
        has_next = bool(isinstance(answer, dict) and ((answer.get("_links") or {}).get("next") or {}).get("href"))
        return embedded(answer, "leads"), has_next

    async def pipelines(self, what: str) -> list[dict[str, Any]]:
        """GET /api/v4/leads/pipelines: every pipeline with its `_embedded.statuses`."""
        return embedded(await self.call("GET", "/api/v4/leads/pipelines", what), "pipelines")


def embedded(answer: Any, key: str) -> list[dict[str, Any]]:
    """The list under `_embedded.<key>` of a HAL answer; [] for None (204) or a body without it."""
    if not isinstance(answer, dict):
        return []
    items = (answer.get("_embedded") or {}).get(key)
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []
