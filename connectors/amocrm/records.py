"""The emulated amoCRM account's data: pipelines, leads, contacts, tasks and notes, their validation and webhook
items."""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

API_USER = 123123  # the user the long-lived token belongs to: the author of changes made through the API
INT_FIELDS = ("id", "price", "status_id", "pipeline_id", "responsible_user_id", "created_at", "updated_at",
              "loss_reason_id", "created_by", "updated_by", "source_id")
ENTITY_TYPES = ("leads", "contacts", "companies", "customers")
WON, LOST = 142, 143
Errors = dict[str, Any]
# The account's system fields, addressed by field_code (contract 2 §3.1, §3.6): code → (field id, name, type).
SYSTEM_FIELDS = {"PHONE": (264911, "Телефон", "multitext"), "EMAIL": (264913, "Email", "multitext"),
                 **{f"UTM_{part}": (681120 + i, f"utm_{part.lower()}", "tracking_data")
                    for i, part in enumerate(("SOURCE", "MEDIUM", "CAMPAIGN", "CONTENT", "TERM", "REFERRER"))}}
NOTE_TYPES = ("common", "call_in", "call_out", "service_message", "extended_service_message", "sms_in", "sms_out",
              "attachment", "geolocation")
LEGACY_ELEMENT = {"leads": 2, "contacts": 1, "companies": 3, "customers": 12}


def with_system_ids(values: Any) -> list[dict[str, Any]]:
    """Custom field values as amoCRM keeps them: a system field addressed by its code gets its id and name too."""
    out = []
    for cf in values or []:
        code = cf.get("field_code")
        if code in SYSTEM_FIELDS:
            ident, name, kind = SYSTEM_FIELDS[code]
            cf = {**cf, "field_id": ident, "field_name": name, "field_type": kind}
        out.append(dict(cf))
    return out


def merged_values(kept: Any, changes: Any) -> list[dict[str, Any]] | None:
    """A PATCH's custom field values over the kept ones: each field it names is replaced whole (all its values,
    as for PHONE: contract 2 §3.1), the others stay."""
    by_id = {cf["field_id"]: cf for cf in with_system_ids(kept)}
    for cf in with_system_ids(changes):
        by_id[cf["field_id"]] = cf
    return list(by_id.values()) or None


def _error(code: str, path: str, detail: str) -> dict[str, str]:
    return {"code": code, "path": path, "detail": detail}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class Records:
    """One account's entities in the v4 shapes, with the checks the real API makes before changing anything."""

    def __init__(self, *, now: Callable[[], float], adopt: bool = False) -> None:
        self.now = now
        # In the sandbox the project's pipeline files name the account's ids: unknown ones are created on use.
        self.adopt = adopt
        self.account_id = 31361463
        self.pipelines: dict[int, dict[str, Any]] = {}
        self.leads: dict[int, dict[str, Any]] = {}
        self.contacts: dict[int, dict[str, Any]] = {}
        self.tasks: dict[int, dict[str, Any]] = {}
        self.notes: dict[int, dict[str, Any]] = {}
        self._next = {"lead": 10185151, "contact": 12117258, "task": 4745251, "status": 58141900, "tag": 1252595,
                      "note": 42000}
        self.tags: dict[str, int] = {}  # tag name → id: one id per name across the account
        self.add_pipeline(6950551, "Воронка", [(58141807, "Первичный контакт"), (58141811, "Переговоры"),
                                               (58141815, "Принимают решение")], unsorted=58141803)
        self.add_pipeline(6950555, "Реабилитация", [(58141855, "Новая сделка"), (58141859, "Записан")],
                          unsorted=58141851)

    def _id(self, kind: str) -> int:
        self._next[kind] += 1
        return self._next[kind]

    def _stamp(self) -> int:
        return int(self.now())

    # ---- pipelines -----------------------------------------------------------------------------------------
    def add_pipeline(self, pipeline_id: int, name: str, stages: list[tuple[int, str]],
                     unsorted: int | None = None) -> dict[str, Any]:
        """A pipeline with the unsorted status (`type: 1`), the given user stages, and 142/143."""
        statuses: dict[int, dict[str, Any]] = {}

        def status(sid: int, title: str, sort: int, type_: int = 0, editable: bool = True) -> None:
            statuses[sid] = {"id": sid, "name": title, "sort": sort, "is_editable": editable,
                             "pipeline_id": pipeline_id, "color": "#99ccff", "type": type_,
                             "account_id": self.account_id}
        status(unsorted or self._id("status"), "Неразобранное", 10, type_=1, editable=False)
        for index, (sid, title) in enumerate(stages):
            status(sid, title, 20 + 10 * index)
        status(WON, "Успешно реализовано", 10000, editable=False)
        status(LOST, "Закрыто и не реализовано", 11000, editable=False)
        pipeline = {"id": pipeline_id, "name": name, "sort": len(self.pipelines) + 1, "is_main": not self.pipelines,
                    "is_unsorted_on": True, "is_archive": False, "account_id": self.account_id,
                    "statuses": statuses}
        self.pipelines[pipeline_id] = pipeline
        return pipeline

    def _main(self) -> dict[str, Any]:
        return next(p for p in self.pipelines.values() if p["is_main"])

    @staticmethod
    def _first_stage(pipeline: Mapping[str, Any]) -> int:
        statuses = list(pipeline["statuses"].values())
        return next((s["id"] for s in statuses if s["type"] == 0 and s["id"] not in (WON, LOST)), statuses[0]["id"])

    def _placement(self, item: Mapping[str, Any], current: Mapping[str, Any] | None
                   ) -> tuple[int, int] | dict[str, str]:
        """(pipeline id, status id) the item puts a lead in, or the validation error."""
        pid, sid = item.get("pipeline_id"), item.get("status_id")
        if pid is not None:
            if pid not in self.pipelines:
                if not self.adopt:
                    return _error("NotSupportedChoice", "pipeline_id", "The value you selected is not a valid choice.")
                self.add_pipeline(pid, f"Воронка {pid}", [])
            pipeline = self.pipelines[pid]
            if sid is None:
                if current is not None and current["pipeline_id"] == pid:
                    return pid, current["status_id"]
                return pid, self._first_stage(pipeline)
        elif sid is not None:
            if sid in (WON, LOST):  # not unique: the lead's own pipeline (the main one for a new lead)
                pid = current["pipeline_id"] if current else self._main()["id"]
            else:
                pid = next((p["id"] for p in self.pipelines.values() if sid in p["statuses"]), None)
                if pid is None:
                    pid = current["pipeline_id"] if current else self._main()["id"]
        elif current is not None:
            return current["pipeline_id"], current["status_id"]
        else:
            main = self._main()
            return main["id"], self._first_stage(main)
        pipeline = self.pipelines[pid]
        if sid not in pipeline["statuses"]:
            if not self.adopt:
                return _error("NotSupportedChoice", "status_id", "The value you selected is not a valid choice.")
            pipeline["statuses"][sid] = {"id": sid, "name": f"Этап {sid}", "sort": 500, "is_editable": True,
                                         "pipeline_id": pid, "color": "#99ccff", "type": 0,
                                         "account_id": self.account_id}
        return pid, sid

    # ---- leads -------------------------------------------------------------------------------------------
    def lead_errors(self, item: Any, index: int, *, creating: bool) -> Errors | None:
        """The `validation-errors` group of one lead of a request, or None when it is valid."""
        request_id = str(item.get("request_id", index)) if isinstance(item, Mapping) else str(index)
        if not isinstance(item, Mapping):
            return {"request_id": request_id, "errors": [_error("InvalidType", "", "This value should be of type object.")]}
        errors = [_error("InvalidType", k, "This value should be of type int.")
                  for k in INT_FIELDS if k in item and item[k] is not None and not _is_int(item[k])]
        if "name" in item and not isinstance(item["name"], str):
            errors.append(_error("InvalidType", "name", "This value should be of type string."))
        current = None
        if not creating:
            if not _is_int(item.get("id")):
                errors.append(_error("NotBlank", "id", "This value should not be blank."))
            else:
                current = self.leads.get(item["id"])
                if current is None:
                    errors.append(_error("NotFound", "id", "Entity not found."))
        errors += self._custom_errors(item.get("custom_fields_values"))
        embedded = item.get("_embedded") or {}
        if not isinstance(embedded, Mapping):
            errors.append(_error("InvalidType", "_embedded", "This value should be of type object."))
            embedded = {}
        for i, contact in enumerate(embedded.get("contacts") or []):
            if not isinstance(contact, Mapping) or contact.get("id") not in self.contacts:
                errors.append(_error("NotSupportedChoice", f"_embedded.contacts.{i}.id",
                                     "The value you selected is not a valid choice."))
        for i, tag in enumerate(embedded.get("tags") or []):
            if not isinstance(tag, Mapping) or not (isinstance(tag.get("name"), str) or _is_int(tag.get("id"))):
                errors.append(_error("InvalidType", f"_embedded.tags.{i}", "A tag needs a name or an id."))
        if not errors and (creating or current is not None):
            placed = self._placement(item, current)
            if isinstance(placed, dict):
                errors.append(placed)
        return {"request_id": request_id, "errors": errors} if errors else None

    @staticmethod
    def _custom_errors(values: Any) -> list[dict[str, str]]:
        if values is None:
            return []
        if not isinstance(values, list):
            return [_error("InvalidType", "custom_fields_values", "This value should be of type array.")]
        errors = []
        for i, cf in enumerate(values):
            if not isinstance(cf, Mapping) or not (_is_int(cf.get("field_id")) or isinstance(cf.get("field_code"), str)):
                errors.append(_error("InvalidType", f"custom_fields_values.{i}.field_id",
                                     "This value should be of type int."))
            elif cf.get("field_code") is not None and cf["field_code"] not in SYSTEM_FIELDS:
                errors.append(_error("NotSupportedChoice", f"custom_fields_values.{i}.field_code",
                                     "The value you selected is not a valid choice."))
            elif not isinstance(cf.get("values"), list) or not all(isinstance(v, Mapping) and "value" in v
                                                                   for v in cf["values"]):
                errors.append(_error("InvalidType", f"custom_fields_values.{i}.values",
                                     "This value should be of type array."))
        return errors

    def add_lead(self, item: Mapping[str, Any], lead_id: int | None = None) -> dict[str, Any]:
        """Create a valid lead (under `lead_id` when seeding one that exists already, without a webhook)."""
        placed = self._placement(item, None)
        assert isinstance(placed, tuple)
        pid, sid = placed
        lead_id, now = lead_id or self._id("lead"), self._stamp()
        created = item.get("created_at") or now
        embedded = item.get("_embedded") or {}
        lead = {"id": lead_id, "name": item.get("name") or f"Сделка #{lead_id}", "price": item.get("price") or 0,
                "responsible_user_id": item.get("responsible_user_id") or API_USER, "group_id": 0,
                "status_id": sid, "pipeline_id": pid, "loss_reason_id": item.get("loss_reason_id"),
                # A lead that came in through one of the account's sources (a site form, a chat) carries its id.
                "source_id": item.get("source_id"), "created_by": item.get("created_by", API_USER),
                "updated_by": item.get("created_by", API_USER), "created_at": created,
                "updated_at": item.get("updated_at") or created, "closed_at": None, "closest_task_at": None,
                "is_deleted": False, "custom_fields_values": with_system_ids(item.get("custom_fields_values")) or None,
                "score": None, "account_id": self.account_id,
                "contacts": [{"id": c["id"], "is_main": i == 0} for i, c in enumerate(embedded.get("contacts") or [])],
                "tags": [self._tag(t) for t in embedded.get("tags") or []]}
        if sid in (WON, LOST):
            lead["closed_at"] = lead["updated_at"]
        self.leads[lead_id] = lead
        return lead

    def change_lead(self, lead_id: int, item: Mapping[str, Any], by: int = 0) -> dict[str, Any]:
        """Apply a valid PATCH to a lead."""
        lead = self.leads[lead_id]
        placed = self._placement(item, lead)
        assert isinstance(placed, tuple)
        lead["pipeline_id"], lead["status_id"] = placed
        for key in ("name", "price", "responsible_user_id", "loss_reason_id"):
            if key in item:
                lead[key] = item[key]
        if item.get("custom_fields_values"):
            lead["custom_fields_values"] = merged_values(lead["custom_fields_values"], item["custom_fields_values"])
        embedded = item.get("_embedded") or {}
        if "tags" in embedded:
            lead["tags"] = [self._tag(t) for t in embedded["tags"] or []]
        for contact in embedded.get("contacts") or []:
            if all(c["id"] != contact["id"] for c in lead["contacts"]):
                lead["contacts"].append({"id": contact["id"], "is_main": not lead["contacts"]})
        lead["updated_at"] = item.get("updated_at") or self._stamp()
        lead["updated_by"] = by or API_USER
        lead["closed_at"] = lead["updated_at"] if lead["status_id"] in (WON, LOST) else None
        return lead

    def _tag(self, tag: Mapping[str, Any]) -> dict[str, Any]:
        if tag.get("name") is None:
            name = next((n for n, i in self.tags.items() if i == tag["id"]), str(tag["id"]))
            return {"id": tag["id"], "name": name}
        name = str(tag["name"])
        if name not in self.tags:
            self.tags[name] = self._id("tag")
        return {"id": self.tags[name], "name": name}

    def find_leads(self, q: Mapping[str, str]) -> list[dict[str, Any]]:
        """Leads matching the list call's `filter[...]` and `query`, in its `order[...]` (by id by default)."""
        found = list(self.leads.values())
        for stamp in ("updated_at", "created_at"):
            if f"filter[{stamp}][from]" in q:
                found = [lead for lead in found if lead[stamp] >= int(q[f"filter[{stamp}][from]"])]
            if f"filter[{stamp}][to]" in q:
                found = [lead for lead in found if lead[stamp] <= int(q[f"filter[{stamp}][to]"])]
        if "filter[id]" in q:
            found = [lead for lead in found if str(lead["id"]) == q["filter[id]"]]
        pairs = {(q.get(f"filter[statuses][{i}][pipeline_id]"), q.get(f"filter[statuses][{i}][status_id]"))
                 for i in range(100) if f"filter[statuses][{i}][status_id]" in q}
        if pairs:
            found = [lead for lead in found if (str(lead["pipeline_id"]), str(lead["status_id"])) in pairs]
        if q.get("query"):
            text = q["query"].lower()
            found = [lead for lead in found if text in str(lead["name"]).lower() or text == str(lead["id"])
                     or any(text in str(v.get("value")).lower() for cf in lead["custom_fields_values"] or []
                            for v in cf["values"])]
        order = next(((k[6:-1], v) for k, v in q.items() if k.startswith("order[")), ("id", "asc"))
        column = order[0] if order[0] in ("id", "updated_at", "created_at") else "id"
        return sorted(found, key=lambda lead: (lead[column], lead["id"]), reverse=order[1] == "desc")

    def hook_lead(self, lead: Mapping[str, Any], before: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """A lead as webhooks carry it: the legacy v2 field names."""
        item: dict[str, Any] = {"id": lead["id"], "name": lead["name"], "status_id": lead["status_id"]}
        if before is not None:
            item["old_status_id"] = before["status_id"]
        item.update({"price": lead["price"], "responsible_user_id": lead["responsible_user_id"],
                     "last_modified": lead["updated_at"], "modified_user_id": lead["updated_by"],
                     "created_user_id": lead["created_by"], "date_create": lead["created_at"],
                     "pipeline_id": lead["pipeline_id"]})
        if before is not None:
            item["old_pipeline_id"] = before["pipeline_id"]
        item["account_id"] = self.account_id
        if lead["tags"]:
            item["tags"] = lead["tags"]
        if lead["custom_fields_values"]:
            item["custom_fields"] = custom_fields(lead["custom_fields_values"])
        return item

    # ---- contacts and tasks ------------------------------------------------------------------------------
    def contact_errors(self, item: Any, index: int) -> Errors | None:
        """The validation group of one contact, or None."""
        if not isinstance(item, Mapping):
            return {"request_id": str(index), "errors": [_error("InvalidType", "", "This value should be of type object.")]}
        errors = [_error("InvalidType", k, "This value should be of type string.")
                  for k in ("name", "first_name", "last_name") if k in item and not isinstance(item[k], str)]
        if "responsible_user_id" in item and not _is_int(item["responsible_user_id"]):
            errors.append(_error("InvalidType", "responsible_user_id", "This value should be of type int."))
        errors += self._custom_errors(item.get("custom_fields_values"))
        return {"request_id": str(item.get("request_id", index)), "errors": errors} if errors else None

    def add_contact(self, item: Mapping[str, Any]) -> dict[str, Any]:
        """Create a valid contact."""
        contact_id, now = self._id("contact"), self._stamp()
        name = item.get("name") or " ".join(filter(None, (item.get("first_name"), item.get("last_name")))) \
            or f"Контакт #{contact_id}"
        values = with_system_ids(item.get("custom_fields_values"))
        contact = {"id": contact_id, "name": name, "first_name": item.get("first_name", ""),
                   "last_name": item.get("last_name", ""), "responsible_user_id": item.get("responsible_user_id")
                   or API_USER, "group_id": 0, "created_by": API_USER, "updated_by": API_USER, "created_at": now,
                   "updated_at": now, "closest_task_at": None, "is_deleted": False,
                   "custom_fields_values": values or None, "account_id": self.account_id,
                   "tags": [self._tag(t) for t in (item.get("_embedded") or {}).get("tags") or []]}
        self.contacts[contact_id] = contact
        return contact

    def change_contact(self, contact_id: int, item: Mapping[str, Any], by: int = 0) -> dict[str, Any]:
        """Apply a valid PATCH to a contact: the fields it names, each multitext field replaced whole."""
        contact = self.contacts[contact_id]
        for key in ("name", "first_name", "last_name", "responsible_user_id"):
            if key in item:
                contact[key] = item[key]
        if item.get("custom_fields_values"):
            contact["custom_fields_values"] = merged_values(contact["custom_fields_values"],
                                                            item["custom_fields_values"])
        embedded = item.get("_embedded") or {}
        if "tags" in embedded:
            contact["tags"] = [self._tag(t) for t in embedded["tags"] or []]
        contact["updated_at"] = max(self._stamp(), contact["updated_at"] + 1)
        contact["updated_by"] = by or API_USER
        return contact

    def hook_contact(self, contact: Mapping[str, Any]) -> dict[str, Any]:
        """A contact as webhooks carry it (legacy v2 names; system fields with their `code`)."""
        item: dict[str, Any] = {"id": contact["id"], "name": contact["name"],
                                "responsible_user_id": contact["responsible_user_id"],
                                "date_create": contact["created_at"], "last_modified": contact["updated_at"],
                                "created_user_id": contact["created_by"], "modified_user_id": contact["updated_by"],
                                "account_id": self.account_id}
        if contact["custom_fields_values"]:
            item["custom_fields"] = custom_fields(contact["custom_fields_values"])
        if contact["tags"]:
            item["tags"] = contact["tags"]
        return item

    def find_contacts(self, query: str) -> list[dict[str, Any]]:
        """Contacts whose phone has the query's digits (the last 10, as typed numbers vary), or whose name or
        email contains it."""
        digits = re.sub(r"\D", "", query)[-10:]
        text = query.strip().lower()
        found = []
        for contact in self.contacts.values():
            values = [str(v.get("value", "")) for cf in contact["custom_fields_values"] or [] for v in cf["values"]]
            phones = [re.sub(r"\D", "", v) for v in values]
            if (len(digits) >= 5 and any(digits in p for p in phones)) or (text and (
                    text in contact["name"].lower() or any(text in v.lower() for v in values))):
                found.append(contact)
        return found

    def task_errors(self, item: Any, index: int) -> Errors | None:
        """The validation group of one task, or None."""
        if not isinstance(item, Mapping):
            return {"request_id": str(index), "errors": [_error("InvalidType", "", "This value should be of type object.")]}
        errors = []
        if not isinstance(item.get("text"), str) or not item["text"].strip():
            errors.append(_error("NotBlank", "text", "This value should not be blank."))
        if not _is_int(item.get("complete_till")):
            errors.append(_error("InvalidType", "complete_till", "This value should be of type int."))
        for key in ("entity_id", "responsible_user_id", "task_type_id", "duration"):
            if key in item and not _is_int(item[key]):
                errors.append(_error("InvalidType", key, "This value should be of type int."))
        kind = item.get("entity_type")
        if kind is not None and kind not in ENTITY_TYPES:
            errors.append(_error("NotSupportedChoice", "entity_type", "The value you selected is not a valid choice."))
        elif kind in ("leads", "contacts") and _is_int(item.get("entity_id")) and \
                item["entity_id"] not in (self.leads if kind == "leads" else self.contacts):
            errors.append(_error("NotFound", "entity_id", "Entity not found."))
        return {"request_id": str(item.get("request_id", index)), "errors": errors} if errors else None

    def add_task(self, item: Mapping[str, Any]) -> dict[str, Any]:
        """Create a valid task."""
        task_id, now = self._id("task"), self._stamp()
        task = {"id": task_id, "created_by": API_USER, "updated_by": API_USER, "created_at": now, "updated_at": now,
                "responsible_user_id": item.get("responsible_user_id") or API_USER, "group_id": 0,
                "entity_id": item.get("entity_id"), "entity_type": item.get("entity_type"), "is_completed": False,
                "task_type_id": item.get("task_type_id", 1), "text": item["text"],
                "duration": item.get("duration", 0), "complete_till": item["complete_till"], "result": [],
                "account_id": self.account_id}
        self.tasks[task_id] = task
        if task["entity_type"] == "leads" and task["entity_id"] in self.leads:
            lead = self.leads[task["entity_id"]]
            lead["closest_task_at"] = min(lead["closest_task_at"] or task["complete_till"], task["complete_till"])
        return task

    def hook_task(self, task: Mapping[str, Any]) -> dict[str, Any]:
        """A task as webhooks carry it (legacy names: element_id, element_type 2 = lead, 1 = contact)."""
        return {"id": task["id"], "element_id": task["entity_id"],
                "element_type": LEGACY_ELEMENT.get(str(task["entity_type"]), 0),
                "task_type": task["task_type_id"], "text": task["text"], "complete_till": task["complete_till"],
                "responsible_user_id": task["responsible_user_id"], "last_modified": task["updated_at"],
                "date_create": task["created_at"], "status": 1 if task["is_completed"] else 0,
                "account_id": self.account_id}

    def complete_task(self, task_id: int, item: Mapping[str, Any], by: int = 0) -> dict[str, Any]:
        """Apply a valid PATCH to a task (`is_completed`, `result`, `text`, `responsible_user_id`)."""
        task = self.tasks[task_id]
        for key in ("is_completed", "text", "responsible_user_id", "complete_till"):
            if key in item:
                task[key] = item[key]
        if isinstance(item.get("result"), Mapping):
            task["result"] = dict(item["result"])
        task["updated_at"] = max(self._stamp(), task["updated_at"] + 1)
        task["updated_by"] = by or API_USER
        return task

    def task_change_errors(self, item: Any) -> list[dict[str, str]]:
        """What a PATCH of a task gets wrong."""
        if not isinstance(item, Mapping):
            return [_error("InvalidType", "", "This value should be of type object.")]
        errors = []
        if "is_completed" in item and not isinstance(item["is_completed"], bool):
            errors.append(_error("InvalidType", "is_completed", "This value should be of type bool."))
        if "result" in item and not (isinstance(item["result"], Mapping) and isinstance(item["result"].get("text"), str)):
            errors.append(_error("InvalidType", "result.text", "This value should be of type string."))
        for key in ("responsible_user_id", "complete_till"):
            if key in item and not _is_int(item[key]):
                errors.append(_error("InvalidType", key, "This value should be of type int."))
        return errors

    # ---- notes -------------------------------------------------------------------------------------------
    def note_errors(self, item: Any, index: int, entity: str, entity_id: int) -> Errors | None:
        """The validation group of one note of `POST /api/v4/{entity}/{id}/notes`, or None."""
        if not isinstance(item, Mapping):
            return {"request_id": str(index), "errors": [_error("InvalidType", "", "This value should be of type object.")]}
        errors = []
        if item.get("note_type") not in NOTE_TYPES:
            errors.append(_error("NotSupportedChoice", "note_type", "The value you selected is not a valid choice."))
        params = item.get("params")
        if not isinstance(params, Mapping):
            errors.append(_error("InvalidType", "params", "This value should be of type object."))
        elif item.get("note_type") in ("common", "service_message", "sms_in", "sms_out") and \
                not (isinstance(params.get("text"), str) and params["text"].strip()):
            errors.append(_error("NotBlank", "params.text", "This value should not be blank."))
        if entity_id not in (self.leads if entity == "leads" else self.contacts):
            errors.append(_error("NotFound", "entity_id", "Entity not found."))
        return {"request_id": str(item.get("request_id", index)), "errors": errors} if errors else None

    def add_note(self, entity: str, entity_id: int, item: Mapping[str, Any]) -> dict[str, Any]:
        """Keep a valid note on a lead or a contact."""
        note = {"id": self._id("note"), "entity_id": entity_id, "entity_type": entity, "created_by": API_USER,
                "updated_by": API_USER, "created_at": self._stamp(), "updated_at": self._stamp(),
                "responsible_user_id": API_USER, "group_id": 0, "note_type": item["note_type"],
                "params": dict(item["params"]), "account_id": self.account_id, "is_deleted": False}
        self.notes[note["id"]] = note
        return note

    def state(self) -> dict[str, Any]:
        """Everything, as plain JSON."""
        pipelines = [{**{k: v for k, v in p.items() if k != "statuses"}, "statuses": list(p["statuses"].values())}
                     for p in self.pipelines.values()]
        return {"account": {"id": self.account_id}, "pipelines": pipelines, "leads": list(self.leads.values()),
                "contacts": list(self.contacts.values()), "tasks": list(self.tasks.values()),
                "notes": list(self.notes.values())}


def custom_fields(values: Any) -> list[dict[str, Any]]:
    """Custom field values as webhooks carry them (legacy names: id, name, values; a system field's code)."""
    return [{"id": cf.get("field_id"), "name": cf.get("field_name") or f"Поле {cf.get('field_id')}",
             **({"code": cf["field_code"]} if cf.get("field_code") else {}),
             "values": [{"value": v["value"]} for v in cf["values"]]} for cf in values or []]
