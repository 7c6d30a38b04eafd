"""The `local` connector: performs the canonical actions into SQLite tables and emits what a real CRM would."""
from __future__ import annotations

import json
from datetime import datetime
from collections.abc import Callable, Mapping
from typing import Any

import sqlite_utils

from automator.connector import ActionResult, Connector, action
from automator.model import EntityRef, Event

TABLES: dict[str, dict[str, Any]] = {
    "local_deals": {"id": int, "pipeline": str, "stage": str, "title": str, "client": str, "responsible": str,
                    "amount": float, "fields": str, "created_at": str, "updated_at": str},
    "local_tasks": {"id": int, "title": str, "assignee": str, "due": str, "description": str, "deal": str,
                    "client": str, "created_at": str},
    "local_messages": {"id": int, "channel": str, "to": str, "text": str, "sent_at": str},
    "local_categories": {"client": str, "category": str, "updated_at": str},
    "local_bookings": {"id": str, "status": str, "updated_at": str},
    "local_requests": {"id": int, "method": str, "url": str, "body": str, "at": str},
    "local_done": {"key": str, "result": str},
}
PKS = {"local_categories": "client", "local_bookings": "id", "local_done": "key"}


class LocalConnector(Connector):
    """Canonical actions on the embedded SQLite database: the product works end to end with nothing outside.

    Every action is idempotent by its effect key (`local_done`), so a retried effect changes nothing twice.
    `http.request` is recorded, not sent: the local world has no network.
    """

    type = "local"
    config_schema = {"type": "object", "properties": {"type": {"const": "local"}}, "additionalProperties": False}

    def __init__(self, name: str, config: Mapping[str, Any], *, db: sqlite_utils.Database,
                 now: Callable[[], datetime]) -> None:
        super().__init__(name, config)
        self.db = db
        self.now = now
        for table, columns in TABLES.items():
            if not db[table].exists():
                db[table].create(columns, pk=PKS.get(table, "id"))

    def perform(self, action_name: str, params: Mapping[str, Any], key: str) -> ActionResult:
        """Perform once per key: a repeated key returns the first answer and emits nothing."""
        done = self.db["local_done"]
        rows = list(done.rows_where("key = ?", [key]))
        if rows:
            return ActionResult(data=json.loads(rows[0]["result"]))
        result = super().perform(action_name, params, key)
        done.insert({"key": key, "result": json.dumps(dict(result.data), default=str)})
        return result

    def _event(self, key: str, type_: str, ref: EntityRef, data: Mapping[str, Any]) -> Event:
        return Event(id=f"{key}>{type_}", type=type_, at=self.now(), entity=ref, data=dict(data), source=self.name)

    def _stamp(self) -> str:
        return self.now().isoformat()

    @action("deal.create")
    def deal_create(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """Insert a deal and emit `deal.created` with all its fields."""
        extra = dict(params.get("fields") or {})
        row = {"pipeline": params["pipeline"], "stage": params["stage"], "title": params.get("title", ""),
               "client": _text(params.get("contact", params.get("client"))),
               "responsible": _text(params.get("responsible")), "amount": params.get("amount"),
               "fields": json.dumps(extra, default=str), "created_at": self._stamp(), "updated_at": self._stamp()}
        deal_id = str(self.db["local_deals"].insert(row).last_pk)
        data = {k: v for k, v in row.items() if k not in ("fields", "created_at", "updated_at") and v is not None}
        data.update(extra)
        ref = EntityRef("deal", deal_id)
        return ActionResult({"id": deal_id}, (self._event(key, "deal.created", ref, data),))

    @action("deal.move")
    def deal_move(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """Move a deal to a stage (and pipeline) and emit `deal.updated`."""
        change: dict[str, Any] = {"stage": params["stage"]}
        if params.get("pipeline"):
            change["pipeline"] = params["pipeline"]
        change.update(params.get("fields") or {})
        return self._update_deal(str(params["deal"]), change, key)

    @action("deal.update")
    def deal_update(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """Set fields of a deal and emit `deal.updated`."""
        return self._update_deal(str(params["deal"]), dict(params["fields"]), key)

    def _update_deal(self, deal_id: str, change: dict[str, Any], key: str) -> ActionResult:
        table = self.db["local_deals"]
        columns = {c for c in TABLES["local_deals"] if c not in ("id", "fields")}
        stored = list(table.rows_where("id = ?", [deal_id]))
        if stored:
            extra = json.loads(stored[0]["fields"] or "{}")
            extra.update({k: v for k, v in change.items() if k not in columns})
            row = {k: v for k, v in change.items() if k in columns}
            table.update(int(deal_id), {**row, "fields": json.dumps(extra, default=str), "updated_at": self._stamp()})
        ref = EntityRef("deal", deal_id)
        return ActionResult({"id": deal_id}, (self._event(key, "deal.updated", ref, change),))

    @action("booking.set_status")
    def booking_set_status(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """Record a booking's status and emit `booking.updated`."""
        booking_id = str(params["booking"])
        self.db["local_bookings"].upsert({"id": booking_id, "status": params["status"],
                                          "updated_at": self._stamp()}, pk="id")
        ref = EntityRef("booking", booking_id)
        return ActionResult({"id": booking_id},
                            (self._event(key, "booking.updated", ref, {"status": params["status"]}),))

    @action("client.set_category")
    def client_set_category(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """Record a client's category and emit `client.updated`."""
        client_id = str(params["client"])
        self.db["local_categories"].upsert({"client": client_id, "category": params["category"],
                                            "updated_at": self._stamp()}, pk="client")
        ref = EntityRef("client", client_id)
        return ActionResult({"client": client_id},
                            (self._event(key, "client.updated", ref, {"category": params["category"]}),))

    @action("task.create")
    def task_create(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """Insert a task and emit `task.created`."""
        row = {"title": params["title"], "assignee": _text(params["assignee"]), "due": _text(params.get("due")),
               "description": params.get("description"), "deal": _text(params.get("deal")),
               "client": _text(params.get("client")), "created_at": self._stamp()}
        task_id = str(self.db["local_tasks"].insert(row).last_pk)
        data = {k: v for k, v in row.items() if v is not None and k != "created_at"}
        return ActionResult({"id": task_id}, (self._event(key, "task.created", EntityRef("task", task_id), data),))

    def _message(self, channel: str, params: Mapping[str, Any]) -> ActionResult:
        row = {"channel": channel, "to": _text(params["to"]), "text": params["text"], "sent_at": self._stamp()}
        return ActionResult({"id": str(self.db["local_messages"].insert(row).last_pk)})

    @action("sms.send")
    def sms_send(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """Record an SMS as sent."""
        return self._message("sms", params)

    @action("message.send")
    def message_send(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """Record a messenger message as sent."""
        return self._message(params.get("channel") or "message", params)

    @action("notify")
    def notify(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """Record a staff notification."""
        return self._message("notify", params)

    @action("http.request")
    def http_request(self, params: Mapping[str, Any], key: str) -> ActionResult:
        """Record the request; the local world sends nothing over the network."""
        row = {"method": params["method"], "url": params["url"],
               "body": json.dumps(params.get("json"), default=str), "at": self._stamp()}
        return ActionResult({"id": str(self.db["local_requests"].insert(row).last_pk), "status": 200})


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
