"""A faithful Bitrix24 portal on 127.0.0.1: webhook-URL routes, envelopes, batch, leaky bucket, outgoing events.

Reference §1.7: `POST|GET /rest/{user}/{code}/{method}[.json]` with JSON, form or query params; unknown code →
401 `NO_AUTH_FOUND`, unknown method → 404 `ERROR_METHOD_NOT_FOUND`; the leaky bucket (+1 a request, drains 2/s,
blocks above 50; enterprise 5/s, 250) → 503 `QUERY_LIMIT_EXCEEDED`; every deal add/update/delete/move and lead
add POSTs the form-encoded outgoing-webhook body with the configured application token to `hook_url`, once; so do
contact adds and updates and task updates (a task event names the task in `data[FIELDS_AFTER][ID]`, part 2 §2.9).

Fault knobs in `faults.extra` (also `POST /_emulator/faults {"extra": {...}}`):
    {"operation_time_limit": {"method": "crm.deal.list", "count": 1}}   next calls of a method → 429
    {"batch_error": {"method": "crm.deal.add", "count": 1, "error": "", "error_description": "…"}}
                                                   that sub-call of the next batch fails; the others run
    {"silent": true}                               changes send no webhooks (a lost delivery)
Control routes (a manager working in the Bitrix24 UI; each sends the real event):
    POST /_emulator/manager/deal   {fields}                        → ONCRMDEALADD
    POST /_emulator/manager/move   {id, stage_id, category_id?}    → ONCRMDEALUPDATE (+ MOVETOCATEGORY)
    POST /_emulator/manager/update {id, fields}                    → ONCRMDEALUPDATE
    POST /_emulator/manager/delete {id}                            → ONCRMDEALDELETE
    POST /_emulator/manager/lead   {fields}                        → ONCRMLEADADD
    POST /_emulator/manager/contact {fields}                       → ONCRMCONTACTADD
    POST /_emulator/manager/contact-update {id, fields}            → ONCRMCONTACTUPDATE
    POST /_emulator/manager/task   {fields}                        a task made in the UI (no event subscribed)
    POST /_emulator/manager/task-complete {id, by?}                → ONTASKUPDATE (tasks.task.complete)
    POST /_emulator/manager/task-update {id, fields}               → ONTASKUPDATE (an edit)
    POST /_emulator/pipeline       {id, name, stages: [{id, name}]}  a pipeline set up in the UI
"""
from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode

import httpx

from automator.emulator import Call, Emulator, Reply, route
from .api import MAX_BATCH, PLANS, php_parse, php_parse_query
from .portal import Fail, Portal, semantic

MSK = timezone(timedelta(hours=3))
# What the outgoing webhook is subscribed to (set in the portal's UI when the webhook is made).
SUBSCRIBED = frozenset({"ONCRMDEALADD", "ONCRMDEALUPDATE", "ONCRMDEALDELETE", "ONCRMDEALMOVETOCATEGORY",
                        "ONCRMLEADADD", "ONCRMCONTACTADD", "ONCRMCONTACTUPDATE", "ONTASKUPDATE"})
OPERATING_WINDOW = 600  # seconds: the execution-time budget's ten one-minute baskets


def envelope_time(start: float, operating: float = 0.0) -> dict[str, Any]:
    """The `time` object every answer carries (doc: data-types.md#time)."""
    finish = time.time()
    return {"start": start, "finish": finish, "duration": finish - start, "processing": finish - start,
            "date_start": datetime.fromtimestamp(start, MSK).replace(microsecond=0).isoformat(),
            "date_finish": datetime.fromtimestamp(finish, MSK).replace(microsecond=0).isoformat(),
            "operating_reset_at": int(start) + OPERATING_WINDOW, "operating": operating}


def _error(status: int, code: str, description: str) -> Reply:
    return Reply(status, {"error": code, "error_description": description})


class Bitrix24Emulator(Emulator):
    """One portal, reachable at `/rest/{user_id}/{code}/` (the inbound-webhook URL)."""

    system: ClassVar[str] = "bitrix24"

    def __init__(self, *, user_id: str = "1", code: str = "sandbox", application_token: str = "sandbox-token",
                 plan: str = "standard", hook_url: str | None = None, limits: bool = True,
                 transport: httpx.AsyncBaseTransport | None = None, domain: str = "sandbox.bitrix24.ru",
                 member_id: str = "d897063e1ce7c5eb9f04b9751eef5915", events: frozenset[str] = SUBSCRIBED) -> None:
        super().__init__(hook_url=hook_url, limits=limits, transport=transport)
        self.user_id, self.code, self.application_token = str(user_id), code, application_token
        self.domain, self.member_id, self.events = domain, member_id, events
        self.drain, self.bucket_size = PLANS[plan]
        self.level = 0.0
        self._leaked_at = time.monotonic()
        self.skew = 0.0  # seconds added to the portal's clock (tests step it to get distinct DATE_MODIFY)
        self.handler_id = 975
        self.portal = Portal(now=self.now, notify=self._event, user_id=self.user_id)
        self.methods = {
            "crm.deal.add": self.portal.deal_add, "crm.deal.update": self.portal.deal_update,
            "crm.deal.get": self.portal.deal_get, "crm.deal.list": self.portal.deal_list,
            "crm.deal.delete": self.portal.deal_delete, "crm.item.update": self.portal.item_update,
            "crm.contact.add": self.portal.contact_add, "crm.contact.get": self.portal.contact_get,
            "crm.contact.list": self.portal.contact_list, "crm.duplicate.findbycomm": self.portal.find_by_comm,
            "crm.contact.update": self.portal.contact_update,
            "crm.lead.add": self.portal.lead_add, "crm.lead.get": self.portal.lead_get,
            "crm.lead.update": self.portal.lead_update,
            "tasks.task.add": self.portal.task_add, "tasks.task.list": self.portal.task_list,
            "tasks.task.get": self.portal.task_get, "tasks.task.complete": self.portal.task_complete,
            "tasks.task.update": self.portal.task_update,
            "crm.activity.todo.add": self.portal.todo_add,
            "crm.timeline.comment.add": self.portal.comment_add, "crm.category.list": self.portal.category_list,
            "crm.status.list": self.portal.status_list,
            "crm.dealcategory.stage.list": self.portal.dealcategory_stages,
        }

    def now(self) -> datetime:
        """The portal's clock (Moscow offset, as a Russian portal writes datetimes)."""
        return datetime.now(MSK) + timedelta(seconds=self.skew)

    # ---- the contract's own answers ------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Deals, contacts, leads, tasks, activities, comments, categories and stages."""
        return self.portal.state()

    def limit(self, call: Call) -> Reply | None:
        """The leaky bucket: +1 a request, drained continuously; above the bucket → 503 QUERY_LIMIT_EXCEEDED."""
        if not call.path.startswith("/rest/"):
            return None
        now = time.monotonic()
        self.level = max(0.0, self.level - (now - self._leaked_at) * self.drain)
        self._leaked_at = now
        if self.level + 1 > self.bucket_size:
            return _error(503, "QUERY_LIMIT_EXCEEDED", "Too many requests")
        self.level += 1
        return None

    def storm_reply(self, status: int, retry_after: float | None) -> Reply:
        """503 is the bucket's answer, 429 the execution-time budget's; Bitrix sends no Retry-After, but a storm
        asked with one gets it."""
        headers = {"Retry-After": str(int(retry_after))} if retry_after is not None else {}
        if status == 429:
            return Reply(429, {"error": "OPERATION_TIME_LIMIT", "error_description": "Method is blocked due to "
                               "operation time limit."}, headers)
        if status == 503:
            return Reply(503, {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}, headers)
        return self.error_reply(status)

    def error_reply(self, status: int) -> Reply:
        """The system error envelope for a server failure."""
        return _error(status, "INTERNAL_SERVER_ERROR", "Internal server error")

    def not_found(self, call: Call) -> Reply:
        """An address outside the REST tree."""
        return _error(404, "ERROR_METHOD_NOT_FOUND", "Method not found!")

    # ---- REST ----------------------------------------------------------------------------------------
    @route("ANY", r"/rest/(?P<user>[^/]+)/(?P<code>[^/]+)/(?P<method>[A-Za-z0-9_.]+?)(?:\.json)?")
    async def rest(self, call: Call, user: str, code: str, method: str) -> Reply:
        """One REST call through the inbound webhook."""
        start = time.time()
        if user != self.user_id or code != self.code:
            return _error(401, "NO_AUTH_FOUND", "Wrong authorization data")
        try:
            params = self._params(call)
        except ValueError:
            return _error(400, "", "Invalid JSON")
        method = method.lower()  # method names are case-insensitive
        budget = self._operating(method)
        if budget is not None:
            return budget
        extra: dict[str, Any]
        try:
            if method == "batch":
                result, extra = await self._batch(params), {}
            else:
                result, extra = self._run(method, params)
        except Fail as fail:
            return _error(fail.status, fail.code, fail.description)
        return Reply(200, {"result": result, **extra, "time": envelope_time(start)})

    def _params(self, call: Call) -> dict[str, Any]:
        params: dict[str, Any] = php_parse_query(urlencode(list(call.query.items())))
        kind = call.headers.get("content-type", "")
        if call.body and "json" in kind:
            body = json.loads(call.body)
            if not isinstance(body, dict):
                raise ValueError("not an object")
            params.update(body)
        elif call.body and "form-urlencoded" in kind:
            params.update(php_parse_query(call.body.decode("utf-8", "replace")))
        return params

    def _operating(self, method: str) -> Reply | None:
        knob = self.faults.extra.get("operation_time_limit")
        if isinstance(knob, dict) and knob.get("count", 0) > 0 and str(knob.get("method", method)).lower() == method:
            knob["count"] -= 1
            return _error(429, "OPERATION_TIME_LIMIT", "Method is blocked due to operation time limit.")
        return None

    def _run(self, method: str, params: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
        handler = self.methods.get(method)
        if handler is None:
            raise Fail(404, "ERROR_METHOD_NOT_FOUND", "Method not found!")
        answer = handler(params)
        if method.endswith(".list") and isinstance(answer, tuple):
            return answer
        return answer, {}

    async def _batch(self, params: Mapping[str, Any]) -> dict[str, Any]:
        commands = params.get("cmd")
        if isinstance(commands, list):
            commands = {str(i): c for i, c in enumerate(commands)}
        if not isinstance(commands, Mapping) or not commands:
            raise Fail(400, "", "Parameter 'cmd' must be array.")
        if len(commands) > MAX_BATCH:
            raise Fail(400, "ERROR_BATCH_LENGTH_EXCEEDED", "Max batch length exceeded")
        halt = str(params.get("halt", 0)) in ("1", "true", "Y")
        results: dict[str, Any] = {}
        errors: dict[str, Any] = {}
        totals: dict[str, int] = {}
        nexts: dict[str, int] = {}
        times: dict[str, Any] = {}
        for key, command in commands.items():
            start = time.time()
            method, _, query = str(command).partition("?")
            method = method.lower()
            try:
                if method == "batch":
                    raise Fail(405, "ERROR_BATCH_METHOD_NOT_ALLOWED", "Method is not allowed for batch usage")
                injected = self._batch_error(method)
                if injected is not None:
                    raise injected
                result, extra = self._run(method, self._substitute(query, results))
            except Fail as fail:
                errors[str(key)] = {"error": fail.code, "error_description": fail.description}
                if halt:
                    break
                continue
            results[str(key)] = result
            times[str(key)] = envelope_time(start)
            if "total" in extra:
                totals[str(key)] = extra["total"]
            if "next" in extra:
                nexts[str(key)] = extra["next"]
        numeric = all(str(k).isdigit() for k in commands)
        # PHP: empty maps are [], and errors of numeric keys come back as a bare list (obs: fast_bitrix24).
        return {"result": results or [], "result_error": (list(errors.values()) if numeric else errors) or [],
                "result_total": totals or [], "result_next": nexts or [], "result_time": times or []}

    def _batch_error(self, method: str) -> Fail | None:
        knob = self.faults.extra.get("batch_error")
        if isinstance(knob, dict) and knob.get("count", 0) > 0 and str(knob.get("method", method)).lower() == method:
            knob["count"] -= 1
            return Fail(400, str(knob.get("error", "")), str(knob.get("error_description", "Not found")))
        return None

    @staticmethod
    def _substitute(query: str, results: Mapping[str, Any]) -> dict[str, Any]:
        """A sub-call's query as params, each `$result[key][FIELD]` replaced by that earlier sub-call's value."""
        def value(match: re.Match[str]) -> str:
            node: Any = results.get(match.group(1))
            for part in re.findall(r"\[([^\]]*)\]", match.group(2)):
                if isinstance(node, list) and part.isdigit() and int(part) < len(node):
                    node = node[int(part)]
                elif isinstance(node, Mapping):
                    node = node.get(part)
                else:
                    node = None
            return "" if node is None or isinstance(node, (dict, list)) else str(node)

        pairs = parse_qsl(query, keep_blank_values=True)
        return php_parse([(k, _RESULT.sub(value, v)) for k, v in pairs])

    # ---- outgoing webhooks ---------------------------------------------------------------------------
    def _event(self, name: str, fields: dict[str, Any]) -> None:
        if self.faults.extra.get("silent") or name not in self.events:
            return
        pairs = [("event", name), ("event_handler_id", str(self.handler_id))]
        if name.startswith("ONTASK"):  # only the id, before and after (part 2 §2.9)
            pairs += [("data[FIELDS_BEFORE][ID]", str(fields["ID"])), ("data[FIELDS_AFTER][ID]", str(fields["ID"])),
                      ("data[IS_ACCESSIBLE_BEFORE]", "undefined"), ("data[IS_ACCESSIBLE_AFTER]", "undefined")]
        else:
            pairs += [(f"data[FIELDS][{k}]", str(v)) for k, v in fields.items()]
        pairs += [("ts", str(int(time.time()))), ("auth[domain]", self.domain),
                  ("auth[client_endpoint]", f"https://{self.domain}/rest/"),
                  ("auth[server_endpoint]", "https://oauth.bitrix.info/rest/"), ("auth[member_id]", self.member_id),
                  ("auth[application_token]", self.application_token)]
        self.webhook(urlencode(pairs).encode(), content_type="application/x-www-form-urlencoded")

    async def control(self, call: Call, what: str) -> Reply:
        """A manager working in the UI; every change sends the real outgoing event."""
        body = call.json() or {}
        try:
            if what == "manager/deal":
                return Reply(200, {"id": self.portal.deal_add({"fields": body.get("fields") or {}})})
            if what == "manager/update":
                self.portal.deal_update({"id": body.get("id"), "fields": body.get("fields") or {}}, by=body.get("by"))
                return Reply(200, {"ok": True})
            if what == "manager/move":
                return Reply(200, self.manager_move(body["id"], body["stage_id"], body.get("category_id"),
                                                    by=body.get("by")))
            if what == "manager/delete":
                return Reply(200, {"ok": self.portal.deal_delete({"id": body.get("id")})})
            if what == "manager/lead":
                return Reply(200, {"id": self.portal.lead_add({"fields": body.get("fields") or {}})})
            if what == "manager/contact":
                return Reply(200, {"id": self.portal.contact_add({"fields": body.get("fields") or {}})})
            if what == "manager/contact-update":
                return Reply(200, {"ok": self.portal.contact_update({"id": body.get("id"),
                                                                     "fields": body.get("fields") or {}},
                                                                    by=body.get("by"))})
            if what == "manager/task":
                return Reply(200, self.portal.task_add({"fields": body.get("fields") or {}})["task"])
            if what == "manager/task-complete":
                by = None if body.get("by") is None else str(body["by"])
                return Reply(200, self.portal.task_complete({"taskId": body.get("id")}, by=by))
            if what == "manager/task-update":
                return Reply(200, self.portal.task_update({"taskId": body.get("id"), "fields": body.get("fields") or {}}))
            if what == "pipeline":
                self.add_pipeline(int(body["id"]), str(body.get("name") or ""),
                                  [(str(s["id"]), str(s.get("name") or s["id"])) for s in body.get("stages") or []])
                return Reply(200, {"ok": True})
        except Fail as fail:
            return _error(fail.status, fail.code, fail.description)
        except (KeyError, TypeError, ValueError) as exc:
            return Reply(400, {"error": f"bad control request: {exc}"})
        return await super().control(call, what)

    def manager_move(self, deal_id: Any, stage_id: str, category_id: Any = None, *, by: Any = None) -> dict[str, Any]:
        """A manager drags a deal to a stage (of another pipeline, when `category_id` differs)."""
        by_text = None if by is None else str(by)
        if category_id is not None:
            self.portal.item_update({"entityTypeId": 2, "id": deal_id,
                                     "fields": {"categoryId": category_id, "stageId": stage_id}})
        else:
            self.portal.deal_update({"id": deal_id, "fields": {"STAGE_ID": stage_id}}, by=by_text)
        return {"ok": True}

    def seed_deal(self, deal_id: int, fields: Mapping[str, Any]) -> dict[str, Any]:
        """A deal the portal already holds under `deal_id` (a test's `given:`), made as crm.deal.add makes one and
        replacing one of that id, without the outgoing event."""
        return self._seed(self.portal.deals, self.portal.deal_add, deal_id, fields)

    def seed_contact(self, contact_id: int, fields: Mapping[str, Any]) -> dict[str, Any]:
        """A contact the portal already holds under `contact_id` (a test's given client), without the event."""
        return self._seed(self.portal.contacts, self.portal.contact_add, contact_id, fields)

    def _seed(self, table: dict[int, dict[str, Any]], add: Any, ident: int, fields: Mapping[str, Any]
              ) -> dict[str, Any]:
        silent = self.faults.extra.get("silent")
        self.faults.extra["silent"] = True
        try:
            made = add({"fields": dict(fields)})
        finally:
            self.faults.extra["silent"] = silent
        row = table.pop(made)
        row["ID"] = str(ident)
        table[ident] = row
        return row

    def add_pipeline(self, category: int, name: str, stages: list[tuple[str, str]]) -> None:
        """Seed a pipeline and its stages, as set up in the portal's settings."""
        self.portal.ensure_category(category, name or None)
        given = {stage: {"STATUS_ID": stage, "NAME": title, "SORT": 10 * (n + 1), "SEMANTICS": semantic(stage)}
                 for n, (stage, title) in enumerate(stages)}
        finals = {k: v for k, v in self.portal.stages[category].items() if v["SEMANTICS"] != "P" and k not in given}
        for n, final in enumerate(finals.values()):  # every pipeline keeps its system success and failure stages
            final["SORT"] = 10 * (len(given) + n + 1)
        self.portal.stages[category] = {**given, **finals}


_RESULT = re.compile(r"\$result\[([^\]]+)\]((?:\[[^\]]*\])*)")
