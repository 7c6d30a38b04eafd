"""The YCLIENTS REST calls: the `{success, data, meta}` envelope and its HTTP codes mapped onto automator.errors."""
from __future__ import annotations

import asyncio
import json
import re
import time
from collections import deque
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from automator.connector import json_body, retry_after
from automator.errors import Rejected, Retryable, Uncertain

if TYPE_CHECKING:
    from automator.connector import WebConnector

ACCEPT = "application/vnd.yclients.v2+json"
DEFAULT_BASE_URL = "https://api.yclients.com/api/v1"
PAGE_SIZE = 300  # the largest `count` the records list serves per page (what the wrappers page with)
MAX_PAGES = 100  # a poll reads at most this many pages (30 000 changes) and resumes from there next time


# The limit is per IP: 5 requests in any second and 200 in any minute. The margins absorb requests that left in
# order but reach the server a little closer together than they were sent.
LIMITS = ((5, 1.05), (200, 60.5))
ACTION_WAIT = 2.0  # longest an action's request waits for a slot before the action is retried later instead


class Pace:
    """Keeps every request of every connector reaching one YCLIENTS host under its sliding limits.

    The outbox's `rate_limit` counts actions, and one action makes two to five requests; the pace counts the
    requests themselves. A request that would wait longer than allowed is not sent: Retryable, with the wait.
    The server counts a request when it arrives, which may be well after it left (a busy loop, a slow
    connection): once answered, a request is counted at its answer's time, the latest it can have arrived, so the
    windows measured from it are never shorter than the server's.
    """

    _by_host: dict[str, Pace] = {}

    def __init__(self) -> None:
        self.sent: deque[float] = deque()

    @classmethod
    def of(cls, host: str) -> Pace:
        """The one pace of a host (shared by the branches of one network, which share the daemon's IP)."""
        return cls._by_host.setdefault(host, cls())

    def delay(self, now: float) -> float:
        """Seconds until the next request may leave, without taking the slot."""
        while self.sent and now - self.sent[0] > LIMITS[-1][1]:
            self.sent.popleft()
        start = max(now, self.sent[-1]) if self.sent else now
        for count, window in LIMITS:
            if len(self.sent) >= count:
                start = max(start, self.sent[-count] + window)
        return start - now

    async def take(self, max_wait: float, what: str) -> float:
        """Wait for a slot (taking it at once, so concurrent callers queue in order) or raise Retryable; the
        slot's time, for `answered`."""
        now = time.monotonic()
        wait = self.delay(now)
        if wait > max_wait:
            raise Retryable(f"{what}: not sent, the YCLIENTS limit of 5 requests a second and 200 a minute "
                            f"is used up for {wait:.1f} s", wait)
        self.sent.append(now + wait)
        if wait > 0:
            await asyncio.sleep(wait)
        return now + wait

    def answered(self, slot: float, now: float) -> None:
        """The request of `slot` was answered at `now`: it is counted from then on."""
        for index in range(len(self.sent) - 1, -1, -1):
            if self.sent[index] == slot:
                self.sent[index] = max(slot, now)
                break
        if any(a > b for a, b in zip(self.sent, list(self.sent)[1:])):
            self.sent = deque(sorted(self.sent))


def auth_header(partner_token: str, user_token: str) -> str:
    """`Authorization: Bearer {partner}, User {user}` — the user token gives access to the company's data."""
    return f"Bearer {partner_token}, User {user_token}"


def _message(body: Any) -> str:
    """`meta.message` and the `meta.errors` of a validation answer, as one line."""
    if not isinstance(body, Mapping):
        return ""
    meta = body.get("meta")
    parts: list[str] = []
    if isinstance(meta, Mapping):
        if meta.get("message"):
            parts.append(str(meta["message"]))
        errors = meta.get("errors")
        if isinstance(errors, list):
            for item in errors:
                if isinstance(item, Mapping):
                    parts.extend(f"{k}: {v}" for k, v in item.items())
                else:
                    parts.append(str(item))
        elif isinstance(errors, Mapping):
            parts.extend(f"{k}: {v}" for k, v in errors.items())
    if not parts and body.get("errors"):  # older answers put errors at the top level
        parts.append(json.dumps(body["errors"], ensure_ascii=False)[:300])
    return "; ".join(parts)


def unwrap(response: Any, what: str) -> tuple[Any, Any]:
    """`(data, meta)` of a successful answer; raises Retryable (429, 5xx), Rejected (other 4xx, `success:
    false` even with HTTP 2xx) or Uncertain (a 2xx whose body cannot be read: the change may have happened)."""
    code = response.status_code
    if code == 204:
        return None, []
    try:
        body: Any = json_body(response) if response.content else None
    except (ValueError, UnicodeDecodeError):
        body = None
    message = _message(body) or (response.text[:200] if body is None else "")
    text = f"{what}: HTTP {code}" + (f": {message}" if message else "")
    if code == 429 or code >= 500:
        raise Retryable(text, retry_after(response))
    if code >= 300:
        raise Rejected(text)
    if not isinstance(body, Mapping):
        if not response.content:
            return None, []
        raise Uncertain(f"{what}: HTTP {code} with an unreadable body {response.text[:200]!r}")
    if body.get("success") is False:
        raise Rejected(f"{what}: success=false" + (f": {message}" if message else ""))
    return body.get("data"), body.get("meta")


class Api:
    """The calls the connector makes, on one company, through the connector's shared client and deadline."""

    def __init__(self, connector: WebConnector, company_id: str, pace: Pace, max_wait: float = ACTION_WAIT) -> None:
        self.connector = connector
        self.company_id = company_id
        self.pace = pace
        self.max_wait = max_wait

    async def send(self, method: str, path: str, what: str, **kwargs: Any) -> Any:
        """One request within the pace; the raw response (transport failures already mapped)."""
        slot = await self.pace.take(self.max_wait, what)
        try:
            return await self.connector.request(method, path, what, **kwargs)
        finally:
            self.pace.answered(slot, time.monotonic())

    async def call(self, method: str, path: str, what: str, **kwargs: Any) -> tuple[Any, Any]:
        """One request: `(data, meta)` or an error from automator.errors."""
        return unwrap(await self.send(method, path, what, **kwargs), what)

    async def get_record(self, record_id: str) -> dict[str, Any]:
        """`GET /record/{company_id}/{record_id}`."""
        data, _ = await self.call("GET", f"record/{self.company_id}/{record_id}", f"get record {record_id}")
        return _object(data, f"get record {record_id}")

    async def put_record(self, record_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """`PUT /record/{company_id}/{record_id}` with the whole record; the updated record."""
        what = f"update record {record_id}"
        data, _ = await self.call("PUT", f"record/{self.company_id}/{record_id}", what, json=dict(body))
        return data if isinstance(data, dict) else {}

    async def delete_record(self, record_id: str) -> bool:
        """`DELETE /record/{company_id}/{record_id}`; False when it was already gone (404)."""
        what = f"delete record {record_id}"
        response = await self.send("DELETE", f"record/{self.company_id}/{record_id}", what)
        if response.status_code == 404:
            return False
        unwrap(response, what)
        return True

    async def list_records(self, params: Mapping[str, Any], page: int) -> tuple[list[dict[str, Any]], int | None]:
        """One page of `GET /records/{company_id}`: the records and `meta.total_count`."""
        query = {**params, "page": page, "count": PAGE_SIZE}
        data, meta = await self.call("GET", f"records/{self.company_id}", f"list records (page {page})",
                                     params=query)
        records = [r for r in data or [] if isinstance(r, dict)] if isinstance(data, list) else []
        total = meta.get("total_count") if isinstance(meta, Mapping) else None
        return records, int(total) if isinstance(total, (int, str)) and str(total).isdigit() else None

    async def get_client(self, client_id: str) -> dict[str, Any]:
        """`GET /client/{company_id}/{client_id}`."""
        data, _ = await self.call("GET", f"client/{self.company_id}/{client_id}", f"get client {client_id}")
        return _object(data, f"get client {client_id}")

    async def put_client(self, client_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """`PUT /client/{company_id}/{client_id}`; the updated client."""
        what = f"update client {client_id}"
        data, _ = await self.call("PUT", f"client/{self.company_id}/{client_id}", what, json=dict(body))
        return data if isinstance(data, dict) else {}

    async def find_client(self, phone: str) -> str | None:
        """The id of the company's client with this phone: `POST /company/{company_id}/clients/search` by
        `quick_search`, a fuzzy search over names and phones, so only a candidate whose last 10 digits are the
        phone's counts (reference part 2 §1.3.1, as integrators do); None when there is none."""
        digits = re.sub(r"\D", "", phone)
        what = f"find client by phone …{digits[-4:]}"
        data, _ = await self.call("POST", f"company/{self.company_id}/clients/search", what, json={
            "page": 1, "page_size": 25, "fields": ["id", "name", "phone"], "operation": "AND",
            "filters": [{"type": "quick_search", "state": {"value": digits}}]})
        for item in data if isinstance(data, list) else []:
            if isinstance(item, Mapping) and item.get("id") and \
                    re.sub(r"\D", "", str(item.get("phone") or ""))[-10:] == digits[-10:]:
                return str(item["id"])
        return None

    async def create_client(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """`POST /clients/{company_id}` (`name` and `phone` required): the new client."""
        data, _ = await self.call("POST", f"clients/{self.company_id}", "create client", json=dict(body))
        return _object(data, "create client")

    async def create_record(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """`POST /records/{company_id}`: the new record. The answer's `data` is an object in the spec and the
        captures, a one-element list in the generated client (reference part 2 §1.1): both are read."""
        data, _ = await self.call("POST", f"records/{self.company_id}", "create record", json=dict(body))
        if isinstance(data, list) and len(data) == 1:
            data = data[0]
        return _object(data, "create record")

    async def client_labels(self) -> list[dict[str, Any]]:
        """The company's client categories: `GET /labels/{company_id}/1` (entity 1 = clients)."""
        data, _ = await self.call("GET", f"labels/{self.company_id}/1", "list client categories")
        return [x for x in data or [] if isinstance(x, dict)] if isinstance(data, list) else []

    async def create_client_label(self, title: str, color: str) -> dict[str, Any]:
        """`POST /labels/{company_id}` `{title, color, entity: 1}`: a new client category."""
        what = f"create client category {title!r}"
        data, _ = await self.call("POST", f"labels/{self.company_id}", what,
                                  json={"title": title, "color": color, "entity": 1})
        return _object(data, what)

    async def client_cards(self, client_id: str) -> list[dict[str, Any]]:
        """The client's loyalty cards: `GET /loyalty/client_cards/{client_id}` (cards belong to the chain)."""
        data, _ = await self.call("GET", f"loyalty/client_cards/{client_id}", f"loyalty cards of client {client_id}")
        return _objects(data)

    async def phone_cards(self, phone: str, chain_id: str) -> list[dict[str, Any]]:
        """The chain's cards of the client with this phone: `GET /loyalty/cards/{phone}/{chain_id}/{company_id}`
        (the phone as 11 digits, 70001234567)."""
        digits = re.sub(r"\D", "", phone)
        data, _ = await self.call("GET", f"loyalty/cards/{digits}/{chain_id}/{self.company_id}",
                                  f"loyalty cards of phone …{digits[-4:]}")
        return _objects(data)

    async def issue_card(self, number: str, type_id: str, phone: str) -> dict[str, Any]:
        """`POST /loyalty/cards/{company_id}` `{loyalty_card_number, loyalty_card_type_id, phone}` (numbers, as
        the spec's example writes them): the new card."""
        what = f"issue a loyalty card of type {type_id}"
        body = {"loyalty_card_number": int(number), "loyalty_card_type_id": int(type_id),
                "phone": int(re.sub(r"\D", "", phone))}
        data, _ = await self.call("POST", f"loyalty/cards/{self.company_id}", what, json=body)
        if isinstance(data, list) and len(data) == 1:
            data = data[0]
        return _object(data, what)

    async def card_transaction(self, card_id: str, amount: Decimal, title: str) -> dict[str, Any]:
        """`POST /company/{company_id}/loyalty/cards/{card_id}/manual_transaction` `{amount, title}` (positive: a
        top-up, negative: a write-off): the card after it. The amount is written as the exact decimal it is (the
        JSON number's text), never through a float."""
        what = f"{'top up' if amount > 0 else 'write off'} loyalty card {card_id}"
        body = b'{"amount":' + format(amount, "f").encode() + b',"title":' + \
            json.dumps(title, ensure_ascii=False).encode() + b"}"
        data, _ = await self.call("POST", f"company/{self.company_id}/loyalty/cards/{card_id}/manual_transaction",
                                  what, content=body, headers={"Content-Type": "application/json"})
        return _object(data, what)

    async def held(self, kind: str, phone: str) -> list[dict[str, Any]]:
        """What the client with this phone holds of one kind: `GET /loyalty/certificates/` or
        `GET /loyalty/abonements/`, `?company_id=&phone=`."""
        digits = re.sub(r"\D", "", phone)
        data, _ = await self.call("GET", f"loyalty/{kind}/", f"{kind} of phone …{digits[-4:]}",
                                  params={"company_id": self.company_id, "phone": digits})
        return _objects(data)

    async def freeze_abonement(self, chain_id: str, abonement_id: str, till: str | None) -> dict[str, Any]:
        """`POST /chain/{chain_id}/loyalty/abonements/{id}/freeze` `{"freeze_till": yyyy-mm-dd}`, or `…/unfreeze`
        when `till` is None: the abonement after it."""
        verb = "freeze" if till is not None else "unfreeze"
        what = f"{verb} abonement {abonement_id}"
        data, _ = await self.call("POST", f"chain/{chain_id}/loyalty/abonements/{abonement_id}/{verb}", what,
                                  json={"freeze_till": till} if till is not None else {})
        return data if isinstance(data, dict) else {}


def _objects(data: Any) -> list[dict[str, Any]]:
    """The objects of a list answer. A list endpoint may answer one object instead of an array (seen of
    `loyalty/client_cards`, reference part 2 §1.5): an object with an id is that one item, else its values are."""
    if isinstance(data, dict):
        data = [data] if "id" in data else list(data.values())
    return [x for x in data if isinstance(x, dict)] if isinstance(data, list) else []


def _object(data: Any, what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise Rejected(f"{what}: the answer carries no object")
    return data
