"""The `bitrix24` connector: deals, contacts, leads, tasks, to-dos and comments through the portal's inbound webhook;
its events.

Contract points chosen under uncertainty (reference §1, §6, §7):
- A retried `deal.create` is made safe by `ORIGIN_ID` = effect key with `ORIGINATOR_ID: automator`. The connector
  cannot tell a first try from a repeat (a repeat may come from a daemon restarted mid-call), so it always looks
  the key up first; the lookup rides in one `batch` with the phone search, costing one request of the bucket.
- A stage of another pipeline sent to `crm.deal.update` is assumed refused; the connector checks the pipeline
  files itself and moves between pipelines with `crm.item.update` (entityTypeId 2), as the doc requires.
- `crm.duplicate.findbycomm` with no match is assumed to answer `[]`; the oldest matching contact is used.
- `tasks.task.add` takes no idempotency key and `tasks.task.list` cannot filter by XML_ID, but it filters by
  `TAG`: a task carries the tag `automator:<effect key>`, and a try after an interrupted one looks it up first
  (`recover`). To-dos (`crm.activity.todo.add`) and timeline comments take no field a list can find them by:
  an interrupted one may be made twice.
- 429 OPERATION_TIME_LIMIT waits until the method's last seen `time.operating_reset_at` (else 60 s); 503
  QUERY_LIMIT_EXCEEDED waits one drain interval. Webhook-URL auth has no token to refresh: 401 is final.
- The catch-up poll filters `>=DATE_MODIFY` with the ISO datetime (offset included) Bitrix itself returns
  (assume: accepted as a filter value, as the returned format is); the cursor names the deals already reported
  at its second, so nothing in that second is skipped or repeated. `deal.created` carries DATE_CREATE in its
  delivery id, `deal.updated` DATE_MODIFY (see events.py).
- The outbox's token bucket (2/s, burst 50; enterprise 5/s, 250) counts actions; webhook reads and polls draw on
  the same portal bucket, whose 503 is then retried like any other.
- A deal's webhook reads the deal and its contact in one `batch` (`crm.contact.get?id=$result[deal][CONTACT_ID]`,
  the substitution batch.md documents); a deal without a contact makes that sub-call fail ("ID is not defined"),
  which only means there is no contact to report.
- contact.update reads the contact first: the multifield items it sends name the values' IDs (part 2 §2.2), and
  a phone the contact already has is not added twice. A contact given as a phone is found by
  crm.duplicate.findbycomm (the oldest), or created with the fields.
- ONTASKUPDATE carries only the task's id; the task is read back (tasks.task.get) and a completion is reported
  once (events.task_completed). ONTASKUPDATE is also what tasks.task.complete fires (part 2 §2.9, doc index).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, ClassVar

import httpx

from automator.actions.crm import NOTE_TARGETS
from automator.checks import CheckContext, ParamProblem
from automator.clock import parse_duration
from automator.connector import ActionResult, ConfigError, Inbound, WebConnector, action
from automator.errors import ConnectorError, InboundRejected, Rejected, Retryable
from automator.model import Entity, EntityRef, Event
from . import events as ev
from .api import PAGE, PLANS, RETRY_CODES, Api, BatchResult
from .mapping import (CONTACT_FIELDS, DEAL_FIELDS, MULTIFIELDS, ORIGINATOR, apply_multifield, canonical_contact,
                      contact_fields, contact_values, deal_fields, e164, event_fields, looks_like_phone,
                      multifield_changes, stage_category)

__all__ = ["Bitrix24"]

ENV = {"type": "string", "pattern": r"^\$\{env:[A-Za-z_][A-Za-z0-9_]*\}$",
       "x-pattern-message": "a secret: write it as ${env:NAME}"}
MAX_POLL_PAGES = 50  # a first page, then one batch of up to 49 more: 2 500 deals per poll at most
SCHEMA = "actions/{}.json"
TASK_SELECT = ["ID", "TITLE", "STATUS", "RESPONSIBLE_ID", "CLOSED_DATE", "CLOSED_BY", "CHANGED_DATE", "UF_CRM_TASK"]


def _batch_error(found: BatchResult, what: str) -> ConnectorError | None:
    """A failed sub-call as the error tree: server trouble retries, a refusal is final."""
    for key, error in found.errors.items():
        text = f"{what}: {key}: {error.get('error') or '-'}: {error.get('error_description', '')}"
        return Retryable(text) if error.get("error") in RETRY_CODES else Rejected(text)
    return None


def task_tag(key: str) -> str:
    """The tag a task created for effect `key` carries: tasks.task.list filters by tag, not by XML_ID."""
    return f"automator:{key}"


def _deal_id(value: Any) -> str:
    """A Bitrix24 deal id (a positive whole number), else the action is refused before any call."""
    return _record_id(value, "deal")


def _record_id(value: Any, kind: str) -> str:
    """A Bitrix24 deal, lead or contact id (a positive whole number), else the action is refused before any call."""
    text = "" if value is None else str(value).strip()
    if not text.isdigit() or int(text) == 0:
        raise Rejected(f"{value!r} is not a Bitrix24 {kind} id")
    return text


def _given_contact(fields: Mapping[str, Any], custom: Mapping[str, str]) -> dict[str, Any]:
    """A test's given client as the fields of a portal contact (the ones a contact has; the rest are the person's)."""
    out: dict[str, Any] = {}
    for name, value in fields.items():
        code = custom.get(str(name)) or CONTACT_FIELDS.get(str(name))
        if code in MULTIFIELDS and value not in (None, ""):
            out[code] = [{"VALUE": str(v), "VALUE_TYPE": "WORK"} for v in (value if isinstance(value, list) else [value])]
        elif code is not None and value not in (None, ""):
            out[code] = value
    return out


def _when(value: Any) -> str:
    """A due time as Bitrix wants it: an ISO datetime with offset, from one or from a duration from now."""
    text = str(value)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        try:
            span = parse_duration(value).approx()
        except ValueError as exc:
            raise Rejected(f"not a date or a duration: {text!r}") from exc
        moment = datetime.now(timezone.utc).replace(microsecond=0) + span
    if moment.tzinfo is None:
        raise Rejected(f"{text!r} needs a UTC offset")
    return moment.isoformat()


class Bitrix24(WebConnector):
    """A Bitrix24 portal through its inbound-webhook URL; outgoing-webhook events in, catch-up by crm.deal.list."""

    type: ClassVar[str] = "bitrix24"
    webhook_auth: ClassVar[tuple[str, ...]] = ("application_token",)  # auth[application_token] of each event
    rate_limit: tuple[float, int] | None = PLANS["standard"]
    poll_every: ClassVar[float | None] = 300.0
    config_schema: ClassVar[Mapping[str, Any]] = {
        "type": "object",
        "required": ["type", "webhook_url", "application_token"],
        "additionalProperties": False,
        "properties": {
            "type": {"const": "bitrix24"},
            "webhook_url": {**ENV, "description": "The inbound webhook, https://PORTAL/rest/USER/CODE/ (a secret)."},
            "application_token": {**ENV, "description": "The outgoing webhook's application token (a secret)."},
            "plan": {"enum": list(PLANS), "description": "standard: 2 requests/s, burst 50; enterprise: 5/s, 250."},
            "poll_every": {"anyOf": [{"type": "string"}, {"type": "number", "exclusiveMinimum": 0},
                                     {"enum": [False, "off"]}], "description": "Catch-up polling; default 5m."},
            "fields": {"type": "object", "additionalProperties": {"type": "string", "pattern": "^[A-Z][A-Z0-9_]*$"},
                       "description": "Rule field names → Bitrix24 codes, such as visit_at: UF_CRM_1721244482250."},
            "contact_fields": {"type": "object",
                               "additionalProperties": {"type": "string", "pattern": "^[A-Z][A-Z0-9_]*$"},
                               "description": "Rule field names → Bitrix24 contact codes, such as card: "
                                              "UF_CRM_1721244499."},
            "roles": {"type": "object", "additionalProperties": {"type": ["integer", "string"]},
                      "description": "Assignee roles → Bitrix24 user ids, such as admin: 1."},
            "domain": {"type": "string", "description": "If set, webhooks must name this portal in auth[domain]."},
            "member_id": {"type": "string", "description": "If set, webhooks must carry this auth[member_id]."},
            "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 60},
        },
    }

    def __init__(self, name: str, config: Mapping[str, Any], *, transport: httpx.AsyncBaseTransport | None = None
                 ) -> None:
        super().__init__(name, config, transport=transport)
        url = str(config.get("webhook_url") or "")
        parsed = httpx.URL(url) if url else None
        if parsed is None or parsed.scheme not in ("http", "https") or "/rest/" not in parsed.path:
            raise ConfigError(f"connector {name!r}: webhook_url must be https://PORTAL/rest/USER/CODE/")
        self.webhook_url = url if url.endswith("/") else url + "/"
        self.token = str(config.get("application_token") or "")
        plan = str(config.get("plan") or "standard")
        if plan not in PLANS:
            raise ConfigError(f"connector {name!r}: plan must be one of {', '.join(PLANS)}")
        self.rate_limit = PLANS[plan]
        self.custom: dict[str, str] = {str(k): str(v) for k, v in (config.get("fields") or {}).items()}
        self.contact_custom = {str(k): str(v) for k, v in (config.get("contact_fields") or {}).items()}
        self.roles: dict[str, str] = {str(k): str(v) for k, v in (config.get("roles") or {}).items()}
        secret = [p for p in parsed.path.split("/") if p][-1]
        self.api = Api(self.request, drain=self.rate_limit[0], secret=secret)

    @classmethod
    def check_params(cls, action: str, params: Mapping[str, Any], options: Mapping[str, Any],
                     context: CheckContext) -> list[ParamProblem]:
        """Unmapped deal fields, people who are neither roles nor user ids, stages of another pipeline, another
        system's client ids as contacts: what the actions refuse or get wrong (connectors/bitrix24/checks.py)."""
        from .checks import check

        return check(action, params, options, context)

    def base_url(self) -> str:
        """The inbound-webhook URL: every method is `POST {webhook_url}{method}`."""
        return self.webhook_url

    def default_headers(self) -> dict[str, str]:
        """The headers the doc recommends."""
        return {"Accept": "application/json", "User-Agent": "automator-bitrix24/1"}

    # ---- deals -------------------------------------------------------------------------------------------
    def _event(self, key: str, verb: str, deal_id: str, data: Mapping[str, Any], delivery: str | None = None
               ) -> Event:
        return Event(id=f"{key}>deal.{verb}", type=f"deal.{verb}", at=datetime.now(timezone.utc),
                     entity=EntityRef("deal", deal_id), data=dict(data), source=self.name, delivery_id=delivery)

    async def find_contact(self, phone: str, found: Any = None) -> str | None:
        """The id of the contact with this phone (the oldest, if several), or None; `found` is a findbycomm result
        already fetched."""
        number = e164(phone)
        if number is None:
            raise Rejected(f"not a valid phone number: {phone!r}")
        if found is None:
            found = await self.api.result("crm.duplicate.findbycomm",
                                          {"entity_type": "CONTACT", "type": "PHONE", "values": [number]})
        ids = found.get("CONTACT") if isinstance(found, dict) else None  # no match: `[]` (part 2 §2.4)
        return str(min(int(i) for i in ids)) if ids else None

    async def find_or_create_contact(self, phone: str, name: str | None, responsible: Any, key: str,
                                     found: Any = None, extra: Mapping[str, Any] | None = None) -> str:
        """The contact with this phone (see find_contact), else a new one with `extra` fields too."""
        existing = await self.find_contact(phone, found)
        if existing is not None:
            return existing
        fields = {**contact_fields(str(e164(phone)), name, responsible, f"{key}:contact"), **(extra or {})}
        return str(await self.api.result("crm.contact.add", {"fields": fields}))

    @action("deal.create")
    async def deal_create(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """crm.deal.add in the pipeline file's CATEGORY_ID/STAGE_ID, unless a deal with this effect key exists;
        a `contact` given as a phone number is found or created first."""
        category, stage = self._stage(str(params["pipeline"]), str(params["stage"]))
        fields = deal_fields(params.get("fields") or {}, self.custom)
        fields.update({"TITLE": str(params["title"]), "CATEGORY_ID": int(category), "STAGE_ID": stage,
                       "ORIGINATOR_ID": ORIGINATOR, "ORIGIN_ID": key})
        if params.get("responsible") not in (None, ""):
            fields["ASSIGNED_BY_ID"] = self._user(params["responsible"])
        if params.get("amount") not in (None, ""):
            try:
                float(params["amount"])
            except (TypeError, ValueError):
                raise Rejected(f"amount {params['amount']!r} is not a number") from None
            fields["OPPORTUNITY"] = params["amount"]
        contact = params.get("contact")
        commands: dict[str, tuple[str, Mapping[str, Any]]] = {
            "existing": ("crm.deal.list", {"filter": {"ORIGINATOR_ID": ORIGINATOR, "ORIGIN_ID": key},
                                           "select": ["ID", "CONTACT_ID"]})}
        phone = str(contact) if contact not in (None, "") and looks_like_phone(contact) else None
        if phone and e164(phone):
            commands["contact"] = ("crm.duplicate.findbycomm",
                                   {"entity_type": "CONTACT", "type": "PHONE", "values": [e164(phone)]})
        found = await self.api.batch(commands)
        error = _batch_error(found, "bitrix24 deal.create lookup")
        if error is not None:
            raise error
        existing = found.result.get("existing") or []
        data: dict[str, Any] = {"pipeline": params["pipeline"], "stage": params["stage"], "pipeline_id": category,
                                "stage_id": stage, "title": str(params["title"])}
        if existing:  # a repeat of a create that went through: the same answer and events again
            deal_id, contact_id = str(existing[0]["ID"]), existing[0].get("CONTACT_ID")
        else:
            if phone:
                fields["CONTACT_ID"] = await self.find_or_create_contact(
                    phone, None, fields.get("ASSIGNED_BY_ID"), key, found.result.get("contact"))
            elif contact not in (None, ""):
                fields["CONTACT_ID"] = str(contact)
            deal_id = str(await self.api.result("crm.deal.add",
                                                {"fields": fields, "params": {"REGISTER_SONET_EVENT": "N"}}))
            contact_id = fields.get("CONTACT_ID")
        if contact_id:
            data["contact"] = str(contact_id)
        if "ASSIGNED_BY_ID" in fields:
            data["responsible"] = str(fields["ASSIGNED_BY_ID"])
        if "OPPORTUNITY" in fields:  # as the deal's webhook reports it: exact decimal text
            data["amount"] = event_fields({"amount": fields["OPPORTUNITY"]}, {})["amount"]
        data.update(event_fields(params.get("fields") or {}, self.custom))
        return ActionResult({"id": deal_id, "contact": data.get("contact")},
                            (self._event(key, "created", deal_id, data),))

    def _stage(self, pipeline: str, stage: str) -> tuple[str, str]:
        """The (CATEGORY_ID, STAGE_ID) of a named stage, checked against Bitrix's id scheme (`Cn:` prefixes), since
        a stage of another pipeline sent to Bitrix is an error only it would report, if at all."""
        category, stage_id = self.stage_ids(pipeline, stage)
        target = str(category or "0")
        if not target.isdigit() or stage_category(stage_id) != int(target):
            scheme = f"C{target}:…" if target != "0" else "no Cn: prefix"
            raise Rejected(f"pipeline {pipeline!r} (Bitrix24 id {target}) names stage {stage!r} with id {stage_id!r}"
                           f", not a stage id of that pipeline ({scheme})")
        return target, stage_id

    def _user(self, who: Any) -> str:
        text = str(who).strip()
        if text in self.roles:
            return self.roles[text]
        if text.isdigit():
            return text
        raise Rejected(f"{text!r} is not a Bitrix24 user id nor a role under `roles:` in the connector's settings")

    @action("deal.move")
    async def deal_move(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """Move a deal to a stage: crm.deal.update within its pipeline, crm.item.update to another pipeline
        (crm.deal.update cannot change CATEGORY_ID). Already there with nothing else to set: nothing is sent."""
        deal_id = _deal_id(params["deal"])
        current = await self.api.result("crm.deal.get", {"id": deal_id})
        own = str(current.get("CATEGORY_ID") or "0")
        pipeline = params.get("pipeline") or next(
            (p.name for p in self.pipelines.values() if str(p.crm_id or "0") == own), None)
        if pipeline is None:
            raise Rejected(f"deal {deal_id} is in Bitrix24 pipeline {own}, which no pipeline file of "
                           f"{self.name!r} names; say `pipeline:`")
        target, stage = self._stage(str(pipeline), str(params["stage"]))
        fields = deal_fields(params.get("fields") or {}, self.custom)
        if target != own:
            move: dict[str, Any] = {"categoryId": int(target), "stageId": stage}
            move.update({k: v for k, v in fields.items() if k.startswith("UF_")})
            await self.api.call("crm.item.update", {"entityTypeId": 2, "id": int(deal_id), "fields": move,
                                                    "useOriginalUfNames": "Y"})
            rest = {k: v for k, v in fields.items() if not k.startswith("UF_")}
            if rest:
                await self.api.call("crm.deal.update", {"id": deal_id, "fields": rest})
        elif stage != current.get("STAGE_ID") or fields:
            await self.api.call("crm.deal.update", {"id": deal_id, "fields": {"STAGE_ID": stage, **fields},
                                                    "params": {"REGISTER_SONET_EVENT": "N"}})
        data = {"pipeline": str(pipeline), "stage": str(params["stage"]), "pipeline_id": target, "stage_id": stage,
                **event_fields(params.get("fields") or {}, self.custom)}
        return ActionResult({"id": deal_id, "stage_id": stage, "pipeline_id": target},
                            (self._event(key, "updated", deal_id, data),))

    @action("deal.update")
    async def deal_update(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """crm.deal.update of the fields given (a stage change is deal.move's)."""
        deal_id = _deal_id(params["deal"])
        fields = deal_fields(params["fields"], self.custom)
        if "ASSIGNED_BY_ID" in fields:
            fields["ASSIGNED_BY_ID"] = self._user(fields["ASSIGNED_BY_ID"])
        await self.api.call("crm.deal.update", {"id": deal_id, "fields": fields,
                                                "params": {"REGISTER_SONET_EVENT": "N"}})
        data = event_fields(params["fields"], self.custom)
        if "ASSIGNED_BY_ID" in fields:
            data["responsible"] = fields["ASSIGNED_BY_ID"]
        return ActionResult({"id": deal_id}, (self._event(key, "updated", deal_id, data),))

    @action("deal.assign")
    async def deal_assign(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """crm.deal.update of ASSIGNED_BY_ID to the user (a user id or a role of `roles:`). The deal is read back
        for its DATE_MODIFY: the answer carries the delivery id of the ONCRMDEALUPDATE this change causes, so that
        webhook is known as the answer's repeat (a role's user id is not known before the call to expect it by)."""
        deal_id = _deal_id(params["deal"])
        user = self._user(params["to"])
        await self.api.call("crm.deal.update", {"id": deal_id, "fields": {"ASSIGNED_BY_ID": user},
                                                "params": {"REGISTER_SONET_EVENT": "N"}})
        after = await self.api.result("crm.deal.get", {"id": deal_id})
        delivery = ev.deal_delivery(after) if isinstance(after, Mapping) else None
        return ActionResult({"id": deal_id, "responsible": user},
                            (self._event(key, "updated", deal_id, {"responsible": user}, delivery),))

    @action("lead.assign", emits=("lead.updated",))
    async def lead_assign(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """crm.lead.update of ASSIGNED_BY_ID to the user (a user id or a role of `roles:`)."""
        lead_id = _record_id(params.get("lead"), "lead")
        user = self._user(params["to"])
        await self.api.call("crm.lead.update", {"id": lead_id, "fields": {"ASSIGNED_BY_ID": user},
                                                "params": {"REGISTER_SONET_EVENT": "N"}})
        event = Event(id=f"{key}>lead.updated", type="lead.updated", at=datetime.now(timezone.utc),
                      data={"lead_id": lead_id, "responsible": user}, source=self.name)
        return ActionResult({"id": lead_id, "responsible": user}, (event,))

    @action("note.add")
    async def note_add(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """A comment in the timeline of one deal, lead or contact (crm.timeline.comment.add). It takes no key a
        list could find it by: an interrupted call may leave the note twice."""
        targets = [kind for kind in NOTE_TARGETS if params.get(kind) not in (None, "")]
        if len(targets) != 1:
            raise Rejected(f"note.add takes exactly one of {', '.join(NOTE_TARGETS)}; got "
                           f"{', '.join(targets) or 'none'}")
        kind = targets[0]
        text = str(params.get("text") or "").strip()
        if not text:
            raise Rejected("note.add: the text is empty")
        owner = await self._existing_contact(params[kind]) if kind == "contact" else \
            _record_id(params[kind], kind)
        return ActionResult({"id": await self._comment(kind, owner, text), kind: owner})

    async def _comment(self, kind: str, owner: str, text: str) -> str:
        """A timeline comment (crm.timeline.comment.add; `fields` in lower case, as required): its id."""
        answer = await self.api.result("crm.timeline.comment.add", {"fields": {
            "ENTITY_ID": int(owner), "ENTITY_TYPE": kind, "COMMENT": text}})
        return str(answer)

    @action("contact.update", emits=("client.updated", "client.created"))
    async def contact_update(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """crm.contact.update of the fields given; PHONE and EMAIL as the multifield items that make the contact's
        values what was written (mapping.multifield_changes). A contact given as a phone is found by it, or made
        with the fields (crm.contact.add)."""
        wanted = params.get("fields")
        if not isinstance(wanted, Mapping) or not wanted:
            raise Rejected("contact.update needs `fields:` to set")
        native = contact_values(wanted, self.contact_custom)
        if "ASSIGNED_BY_ID" in native:
            native["ASSIGNED_BY_ID"] = self._user(native["ASSIGNED_BY_ID"])
        target = params.get("contact")
        contact_id = await self._contact_id(target)
        if contact_id is None:
            contact_id = await self._new_contact(str(target), native, key)
            raw = await self.api.result("crm.contact.get", {"id": int(contact_id)})
            return ActionResult({"id": contact_id, "created": True},
                                (self._contact_event(key, "created", contact_id, raw, wanted),))
        current = await self.api.result("crm.contact.get", {"id": int(contact_id)})
        send = {k: v for k, v in native.items() if k not in MULTIFIELDS}
        after = dict(current)
        for kind in MULTIFIELDS:
            if kind in native:
                changes = multifield_changes(current.get(kind), native[kind], kind)
                if changes:
                    send[kind] = changes
                after[kind] = apply_multifield(current.get(kind), changes)
        after.update({k: v for k, v in send.items() if k not in MULTIFIELDS})
        if send:
            await self.api.call("crm.contact.update", {"id": int(contact_id), "fields": send,
                                                       "params": {"REGISTER_SONET_EVENT": "N"}})
        return ActionResult({"id": contact_id, "changed": sorted(send)},
                            (self._contact_event(key, "updated", contact_id, after, wanted),))

    async def _new_contact(self, phone: str, native: Mapping[str, Any], key: str) -> str:
        """contact.update of a phone no contact has: the contact is made with the fields set, the phone it was
        looked for by first among its phones."""
        fields = {k: v for k, v in native.items() if k not in MULTIFIELDS}
        for kind in MULTIFIELDS:
            values = native.get(kind)
            listed = values if isinstance(values, list) else [] if values is None else [values]
            fields[kind] = [{"VALUE": v, "VALUE_TYPE": "MOBILE" if kind == "PHONE" else "WORK"} for v in listed]
        number = e164(phone)
        if not any(item["VALUE"] == number for item in fields["PHONE"]):
            fields["PHONE"] = [{"VALUE": number, "VALUE_TYPE": "MOBILE"}, *fields["PHONE"]]
        name = fields.pop("NAME", None)
        return await self.find_or_create_contact(phone, None if name is None else str(name),
                                                 fields.pop("ASSIGNED_BY_ID", None), key, found={}, extra=fields)

    async def _contact_id(self, target: Any) -> str | None:
        """A contact named by its id, or by a phone (found by crm.duplicate.findbycomm; None when no contact has
        it)."""
        text = "" if target is None else str(target).strip()
        if looks_like_phone(text):
            return await self.find_contact(text)
        return _record_id(target, "contact")

    async def _existing_contact(self, target: Any) -> str:
        """A contact that must exist: by id, or the one with this phone."""
        found = await self._contact_id(target)
        if found is None:
            raise Rejected(f"no Bitrix24 contact has the phone {target!r}")
        return found

    def _contact_event(self, key: str, verb: str, contact_id: str, raw: Mapping[str, Any],
                       wanted: Mapping[str, Any]) -> Event:
        """What a contact action reports: the fields it set as the contact's webhook will report them (the same
        mapping reads both), so the daemon knows that webhook as its echo."""
        data = canonical_contact(raw, self.contact_custom)
        named = {str(n) for n in wanted} | {"phones" for n in wanted if n == "phone"} | \
            {"emails" for n in wanted if n == "email"}
        return Event(id=f"{key}>client.{verb}", type=f"client.{verb}", at=datetime.now(timezone.utc),
                     entity=EntityRef("client", contact_id),
                     data={k: v for k, v in data.items() if k in named or verb == "created"}, source=self.name)

    # ---- tasks and the timeline --------------------------------------------------------------------------
    async def recover(self, action_name: str, params: Mapping[str, Any], key: str) -> ActionResult | None:
        """A task an interrupted `task.create` made, found by its key's tag (tasks.task.list filtered by TAG).
        deal.create needs no lookup here: it looks its ORIGIN_ID up on every try (in one batch with the contact)."""
        if action_name != "task.create":
            return None
        found = await self.api.result("tasks.task.list", {"filter": {"TAG": task_tag(key)},
                                                          "select": ["ID", "TITLE", "RESPONSIBLE_ID", "DEADLINE"]})
        tasks = found.get("tasks") if isinstance(found, dict) else None
        if not tasks:
            return None
        task = tasks[0]
        return self._task_created(key, params, str(task["id"]), str(task.get("title") or params["title"]),
                                  str(task.get("responsibleId") or self._user(params["assignee"])),
                                  task.get("deadline"), await self._task_contact(params, None, key))

    @action("task.create")
    async def task_create(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """tasks.task.add for the assignee (a user id or a role), bound to the deal and client in UF_CRM_TASK,
        tagged with the effect key (found by `recover` if the call is interrupted)."""
        fields: dict[str, Any] = {"TITLE": str(params["title"]), "RESPONSIBLE_ID": self._user(params["assignee"])}
        if params.get("description"):
            fields["DESCRIPTION"] = str(params["description"])
        if params.get("due") not in (None, ""):
            fields["DEADLINE"] = _when(params["due"])
        contact = await self._task_contact(params, fields["RESPONSIBLE_ID"], key)
        links = [f"D_{params['deal']}"] if params.get("deal") not in (None, "") else []
        links += [f"C_{contact}"] if contact is not None else []
        if links:
            fields["UF_CRM_TASK"] = links
        fields["TAGS"] = [task_tag(key)]
        task = (await self.api.result("tasks.task.add", {"fields": fields}))["task"]
        return self._task_created(key, params, str(task["id"]), fields["TITLE"], fields["RESPONSIBLE_ID"],
                                  fields.get("DEADLINE"), contact)

    async def _task_contact(self, params: Mapping[str, Any], responsible: Any, key: str) -> str | None:
        """The contact a task is bound to: the `client` given as a contact id, or as a phone (the engine's, for a
        person with no contact here yet), found or made as deal.create's contact is (`C_+7916…` binds nothing)."""
        client = params.get("client")
        if client in (None, ""):
            return None
        if looks_like_phone(client):
            return await self.find_or_create_contact(str(client), None, responsible, key)
        return _record_id(client, "contact")

    def _task_created(self, key: str, params: Mapping[str, Any], task_id: str, title: str, assignee: str,
                      due: Any, contact: str | None) -> ActionResult:
        data = {"title": title, "assignee": assignee, "due": due, "deal": params.get("deal"), "client": contact}
        event = Event(id=f"{key}>task.created", type="task.created", at=datetime.now(timezone.utc),
                      entity=EntityRef("task", task_id), data={k: v for k, v in data.items() if v is not None},
                      source=self.name)
        return ActionResult({"id": task_id}, (event,))

    @action("bitrix24.todo", schema=SCHEMA.format("bitrix24.todo"))
    async def todo(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """A to-do for the manager in a deal's timeline (crm.activity.todo.add)."""
        body: dict[str, Any] = {"ownerTypeId": 2, "ownerId": int(_deal_id(params["deal"])), "deadline": _when(params["due"]),
                                "title": str(params["title"])}
        if params.get("description"):
            body["description"] = str(params["description"])
        if params.get("responsible") not in (None, ""):
            body["responsibleId"] = int(self._user(params["responsible"]))
        answer = await self.api.result("crm.activity.todo.add", body)
        return ActionResult({"id": str(answer["id"])})

    @action("bitrix24.comment", schema=SCHEMA.format("bitrix24.comment"))
    async def comment(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """A comment in a deal's timeline (note.add, for a deal)."""
        return ActionResult({"id": await self._comment("deal", _deal_id(params["deal"]), str(params["text"]))})

    @action("bitrix24.contact", schema=SCHEMA.format("bitrix24.contact"))
    async def contact(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """Find a contact by phone (crm.duplicate.findbycomm), or create it (crm.contact.add)."""
        contact_id = await self.find_or_create_contact(str(params["phone"]), params.get("name"),
                                                       params.get("responsible"), key)
        return ActionResult({"id": contact_id, "phone": e164(params["phone"])})

    # ---- inbound events and catch-up ---------------------------------------------------------------------
    async def parse(self, request: Inbound) -> list[Event]:
        """An outgoing-webhook event, verified by its application token; the deal, contact, lead or task it names
        is fetched, since the body carries only the id. A deal's contact comes first, read in the same batch: a
        rule that sees the deal already knows its contact (and so the person, by phone)."""
        if request.method.upper() != "POST":
            raise InboundRejected(405, "outgoing webhooks are POSTs", "method")
        notice = ev.read_notice(request.body, self.token, domain=self.config.get("domain"),
                                member_id=self.config.get("member_id"))
        if notice.event not in ev.HANDLED:
            return []
        if notice.event == "ONCRMDEALDELETE":
            return [ev.deal_deleted(self.name, notice.item_id, request.received_at)]
        try:
            return await self._read(notice, request.received_at)
        except Rejected:
            return []  # gone before we could read it: the delete event, or the poll, tells the rest
        except ConnectorError as exc:  # Bitrix will not send it again; the catch-up poll will find the change
            raise InboundRejected(503, f"could not read {notice.event} {notice.item_id}: {exc}", "unavailable") from exc

    async def _read(self, notice: ev.Notice, received: datetime) -> list[Event]:
        item = int(notice.item_id)
        if notice.event == "ONCRMLEADADD":
            return [ev.lead_created(self.name, await self.api.result("crm.lead.get", {"id": item}), received)]
        if notice.event in ev.CONTACT_EVENTS:
            raw = await self.api.result("crm.contact.get", {"id": item})
            verb = "created" if notice.event == "ONCRMCONTACTADD" else "updated"
            return [ev.contact_event(self.name, verb, raw, self.contact_custom, received)]
        if notice.event == "ONTASKUPDATE":
            found = await self.api.result("tasks.task.get", {"taskId": item, "select": TASK_SELECT})
            task = found.get("task") if isinstance(found, dict) else None  # a missing task: `[]` (part 2 §2.9)
            done = ev.task_completed(self.name, task, received) if isinstance(task, dict) else None
            return [done] if done is not None else []
        both = await self.api.batch({"deal": ("crm.deal.get", {"id": item}),
                                     "contact": ("crm.contact.get", {"id": "$result[deal][CONTACT_ID]"})})
        if "deal" in both.errors:
            raise _batch_error(BatchResult(errors={"deal": both.errors["deal"]}), "bitrix24 crm.deal.get") \
                or Rejected("crm.deal.get failed")
        verb = "created" if notice.event == "ONCRMDEALADD" else "updated"
        deal = ev.deal_event(self.name, verb, both.result["deal"], self.custom, self.stage_named, received)
        contact = both.result.get("contact")
        if not isinstance(contact, dict) or not contact.get("ID"):  # no contact: its sub-call failed, nothing to say
            return [deal]
        return [ev.contact_of_deal(self.name, contact, self.contact_custom, received), deal]

    async def poll(self, cursor: str | None) -> tuple[list[Event], str | None]:
        """Deals changed at or after the cursor (a DATE_MODIFY), oldest first, 50 a page: the first page, then
        the rest in one batch; the first poll only notes where the portal is."""
        if cursor is None:
            top = await self.api.result("crm.deal.list", {"order": {"DATE_MODIFY": "DESC"},
                                                          "select": ["ID", "DATE_MODIFY"], "start": -1})
            if not top:
                return [], datetime.now(timezone.utc).replace(microsecond=0).isoformat()
            stamp = str(top[0]["DATE_MODIFY"])
            ids = sorted((str(row["ID"]) for row in top if row["DATE_MODIFY"] == stamp), key=int)
            return [], f"{stamp}|{','.join(ids)}"
        query = {"filter": {">=DATE_MODIFY": ev.split_cursor(cursor)[0]}, "order": {"DATE_MODIFY": "ASC", "ID": "ASC"},
                 "select": ["*", "UF_*"]}
        first = await self.api.call("crm.deal.list", {**query, "start": 0})
        rows = list(first["result"])
        total, start = int(first.get("total") or 0), first.get("next")
        if start is not None:
            pages = {f"p{offset}": ("crm.deal.list", {**query, "start": offset})
                     for offset in range(int(start), min(total, PAGE * MAX_POLL_PAGES), PAGE)}
            found = await self.api.batch(pages)
            error = _batch_error(found, "bitrix24 poll")
            if error is not None:
                raise error
            for page in pages:
                rows.extend(found.result.get(page) or [])
        return ev.poll_events(self.name, rows, cursor, self.custom, self.stage_named)

    def sandbox_given(self, emulator: Any, entities: Sequence[Entity]) -> None:
        """The given deals of this connector's pipelines, as portal deals: their stage's CATEGORY_ID/STAGE_ID, the
        contact as CONTACT_ID, the responsible as a user (a role of `roles:`), every other field as it is mapped.
        A given client with an id of this connector (`ids: {crm: "5"}`) is that portal contact, with its phone."""
        for entity in entities:
            fields = dict(entity.fields)
            ids = fields.get("ids")
            own = ids.get(self.name) if entity.ref.kind == "client" and isinstance(ids, Mapping) else None
            if own is not None and str(own).isdigit():
                emulator.seed_contact(int(own), _given_contact(fields, self.contact_custom))
                continue
            pipeline = self.pipelines.get(str(fields.pop("pipeline", "")))
            if entity.ref.kind != "deal" or pipeline is None or not str(entity.ref.id).isdigit():
                continue
            stage = pipeline.stages.get(str(fields.pop("stage", "")))
            native: dict[str, Any] = {"CATEGORY_ID": int(pipeline.crm_id or 0)}
            if stage is not None:
                native["STAGE_ID"] = stage.crm_id
            responsible = fields.pop("responsible", None)
            if responsible not in (None, ""):
                native["ASSIGNED_BY_ID"] = self.roles.get(str(responsible), str(responsible))
            known = {k: v for k, v in fields.items() if k in self.custom or k in DEAL_FIELDS}
            native.update(deal_fields(known, self.custom))
            emulator.seed_deal(int(entity.ref.id), native)

    @classmethod
    def sandbox(cls, name: str, options: Mapping[str, Any], *, base_url: str, hook_url: str
                ) -> tuple[dict[str, Any], Any]:
        """Settings pointing at a Bitrix24 emulator at `base_url` that sends its events to `hook_url` with the
        application token both sides share; the emulator learns pipelines from the stage ids it is sent."""
        from .emulator import Bitrix24Emulator

        token = "sandbox-application-token"
        plan = str(options.get("plan") or "standard")
        emulator = Bitrix24Emulator(user_id="1", code="sandbox", application_token=token, hook_url=hook_url,
                                    plan=plan if plan in PLANS else "standard")
        settings = {k: v for k, v in options.items() if k not in ("webhook_url", "application_token", "domain",
                                                                   "member_id")}
        settings.update({"webhook_url": f"{base_url.rstrip('/')}/rest/1/sandbox/", "application_token": token})
        return settings, emulator
