"""The emulated Bitrix24 portal's data and REST methods (deals, contacts, leads, tasks, timeline), value quirks kept.

Stored as Bitrix returns it: ids and numbers as strings, `Y`/`N`, ISO datetimes with the portal's offset,
`null` links. Method-level failures raise `Fail` (the emulator turns it into the real envelope). Changes are
reported to `notify(event, fields)` so the emulator can send the outgoing webhooks.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from .listing import Fail, comm_key, listing
from .mapping import stage_category

__all__ = ["Fail", "Portal", "semantic", "stage_category"]

DEAL_ORDER = (
    "ID", "TITLE", "TYPE_ID", "CATEGORY_ID", "STAGE_ID", "PROBABILITY", "CURRENCY_ID", "OPPORTUNITY",
    "IS_MANUAL_OPPORTUNITY", "TAX_VALUE", "COMPANY_ID", "CONTACT_ID", "CONTACT_IDS", "BEGINDATE", "CLOSEDATE",
    "OPENED", "CLOSED", "COMMENTS", "ASSIGNED_BY_ID", "SOURCE_ID", "SOURCE_DESCRIPTION", "ADDITIONAL_INFO",
    "ORIGINATOR_ID", "ORIGIN_ID", "UTM_SOURCE", "UTM_MEDIUM", "UTM_CAMPAIGN", "UTM_CONTENT", "UTM_TERM", "LEAD_ID",
)
DEAL_KNOWN = frozenset(DEAL_ORDER) - {"ID"}
# A contact's keys as crm.contact.get returns them (contract part 2 §2.1), those a write may set.
CONTACT_ORDER = (
    "ID", "POST", "COMMENTS", "HONORIFIC", "NAME", "SECOND_NAME", "LAST_NAME", "PHOTO", "LEAD_ID", "TYPE_ID",
    "SOURCE_ID", "SOURCE_DESCRIPTION", "COMPANY_ID", "BIRTHDATE", "EXPORT", "HAS_PHONE", "HAS_EMAIL", "HAS_IMOL",
    "DATE_CREATE", "DATE_MODIFY", "ASSIGNED_BY_ID", "CREATED_BY_ID", "MODIFY_BY_ID", "OPENED", "ORIGINATOR_ID",
    "ORIGIN_ID", "ORIGIN_VERSION", "FACE_ID", "LAST_ACTIVITY_TIME", "ADDRESS", "UTM_SOURCE", "UTM_MEDIUM",
    "UTM_CAMPAIGN", "UTM_CONTENT", "UTM_TERM", "LAST_ACTIVITY_BY",
)
CONTACT_KNOWN = frozenset(CONTACT_ORDER) - {"ID", "DATE_CREATE", "DATE_MODIFY", "HAS_PHONE", "HAS_EMAIL", "HAS_IMOL",
                                            "CREATED_BY_ID", "MODIFY_BY_ID", "LAST_ACTIVITY_TIME", "LAST_ACTIVITY_BY"}
MONEY = frozenset({"OPPORTUNITY", "TAX_VALUE"})
LEAD_SET_BY_PORTAL = frozenset({"ID", "DATE_CREATE", "DATE_MODIFY", "CREATED_BY_ID", "MODIFY_BY_ID"})
DATES = frozenset({"BEGINDATE", "CLOSEDATE", "DATE_CREATE", "DATE_MODIFY", "MOVED_TIME", "LAST_ACTIVITY_TIME"})
DEFAULT_STAGES = (("NEW", "New", 10), ("PREPARATION", "Preparation", 20), ("EXECUTING", "In progress", 40),
                  ("WON", "Deal successful", 60), ("LOSE", "Deal failed", 70))


def not_found() -> Fail:
    """The documented `crm.deal.get` answer for a missing id."""
    return Fail(400, "", "Not found")


def _ci(params: Mapping[str, Any]) -> dict[str, Any]:
    # Parameter names of crm.* methods are case-insensitive (cURL examples send ID/FIELDS, JS ones id/fields).
    return {str(k).lower(): v for k, v in params.items()}


def _fields(params: Mapping[str, Any]) -> dict[str, Any]:
    fields = params.get("fields")
    if not isinstance(fields, Mapping):
        raise Fail(400, "", "Parameter 'fields' must be array.")
    return {str(k).upper(): v for k, v in fields.items()}


def _id(params: Mapping[str, Any], name: str = "id") -> int:
    try:
        value = int(str(params.get(name)))
    except (TypeError, ValueError):
        raise Fail(400, "", "ID is not defined or invalid.") from None
    if value <= 0:
        raise Fail(400, "", "ID is not defined or invalid.")
    return value


def semantic(stage: str) -> str:
    """`S` success, `F` failure, `P` in progress, from the stage's status id."""
    tail = stage.split(":")[-1]
    return "S" if tail == "WON" else "F" if tail in ("LOSE", "APOLOGY") else "P"


# The fields tasks.task.list filters by (doc: api-reference/tasks/tasks-task-list.md).
TASK_FILTERS = frozenset({
    "ID", "PARENT_ID", "GROUP_ID", "CREATED_BY", "STATUS_CHANGED_BY", "PRIORITY", "FORUM_TOPIC_ID", "RESPONSIBLE_ID",
    "TITLE", "TAG", "REAL_STATUS", "STATUS", "MARK", "SITE_ID", "ADD_IN_REPORT", "DATE_START", "DEADLINE",
    "CREATED_DATE", "CLOSED_DATE", "CHANGED_DATE", "ACCOMPLICE", "AUDITOR", "DEPENDS_ON", "ONLY_ROOT_TASKS", "STAGE_ID",
    "SPRINT_ID", "BACKLOG_ID", "UF_CRM_TASK"})


def _upper(camel: str) -> str:
    """A task's camelCase key as its UPPER_CASE field name (responsibleId → RESPONSIBLE_ID)."""
    return re.sub(r"(?<!^)([A-Z])", r"_\1", camel).upper()


def _camel(upper: str) -> str:
    """An UPPER_CASE field name as the camelCase key the task answers carry (RESPONSIBLE_ID → responsibleId)."""
    head, *rest = upper.lower().split("_")
    return head + "".join(part.capitalize() for part in rest)


def _text(value: Any) -> Any:
    if value is None or isinstance(value, (list, dict)):
        return value
    if isinstance(value, bool):
        return "Y" if value else "N"
    return str(value)


class Portal:
    """In-memory CRM data and the methods over it."""

    def __init__(self, *, now: Callable[[], datetime], notify: Callable[[str, dict[str, Any]], None],
                 user_id: str = "1") -> None:
        self.now = now
        self.notify = notify
        self.user_id = user_id
        self.deals: dict[int, dict[str, Any]] = {}
        self.contacts: dict[int, dict[str, Any]] = {}
        self.leads: dict[int, dict[str, Any]] = {}
        self.tasks: dict[int, dict[str, Any]] = {}
        self.activities: dict[int, dict[str, Any]] = {}
        self.comments: dict[int, dict[str, Any]] = {}
        self.categories: dict[int, dict[str, Any]] = {0: {"id": 0, "name": "General", "sort": 300, "isDefault": "Y"}}
        self.stages: dict[int, dict[str, dict[str, Any]]] = {}
        self._ids: dict[str, int] = {}
        self._multi = 200
        self.ensure_category(0)

    # ---- bookkeeping -------------------------------------------------------------------------------------
    def next_id(self, kind: str) -> int:
        """A fresh id per kind (Bitrix numbers each table on its own)."""
        self._ids[kind] = self._ids.get(kind, {"deal": 390, "contact": 70, "lead": 500, "task": 3700}.get(kind, 0)) + 1
        return self._ids[kind]

    def stamp(self) -> str:
        """Now, as Bitrix writes datetimes: seconds, with the portal's offset."""
        return self.now().replace(microsecond=0).isoformat()

    def ensure_category(self, category: int, name: str | None = None) -> None:
        """Know a pipeline (learned lazily from the stage ids sent), with the default stages."""
        if category not in self.categories:
            self.categories[category] = {"id": category, "name": name or f"Pipeline {category}",
                                         "sort": 100 + category, "isDefault": "N"}
        elif name:
            self.categories[category]["name"] = name
        stages = self.stages.setdefault(category, {})
        if not stages:
            for status, title, sort in DEFAULT_STAGES:
                stage = f"C{category}:{status}" if category else status
                stages[stage] = {"STATUS_ID": stage, "NAME": title, "SORT": sort, "SEMANTICS": semantic(stage)}

    def ensure_stage(self, stage: str, name: str | None = None, sort: int | None = None) -> None:
        """Know a stage of its pipeline (the emulator accepts any stage id of the deal's own pipeline)."""
        category = stage_category(stage)
        self.ensure_category(category)
        stages = self.stages[category]
        if stage not in stages:
            stages[stage] = {"STATUS_ID": stage, "NAME": name or stage.split(":")[-1].title(),
                             "SORT": sort or 10 * (len(stages) + 1), "SEMANTICS": semantic(stage)}

    def _multifield(self, items: Any, type_id: str) -> list[dict[str, Any]]:
        out = []
        for item in items if isinstance(items, list) else []:
            if isinstance(item, Mapping) and item.get("VALUE"):
                self._multi += 1
                out.append({"ID": str(self._multi), "VALUE_TYPE": str(item.get("VALUE_TYPE", "WORK")),
                            "VALUE": str(item["VALUE"]), "TYPE_ID": type_id})
        return out

    # ---- deals -------------------------------------------------------------------------------------------
    def _deal_values(self, fields: Mapping[str, Any], deal: dict[str, Any]) -> dict[str, Any]:
        changed: dict[str, Any] = {}
        for name, value in fields.items():
            if name not in DEAL_KNOWN and not name.startswith(("UF_CRM_", "PARENT_ID_")):
                continue  # the doc: "An incorrect field in fields will be ignored"
            if name == "CONTACT_IDS":
                ids = [str(v) for v in (value if isinstance(value, list) else [value]) if str(v)]
                changed["CONTACT_ID"] = ids[0] if ids else None
                continue
            if name in MONEY and value not in (None, ""):
                try:
                    value = f"{float(value):.2f}"
                except (TypeError, ValueError):
                    raise Fail(400, "", f"Field '{name}' must be a number.") from None
            changed[name] = _text(value) if value != "" else None
        return changed

    def deal_add(self, params: Mapping[str, Any]) -> int:
        """`crm.deal.add`: the new id as an int; the stage defaults to the pipeline's first."""
        fields = _fields(_ci(params))
        category = int(fields.get("CATEGORY_ID") or (stage_category(str(fields["STAGE_ID"]))
                                                     if fields.get("STAGE_ID") else 0))
        stage = str(fields.get("STAGE_ID") or (f"C{category}:NEW" if category else "NEW"))
        if stage_category(stage) != category:
            raise Fail(400, "", "Stage not found")  # (assume): a stage of another pipeline is refused
        self.ensure_stage(stage)
        deal_id = self.next_id("deal")
        now = self.stamp()
        deal: dict[str, Any] = {name: None for name in DEAL_ORDER if name != "CONTACT_IDS"}
        deal.update({"ID": str(deal_id), "TITLE": f"Deal #{deal_id}", "TYPE_ID": "SALE", "PROBABILITY": None,
                     "CURRENCY_ID": "RUB", "OPPORTUNITY": "0.00", "IS_MANUAL_OPPORTUNITY": "N", "TAX_VALUE": "0.00",
                     "QUOTE_ID": None, "ASSIGNED_BY_ID": self.user_id, "CREATED_BY_ID": self.user_id,
                     "MODIFY_BY_ID": self.user_id, "DATE_CREATE": now, "DATE_MODIFY": now, "OPENED": "Y",
                     "CLOSED": "N", "LOCATION_ID": None, "IS_NEW": "Y", "IS_RECURRING": "N",
                     "IS_RETURN_CUSTOMER": "N", "IS_REPEATED_APPROACH": "N", "MOVED_BY_ID": self.user_id,
                     "MOVED_TIME": now, "LAST_ACTIVITY_TIME": now, "LAST_ACTIVITY_BY": self.user_id})
        deal.update(self._deal_values(fields, deal))
        deal.update({"CATEGORY_ID": str(category), "STAGE_ID": stage, "STAGE_SEMANTIC_ID": semantic(stage)})
        deal["CLOSED"] = "N" if semantic(stage) == "P" else "Y"
        self.deals[deal_id] = deal
        self.notify("ONCRMDEALADD", {"ID": str(deal_id)})
        return deal_id

    def _deal(self, deal_id: int) -> dict[str, Any]:
        deal = self.deals.get(deal_id)
        if deal is None:
            raise not_found()
        return deal

    def deal_update(self, params: Mapping[str, Any], *, by: str | None = None) -> bool:
        """`crm.deal.update`: `CATEGORY_ID` cannot change here; the stage must be of the deal's own pipeline."""
        p = _ci(params)
        deal = self._deal(_id(p))
        fields = _fields(p)
        fields.pop("CATEGORY_ID", None)  # ignored by crm.deal.update (the doc: use crm.item.update)
        self._apply(deal, fields, by)
        return True

    def _apply(self, deal: dict[str, Any], fields: Mapping[str, Any], by: str | None,
               category: int | None = None) -> None:
        target = int(deal["CATEGORY_ID"]) if category is None else category
        stage = fields.get("STAGE_ID")
        if stage is not None:
            if stage_category(str(stage)) != target:
                raise Fail(400, "", "Stage not found")
            self.ensure_stage(str(stage))
        values = self._deal_values(fields, deal)
        now = self.stamp()
        moved = category is not None and category != int(deal["CATEGORY_ID"])
        if stage is not None and str(stage) != deal["STAGE_ID"] or moved:
            values.update({"MOVED_TIME": now, "MOVED_BY_ID": by or self.user_id})
        deal.update(values)
        if category is not None:
            deal["CATEGORY_ID"] = str(category)
        deal["STAGE_SEMANTIC_ID"] = semantic(deal["STAGE_ID"])
        deal["CLOSED"] = "N" if deal["STAGE_SEMANTIC_ID"] == "P" else "Y"
        deal.update({"DATE_MODIFY": now, "MODIFY_BY_ID": by or self.user_id, "IS_NEW": "N"})
        self.notify("ONCRMDEALUPDATE", {"ID": deal["ID"]})
        if moved:
            self.notify("ONCRMDEALMOVETOCATEGORY", {"ID": deal["ID"], "CATEGORY_ID": deal["CATEGORY_ID"],
                                                    "STAGE_ID": deal["STAGE_ID"]})

    def item_update(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """`crm.item.update` for deals (entityTypeId 2): the one method that moves a deal to another pipeline."""
        if str(params.get("entityTypeId")) != "2":
            raise Fail(400, "NOT_FOUND", "Smart process not found")
        deal = self._deal(_id(params))
        fields = params.get("fields")
        if not isinstance(fields, Mapping):
            raise Fail(400, "", "Parameter 'fields' must be array.")
        category = int(fields["categoryId"]) if fields.get("categoryId") not in (None, "") else None
        stage = fields.get("stageId")
        if category is not None and stage is None:
            stage = f"C{category}:NEW" if category else "NEW"
        self.ensure_category(category if category is not None else int(deal["CATEGORY_ID"]))
        camel = {"title": "TITLE", "opportunity": "OPPORTUNITY", "assignedById": "ASSIGNED_BY_ID",
                 "contactId": "CONTACT_ID", "comments": "COMMENTS", "stageId": "STAGE_ID"}
        upper: dict[str, Any] = {}
        for name, value in fields.items():
            if name in camel:
                upper[camel[name]] = value
            elif str(name).startswith("UF_CRM_"):
                upper[str(name)] = value
        if stage is not None:
            upper["STAGE_ID"] = stage
        self._apply(deal, upper, None, category)
        return {"item": {"id": int(deal["ID"]), "categoryId": int(deal["CATEGORY_ID"]), "stageId": deal["STAGE_ID"],
                         "title": deal["TITLE"], "updatedTime": deal["DATE_MODIFY"]}}

    def deal_get(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """`crm.deal.get`: the full deal, strings throughout."""
        return dict(self._deal(_id(_ci(params))))

    def deal_delete(self, params: Mapping[str, Any]) -> bool:
        """`crm.deal.delete`."""
        deal_id = _id(_ci(params))
        self._deal(deal_id)
        del self.deals[deal_id]
        self.notify("ONCRMDEALDELETE", {"ID": str(deal_id)})
        return True

    def deal_list(self, params: Mapping[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """`crm.deal.list`: filtered, ordered, one page of 50 with `total` and `next`."""
        return listing(list(self.deals.values()), _ci(params))

    # ---- contacts, leads ---------------------------------------------------------------------------------
    def contact_add(self, params: Mapping[str, Any]) -> int:
        """`crm.contact.add`: multifields get their own ids."""
        fields = _fields(_ci(params))
        contact_id = self.next_id("contact")
        now = self.stamp()
        contact: dict[str, Any] = {name: None for name in CONTACT_ORDER}
        contact.update({"ID": str(contact_id), "TYPE_ID": "CLIENT", "ASSIGNED_BY_ID": self.user_id, "OPENED": "Y",
                        "EXPORT": "N", "CREATED_BY_ID": self.user_id, "MODIFY_BY_ID": self.user_id,
                        "DATE_CREATE": now, "DATE_MODIFY": now, "LAST_ACTIVITY_TIME": now,
                        "LAST_ACTIVITY_BY": self.user_id, "HAS_PHONE": "N", "HAS_EMAIL": "N", "HAS_IMOL": "N"})
        self._contact_values(contact, fields)
        self.contacts[contact_id] = contact
        self.notify("ONCRMCONTACTADD", {"ID": str(contact_id)})
        return contact_id

    def _contact_values(self, contact: dict[str, Any], fields: Mapping[str, Any]) -> None:
        for name, value in fields.items():
            if name in ("PHONE", "EMAIL"):
                contact[name] = self._multichange(contact.get(name) or [], value, name)
                contact[f"HAS_{name}"] = "Y" if contact[name] else "N"
            elif name in CONTACT_KNOWN or name.startswith("UF_CRM_"):
                contact[name] = _text(value) if value != "" else None  # "An incorrect field … will be ignored"

    def _multichange(self, items: list[dict[str, Any]], changes: Any, type_id: str) -> list[dict[str, Any]]:
        """A multifield after an add/update (contract part 2 §2.2): an item with ID changes that value, or deletes
        it when it says DELETE: Y, has an empty VALUE or none at all; one without ID is added; the others stay."""
        out = [dict(i) for i in items]
        for change in changes if isinstance(changes, list) else []:
            if not isinstance(change, Mapping):
                continue
            if change.get("ID") in (None, ""):
                out.extend(self._multifield([change], type_id))
                continue
            item = next((i for i in out if i["ID"] == str(change["ID"])), None)
            if item is None:
                continue  # (assume) an ID the contact does not have is ignored, as unknown fields are
            if str(change.get("DELETE", "")).upper() == "Y" or not change.get("VALUE"):
                out.remove(item)
            else:
                item["VALUE"] = str(change["VALUE"])
                item["VALUE_TYPE"] = str(change.get("VALUE_TYPE") or item["VALUE_TYPE"])
        return out

    def contact_update(self, params: Mapping[str, Any], *, by: str | None = None) -> bool:
        """`crm.contact.update`: the fields named change, multifields item by item; ONCRMCONTACTUPDATE."""
        p = _ci(params)
        contact = self.contacts.get(_id(p))
        if contact is None:
            raise Fail(400, "", "Contact is not found")
        fields = _fields(p)
        self._contact_values(contact, fields)
        contact.update({"DATE_MODIFY": self.stamp(), "MODIFY_BY_ID": by or self.user_id})
        self.notify("ONCRMCONTACTUPDATE", {"ID": contact["ID"]})
        return True

    def contact_get(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """`crm.contact.get`."""
        contact = self.contacts.get(_id(_ci(params)))
        if contact is None:
            raise not_found()
        return dict(contact)

    def contact_list(self, params: Mapping[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """`crm.contact.list` (a `PHONE` filter matches the digits of any phone)."""
        return listing(list(self.contacts.values()), _ci(params))

    def find_by_comm(self, params: Mapping[str, Any]) -> Any:
        """`crm.duplicate.findbycomm`: ids (ints) by entity type, or `[]` when nothing matches (assume)."""
        p = _ci(params)
        kind, values = str(p.get("type", "")).upper(), p.get("values")
        if kind not in ("PHONE", "EMAIL") or not isinstance(values, list) or not values:
            raise Fail(400, "", "Parameter 'values' must be array.")
        if len(values) > 20:
            raise Fail(400, "", "Too many values. Maximum is 20.")
        wanted = {comm_key(str(v), kind) for v in values}
        entity = str(p.get("entity_type", "CONTACT")).upper()
        table = {"CONTACT": self.contacts, "LEAD": self.leads}.get(entity, {})
        ids = [int(row["ID"]) for row in table.values()
               if any(comm_key(m["VALUE"], kind) in wanted for m in row.get(kind) or [])]
        return {entity: ids} if ids else []

    def lead_add(self, params: Mapping[str, Any]) -> int:
        """`crm.lead.add`."""
        fields = _fields(_ci(params))
        lead_id = self.next_id("lead")
        now = self.stamp()
        lead: dict[str, Any] = {"ID": str(lead_id), "TITLE": f"Lead #{lead_id}", "NAME": None, "LAST_NAME": None,
                                "STATUS_ID": "NEW", "SOURCE_ID": None, "SOURCE_DESCRIPTION": None,
                                "ASSIGNED_BY_ID": self.user_id, "CREATED_BY_ID": self.user_id,
                                "MODIFY_BY_ID": self.user_id, "OPPORTUNITY": "0.00", "CURRENCY_ID": "RUB",
                                "DATE_CREATE": now, "DATE_MODIFY": now, "COMMENTS": None, "OPENED": "Y",
                                **{f"UTM_{part}": None for part in ("SOURCE", "MEDIUM", "CAMPAIGN", "CONTENT", "TERM")}}
        for name, value in fields.items():
            if name in ("PHONE", "EMAIL"):
                lead[name] = self._multifield(value, name)
            elif name in lead and name not in LEAD_SET_BY_PORTAL or name.startswith("UF_CRM_"):
                lead[name] = f"{float(value):.2f}" if name == "OPPORTUNITY" else _text(value)
        self.leads[lead_id] = lead
        self.notify("ONCRMLEADADD", {"ID": str(lead_id)})
        return lead_id

    def lead_get(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """`crm.lead.get`."""
        lead = self.leads.get(_id(_ci(params)))
        if lead is None:
            raise not_found()
        return dict(lead)

    def lead_update(self, params: Mapping[str, Any]) -> bool:
        """`crm.lead.update {id, fields}` (contract part 2 §2.6): unknown fields ignored; ONCRMLEADUPDATE."""
        p = _ci(params)
        lead = self.leads.get(_id(p))
        if lead is None:
            raise not_found()
        for name, value in _fields(p).items():
            if name in lead and name not in LEAD_SET_BY_PORTAL or name.startswith("UF_CRM_"):
                lead[name] = _text(value)
        lead.update({"DATE_MODIFY": self.stamp(), "MODIFY_BY_ID": self.user_id})
        self.notify("ONCRMLEADUPDATE", {"ID": lead["ID"]})
        return True

    # ---- tasks and the timeline --------------------------------------------------------------------------
    def task_add(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """`tasks.task.add`: the task under `task`, camelCase keys, string values."""
        fields = params.get("fields")
        if not isinstance(fields, Mapping):
            raise Fail(400, "100", "Could not find value for parameter {fields}")
        fields = {str(k).upper(): v for k, v in fields.items()}
        if not str(fields.get("TITLE") or "").strip():
            raise Fail(400, "ERROR_CORE", "Task title is not specified<br>")
        if not str(fields.get("RESPONSIBLE_ID") or "").strip():
            raise Fail(400, "ERROR_CORE", "Assignee is not specified<br>")  # (assume) the wording
        task_id = self.next_id("task")
        task = {"id": str(task_id), "title": str(fields["TITLE"]), "description": str(fields.get("DESCRIPTION") or ""),
                "responsibleId": str(fields["RESPONSIBLE_ID"]),
                "createdBy": str(fields.get("CREATED_BY") or self.user_id), "status": "2",
                "deadline": _text(fields.get("DEADLINE")), "groupId": str(fields.get("GROUP_ID") or "0"),
                "priority": str(fields.get("PRIORITY") or "1"), "createdDate": self.stamp(),
                "changedDate": self.stamp(), "closedDate": None, "closedBy": "0",
                "ufCrmTask": [str(v) for v in fields.get("UF_CRM_TASK") or []]}
        tags = fields.get("TAGS") or []
        task["tags"] = [str(t) for t in (tags if isinstance(tags, list) else str(tags).split(","))]
        self.tasks[task_id] = task
        return {"task": {k: v for k, v in task.items() if k != "tags"}}

    def task_list(self, params: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """`tasks.task.list`: the documented filter fields (with Bitrix's prefixes; `TAG` and `UF_CRM_TASK` match
        one of the task's values), UPPER_CASE `select` answered in camelCase, pages of 50 under `tasks`. A filter
        on a field the doc does not list is refused (assume: the real portal ignores it, which would hide a bug)."""
        p = _ci(params)
        flt = p.get("filter") or {}
        if not isinstance(flt, Mapping):
            raise Fail(400, "", "Parameter 'filter' must be array.")
        plain: dict[str, Any] = {}
        many: list[tuple[str, str, Any]] = []  # (prefix, field, wanted) on fields holding several values
        for key, wanted in flt.items():
            name = str(key).lstrip("!=<>%@").upper()
            if name not in TASK_FILTERS:
                raise Fail(400, "", f"Unknown filter field {name}")
            if name in ("TAG", "UF_CRM_TASK"):
                many.append((str(key)[:len(str(key)) - len(name)], name, wanted))
            else:
                plain[key] = wanted
        rows = []
        for task in self.tasks.values():
            values = {"TAG": task["tags"], "UF_CRM_TASK": task["ufCrmTask"]}
            if all((str(wanted) in values[name]) != prefix.startswith("!") for prefix, name, wanted in many):
                rows.append({**{_upper(k): v for k, v in task.items() if k != "tags"},
                             "REAL_STATUS": task["status"]})
        select = p.get("select") or []
        page, extra = listing(rows, {**p, "filter": plain, "select": ["*"]})
        wanted_keys = {_camel(str(s).upper()) for s in (select if isinstance(select, list) else [select])}
        tasks = [{k: v for k, v in ((_camel(k), v) for k, v in row.items() if k != "REAL_STATUS")
                  if not wanted_keys or k in wanted_keys or k == "id"} for row in page]
        return {"tasks": tasks}, extra

    def _task(self, params: Mapping[str, Any]) -> dict[str, Any] | None:
        try:
            return self.tasks.get(int(str(params.get("taskId"))))
        except ValueError:
            raise Fail(400, "0", "wrong task id") from None

    def task_get(self, params: Mapping[str, Any]) -> Any:
        """`tasks.task.get {taskId, select}`: `{"task": {…}}` in camelCase, `ufCrmTask` only when selected; a missing
        task is `[]` (contract part 2 §2.9)."""
        task = self._task(params)
        if task is None:
            return []
        select = params.get("select") or []
        if not isinstance(select, list):
            raise Fail(400, "100", "Invalid value {} to match with parameter {select}. Should be value of type "
                                   "array. (internal error)")
        wanted = {_camel(str(s).upper()) for s in select}
        shown = {k: v for k, v in task.items() if k != "tags" and (k != "ufCrmTask" or "ufCrmTask" in wanted)}
        return {"task": shown}

    def task_complete(self, params: Mapping[str, Any], *, by: str | None = None) -> Any:
        """`tasks.task.complete {taskId}`: status 5, closedDate and closedBy set; ONTASKUPDATE."""
        task = self._task(params)
        if task is None:
            raise Fail(400, "ERROR_CORE", "Task not found or not accessible")  # (assume) the wording
        now = self.stamp()
        task.update({"status": "5", "closedDate": now, "closedBy": str(by or self.user_id), "changedDate": now})
        self.notify("ONTASKUPDATE", {"ID": task["id"]})
        return {"task": {k: v for k, v in task.items() if k not in ("tags", "ufCrmTask")}}

    def task_update(self, params: Mapping[str, Any]) -> Any:
        """`tasks.task.update {taskId, fields}`: an edit (title, description, deadline, responsible); ONTASKUPDATE.
        A completed task stays completed, its closedDate unchanged."""
        task = self._task(params)
        if task is None:
            raise Fail(400, "ERROR_CORE", "Task not found or not accessible")
        fields = params.get("fields")
        if not isinstance(fields, Mapping):
            raise Fail(400, "100", "Could not find value for parameter {fields}")
        for name, value in fields.items():
            key = _camel(str(name).upper())
            if key in ("title", "description", "deadline", "responsibleId", "priority"):
                task[key] = _text(value)
        task["changedDate"] = self.stamp()
        self.notify("ONTASKUPDATE", {"ID": task["id"]})
        return {"task": {k: v for k, v in task.items() if k not in ("tags", "ufCrmTask")}}

    def _owner(self, type_id: Any, owner_id: Any) -> None:
        table = {"1": self.leads, "2": self.deals, "3": self.contacts}.get(str(type_id))
        try:
            found = table is not None and int(str(owner_id)) in table
        except ValueError:
            found = False
        if not found:
            raise Fail(400, "OWNER_NOT_FOUND", "Owner not found.")

    def todo_add(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """`crm.activity.todo.add`: a to-do in an item's timeline; `{"id": n}`."""
        for name in ("ownerTypeId", "ownerId", "deadline"):
            if params.get(name) in (None, ""):
                raise Fail(400, "100", f"Could not find value for parameter {{{name}}}")
        try:
            datetime.fromisoformat(str(params["deadline"]))
        except ValueError:
            raise Fail(400, "WRONG_DATETIME_FORMAT", "Wrong datetime format.") from None
        self._owner(params["ownerTypeId"], params["ownerId"])
        activity_id = self.next_id("activity") + 998
        self.activities[activity_id] = {
            "id": activity_id, "ownerTypeId": int(str(params["ownerTypeId"])), "ownerId": int(str(params["ownerId"])),
            "deadline": str(params["deadline"]), "title": params.get("title"),
            "description": params.get("description"), "responsibleId": params.get("responsibleId"),
            "pingOffsets": params.get("pingOffsets"), "colorId": params.get("colorId")}
        return {"id": activity_id}

    def comment_add(self, params: Mapping[str, Any]) -> int:
        """`crm.timeline.comment.add`: `fields` only in lower case (since crm 23.100.0)."""
        fields = params.get("fields")
        if not isinstance(fields, Mapping):
            raise Fail(400, "100", "Could not find value for parameter {fields}")
        if not str(fields.get("COMMENT") or "").strip():
            raise Fail(400, "INVALID_ARG_VALUE", "Comment is empty")
        kind = str(fields.get("ENTITY_TYPE", "")).lower()
        self._owner({"lead": 1, "deal": 2, "contact": 3}.get(kind), fields.get("ENTITY_ID"))
        comment_id = self.next_id("comment") + 998
        self.comments[comment_id] = {"ID": str(comment_id), "ENTITY_ID": str(fields["ENTITY_ID"]),
                                     "ENTITY_TYPE": kind, "COMMENT": str(fields["COMMENT"]), "CREATED": self.stamp(),
                                     "AUTHOR_ID": self.user_id}
        return comment_id

    # ---- pipelines ---------------------------------------------------------------------------------------
    def category_list(self, params: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """`crm.category.list {entityTypeId: 2}`."""
        rows = [{**c, "entityTypeId": 2, "originId": "", "originatorId": ""}
                for c in sorted(self.categories.values(), key=lambda c: c["sort"])]
        return {"categories": rows}, {"total": len(rows)}

    def status_list(self, params: Mapping[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """`crm.status.list` of `DEAL_STAGE` / `DEAL_STAGE_n`."""
        entity = str((_ci(params).get("filter") or {}).get("ENTITY_ID", "DEAL_STAGE"))
        match = re.fullmatch(r"DEAL_STAGE(?:_(\d+))?", entity)
        category = int(match.group(1) or 0) if match else -1
        rows = []
        for n, stage in enumerate(sorted(self.stages.get(category, {}).values(), key=lambda s: s["SORT"])):
            sem = stage["SEMANTICS"]
            rows.append({"ID": str(101 + n), "ENTITY_ID": entity, "STATUS_ID": stage["STATUS_ID"],
                         "NAME": stage["NAME"], "NAME_INIT": stage["NAME"], "SORT": str(stage["SORT"]), "SYSTEM": "Y",
                         "CATEGORY_ID": str(category) if category else None, "COLOR": "#39A8EF",
                         "SEMANTICS": None if sem == "P" else sem,
                         "EXTRA": {"SEMANTICS": {"S": "success", "F": "failure"}.get(sem, "process"),
                                   "COLOR": "#39A8EF"}})
        return rows, {"total": len(rows)}

    def dealcategory_stages(self, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Legacy `crm.dealcategory.stage.list {id}`: `[{NAME, SORT (int), STATUS_ID}]`."""
        category = int(str(_ci(params).get("id") or 0))
        return [{"NAME": s["NAME"], "SORT": s["SORT"], "STATUS_ID": s["STATUS_ID"]}
                for s in sorted(self.stages.get(category, {}).values(), key=lambda s: s["SORT"])]

    def state(self) -> dict[str, Any]:
        """Everything, as plain JSON."""
        return {"deals": [dict(d) for d in self.deals.values()], "contacts": [dict(c) for c in self.contacts.values()],
                "leads": [dict(x) for x in self.leads.values()], "tasks": [dict(t) for t in self.tasks.values()],
                "activities": [dict(a) for a in self.activities.values()],
                "comments": [dict(c) for c in self.comments.values()],
                "categories": [dict(c) for c in self.categories.values()],
                "stages": {str(k): list(v.values()) for k, v in self.stages.items()}}


