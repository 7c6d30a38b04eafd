"""The amoCRM API v4 connector: leads (create, move, update, assign), contacts (read, find, update), notes, tasks
(create, completion), form webhooks, catch-up polling.

Settings (automator.yaml): `subdomain` (→ https://{subdomain}.amocrm.ru) or `base_url`, `token:
"${env:AMO_TOKEN}"` (a long-lived Bearer token), `hook_secret: "${env:AMO_HOOK_SECRET}"` (amoCRM signs no
webhook: its destination URL carries the secret as `?token=`), optional `poll_every` (default 300 s), `users`
and `roles` (names such as admin, or roles such as manager → user ids), `fields` (canonical deal field → lead
custom field id, or {id, type}) and `contact_fields` (canonical client field → contact custom field id).

Choices where the reference is unsure (the safest reading):
* delivery ids are `deal:{id}@{last_modified}:{status_id}`: the reference's dedup key without the action, so
  the `status` and `update` hooks of one change and a poll of it (which knows no action) are one change,
  while a create and a move within the same second stay two.
* a lead is created with `created_at = updated_at =` the daemon's clock, so the created event's delivery id
  is known without reading the lead back; the `leads[add]` hook is assumed to carry that time as
  `last_modified`. deal.update reads the lead first (its status is part of the delivery id).
* 429's wait is the body's `retry_after`, else the Retry-After header; 403 is a block of the IP or account
  (Rejected: every call fails until it is lifted). A 2xx whose body cannot be read is Uncertain.
* a stage with `outcome: won|lost` whose id is not a number is amoCRM's 142/143; webhooks and polls of
  142/143 are named by the pipeline's id, falling back to the pipeline's stage with that outcome.
* `contact` and a task's `client` must be amoCRM contact ids; without one, deal.create and contact.update find
  the contact by `fields.phone` (E.164, searched by its national digits), a phone given as `contact` (the engine
  passes the person's phone when it knows no amoCRM id; with a `+` or other non-digits: all digits is an id) or
  `fields.email`, creating it (with `fields.client_name`) when none matches, and checking the match on the
  contact's own phones (the search is full-text). A contact that is neither an id nor a phone is refused rather
  than guessed.
* lead `tags` set by deal.update replace the lead's whole set (the documented `_embedded.tags`; the SDK's
  `tags_to_add` has no vendor page); `utm_*` are the system tracking fields (UTM_SOURCE, …); `lead_source` is the
  lead's `source_id` (a v4 lead's column; a webhook item is assumed to carry it as the v2 lead did), named by the
  `sources:` setting, and cannot be written.
* a task is completed when its webhook item says `status` 1; `task.completed`'s delivery id is the task's, so a
  task reopened and completed again is reported once.
* a task without `due` is due in 24 hours; its type is 1 (follow-up); `description` follows the title.
* a catch-up poll reports a lead as created when its created_at equals its updated_at, else updated; the
  first poll (no cursor) only starts the cursor at the current time.
* amounts are rounded to whole units (v4 `price` is an integer).
* `request_id` is only echoed back, never kept, and no list filters by anything a create could carry. With
  `key_field` (a text custom field of leads) deal.create writes the effect key there and a try after an
  interrupted one finds the lead by `GET /api/v4/leads?query=<key>` («search over the filled fields»), checking
  that field itself; without it, and always for tasks (no custom fields, no text filter), an interrupted create
  may be made twice.
"""
from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

import httpx

from automator.checks import CheckContext, ParamProblem
from automator.connector import ActionResult, Inbound, WebConnector, action
from automator.errors import InboundRejected, Rejected
from automator.model import Entity, EntityRef, Event

from .api import PAGE_LIMIT, PER_SECOND, AmoApi, Pacer
from .emulator import AmocrmEmulator
from .mapping import (CLOSED, CONTACT_KEYS, FIELD_TYPES, TRACKING, FieldMap, FormError, LeadState, amount_of,
                      as_int, deal_data, e164, iso, people_of, lead_from_v4, lead_from_webhook, numbered, outcome_of,
                      parse_php_form, price, unix_time, user_id)
from .people import (ContactState, client_data, contact_body, contact_from_v4, contact_from_webhook,
                     contact_patch, contact_phones, search_digits)
from .tasks import completed_task

__all__ = ["Amocrm", "AmocrmEmulator"]

SANDBOX_TOKEN = "sandbox-amocrm-token"
SANDBOX_HOOK_SECRET = "sandbox-amocrm-hook-secret"
HOOK_TYPES = {"add": "deal.created", "update": "deal.updated", "status": "deal.updated",
              "responsible": "deal.updated", "restore": "deal.updated", "delete": "deal.deleted"}
# Contact webhooks as client events (a deleted contact is no canonical event: the person outlives one card).
CONTACT_HOOKS = {"add": "client.created", "update": "client.updated", "responsible": "client.updated",
                 "restore": "client.updated"}
TASK_HOOKS = ("add", "update")  # a task completed in either is reported; `delete` says nothing of completion
MAX_EVENTS = 1000  # lead items in one webhook body
MAX_POLL_PAGES = 20  # pages of 250 per poll; the rest comes at the next poll
_ENV = {"type": "string", "pattern": r"^\$\{env:[A-Za-z_][A-Za-z0-9_]*\}$",
        "x-pattern-message": "a secret, written as ${env:NAME}: never the value itself"}


def _items(form: Mapping[str, Any]) -> list[tuple[str, str, Mapping[str, Any]]]:
    """(entity, verb, item) of every item of a webhook form that reports a change we read: leads, contacts and
    tasks (under the singular `task`, as observed, or `tasks`). Notes and other verbs describe no such change."""
    read = {"leads": HOOK_TYPES, "contacts": CONTACT_HOOKS, "task": TASK_HOOKS, "tasks": TASK_HOOKS}
    found: list[tuple[str, str, Mapping[str, Any]]] = []
    for key, verbs in read.items():
        groups = form.get(key, {})
        if not isinstance(groups, dict):
            raise InboundRejected(400, f"{key} must be a group of actions")
        for verb, group in groups.items():
            if verb not in verbs:
                continue
            items = numbered(group)
            if not items:
                raise InboundRejected(400, f"{key}[{verb}] holds no numbered items")
            for item in items:
                if not isinstance(item, dict):
                    raise InboundRejected(400, f"{key}[{verb}] items must be groups of fields")
                found.append(("tasks" if key == "task" else key, verb, item))
    return found


class Amocrm(WebConnector):
    """amoCRM (and Kommo) API v4 for one account."""

    type = "amocrm"
    webhook_auth = ("hook_secret",)  # the ?token= of the webhook URL
    config_schema: ClassVar[Mapping[str, Any]] = {
        "type": "object",
        "required": ["type", "token", "hook_secret"],
        "anyOf": [{"required": ["subdomain"]}, {"required": ["base_url"]}],
        "additionalProperties": False,
        "properties": {
            "type": {"const": "amocrm"},
            "subdomain": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,62}$",
                          "description": "The account's subdomain: clinic for https://clinic.amocrm.ru."},
            "base_url": {"type": "string", "pattern": "^https?://",
                         "description": "The API's address instead of the subdomain (a .kommo.com account)."},
            "token": {**_ENV, "description": "A long-lived token of the integration: ${env:AMO_TOKEN}."},
            "hook_secret": {**_ENV, "description": "The ?token= of the webhook URL: ${env:AMO_HOOK_SECRET}."},
            "poll_every": {"anyOf": [{"type": "string"}, {"type": "number", "exclusiveMinimum": 0},
                                     {"const": False}],
                           "description": "How often to catch up on lost webhooks (5m); false: never."},
            "users": {"type": "object", "additionalProperties": {"type": "integer"},
                      "description": "Names rules use for employees (admin) → amoCRM user ids."},
            "roles": {"type": "object", "additionalProperties": {"type": "integer"},
                      "description": "Roles rules assign to (manager, senior) → amoCRM user ids, as for Bitrix24."},
            "contact_fields": {"type": "object", "description": "Client fields kept in contact custom fields: "
                               "name → id.", "additionalProperties": {"anyOf": [
                                   {"type": "integer"},
                                   {"type": "object", "required": ["id"], "additionalProperties": False,
                                    "properties": {"id": {"type": "integer"}, "type": {"enum": list(FIELD_TYPES)}}}]}},
            "fields": {"type": "object", "description": "Deal fields kept in lead custom fields: name → id.",
                       "additionalProperties": {"anyOf": [
                           {"type": "integer"},
                           {"type": "object", "required": ["id"], "additionalProperties": False,
                            "properties": {"id": {"type": "integer"}, "type": {"enum": list(FIELD_TYPES)}}}]}},
            "timeout": {"type": "number", "exclusiveMinimum": 0, "description": "Seconds for one whole call."},
            "sources": {"type": "object", "additionalProperties": {"type": "string", "minLength": 1},
                        "propertyNames": {"pattern": "^[0-9]+$"},
                        "description": "amoCRM source ids → the names deals report as lead_source (12345: site)."},
            "key_field": {"type": "integer", "description": "A text custom field of leads that keeps each created "
                          "lead's effect key: a create interrupted mid-call is then found, not made twice."},
        },
    }
    # The outbox's pace: 7 a second with no burst, so no one-second window ever holds more than the limit.
    rate_limit = (float(PER_SECOND), 1)
    poll_every = 300.0

    def __init__(self, name: str, config: Mapping[str, Any], *, transport: httpx.AsyncBaseTransport | None = None,
                 now: Callable[[], datetime] | None = None) -> None:
        super().__init__(name, config, transport=transport)
        self.now = now or (lambda: datetime.now(UTC))
        # Employees by name and by role: both are names rules give for a user id.
        self.users = people_of(config)
        self.fields = FieldMap.from_config(config.get("fields"))
        self.contact_fields = FieldMap.from_config(config.get("contact_fields"))
        self.sources = {str(k): str(v) for k, v in (config.get("sources") or {}).items()}
        self.api = AmoApi(self.request, Pacer())

    @classmethod
    def check_params(cls, action: str, params: Mapping[str, Any], options: Mapping[str, Any],
                     context: CheckContext) -> list[ParamProblem]:
        """Unmapped lead fields, people not among `users:`, pipelines and stages without amoCRM's ids, another
        system's client ids as contacts: what the actions refuse or get wrong (connectors/amocrm/checks.py)."""
        from .checks import check

        return check(action, params, options, context)

    @classmethod
    def create(cls, name: str, options: Mapping[str, Any], *, db: Any, now: Callable[[], Any]) -> Amocrm:
        """The daemon's instance, on the daemon's clock."""
        return cls(name, options, now=now)

    def base_url(self) -> str:
        """`base_url`, else https://{subdomain}.amocrm.ru."""
        if self.config.get("base_url"):
            return str(self.config["base_url"]).rstrip("/")
        return f"https://{self.config['subdomain']}.amocrm.ru"

    def default_headers(self) -> dict[str, str]:
        """The Bearer token; answers come as HAL or problem+json."""
        return {"Authorization": f"Bearer {self.config['token']}",
                "Accept": "application/hal+json, application/problem+json"}

    @classmethod
    def sandbox(cls, name: str, options: Mapping[str, Any], *, base_url: str, hook_url: str
                ) -> tuple[dict[str, Any], Any]:
        """The connector pointed at an emulator that knows the same token and sends webhooks with the same
        `?token=`; the emulator adopts the pipeline and status ids the project's pipeline files name."""
        subdomain = str(options.get("subdomain") or "sandbox")
        settings = {k: v for k, v in options.items() if k in ("users", "roles", "fields", "contact_fields",
                                                               "sources", "poll_every", "timeout")}
        settings.update(base_url=base_url, subdomain=subdomain, token=SANDBOX_TOKEN, hook_secret=SANDBOX_HOOK_SECRET)
        hook = f"{hook_url}{'&' if '?' in hook_url else '?'}token={SANDBOX_HOOK_SECRET}"
        return settings, AmocrmEmulator(token=SANDBOX_TOKEN, hook_url=hook, subdomain=subdomain, base_url=base_url,
                                        adopt=True)

    def sandbox_given(self, emulator: Any, entities: Sequence[Entity]) -> None:
        """The given deals of this connector's pipelines, as the account's leads under their ids: their stage's
        pipeline_id/status_id, title, amount, responsible (a name of `users:`/`roles:`) and tags."""
        for entity in entities:
            fields = entity.fields
            if entity.ref.kind != "deal" or str(fields.get("pipeline", "")) not in self.pipelines \
                    or not entity.ref.id.isdigit():
                continue
            pipeline = str(fields["pipeline"])
            stage = str(fields.get("stage") or next(iter(self.pipelines[pipeline].stages)))
            pipeline_id, status_id = self._target(pipeline, stage)
            known = {k: fields[k] for k in ("amount", "responsible", "tags") if k in fields}
            emulator.records.add_lead({"pipeline_id": pipeline_id, "status_id": status_id,
                                       "name": str(fields.get("title") or f"Сделка #{entity.ref.id}"),
                                       **self.fields.lead_body(known, self.users)}, int(entity.ref.id))

    # ---- names ↔ ids --------------------------------------------------------------------------------------
    def _target(self, pipeline: str, stage: str) -> tuple[int, int]:
        """amoCRM's (pipeline_id, status_id) of a stage named in pipelines/*.yaml."""
        crm_pipeline, crm_stage = self.stage_ids(pipeline, stage)
        if crm_pipeline is None or not str(crm_pipeline).isdigit():
            raise Rejected(f"pipeline {pipeline!r} needs amoCRM's pipeline id as its id: in pipelines/*.yaml "
                           f"(142/143 exist in every pipeline, so a stage alone is ambiguous)")
        outcome = self.pipelines[pipeline].stages[stage].outcome
        if not str(crm_stage).isdigit():
            if outcome not in CLOSED:
                raise Rejected(f"stage {stage!r} of {pipeline!r} has id {crm_stage!r}: amoCRM status ids are numbers")
            return int(crm_pipeline), CLOSED[outcome]
        return int(crm_pipeline), int(crm_stage)

    def _names(self, status_id: str, pipeline_id: str) -> tuple[str, str] | None:
        named = self.stage_named(status_id, pipeline_id)
        if named is None and status_id in ("142", "143"):
            outcome = "won" if status_id == "142" else "lost"
            for pipeline in self.pipelines.values():
                if str(pipeline.crm_id) == pipeline_id:
                    found = next((s.name for s in pipeline.stages.values() if s.outcome == outcome), None)
                    if found:
                        return pipeline.name, found
        return named

    def _pipeline_of(self, pipeline_id: Any) -> str | None:
        return next((p.name for p in self.pipelines.values() if str(p.crm_id) == str(pipeline_id)), None)

    def _event(self, state: LeadState, type_: str, data: Mapping[str, Any] | None = None) -> Event:
        body = dict(data) if data is not None else deal_data(state, self._names(state.status_id, state.pipeline_id),
                                                              self.fields, self.sources)
        at = datetime.fromtimestamp(state.updated_at, UTC) if state.updated_at else self.now()
        return Event(id=f"{self.name}:{state.delivery}", type=type_, at=at, entity=EntityRef("deal", state.id),
                     data=body, source=self.name, delivery_id=state.delivery)

    def _client_event(self, state: ContactState, type_: str) -> Event:
        at = datetime.fromtimestamp(state.updated_at, UTC) if state.updated_at else self.now()
        return Event(id=f"{self.name}:{state.delivery}", type=type_, at=at, entity=EntityRef("client", state.id),
                     data=client_data(state, self.contact_fields), source=self.name, delivery_id=state.delivery)

    # ---- actions ------------------------------------------------------------------------------------------
    @action("deal.create")
    async def deal_create(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """POST /api/v4/leads at the stage's pipeline_id/status_id, linked to the client's contact."""
        pipeline_id, status_id = self._target(params["pipeline"], params["stage"])
        extra = dict(params.get("fields") or {})
        client = {k: extra.pop(k) for k in CONTACT_KEYS if k in extra}
        body = self.fields.lead_body(extra, self.users)  # an unknown field is refused before any call
        responsible = None if params.get("responsible") in (None, "") else \
            user_id(params["responsible"], self.users, "responsible")
        now = int(self.now().timestamp())
        lead: dict[str, Any] = {"name": str(params["title"]), "pipeline_id": pipeline_id, "status_id": status_id,
                                "created_at": now, "updated_at": now, "request_id": key, **body}
        if params.get("amount") not in (None, ""):
            lead["price"] = price(params["amount"])
        if responsible is not None:
            lead["responsible_user_id"] = responsible
        contact = await self._contact(params.get("contact"), client, responsible, key)
        if contact is not None:
            # The client's contact is the lead's main one (contract 2 §3.2; the inline form of the link).
            lead["_embedded"] = {**lead.get("_embedded", {}), "contacts": [{"id": contact, "is_main": True}]}
        if self.config.get("key_field"):
            lead["custom_fields_values"] = [*lead.get("custom_fields_values", []),
                                            {"field_id": int(self.config["key_field"]), "values": [{"value": key}]}]
        made = await self.api.add("leads", [lead], "create lead")
        lead_id = str(made[0]["id"])
        # The lead as sent is the lead made: its created event needs no read back.
        state = lead_from_v4({**lead, "id": lead_id, "_embedded": {"tags": [], **lead.get("_embedded", {})}})
        result = {"id": lead_id, **({"contact": str(contact)} if contact is not None else {})}
        return ActionResult(result, (self._event(state, "deal.created"),))

    async def recover(self, action_name: str, params: Mapping[str, Any], key: str) -> ActionResult | None:
        """The lead an interrupted deal.create made, found by its effect key in `key_field` (searched with `query`,
        then checked on the field itself: the search matches any filled field); None without `key_field`."""
        field = self.config.get("key_field")
        if action_name != "deal.create" or not field:
            return None
        leads, _ = await self.api.list_leads({"query": key, "with": "contacts"}, "find lead by effect key")
        for found in leads:
            state = lead_from_v4(found)
            if (str(field), key) in state.custom:
                result = {"id": state.id, **({"contact": state.contact} if state.contact else {})}
                return ActionResult(result, (self._event(state, "deal.created"),))
        return None

    async def _contact(self, contact: Any, client: Mapping[str, Any], responsible: int | None, key: str) -> int | None:
        """The amoCRM contact id a new lead is linked to, or contact.update changes: given, found by phone or email,
        or created. A phone given as `contact` (`+79161234567`, the one key a booking system and the CRM share: the
        engine passes it when the person has no amoCRM id yet) is one to find it by."""
        if contact not in (None, "") and str(contact).strip().isdigit():
            return int(str(contact).strip())
        phone = None
        if client.get("phone") not in (None, ""):
            phone = e164(client["phone"])
            if phone is None:
                raise Rejected(f"fields.phone {client['phone']!r} is not a valid phone number")
        elif contact not in (None, ""):
            phone = e164(contact)
        email = str(client["email"]).strip() if client.get("email") not in (None, "") else None
        if phone is None and email is None:
            if contact not in (None, ""):
                raise Rejected(f"contact {contact!r} is not an amoCRM contact id; pass fields.phone to find or "
                               f"create the contact instead")
            return None
        if phone is not None:
            for found in await self.api.find_contacts(search_digits(phone), "find contact by phone"):
                if phone in contact_phones(found):
                    return int(found["id"])
        else:
            for found in await self.api.find_contacts(str(email), "find contact by email"):
                emails = [str(v.get("value", "")).lower() for cf in found.get("custom_fields_values") or []
                          if cf.get("field_code") == "EMAIL" for v in cf.get("values") or []]
                if str(email).lower() in emails:
                    return int(found["id"])
        name = client.get("client_name")
        made = await self.api.add("contacts", [{**contact_body(None if name in (None, "") else str(name), phone,
                                                              email, responsible), "request_id": key}],
                                  "create contact")
        return int(made[0]["id"])

    @action("deal.move")
    async def deal_move(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """PATCH the lead's status_id and pipeline_id (both: 142/143 repeat in every pipeline)."""
        lead_id = as_int(params.get("deal"), "deal")
        pipeline = params.get("pipeline")
        if not pipeline:
            current = await self._lead(lead_id)
            pipeline = self._pipeline_of(current["pipeline_id"])
            if pipeline is None:
                raise Rejected(f"lead {lead_id} is in amoCRM pipeline {current['pipeline_id']}, which no "
                               f"pipelines/*.yaml of connector {self.name!r} names; give deal.move a pipeline:")
        pipeline_id, status_id = self._target(str(pipeline), params["stage"])
        fields = dict(params.get("fields") or {})
        body = {"status_id": status_id, "pipeline_id": pipeline_id, **self.fields.lead_body(fields, self.users)}
        answer = await self.api.patch_lead(lead_id, body, "move lead")
        state = LeadState(id=str(lead_id), updated_at=int(answer.get("updated_at") or self.now().timestamp()),
                          created_at=None, status_id=str(status_id), pipeline_id=str(pipeline_id))
        data = {"pipeline": str(pipeline), "stage": params["stage"], "pipeline_id": str(pipeline_id),
                "status_id": str(status_id), "outcome": outcome_of(status_id), **fields}
        return ActionResult({"id": str(lead_id), "updated_at": state.updated_at},
                            (self._event(state, "deal.updated", data),))

    @action("deal.update")
    async def deal_update(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """PATCH lead columns (title, amount, responsible) and mapped custom fields."""
        lead_id = as_int(params.get("deal"), "deal")
        fields = dict(params["fields"])
        if {"stage", "pipeline"} & fields.keys():
            raise Rejected("deal.update cannot change a stage or pipeline: use deal.move")
        body = self.fields.lead_body(fields, self.users)
        current = await self._lead(lead_id)
        answer = await self.api.patch_lead(lead_id, body, "update lead")
        state = LeadState(id=str(lead_id), updated_at=int(answer.get("updated_at") or self.now().timestamp()),
                          created_at=None, status_id=str(current["status_id"]),
                          pipeline_id=str(current["pipeline_id"]))
        data = {**fields, **({"amount": amount_of(body["price"])} if "price" in body else {})}
        return ActionResult({"id": str(lead_id), "updated_at": state.updated_at},
                            (self._event(state, "deal.updated", data),))

    @action("deal.assign")
    async def deal_assign(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """PATCH the lead's responsible_user_id to a user id, or a name under `users:` or `roles:`."""
        lead_id = as_int(params.get("deal"), "deal")
        responsible = user_id(params["to"], self.users, "to")
        current = await self._lead(lead_id)
        answer = await self.api.patch_lead(lead_id, {"responsible_user_id": responsible}, "assign lead")
        state = LeadState(id=str(lead_id), updated_at=int(answer.get("updated_at") or self.now().timestamp()),
                          created_at=None, status_id=str(current["status_id"]),
                          pipeline_id=str(current["pipeline_id"]))
        return ActionResult({"id": str(lead_id), "responsible": str(responsible), "updated_at": state.updated_at},
                            (self._event(state, "deal.updated", {"responsible": str(responsible)}),))

    @action("contact.update")
    async def contact_update(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """PATCH /api/v4/contacts/{id}: the contact given (an amoCRM id, or a phone: found or created by it), else
        the run's client's; name, phone, email, responsible, tags and the `contact_fields:` custom fields."""
        fields = dict(params["fields"])
        given = params.get("contact") if params.get("contact") not in (None, "") else params.get("client")
        if given in (None, ""):
            raise Rejected("contact.update needs `contact:` (an amoCRM contact id or a phone), or a client in the run")
        contact = await self._contact(given, {}, None, key)
        assert contact is not None  # a given contact is an id, or a phone it was found or created by
        current = await self.api.get_contact(contact, "read contact")
        if current is None:
            raise Rejected(f"amoCRM has no contact {contact} (204 No Content)")
        body = contact_patch(fields, current, self.users, self.contact_fields)
        answer = await self.api.patch_contact(contact, body, "update contact")
        changed = await self.api.get_contact(contact, "read updated contact")
        state = contact_from_v4({**(changed or current), "updated_at": answer.get("updated_at")
                                 or (changed or current).get("updated_at")})
        return ActionResult({"id": str(contact), "updated_at": state.updated_at},
                            (self._client_event(state, "client.updated"),))

    @action("note.add")
    async def note_add(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """POST a `common` note to the contact, else the lead (`lead:`: in amoCRM a lead is the deal), else the deal:
        the most specific record named (a run's deal may be filled in beside the contact a rule names)."""
        named = [k for k in ("contact", "lead", "deal") if params.get(k) not in (None, "")]
        if not named:
            raise Rejected("note.add needs deal:, lead: or contact: (an amoCRM id)")
        entity = "contacts" if named[0] == "contact" else "leads"
        record = as_int(params[named[0]], named[0])
        text = str(params["text"])
        if not text.strip():
            raise Rejected("note.add: the note's text is empty")
        made = await self.api.add_note(entity, record, {"note_type": "common", "params": {"text": text},
                                                        "request_id": key}, "add note")
        return ActionResult({"id": str(made["id"]), named[0]: str(record)})

    async def _lead(self, lead_id: int) -> dict[str, Any]:
        found = await self.api.get_lead(lead_id, "read lead")
        if found is None:
            raise Rejected(f"amoCRM has no lead {lead_id} (204 No Content)")
        return found

    @action("task.create")
    async def task_create(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """POST /api/v4/tasks on the deal (or the client's contact), due as unix complete_till."""
        till = unix_time(params.get("due"), self.now())
        text = str(params["title"])
        if params.get("description"):
            text = f"{text}\n\n{params['description']}"
        task: dict[str, Any] = {"text": text, "complete_till": till, "task_type_id": 1, "request_id": key,
                                "responsible_user_id": user_id(params["assignee"], self.users, "assignee")}
        contact = None
        if params.get("deal") not in (None, ""):
            task.update(entity_id=as_int(params["deal"], "deal"), entity_type="leads")
        elif params.get("client") not in (None, ""):
            # A contact id, or a phone (the engine's, for a person with no contact here yet): found or made as
            # deal.create's contact is.
            contact = await self._contact(params["client"], {}, task["responsible_user_id"], key)
            task.update(entity_id=contact, entity_type="contacts")
        made = await self.api.add("tasks", [task], "create task")
        task_id = str(made[0]["id"])
        data: dict[str, str | None] = {k: str(params[k]) for k in ("title", "assignee", "description", "deal",
                                                                    "client") if params.get(k) not in (None, "")}
        if contact is not None:
            data["client"] = str(contact)
        data["due"] = iso(till)
        event = Event(id=f"{self.name}:task:{task_id}", type="task.created", at=self.now(),
                      entity=EntityRef("task", task_id), data=data, source=self.name, delivery_id=f"task:{task_id}")
        return ActionResult({"id": task_id}, (event,))

    async def read_pipelines(self) -> list[dict[str, Any]]:
        """The account's pipelines with their statuses (GET /api/v4/leads/pipelines)."""
        return [{"id": p["id"], "name": p.get("name"), "is_main": p.get("is_main", False),
                 "statuses": [{"id": s["id"], "name": s.get("name"), "type": s.get("type", 0)}
                              for s in (p.get("_embedded") or {}).get("statuses") or []]}
                for p in await self.api.pipelines("read pipelines")]

    async def check_pipelines(self) -> list[str]:
        """Problems between pipelines/*.yaml and the account: ids that amoCRM does not have."""
        known = {str(p["id"]): {str(s["id"]) for s in p["statuses"]} for p in await self.read_pipelines()}
        problems = []
        for pipeline in self.pipelines.values():
            statuses = known.get(str(pipeline.crm_id))
            if statuses is None:
                problems.append(f"pipeline {pipeline.name}: amoCRM has no pipeline {pipeline.crm_id}")
                continue
            for stage in pipeline.stages.values():
                if str(stage.crm_id).isdigit() and str(stage.crm_id) not in statuses:
                    problems.append(f"pipeline {pipeline.name}, stage {stage.name}: amoCRM pipeline "
                                    f"{pipeline.crm_id} has no status {stage.crm_id}")
        return problems

    # ---- inbound --------------------------------------------------------------------------------------
    def parse(self, request: Inbound) -> list[Event]:
        """A form-encoded amoCRM webhook (`leads[status][0][id]=…`), authenticated by the URL's `?token=`."""
        secret = str(self.config.get("hook_secret") or "")
        given = str(request.query.get("token", ""))
        if not secret or not hmac.compare_digest(given.encode(), secret.encode()):
            raise InboundRejected(401, "missing or wrong ?token= in the webhook URL", "auth")
        if request.method.upper() != "POST":
            raise InboundRejected(405, "amoCRM webhooks are POSTs", "method")
        kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if kind and kind != "application/x-www-form-urlencoded":
            raise InboundRejected(415, f"expected a form-encoded body, not {kind}")
        try:
            form = parse_php_form(request.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise InboundRejected(400, f"not an amoCRM webhook form: {exc}") from exc
        if not form:
            raise InboundRejected(400, "empty webhook body")
        account = form.get("account")
        expected = self.config.get("subdomain")
        if isinstance(account, dict) and expected and account.get("subdomain") not in (None, expected):
            raise InboundRejected(403, f"a webhook of account {account.get('subdomain')!r}, not {expected!r}", "auth")
        events: dict[str, Event] = {}
        for entity, verb, item in _items(form):
            try:
                event = self._hook_event(entity, verb, item)
            except FormError as exc:
                raise InboundRejected(400, str(exc)) from exc
            if event is None:
                continue
            # `status` and `update` of one change carry one delivery id: one event (the first verb wins).
            events.setdefault(event.delivery_id or event.id, event)
            if len(events) > MAX_EVENTS:
                raise InboundRejected(400, f"more than {MAX_EVENTS} items in one webhook")
        return list(events.values())

    def _hook_event(self, entity: str, verb: str, item: Mapping[str, Any]) -> Event | None:
        """The event one webhook item reports: a lead's change, a contact's, or a task's completion."""
        if entity == "leads":
            state = lead_from_webhook(item, verb)
            data = None if verb != "delete" else {"pipeline_id": state.pipeline_id, "status_id": state.status_id}
            return self._event(state, HOOK_TYPES[verb], data)
        if entity == "contacts":
            return self._client_event(contact_from_webhook(item, verb), CONTACT_HOOKS[verb])
        done = completed_task(item, verb)
        if done is None:
            return None
        task_id, data = done
        delivery = f"task:{task_id}:completed"
        at = datetime.fromisoformat(data["completed_at"]) if "completed_at" in data else self.now()
        return Event(id=f"{self.name}:{delivery}", type="task.completed", at=at, entity=EntityRef("task", task_id),
                     data=data, source=self.name, delivery_id=delivery)

    async def poll(self, cursor: str | None) -> tuple[list[Event], str | None]:
        """Leads changed since the cursor (`filter[updated_at][from]`, oldest first, 250 a page).

        The cursor is `<unix seconds>|<delivery ids seen at that second>`: `from` is inclusive, so the leads of
        the last second are read again and skipped, and a change later in that same second is not lost."""
        if cursor is None:
            return [], str(int(self.now().timestamp()))
        stamp, _, seen_text = cursor.partition("|")
        since = int(stamp) if stamp.isdigit() else int(self.now().timestamp())
        seen = set(filter(None, seen_text.split(",")))
        newest, at_newest = since, set(seen)
        events: list[Event] = []
        for page in range(1, MAX_POLL_PAGES + 1):
            leads, more = await self.api.list_leads(
                {"filter[updated_at][from]": since, "order[updated_at]": "asc", "limit": PAGE_LIMIT, "page": page,
                 "with": "contacts"}, "poll leads")
            for lead in leads:
                state = lead_from_v4(lead)
                if state.updated_at < since or (state.updated_at == since and state.delivery in seen):
                    continue
                created = state.created_at is not None and state.created_at == state.updated_at
                events.append(self._event(state, "deal.created" if created else "deal.updated"))
                if state.updated_at > newest:
                    newest, at_newest = state.updated_at, set()
                if state.updated_at == newest:
                    at_newest.add(state.delivery)
            if not more:
                break
        return events, f"{newest}|{','.join(sorted(at_newest))}" if at_newest else str(newest)
