"""A faithful amoCRM API v4 on 127.0.0.1: HAL answers, 204s, problem+json, 7 rps, 403 blocks, form webhooks.

Follows the reference's checklist (§3.9): Bearer auth (401), pipelines with the unsorted `type: 1` status and
142/143 in each, leads POST/PATCH/GET/list with paging and 204 when empty, validation errors with `request_id`,
>250 items → 422, tasks, contacts with `query` search, 7 requests per second → 429 with `retry_after`, and
after `block_after` 429s in a row every call answers 403 for `block_for` seconds (both settable in
`faults.extra`), contacts (PATCH replaces a multitext field whole), notes on leads and contacts, task completion
(PATCH /api/v4/tasks/{id}). Every change sends one form-encoded webhook (legacy v2 field names; tasks under the
singular `task`) to `hook_url`, never retried. Control routes play a manager in the amoCRM UI: `POST
/_emulator/lead` (creates a lead), `/_emulator/move` ({lead, status_id, pipeline_id}), `/_emulator/edit` ({lead,
name, price, ...}), `/_emulator/contact` ({contact, name, responsible_user_id, ...}) and `/_emulator/complete`
({task, result}).
"""
from __future__ import annotations

import hmac
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import urlencode

import httpx

from automator.emulator import Call, Emulator, Reply, route

from .records import Records

PER_SECOND = 7
MAX_ITEMS = 250
MANAGER = 2079676  # the user id a change made "in the UI" is attributed to


def problem(status: int, title: str, detail: str, **extra: Any) -> Reply:
    """An application/problem+json answer, as amoCRM writes its errors."""
    body = {"title": title, "type": f"https://httpstatus.es/{status}", "status": status, "detail": detail, **extra}
    return Reply(status, body, content_type="application/problem+json")


def authed(handler: Callable[..., Awaitable[Reply]]) -> Callable[..., Awaitable[Reply]]:
    """Refuse a call without the emulator's Bearer token, as amoCRM does (401 problem+json)."""
    async def checked(self: AmocrmEmulator, call: Call, **groups: str) -> Reply:
        given = call.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
            return problem(401, "Unauthorized", "Invalid user name or password")
        return await handler(self, call, **groups)
    checked.__name__ = handler.__name__
    checked.__doc__ = handler.__doc__
    return checked


class AmocrmEmulator(Emulator):
    """amoCRM for one account (`subdomain`), reachable with one Bearer `token`."""

    system = "amocrm"

    def __init__(self, *, token: str, hook_url: str | None = None, subdomain: str = "example",
                 base_url: str | None = None, adopt: bool = False, limits: bool = True,
                 transport: httpx.AsyncBaseTransport | None = None, now: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic, block_after: int = 10,
                 block_for: float = 60.0) -> None:
        super().__init__(hook_url=hook_url, limits=limits, transport=transport)
        self.token = token
        self.subdomain = subdomain
        self.base_url = base_url  # where `_links` point; by default the Host the call came to
        self.monotonic = monotonic
        self.block_after = block_after
        self.block_for = block_for
        self.records = Records(now=now, adopt=adopt)
        self.window: deque[float] = deque()
        self.strikes = 0  # 429s in a row
        self.blocked_until = 0.0

    # ---- the contract's envelopes ------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Account, pipelines, leads, contacts and tasks as plain JSON."""
        return {**self.records.state(), "blocked": self.blocked_until > self.monotonic()}

    def limit(self, call: Call) -> Reply | None:
        """7 requests per second; 429 with `retry_after` past it; 403 for a while after repeated 429s."""
        now = self.monotonic()
        if self.blocked_until > now:
            return problem(403, "Forbidden", "Access denied: too many requests over the limit, the account is "
                                             "temporarily blocked")
        while self.window and now - self.window[0] >= 1.0:
            self.window.popleft()
        if len(self.window) >= PER_SECOND:
            self.strikes += 1
            if self.strikes >= int(self.faults.extra.get("block_after", self.block_after)):
                self.blocked_until = now + float(self.faults.extra.get("block_for", self.block_for))
                self.strikes = 0
            wait = max(1, math.ceil(self.window[0] + 1.0 - now))
            return problem(429, "Too Many Requests", f"Limit of {PER_SECOND} requests per second exceeded",
                           retry_after=wait)
        self.window.append(now)
        self.strikes = 0
        return None

    def storm_reply(self, status: int, retry_after: float | None) -> Reply:
        """429 with `retry_after` in the body; other statuses problem+json with a Retry-After header."""
        if status == 429:
            return problem(429, "Too Many Requests", "Too many requests", retry_after=int(retry_after or 1))
        reply = problem(status, "Service Unavailable", "The service is temporarily unavailable")
        if retry_after is not None:
            reply.headers["Retry-After"] = str(int(retry_after))
        return reply

    def error_reply(self, status: int) -> Reply:
        """amoCRM's internal error body."""
        return problem(status, "ErrInternalServer", "Internal server error", trace_id="emulator")

    def not_found(self, call: Call) -> Reply:
        """404 problem+json for an unknown address."""
        return problem(404, "Not Found", f"No route for {call.method} {call.path}")

    def _link(self, call: Call, path: str) -> dict[str, str]:
        base = self.base_url or f"http://{call.headers.get('host', '127.0.0.1')}"
        return {"href": f"{base.rstrip('/')}{path}"}

    @staticmethod
    def _hal(body: Any, status: int = 200) -> Reply:
        return Reply(status, body, content_type="application/hal+json")

    @staticmethod
    def _body(call: Call) -> tuple[Any, Reply | None]:
        try:
            return call.json(), None
        except (ValueError, UnicodeDecodeError):
            return None, problem(400, "Bad Request", "Request body is not valid JSON")

    @staticmethod
    def _invalid(errors: list[dict[str, Any]]) -> Reply:
        return problem(400, "Bad Request", "Request validation failed", **{"validation-errors": errors})

    def _batch(self, call: Call) -> tuple[list[Any] | None, Reply | None]:
        body, bad = self._body(call)
        if bad:
            return None, bad
        if not isinstance(body, list) or not body:
            return None, self._invalid([{"request_id": "0", "errors": [
                {"code": "InvalidType", "path": "", "detail": "This value should be a non-empty array."}]}])
        if len(body) > MAX_ITEMS:
            return None, problem(422, "Unprocessable Entity", f"Maximum {MAX_ITEMS} entities per request")
        return body, None

    # ---- pipelines ---------------------------------------------------------------------------------------
    @route("GET", r"/api/v4/leads/pipelines")
    @authed
    async def get_pipelines(self, call: Call) -> Reply:
        """Every pipeline with its statuses embedded."""
        pipelines = [self._pipeline(call, p) for p in self.records.pipelines.values()]
        return self._hal({"_total_items": len(pipelines), "_links": {"self": self._link(call, "/api/v4/leads/pipelines")},
                          "_embedded": {"pipelines": pipelines}})

    @route("GET", r"/api/v4/leads/pipelines/(?P<pid>\d+)")
    @authed
    async def get_pipeline(self, call: Call, pid: str) -> Reply:
        """One pipeline; 404 when there is none."""
        found = self.records.pipelines.get(int(pid))
        if found is None:
            return problem(404, "Not Found", f"Pipeline {pid} not found")
        return self._hal(self._pipeline(call, found))

    def _pipeline(self, call: Call, pipeline: Mapping[str, Any]) -> dict[str, Any]:
        path = f"/api/v4/leads/pipelines/{pipeline['id']}"
        statuses = [{**s, "_links": {"self": self._link(call, f"{path}/statuses/{s['id']}")}}
                    for s in pipeline["statuses"].values()]
        out = {k: v for k, v in pipeline.items() if k != "statuses"}
        return {**out, "_links": {"self": self._link(call, path)}, "_embedded": {"statuses": statuses}}

    # ---- leads -------------------------------------------------------------------------------------------
    @route("POST", r"/api/v4/leads")
    @authed
    async def add_leads(self, call: Call) -> Reply:
        """Create leads from an array; each created lead sends `leads[add]`."""
        items, bad = self._batch(call)
        if bad:
            return bad
        assert items is not None
        errors = [e for i, item in enumerate(items) if (e := self.records.lead_errors(item, i, creating=True))]
        if errors:
            return self._invalid(errors)
        made = []
        for index, item in enumerate(items):
            lead = self.records.add_lead(item)
            self._send("leads", "add", self.records.hook_lead(lead))
            made.append({"id": lead["id"], "request_id": str(item.get("request_id", index)),
                         "_links": {"self": self._link(call, f"/api/v4/leads/{lead['id']}")}})
        return self._hal({"_links": {"self": self._link(call, "/api/v4/leads")}, "_embedded": {"leads": made}})

    @route("PATCH", r"/api/v4/leads/(?P<lid>\d+)")
    @authed
    async def patch_lead(self, call: Call, lid: str) -> Reply:
        """Change one lead (object body); sends `leads[status]` for a move, else `leads[update]`."""
        body, bad = self._body(call)
        if bad:
            return bad
        if not isinstance(body, dict):
            return self._invalid([{"request_id": "0", "errors": [
                {"code": "InvalidType", "path": "", "detail": "This value should be of type object."}]}])
        if int(lid) not in self.records.leads:
            return problem(404, "Not Found", f"Lead {lid} not found")
        errors = self.records.lead_errors({**body, "id": int(lid)}, 0, creating=False)
        if errors:
            return self._invalid([errors])
        lead = self._change(int(lid), body)
        return self._hal({"id": lead["id"], "updated_at": lead["updated_at"],
                          "_links": {"self": self._link(call, f"/api/v4/leads/{lead['id']}")}})

    @route("PATCH", r"/api/v4/leads")
    @authed
    async def patch_leads(self, call: Call) -> Reply:
        """Change several leads (array, each with `id`)."""
        items, bad = self._batch(call)
        if bad:
            return bad
        assert items is not None
        errors = [e for i, item in enumerate(items) if (e := self.records.lead_errors(item, i, creating=False))]
        if errors:
            return self._invalid(errors)
        done = []
        for index, item in enumerate(items):
            lead = self._change(int(item["id"]), item)
            done.append({"id": lead["id"], "updated_at": lead["updated_at"],
                         "request_id": str(item.get("request_id", index)),
                         "_links": {"self": self._link(call, f"/api/v4/leads/{lead['id']}")}})
        return self._hal({"_links": {"self": self._link(call, "/api/v4/leads")}, "_embedded": {"leads": done}})

    def _change(self, lead_id: int, body: Mapping[str, Any], by: int = 0) -> dict[str, Any]:
        before = dict(self.records.leads[lead_id])
        lead = self.records.change_lead(lead_id, body, by)
        moved = (before["status_id"], before["pipeline_id"]) != (lead["status_id"], lead["pipeline_id"])
        self._send("leads", "status" if moved else "update", self.records.hook_lead(lead, before if moved else None))
        return lead

    @route("GET", r"/api/v4/leads/(?P<lid>\d+)")
    @authed
    async def get_lead(self, call: Call, lid: str) -> Reply:
        """One lead; 204 No Content when there is none."""
        lead = self.records.leads.get(int(lid))
        if lead is None:
            return Reply(204)
        return self._hal(self._lead_out(call, lead))

    @route("GET", r"/api/v4/leads")
    @authed
    async def list_leads(self, call: Call) -> Reply:
        """Leads by filter, ordered, a page at a time; 204 when nothing matches."""
        q = call.query
        try:
            page = max(1, int(q.get("page", 1)))
            limit = min(MAX_ITEMS, max(1, int(q.get("limit", 50))))
        except ValueError:
            return problem(400, "Bad Request", "page and limit must be numbers")
        found = self.records.find_leads(q)
        chunk = found[(page - 1) * limit: page * limit]
        if not chunk:
            return Reply(204)
        keep = {k: v for k, v in q.items() if k != "page"}

        def at(n: int) -> dict[str, str]:
            return self._link(call, "/api/v4/leads?" + urlencode({**keep, "page": n, "limit": limit}))
        links = {"self": at(page)}
        if page * limit < len(found):
            links["next"] = at(page + 1)
        if page > 1:
            links["first"], links["prev"] = at(1), at(page - 1)
        return self._hal({"_page": page, "_links": links,
                          "_embedded": {"leads": [self._lead_out(call, lead) for lead in chunk]}})

    def _lead_out(self, call: Call, lead: Mapping[str, Any]) -> dict[str, Any]:
        with_ = call.query.get("with", "").split(",")
        out = {k: v for k, v in lead.items() if k not in ("contacts", "tags")}
        embedded: dict[str, Any] = {"tags": list(lead["tags"]), "companies": []}
        if "contacts" in with_:
            embedded["contacts"] = [{**c, "_links": {"self": self._link(call, f"/api/v4/contacts/{c['id']}")}}
                                    for c in lead["contacts"]]
        return {**out, "_links": {"self": self._link(call, f"/api/v4/leads/{lead['id']}")}, "_embedded": embedded}

    # ---- tasks and contacts ------------------------------------------------------------------------------
    @route("POST", r"/api/v4/tasks")
    @authed
    async def add_tasks(self, call: Call) -> Reply:
        """Create tasks (`text` and `complete_till` required); each sends `tasks[add]`."""
        items, bad = self._batch(call)
        if bad:
            return bad
        assert items is not None
        errors = [e for i, item in enumerate(items) if (e := self.records.task_errors(item, i))]
        if errors:
            return self._invalid(errors)
        made = []
        for index, item in enumerate(items):
            task = self.records.add_task(item)
            self._send("task", "add", self.records.hook_task(task))
            made.append({"id": task["id"], "request_id": str(item.get("request_id", index)),
                         "_links": {"self": self._link(call, f"/api/v4/tasks/{task['id']}")}})
        return self._hal({"_links": {"self": self._link(call, "/api/v4/tasks")}, "_embedded": {"tasks": made}})

    @route("POST", r"/api/v4/contacts")
    @authed
    async def add_contacts(self, call: Call) -> Reply:
        """Create contacts; each sends `contacts[add]`."""
        items, bad = self._batch(call)
        if bad:
            return bad
        assert items is not None
        errors = [e for i, item in enumerate(items) if (e := self.records.contact_errors(item, i))]
        if errors:
            return self._invalid(errors)
        made = []
        for index, item in enumerate(items):
            contact = self.records.add_contact(item)
            self._send("contacts", "add", self.records.hook_contact(contact))
            made.append({"id": contact["id"], "request_id": str(item.get("request_id", index)),
                         "_links": {"self": self._link(call, f"/api/v4/contacts/{contact['id']}")}})
        return self._hal({"_links": {"self": self._link(call, "/api/v4/contacts")}, "_embedded": {"contacts": made}})

    @route("GET", r"/api/v4/contacts")
    @authed
    async def find_contacts(self, call: Call) -> Reply:
        """Contacts matching `query` (phone digits, name or email); 204 when none."""
        found = self.records.find_contacts(call.query.get("query", ""))
        if not found:
            return Reply(204)
        out = [self._contact_out(call, c) for c in found[:MAX_ITEMS]]
        return self._hal({"_page": 1, "_links": {"self": self._link(call, "/api/v4/contacts")},
                          "_embedded": {"contacts": out}})

    @route("GET", r"/api/v4/contacts/(?P<cid>\d+)")
    @authed
    async def get_contact(self, call: Call, cid: str) -> Reply:
        """One contact; 204 when there is none."""
        found = self.records.contacts.get(int(cid))
        if found is None:
            return Reply(204)
        return self._hal(self._contact_out(call, found))

    def _contact_out(self, call: Call, contact: Mapping[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in contact.items() if k != "tags"}
        return {**out, "_links": {"self": self._link(call, f"/api/v4/contacts/{contact['id']}")},
                "_embedded": {"tags": list(contact["tags"]), "companies": []}}

    @route("PATCH", r"/api/v4/contacts/(?P<cid>\d+)")
    @authed
    async def patch_contact(self, call: Call, cid: str) -> Reply:
        """Change one contact; sends `contacts[update]`."""
        body, bad = self._body(call)
        if bad:
            return bad
        if int(cid) not in self.records.contacts:
            return problem(404, "Not Found", f"Contact {cid} not found")
        errors = self.records.contact_errors(body, 0)
        if errors:
            return self._invalid([errors])
        contact = self.records.change_contact(int(cid), body)
        self._send("contacts", "update", self.records.hook_contact(contact))
        return self._hal({"id": contact["id"], "updated_at": contact["updated_at"],
                          "_links": {"self": self._link(call, f"/api/v4/contacts/{cid}")}})

    @route("PATCH", r"/api/v4/tasks/(?P<tid>\d+)")
    @authed
    async def patch_task(self, call: Call, tid: str) -> Reply:
        """Change one task (complete it: `is_completed`, `result`); sends `task[update]`."""
        body, bad = self._body(call)
        if bad:
            return bad
        if int(tid) not in self.records.tasks:
            return problem(404, "Not Found", f"Task {tid} not found")
        errors = self.records.task_change_errors(body)
        if errors:
            return self._invalid([{"request_id": "0", "errors": errors}])
        task = self.records.complete_task(int(tid), body)
        self._send("task", "update", self.records.hook_task(task))
        return self._hal({"id": task["id"], "updated_at": task["updated_at"],
                          "_links": {"self": self._link(call, f"/api/v4/tasks/{tid}")}})

    @route("GET", r"/api/v4/tasks/(?P<tid>\d+)")
    @authed
    async def get_task(self, call: Call, tid: str) -> Reply:
        """One task; 204 when there is none."""
        task = self.records.tasks.get(int(tid))
        if task is None:
            return Reply(204)
        return self._hal({**task, "_links": {"self": self._link(call, f"/api/v4/tasks/{tid}")}})

    @route("POST", r"/api/v4/(?P<entity>leads|contacts)/(?P<eid>\d+)/notes")
    @authed
    async def add_notes(self, call: Call, entity: str, eid: str) -> Reply:
        """Add notes to one lead or contact (an array of {note_type, params})."""
        items, bad = self._batch(call)
        if bad:
            return bad
        assert items is not None
        errors = [e for i, item in enumerate(items) if (e := self.records.note_errors(item, i, entity, int(eid)))]
        if errors:
            return self._invalid(errors)
        made = []
        for index, item in enumerate(items):
            note = self.records.add_note(entity, int(eid), item)
            made.append({"id": note["id"], "entity_id": note["entity_id"],
                         "request_id": str(item.get("request_id", index)),
                         "_links": {"self": self._link(call, f"/api/v4/{entity}/{eid}/notes/{note['id']}")}})
        return self._hal({"_links": {"self": self._link(call, f"/api/v4/{entity}/{eid}/notes")},
                          "_embedded": {"notes": made}})

    # ---- webhooks and the manager's UI -------------------------------------------------------------------
    def _send(self, entity: str, action: str, item: Mapping[str, Any]) -> None:
        pairs = flatten(f"{entity}[{action}][0]", item)
        pairs += [("account[subdomain]", self.subdomain), ("account[id]", str(self.records.account_id)),
                  ("account[_links][self]", f"https://{self.subdomain}.amocrm.ru")]
        self.webhook(urlencode(pairs).encode(), content_type="application/x-www-form-urlencoded")

    async def control(self, call: Call, what: str) -> Reply:
        """A manager's changes in the amoCRM UI: `lead` creates, `move` and `edit` change; each sends its
        webhook."""
        if call.method != "POST" or what not in ("lead", "move", "edit", "contact", "complete"):
            return await super().control(call, what)
        body, bad = self._body(call)
        if bad or not isinstance(body, dict):
            return bad or Reply(400, {"error": "expected a JSON object"})
        if what == "contact":
            contact_id = int(body.pop("contact", 0) or 0)
            if contact_id not in self.records.contacts:
                return Reply(404, {"error": f"no contact {contact_id}"})
            errors = self.records.contact_errors(body, 0)
            if errors:
                return self._invalid([errors])
            contact = self.records.change_contact(contact_id, body, by=MANAGER)
            self._send("contacts", "update", self.records.hook_contact(contact))
            return Reply(200, contact)
        if what == "complete":
            task_id = int(body.pop("task", 0) or 0)
            if task_id not in self.records.tasks:
                return Reply(404, {"error": f"no task {task_id}"})
            task = self.records.complete_task(task_id, {"is_completed": True, **body}, by=MANAGER)
            self._send("task", "update", self.records.hook_task(task))
            return Reply(200, task)
        if what == "lead":
            errors = self.records.lead_errors(body, 0, creating=True)
            if errors:
                return self._invalid([errors])
            lead = self.records.add_lead({**body, "created_by": MANAGER, "responsible_user_id":
                                          body.get("responsible_user_id", MANAGER)})
            self._send("leads", "add", self.records.hook_lead(lead))
            return Reply(200, lead)
        lead_id = int(body.pop("lead", 0) or 0)
        if lead_id not in self.records.leads:
            return Reply(404, {"error": f"no lead {lead_id}"})
        errors = self.records.lead_errors({**body, "id": lead_id}, 0, creating=False)
        if errors:
            return self._invalid([errors])
        return Reply(200, self._change(lead_id, body, by=MANAGER))


def flatten(prefix: str, value: Any) -> list[tuple[str, str]]:
    """Nested data as PHP-bracket form pairs: {"a": [{"b": 1}]} under `p` → [("p[a][0][b]", "1")]."""
    if isinstance(value, Mapping):
        return [pair for k, v in value.items() if v is not None for pair in flatten(f"{prefix}[{k}]", v)]
    if isinstance(value, (list, tuple)):
        return [pair for i, v in enumerate(value) for pair in flatten(f"{prefix}[{i}]", v)]
    if isinstance(value, bool):
        return [(prefix, "1" if value else "0")]
    return [(prefix, str(value))]
