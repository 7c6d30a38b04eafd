"""amoCRM task webhooks (`task[update][i]`) as canonical `task.completed` data: which tasks were completed, on which
lead or contact, by whom and when."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .mapping import FormError, iso, opt_id

# Legacy element types of a task's record (contract 2 §3.5): the canonical field each is reported as. A lead is
# the deal rules speak of; a contact is the client (the journal adds the person).
ELEMENT_FIELDS = {"2": "deal", "1": "contact"}
# How a v2 item says "done": `status` 1 (legacy semantics, no vendor page confirms it for webhooks; the v4
# objects say `is_completed`, accepted too).
DONE = ("1", "true")


def completed_task(item: Mapping[str, Any], action: str) -> tuple[str, dict[str, Any]] | None:
    """(task id, the `task.completed` data) when a `task[<action>][i]` item reports a completed task, else None.

    `add` counts as well: a task can be made already done (a call logged as a finished task)."""
    ident = str(item.get("id", ""))
    if not ident.isdigit():
        raise FormError(f"task[{action}] item without a numeric id")
    done = str(item.get("status", item.get("is_completed", ""))).strip().lower()
    if done not in DONE:
        return None
    data: dict[str, Any] = {}
    field = ELEMENT_FIELDS.get(str(item.get("element_type", item.get("entity_type", ""))))
    record = opt_id(item.get("element_id") or item.get("entity_id"))
    if field is not None and record is not None:
        data[field] = record
    if str(item.get("text") or "").strip():
        data["title"] = str(item["text"])
    responsible = opt_id(item.get("responsible_user_id"))
    if responsible is not None:
        data["responsible"] = responsible
    # The item reports the change when it is made: its last_modified is the completion's moment.
    at = iso(item.get("last_modified") or item.get("updated_at"))
    if at is not None:
        data["completed_at"] = at
    return ident, data
