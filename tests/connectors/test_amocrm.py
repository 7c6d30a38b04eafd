"""The amoCRM connector against its emulator over real HTTP: actions, webhooks, errors, limits, polling, sandbox."""
from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Awaitable, Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest
from jsonschema import Draft202012Validator

import automator_connectors.amocrm as amocrm_module
from automator.connector import Inbound
from automator.connector_contract import ConnectorContract, Hooks, Sandbox, Sandboxes, Swap
from automator.emulator import serve
from automator.errors import InboundRejected, Rejected, Retryable, Uncertain
from automator.model import Pipeline, Stage
from automator_connectors.amocrm import Amocrm, AmocrmEmulator
from automator_connectors.amocrm.api import JITTER_MARGIN, Pacer, classify
from automator_connectors.amocrm.mapping import FormError, parse_php_form

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
TS = int(NOW.timestamp())
TOKEN, SECRET = "amo-token", "hook-secret"
PIPELINES = {
    "sales": Pipeline("sales", "crm", "6950551", {
        "new": Stage("new", "58141807"), "talks": Stage("talks", "58141811"),
        "won": Stage("won", "142", outcome="won"), "lost": Stage("lost", "143", outcome="lost")}),
    "rehab": Pipeline("rehab", "crm", "6950555", {
        "new": Stage("new", "58141855"), "booked": Stage("booked", "58141859"),
        "won": Stage("won", "WON", outcome="won"), "lost": Stage("lost", "143", outcome="lost")}),
    "fitness": Pipeline("fitness", "crm", "9217056", {
        "first": Stage("first", "20067736"), "won": Stage("won", "142", outcome="won")}),
}
FIELDS = {"visit_at": {"id": 184990, "type": "date_time"}, "service": 184994}

# §3.8: a real status-change body (obs).
STATUS_HOOK = (
    "leads[status][0][id]=10701093&leads[status][0][name]=Семинар: Пропитание в фитнесе"
    "&leads[status][0][status_id]=142&leads[status][0][old_status_id]=20067736&leads[status][0][price]=22500"
    "&leads[status][0][responsible_user_id]=2079676&leads[status][0][last_modified]=1539782664"
    "&leads[status][0][modified_user_id]=2079718&leads[status][0][created_user_id]=2076025"
    "&leads[status][0][date_create]=1539782209&leads[status][0][pipeline_id]=9217056"
    "&leads[status][0][old_pipeline_id]=9217056"
    "&leads[status][0][tags][0][id]=80147&leads[status][0][tags][0][name]=повторное обращение"
    "&leads[status][0][account_id]=17769199"
    "&leads[status][0][custom_fields][0][id]=66339&leads[status][0][custom_fields][0][name]=Источник"
    "&leads[status][0][custom_fields][0][values][0][value]=Сайт"
    "&leads[status][0][custom_fields][0][values][0][enum]=139517"
    "&account[subdomain]=apfitness&account[id]=17769199")
# §3.2: the documented validation error.
VALIDATION = {"validation-errors": [{"request_id": "0", "errors": [
    {"code": "NotSupportedChoice", "path": "custom_fields_values.0.field_id",
     "detail": "The value you selected is not a valid choice."},
    {"code": "InvalidType", "path": "status_id", "detail": "This value should be of type int."}]}],
    "title": "Bad Request", "type": "https://httpstatus.es/400", "status": 400, "detail": "Request validation failed"}
# §3.4 / §3.5: keys of the documented lead and pipeline/status objects.
LEAD_KEYS = {"id", "name", "price", "responsible_user_id", "group_id", "status_id", "pipeline_id", "loss_reason_id",
             "source_id", "created_by", "updated_by", "created_at", "updated_at", "closed_at", "closest_task_at",
             "is_deleted", "custom_fields_values", "score", "account_id", "_links", "_embedded"}
PIPELINE_KEYS = {"id", "name", "sort", "is_main", "is_unsorted_on", "is_archive", "account_id", "_links", "_embedded"}
STATUS_KEYS = {"id", "name", "sort", "is_editable", "pipeline_id", "color", "type", "account_id"}


class Receiver(Hooks):
    """The daemon's side of amoCRM's webhooks, to `path` (amoCRM promises no order of them either)."""

    def __init__(self, path: str = "/hooks/crm") -> None:
        super().__init__("crm", path)

    def one(self, count: int, marker: str) -> Inbound:
        """The webhook among the first `count` whose body has `marker` (such as leads[status])."""
        [found] = [h for h in self.wait(count) if marker.encode() in h.body or
                   marker.replace("[", "%5B").replace("]", "%5D").encode() in h.body]
        return found


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[Swap, Any, Swap, Any]]:
    api, hooks = Swap(), Swap()
    with serve(api) as api_served, serve(hooks) as hooks_served:
        yield api, api_served, hooks, hooks_served


WORLDS = itertools.count()


class World:
    """One test's emulator (served), webhook receiver and connector."""

    def __init__(self, servers: tuple[Swap, Any, Swap, Any], *, hooks: bool = True, **config: Any) -> None:
        api, api_served, hook_swap, hooks_served = servers
        path = f"/hooks/crm-{next(WORLDS)}"
        self.receiver = Receiver(path)
        hook_swap.app = self.receiver
        self.emulator = AmocrmEmulator(token=TOKEN, subdomain="example",
                                       hook_url=f"{hooks_served.url}{path}?token={SECRET}" if hooks
                                       else "http://127.0.0.1:9/hooks/crm")
        api.app = self.emulator
        self.url = api_served.url
        self.config = {"base_url": self.url, "subdomain": "example", "token": TOKEN, "hook_secret": SECRET,
                       "users": {"admin": 555}, "fields": FIELDS, **config}
        self.connector = Amocrm("crm", self.config, now=lambda: NOW)
        self.connector.pipelines = PIPELINES

    def run(self, make: Callable[[Amocrm], Awaitable[Any]]) -> Any:
        async def go() -> Any:
            try:
                return await make(self.connector)
            finally:
                await self.connector.aclose()
        return asyncio.run(go())

    def calls(self, method: str | None = None) -> list[Any]:
        return [c for c in self.emulator.calls if method is None or c.method == method]


def inbound(body: str | bytes, *, token: str | None = SECRET, method: str = "POST",
            content_type: str = "application/x-www-form-urlencoded") -> Inbound:
    return Inbound("crm", method, "/hooks/crm", {} if token is None else {"token": token},
                   {"content-type": content_type}, body if isinstance(body, bytes) else body.encode())


def connector(**config: Any) -> Amocrm:
    made = Amocrm("crm", {"subdomain": "apfitness", "token": TOKEN, "hook_secret": SECRET, "fields": FIELDS,
                          **config}, now=lambda: NOW)
    made.pipelines = PIPELINES
    return made


# ---- actions -------------------------------------------------------------------------------------------------

def test_deal_create_finds_or_creates_the_contact_and_posts_the_lead(servers: Any) -> None:
    world = World(servers)
    params = {"pipeline": "sales", "stage": "new", "title": "Первичный визит — Анна Иванова", "amount": "15000",
              "responsible": "admin", "fields": {"phone": "8 (916) 123-45-67", "client_name": "Анна Иванова",
                                                 "service": "Стрижка"}}

    async def go(c: Amocrm) -> Any:
        first = await c.perform("deal.create", params, "effect-1")
        second = await c.perform("deal.create", {**params, "title": "Второй визит"}, "effect-2")
        return first, second
    first, second = world.run(go)

    state = world.emulator.state()
    assert len(state["contacts"]) == 1  # the second deal found the contact by phone
    contact = state["contacts"][0]
    assert contact["first_name"] == "Анна" and contact["last_name"] == "Иванова"
    assert contact["custom_fields_values"][0]["values"] == [{"value": "+79161234567", "enum_code": "MOB"}]
    lead = next(lead for lead in state["leads"] if str(lead["id"]) == first.data["id"])
    assert (lead["pipeline_id"], lead["status_id"], lead["price"], lead["responsible_user_id"]) == \
        (6950551, 58141807, 15000, 555)
    assert lead["contacts"] == [{"id": contact["id"], "is_main": True}]
    assert first.data == {"id": str(lead["id"]), "contact": str(contact["id"])}

    searches = [c for c in world.calls("GET") if c.path == "/api/v4/contacts"]
    assert [c.query for c in searches] == [{"query": "9161234567"}] * 2  # the national digits (§3.1)
    posts = [c for c in world.calls("POST") if c.path == "/api/v4/leads"]
    assert posts[0].headers["authorization"] == f"Bearer {TOKEN}"
    assert posts[0].headers["content-type"] == "application/json"
    assert posts[0].json() == [{"name": "Первичный визит — Анна Иванова", "pipeline_id": 6950551,
                                "status_id": 58141807, "created_at": TS, "updated_at": TS, "request_id": "effect-1",
                                "custom_fields_values": [{"field_id": 184994, "values": [{"value": "Стрижка"}]}],
                                "price": 15000, "responsible_user_id": 555,
                                "_embedded": {"contacts": [{"id": contact["id"], "is_main": True}]}}]
    assert len([c for c in world.calls("POST") if c.path == "/api/v4/contacts"]) == 1

    event = first.events[0]
    assert event.type == "deal.created" and event.delivery_id == f"deal:{lead['id']}@{TS}:58141807"
    assert event.data == {"pipeline": "sales", "stage": "new", "pipeline_id": "6950551", "status_id": "58141807",
                          "outcome": "open", "title": "Первичный визит — Анна Иванова", "amount": "15000.00", "responsible": "555",
                          "contact": str(contact["id"]), "tags": [], "service": "Стрижка"}
    # The emulator's `leads[add]` webhooks name the same change: one journal entry each.
    hooks = world.receiver.wait(3)  # contacts[add], leads[add], leads[add]
    everything = [e for hook in hooks for e in world.connector.parse(hook)]
    parsed = [e for e in everything if e.type != "client.created"]
    assert sorted(e.delivery_id or "" for e in parsed) == sorted([event.delivery_id or "",
                                                                 second.events[0].delivery_id or ""])
    assert {e.type for e in parsed} == {"deal.created"} and {e.data["stage"] for e in parsed} == {"new"}
    [client] = [e for e in everything if e.type == "client.created"]  # the contact the first deal made
    assert client.entity is not None and client.entity.id == str(contact["id"])
    # Made through the API: the token's user (123123) made it.
    assert client.data == {"name": "Анна Иванова", "phone": "+79161234567", "responsible": "555", "tags": [],
                           "modified_by": "123123"}


def test_an_interrupted_deal_create_is_found_by_the_key_field_not_made_twice(servers: Any) -> None:
    """Issue 10 item 12: with `key_field` the lead keeps its effect key; the try after an interrupted one (the first
    reached amoCRM, its answer was lost) finds the lead by `query` and returns the same result and event."""
    world = World(servers, key_field=777001)
    params = {"pipeline": "sales", "stage": "new", "title": "Визит", "amount": 900, "fields": {"phone": "+79161234567"}}

    async def go(c: Amocrm) -> Any:
        made = await c.perform("deal.create", params, "run-5/do/0")
        await c.perform("deal.create", {**params, "title": "run-5/do/0 другой"}, "run-6/do/0")  # name matches query
        return made, await c.recover("deal.create", params, "run-5/do/0"), await c.recover("deal.create", params,
                                                                                           "run-4/do/0")
    made, found, nothing = world.run(go)
    assert len(world.emulator.state()["leads"]) == 2 and nothing is None
    lead = next(lead for lead in world.emulator.state()["leads"] if str(lead["id"]) == made.data["id"])
    assert {"field_id": 777001, "values": [{"value": "run-5/do/0"}]} in lead["custom_fields_values"]
    assert found is not None and found.data == made.data
    # The same change (the journal keeps it once); read back, it also names the responsible amoCRM assigned.
    assert [(e.id, e.delivery_id) for e in found.events] == [(e.id, e.delivery_id) for e in made.events]
    assert found.events[0].data.items() >= made.events[0].data.items()
    search = [c for c in world.calls("GET") if c.path == "/api/v4/leads"][0]
    assert search.query == {"query": "run-5/do/0", "with": "contacts"}
    # Without `key_field` nothing is looked up (the README says amoCRM creates can then repeat).
    assert World(servers).run(lambda c: c.recover("deal.create", params, "run-5/do/0")) is None
    assert world.run(lambda c: c.recover("task.create", {"title": "x", "assignee": "admin"}, "k")) is None


def test_deal_create_links_a_given_contact_and_refuses_a_foreign_id(servers: Any) -> None:
    world = World(servers)

    async def go(c: Amocrm) -> Any:
        made = await c.perform("deal.create", {"pipeline": "sales", "stage": "new", "title": "A",
                                               "fields": {"phone": "+79161234567"}}, "k1")
        contact = made.data["contact"]
        linked = await c.perform("deal.create", {"pipeline": "sales", "stage": "talks", "title": "B",
                                                 "contact": contact}, "k2")
        # A phone as the contact (a booking system's client has no amoCRM id): the contact with it, found.
        by_phone = await c.perform("deal.create", {"pipeline": "sales", "stage": "new", "title": "E",
                                                   "contact": "+7 916 123-45-67"}, "k5")
        with pytest.raises(Rejected, match="not an amoCRM contact id"):
            await c.perform("deal.create", {"pipeline": "sales", "stage": "new", "title": "C", "contact": "yc:7"}, "k3")
        with pytest.raises(Rejected, match="no field for colour"):
            await c.perform("deal.create", {"pipeline": "sales", "stage": "new", "title": "D",
                                            "fields": {"colour": "red"}}, "k4")
        return contact, linked, by_phone
    contact, linked, by_phone = world.run(go)
    assert world.emulator.records.leads[int(linked.data["id"])]["contacts"] == [{"id": int(contact), "is_main": True}]
    assert by_phone.data["contact"] == contact
    assert len([c for c in world.calls("POST") if c.path == "/api/v4/leads"]) == 3  # refusals sent nothing
    assert len([c for c in world.calls("POST") if c.path == "/api/v4/contacts"]) == 1


def test_deal_move_patches_status_and_pipeline_and_the_webhook_matches(servers: Any) -> None:
    world = World(servers)

    async def go(c: Amocrm) -> Any:
        made = await c.perform("deal.create", {"pipeline": "sales", "stage": "new", "title": "A"}, "k1")
        moved = await c.perform("deal.move", {"deal": made.data["id"], "pipeline": "sales", "stage": "won",
                                              "fields": {"visit_at": "2026-03-05T10:00:00+03:00"}}, "k2")
        return made, moved
    made, moved = world.run(go)
    lead_id = int(made.data["id"])
    patch = world.calls("PATCH")[0]
    assert patch.path == f"/api/v4/leads/{lead_id}"
    assert patch.json() == {"status_id": 142, "pipeline_id": 6950551, "custom_fields_values": [
        {"field_id": 184990, "values": [{"value": int(datetime(2026, 3, 5, 7, tzinfo=UTC).timestamp())}]}]}
    lead = world.emulator.records.leads[lead_id]
    assert (lead["status_id"], lead["pipeline_id"]) == (142, 6950551) and lead["closed_at"] == lead["updated_at"]
    event = moved.events[0]
    assert event.type == "deal.updated" and event.delivery_id == f"deal:{lead_id}@{lead['updated_at']}:142"
    assert event.data["stage"] == "won" and event.data["pipeline"] == "sales"
    assert event.data["outcome"] == "won"  # the canonical field rules and deals_of(open=) read, not 142

    hook = world.receiver.one(2, "leads[status]")
    pairs = dict(parse_qsl(hook.body.decode()))
    assert pairs["leads[status][0][status_id]"] == "142" and pairs["leads[status][0][old_status_id]"] == "58141807"
    assert pairs["account[subdomain]"] == "example" and hook.query == {"token": SECRET}
    assert hook.headers["content-type"] == "application/x-www-form-urlencoded"
    [parsed] = world.connector.parse(hook)
    assert parsed.delivery_id == event.delivery_id and parsed.id == event.id
    assert parsed.data["stage"] == "won" and parsed.data["visit_at"] == "2026-03-05T07:00:00+00:00"
    assert parsed.data["outcome"] == "won"


def test_deal_move_without_pipeline_reads_the_lead_and_maps_outcome_to_142(servers: Any) -> None:
    world = World(servers)

    async def go(c: Amocrm) -> Any:
        made = await c.perform("deal.create", {"pipeline": "rehab", "stage": "new", "title": "A"}, "k1")
        return made, await c.perform("deal.move", {"deal": made.data["id"], "stage": "won"}, "k2")
    made, moved = world.run(go)
    assert [(c.method, c.path) for c in world.calls()][-2:] == [
        ("GET", f"/api/v4/leads/{made.data['id']}"), ("PATCH", f"/api/v4/leads/{made.data['id']}")]
    assert world.calls("PATCH")[0].json() == {"status_id": 142, "pipeline_id": 6950555}
    assert moved.events[0].data["pipeline"] == "rehab"
    hook = world.receiver.one(2, "leads[status]")
    assert world.connector.parse(hook)[0].data["stage"] == "won"  # 142 of 6950555 is rehab's "won"


def test_deal_update_sets_columns_and_custom_fields(servers: Any) -> None:
    world = World(servers)

    async def go(c: Amocrm) -> Any:
        made = await c.perform("deal.create", {"pipeline": "sales", "stage": "talks", "title": "A"}, "k1")
        updated = await c.perform("deal.update", {"deal": made.data["id"], "fields": {
            "title": "B", "amount": 3500.4, "service": "Массаж"}}, "k2")
        with pytest.raises(Rejected, match="use deal.move"):
            await c.perform("deal.update", {"deal": made.data["id"], "fields": {"stage": "won"}}, "k3")
        with pytest.raises(Rejected, match="no lead 999"):
            await c.perform("deal.update", {"deal": "999", "fields": {"title": "x"}}, "k4")
        return made, updated
    made, updated = world.run(go)
    assert world.calls("PATCH")[0].json() == {"name": "B", "price": 3500, "custom_fields_values": [
        {"field_id": 184994, "values": [{"value": "Массаж"}]}]}
    lead = world.emulator.records.leads[int(made.data["id"])]
    assert (lead["name"], lead["price"]) == ("B", 3500)
    event = updated.events[0]
    assert event.delivery_id == f"deal:{lead['id']}@{lead['updated_at']}:58141811"
    hook = world.receiver.one(2, "leads[update]")
    assert world.connector.parse(hook)[0].delivery_id == event.delivery_id


def test_task_create_posts_text_due_and_entity(servers: Any) -> None:
    world = World(servers)

    async def go(c: Amocrm) -> Any:
        made = await c.perform("deal.create", {"pipeline": "sales", "stage": "new", "title": "A"}, "k1")
        task = await c.perform("task.create", {"title": "Перезвонить клиенту", "description": "не пришёл",
                                               "assignee": "admin", "due": "2026-03-03T18:00:00+03:00",
                                               "deal": made.data["id"]}, "k2")
        later = await c.perform("task.create", {"title": "Позвонить", "assignee": "777", "due": "1d"}, "k3")
        with pytest.raises(Rejected, match="neither an amoCRM user id"):
            await c.perform("task.create", {"title": "x", "assignee": "nobody"}, "k4")
        with pytest.raises(Rejected, match="amoCRM contact id"):
            await c.perform("task.create", {"title": "x", "assignee": "admin", "client": "yc:1"}, "k5")
        return made, task, later
    made, task, later = world.run(go)
    posts = [c.json() for c in world.calls("POST") if c.path == "/api/v4/tasks"]
    assert posts[0] == [{"text": "Перезвонить клиенту\n\nне пришёл", "complete_till": TS + 86400 + 3 * 3600,
                         "task_type_id": 1, "request_id": "k2", "responsible_user_id": 555,
                         "entity_id": int(made.data["id"]), "entity_type": "leads"}]
    assert posts[1][0]["complete_till"] == TS + 86400 and "entity_id" not in posts[1][0]
    stored = world.emulator.records.tasks[int(task.data["id"])]
    assert (stored["entity_type"], stored["responsible_user_id"], stored["is_completed"]) == ("leads", 555, False)
    assert task.events[0].type == "task.created" and task.events[0].data["due"] == "2026-03-03T15:00:00+00:00"
    assert len(posts) == 2


def test_task_create_for_a_client_given_by_phone_finds_or_creates_the_contact(servers: Any) -> None:
    """The engine sends a phone for a person with no amoCRM contact yet: the task goes on the contact deal.create
    would have found (or made) by it, not refused as a non-id."""
    world = World(servers)

    async def go(c: Amocrm) -> Any:
        made = await c.perform("deal.create", {"pipeline": "sales", "stage": "new", "title": "A",
                                               "contact": "+79161234567"}, "k1")
        found = await c.perform("task.create", {"title": "Позвонить", "assignee": "admin",
                                                "client": "+79161234567"}, "k2")
        new = await c.perform("task.create", {"title": "Позвонить", "assignee": "admin",
                                              "client": "+79031112233"}, "k3")
        return made, found, new
    made, found, new = world.run(go)
    contacts = {str(c["id"]): c for c in world.emulator.state()["contacts"]}
    assert len(contacts) == 2 and made.data["contact"] in contacts
    posts = [c.json()[0] for c in world.calls("POST") if c.path == "/api/v4/tasks"]
    assert (posts[0]["entity_type"], str(posts[0]["entity_id"])) == ("contacts", made.data["contact"])
    other = str(posts[1]["entity_id"])
    assert other != made.data["contact"] and other in contacts
    assert found.events[0].data["client"] == made.data["contact"] and new.events[0].data["client"] == other


def test_validation_errors_are_rejected_with_their_details(servers: Any) -> None:
    world = World(servers)
    world.connector.pipelines = {**PIPELINES, "ghost": Pipeline("ghost", "crm", "6950551", {
        "new": Stage("new", "58149999")})}

    async def go(c: Amocrm) -> Any:
        with pytest.raises(Rejected) as caught:
            await c.perform("deal.create", {"pipeline": "ghost", "stage": "new", "title": "A"}, "k1")
        return str(caught.value)
    message = world.run(go)
    assert "HTTP 400" in message and "[item k1] status_id" in message and "NotSupportedChoice" in message
    assert world.emulator.state()["leads"] == []

    documented = httpx.Response(400, json=VALIDATION, headers={"content-type": "application/problem+json"})
    with pytest.raises(Rejected) as caught:
        classify(documented, "create lead")
    assert "[item 0] custom_fields_values.0.field_id: The value you selected is not a valid choice. " \
           "(NotSupportedChoice); [item 0] status_id: This value should be of type int. (InvalidType)" \
           in str(caught.value)


def test_check_pipelines_reads_the_account(servers: Any) -> None:
    world = World(servers)
    world.connector.pipelines = {**PIPELINES, "ghost": Pipeline("ghost", "crm", "6950551", {
        "new": Stage("new", "58149999")})}
    read, problems = world.run(lambda c: asyncio.gather(c.read_pipelines(), c.check_pipelines()))
    main = read[0]
    assert main["id"] == 6950551 and main["statuses"][0]["type"] == 1
    assert [s["id"] for s in main["statuses"]][-2:] == [142, 143]
    assert problems == ["pipeline fitness: amoCRM has no pipeline 9217056",
                        "pipeline ghost, stage new: amoCRM pipeline 6950551 has no status 58149999"]


# ---- inbound webhooks ----------------------------------------------------------------------------------------

def test_parse_the_documented_status_hook() -> None:
    [event] = connector(subdomain="apfitness").parse(inbound(STATUS_HOOK))
    assert event.type == "deal.updated" and event.entity is not None and event.entity.id == "10701093"
    assert event.delivery_id == "deal:10701093@1539782664:142" and event.source == "crm"
    assert event.at == datetime.fromtimestamp(1539782664, UTC)
    assert event.data == {"pipeline_id": "9217056", "status_id": "142", "outcome": "won", "pipeline": "fitness",
                          "stage": "won", "title": "Семинар: Пропитание в фитнесе", "amount": "22500.00", "responsible": "2079676",
                          "tags": ["повторное обращение"], "modified_by": "2079718"}


def test_a_lead_says_where_its_stage_stands_as_outcome() -> None:
    # The core reads only the canonical `outcome` (deals_of(open=)): amoCRM's 142/143 are the connector's to name.
    read = connector(subdomain="apfitness")
    lost = STATUS_HOOK.replace("[status_id]=142", "[status_id]=143")
    assert read.parse(inbound(lost))[0].data["outcome"] == "lost"
    still = STATUS_HOOK.replace("[status_id]=142", "[status_id]=20067736")
    assert read.parse(inbound(still))[0].data["outcome"] == "open"


def test_parse_several_leads_and_actions() -> None:
    body = urlencode([
        ("leads[add][0][id]", "1"), ("leads[add][0][status_id]", "58141807"), ("leads[add][0][pipeline_id]", "6950551"),
        ("leads[add][0][last_modified]", "100"), ("leads[add][0][date_create]", "100"),
        ("leads[add][1][id]", "2"), ("leads[add][1][status_id]", "143"), ("leads[add][1][pipeline_id]", "6950555"),
        ("leads[add][1][last_modified]", "101"),
        ("leads[status][0][id]", "3"), ("leads[status][0][status_id]", "58141811"),
        ("leads[status][0][pipeline_id]", "6950551"), ("leads[status][0][last_modified]", "102"),
        ("leads[update][0][id]", "3"), ("leads[update][0][status_id]", "58141811"),
        ("leads[update][0][pipeline_id]", "6950551"), ("leads[update][0][last_modified]", "102"),
        ("leads[delete][0][id]", "4"), ("leads[delete][0][status_id]", "58141807"),
        ("leads[delete][0][pipeline_id]", "6950551"),
        ("leads[note][0][note][text]", "hello"), ("contacts[update][0][id]", "9"),
        ("contacts[update][0][last_modified]", "103"), ("task[delete][0][id]", "7"), ("account[subdomain]", "apfitness")])
    events = connector().parse(inbound(body))
    assert [(e.type, e.entity.id if e.entity else None, e.data.get("stage")) for e in events] == [
        ("deal.created", "1", "new"), ("deal.created", "2", "lost"), ("deal.updated", "3", "talks"),
        ("deal.deleted", "4", None), ("client.updated", "9", None)]
    assert events[1].data["pipeline"] == "rehab"
    assert connector().parse(inbound("contacts[delete][0][id]=5&account[subdomain]=apfitness")) == []


@pytest.mark.parametrize("request_, status", [
    (inbound(STATUS_HOOK, token="wrong"), 401),
    (inbound(STATUS_HOOK, token=None), 401),
    (inbound(STATUS_HOOK, token=SECRET + "x"), 401),
    (inbound(STATUS_HOOK, method="GET"), 405),
    (inbound(json.dumps({"leads": {}}), content_type="application/json"), 415),
    (inbound(b"leads[status][0][id]=\xff\xfe"), 400),
    (inbound("not a form"), 400),
    (inbound(""), 400),
    (inbound("leads[status][0]=1&leads[status][0][id]=2"), 400),
    (inbound("leads[status][0][id]=abc&leads[status][0][last_modified]=1"), 400),
    (inbound("leads[status][0][id]=1&leads[status][0][status_id]=142"), 400),
    (inbound("leads[status]=1"), 400),
    (inbound("leads=1"), 400),
    (inbound("a[b][c][d][e][f][g][h][i]=1"), 400),
    (inbound(STATUS_HOOK.replace("account[subdomain]=apfitness", "account[subdomain]=other")), 403),
])
def test_parse_refuses_forged_and_malformed_hooks(request_: Inbound, status: int) -> None:
    with pytest.raises(InboundRejected) as caught:
        connector().parse(request_)
    assert caught.value.status == status
    assert caught.value.word == {401: "auth", 403: "auth", 405: "method"}.get(status, "malformed")


def test_php_form_parser() -> None:
    assert parse_php_form("a[b][0][c]=1&a[b][0][d]=2&a[b][1][c]=3&e=4&f[]=5&f[]=6") == {
        "a": {"b": {"0": {"c": "1", "d": "2"}, "1": {"c": "3"}}}, "e": "4", "f": {"0": "5", "1": "6"}}
    for bad in ("a[b]=1&a=2", "a[b=1", "=1"):
        with pytest.raises((FormError, ValueError)):
            parse_php_form(bad)


# ---- errors and limits ---------------------------------------------------------------------------------------

def _create(c: Amocrm) -> Awaitable[Any]:
    return c.perform("deal.create", {"pipeline": "sales", "stage": "new", "title": "A"}, "k")


def test_error_classification_against_the_emulator(servers: Any) -> None:
    world = World(servers, timeout=0.4)
    emulator = world.emulator

    async def outcome(c: Amocrm, **faults: Any) -> BaseException:
        emulator.faults.update(faults)
        try:
            await _create(c)
        except (Retryable, Rejected, Uncertain) as exc:
            return exc
        finally:
            emulator.faults.update({"delay": 0.0})
        raise AssertionError("no error")

    async def go(c: Amocrm) -> list[BaseException]:
        return [await outcome(c, storm={"status": 429, "count": 1, "retry_after": 7}),
                await outcome(c, storm={"status": 503, "count": 1, "retry_after": 3}),
                await outcome(c, fail={"status": 500, "count": 1}),
                await outcome(c, drop=1),
                await outcome(c, delay=0.6)]
    storm, busy, failed, dropped, slow = world.run(go)
    assert isinstance(storm, Retryable) and storm.retry_after == 7 and "429" in str(storm)
    assert isinstance(busy, Retryable) and busy.retry_after == 3
    assert isinstance(failed, Retryable) and "ErrInternalServer" in str(failed)
    assert isinstance(dropped, Uncertain) and isinstance(slow, Uncertain)

    wrong = Amocrm("crm", {**world.config, "token": "stolen"}, now=lambda: NOW)
    wrong.pipelines = PIPELINES

    async def unauthorised() -> None:
        try:
            with pytest.raises(Rejected, match="401 Unauthorized: Invalid user name or password"):
                await _create(wrong)
        finally:
            await wrong.aclose()
    asyncio.run(unauthorised())


@pytest.mark.parametrize("answer, kind, wait, words", [
    (httpx.Response(429, text="Too Many Requests", headers={"Retry-After": "2"}), Retryable, 2.0, "429"),
    (httpx.Response(429, json={"title": "Too Many Requests", "status": 429, "retry_after": 300}), Retryable, 300, "429"),
    (httpx.Response(403, json={"title": "Forbidden", "status": 403, "detail": "blocked"}), Rejected, None, "blocks"),
    (httpx.Response(402, json={"title": "Payment Required", "status": 402, "detail": "x"}), Rejected, None, "not paid"),
    (httpx.Response(404, json={"title": "Not Found", "status": 404, "detail": "x"}), Rejected, None, "404"),
    (httpx.Response(422, json={"title": "Unprocessable Entity", "status": 422, "detail": "250"}), Rejected, None, "250"),
    (httpx.Response(502, text="bad gateway"), Retryable, None, "502"),
])
def test_classify_status_codes(answer: httpx.Response, kind: type[Exception], wait: float | None, words: str) -> None:
    with pytest.raises(kind, match=words) as caught:
        classify(answer, "call")
    assert getattr(caught.value, "retry_after", None) == wait
    classify(httpx.Response(204), "call")  # no content is an empty answer, not an error


def test_rate_limit_then_block(servers: Any) -> None:
    world = World(servers)
    world.emulator.block_after = 3
    world.emulator.block_for = 30
    assert Amocrm.rate_limit == (7.0, 1)

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=world.url, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            return [await client.get("/api/v4/leads/pipelines") for _ in range(12)]
    answers = asyncio.run(burst())
    codes = [a.status_code for a in answers]
    assert codes == [200] * 7 + [429] * 3 + [403] * 2
    limited = answers[7]
    assert limited.headers["content-type"] == "application/problem+json"
    assert limited.json()["title"] == "Too Many Requests" and limited.json()["retry_after"] >= 1
    with pytest.raises(Rejected, match="blocks this IP or account"):
        classify(answers[-1], "read pipelines")
    assert world.emulator.state()["blocked"] is True


def test_the_pacer_keeps_a_connector_under_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [0.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    # Not a monkeypatch of asyncio.sleep: the emulator servers' own threads would call it too.
    pacer = Pacer(clock=lambda: clock[0], sleep=sleep)

    async def go() -> list[float]:
        stamps = []
        for _ in range(15):
            await pacer.slot()
            stamps.append(clock[0])
        return stamps
    stamps = asyncio.run(go())
    assert stamps[:7] == [0.0] * 7 and len(slept) == 2  # the 8th and the 15th waited for the window
    # No window of amoCRM's one second (nor of ours, longer by the jitter margin) holds more than 7.
    assert all(sum(1 for t in stamps if start <= t < start + pacer.window) <= 7 for start in stamps)
    assert stamps[7] >= 1.0 + JITTER_MARGIN


# ---- the emulator's answers against the reference ------------------------------------------------------------

def test_emulator_envelopes_match_the_reference(servers: Any) -> None:
    world = World(servers)
    world.emulator.faults.limits = False  # more than 7 calls in a second, on purpose

    async def go() -> dict[str, httpx.Response]:
        async with httpx.AsyncClient(base_url=world.url, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            out = {"empty": await client.get("/api/v4/leads")}
            out["create"] = await client.post("/api/v4/leads", json=[{"name": "X", "price": 1, "request_id": "r1"}])
            lead_id = out["create"].json()["_embedded"]["leads"][0]["id"]
            out["lead"] = await client.get(f"/api/v4/leads/{lead_id}")
            out["missing"] = await client.get("/api/v4/leads/1")
            out["patch"] = await client.patch(f"/api/v4/leads/{lead_id}", json={"status_id": 142, "pipeline_id": 6950551})
            out["pipelines"] = await client.get("/api/v4/leads/pipelines")
            out["bad"] = await client.post("/api/v4/leads", json=[{"status_id": "x"}])
            out["many"] = await client.post("/api/v4/leads", json=[{}] * 251)
            out["nobody"] = await client.get("/api/v4/contacts", params={"query": "79990000000"})
            out["bulk"] = await client.patch("/api/v4/leads", json=[{"id": lead_id, "name": "Y"}])
            out["contact"] = await client.post("/api/v4/contacts", json=[{"first_name": "Анна", "custom_fields_values": [
                {"field_code": "PHONE", "values": [{"value": "+7 916 123-45-67", "enum_code": "MOB"}]}]}])
            out["found"] = await client.get("/api/v4/contacts", params={"query": "79161234567"})
            out["anon"] = await client.get("/api/v4/leads", headers={"Authorization": "Bearer nope"})
            return out
    r = asyncio.run(go())
    assert r["empty"].status_code == 204 and r["empty"].content == b""
    assert r["create"].headers["content-type"] == "application/hal+json"
    made = r["create"].json()
    assert set(made) == {"_links", "_embedded"} and made["_embedded"]["leads"][0]["request_id"] == "r1"
    assert set(made["_embedded"]["leads"][0]) == {"id", "request_id", "_links"}
    assert set(r["lead"].json()) == LEAD_KEYS
    assert r["missing"].status_code == 204
    assert set(r["patch"].json()) == {"id", "updated_at", "_links"}
    pipelines = r["pipelines"].json()
    assert set(pipelines) == {"_total_items", "_links", "_embedded"}
    for pipeline in pipelines["_embedded"]["pipelines"]:
        assert set(pipeline) == PIPELINE_KEYS
        statuses = pipeline["_embedded"]["statuses"]
        assert all(set(s) - {"_links"} == STATUS_KEYS for s in statuses)
        assert statuses[0]["type"] == 1 and {142, 143} <= {s["id"] for s in statuses}
    bad = r["bad"].json()
    assert r["bad"].status_code == 400 and r["bad"].headers["content-type"] == "application/problem+json"
    assert {k: bad[k] for k in ("title", "type", "status", "detail")} == {k: VALIDATION[k] for k in
                                                                          ("title", "type", "status", "detail")}
    assert bad["validation-errors"] == [{"request_id": "0", "errors": [
        {"code": "InvalidType", "path": "status_id", "detail": "This value should be of type int."}]}]
    assert r["many"].status_code == 422 and "250" in r["many"].json()["detail"]
    assert r["nobody"].status_code == 204
    assert set(r["bulk"].json()["_embedded"]["leads"][0]) == {"id", "updated_at", "request_id", "_links"}
    assert set(r["contact"].json()["_embedded"]["contacts"][0]) == {"id", "request_id", "_links"}
    assert r["found"].json()["_embedded"]["contacts"][0]["name"] == "Анна"
    assert r["anon"].json() == {"title": "Unauthorized", "type": "https://httpstatus.es/401", "status": 401,
                                "detail": "Invalid user name or password"}


# ---- catch-up polling ----------------------------------------------------------------------------------------

def test_poll_catches_up_with_changes_no_webhook_brought(servers: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(amocrm_module, "PAGE_LIMIT", 2)  # three leads take two pages
    world = World(servers, hooks=False)  # webhooks go to a port nobody listens on: lost
    clock = [TS + 100.0]
    world.emulator.records.now = lambda: clock[0]

    async def manager(path: str, body: dict[str, Any], at: float) -> dict[str, Any]:
        clock[0] = at
        async with httpx.AsyncClient(base_url=world.url) as client:
            return dict((await client.post(f"/_emulator/{path}", json=body)).json())

    async def go(c: Amocrm) -> Any:
        _, cursor = await c.poll(None)
        assert cursor == str(TS)
        first = await manager("lead", {"name": "Из формы", "price": 900}, TS + 110)
        second = await manager("lead", {"name": "Звонок", "pipeline_id": 6950555}, TS + 111)
        await manager("move", {"lead": first["id"], "status_id": 143, "pipeline_id": 6950551}, TS + 120)
        third = await manager("lead", {"name": "Ещё"}, TS + 120)
        events, cursor2 = await c.poll(cursor)
        again, cursor3 = await c.poll(cursor2)
        await manager("edit", {"lead": second["id"], "name": "Звонок 2"}, TS + 130)
        later, cursor4 = await c.poll(cursor3)
        return first, second, third, events, cursor2, again, cursor3, later, cursor4
    first, second, third, events, cursor2, again, cursor3, later, cursor4 = world.run(go)

    by_lead = {e.entity.id: e for e in events if e.entity}
    assert [e.entity.id for e in events if e.entity] == [str(second["id"]), str(first["id"]), str(third["id"])]
    assert [e.type for e in events] == ["deal.created", "deal.updated", "deal.created"]
    assert by_lead[str(first["id"])].data["stage"] == "lost"
    assert by_lead[str(first["id"])].delivery_id == f"deal:{first['id']}@{TS + 120}:143"
    assert cursor2 == f"{TS + 120}|deal:{first['id']}@{TS + 120}:143,deal:{third['id']}@{TS + 120}:58141807"
    assert by_lead[str(second["id"])].data["pipeline"] == "rehab"
    lists = [c for c in world.calls("GET") if c.path == "/api/v4/leads"]
    assert lists[0].query == {"filter[updated_at][from]": str(TS), "order[updated_at]": "asc", "limit": "2",
                              "page": "1", "with": "contacts"}
    assert [c.query["page"] for c in lists[:2]] == ["1", "2"]
    assert again == [] and cursor3 == cursor2  # once: the last second's leads are skipped, not repeated
    assert [e.entity.id for e in later if e.entity] == [str(second["id"])] and cursor4 == f"{TS + 130}|" \
        f"deal:{second['id']}@{TS + 130}:58141855"
    assert later[0].data["title"] == "Звонок 2"

    # The webhooks that were lost name the same changes with the same delivery ids.
    sent = [Inbound("crm", "POST", "/hooks/crm", {"token": SECRET},
                    {"content-type": "application/x-www-form-urlencoded"}, w["body"].encode())
            for w in world.emulator.webhooks]
    # The emulator posts each webhook in the background on its own loop: wait for the answers (refusals) to land.
    servers[0].settled(10)
    assert all(isinstance(w["status"], str) for w in world.emulator.webhooks)  # none was delivered
    from_hooks = [e for hook in sent for e in world.connector.parse(hook)]
    assert {e.delivery_id for e in events + later} == {e.delivery_id for e in from_hooks} - {
        f"deal:{first['id']}@{TS + 110}:58141807"}  # the first lead's creation was overtaken by its move


# ---- sandbox and settings ------------------------------------------------------------------------------------

def test_sandbox_connects_both_sides(servers: Any) -> None:
    api, api_served, hook_swap, hooks_served = servers
    receiver = Receiver("/hooks/sandboxed")
    hook_swap.app = receiver
    settings, emulator = Amocrm.sandbox("crm", {"subdomain": "clinic", "token": "${env:AMO_TOKEN}",
                                                "hook_secret": "${env:AMO_HOOK_SECRET}", "fields": FIELDS},
                                        base_url=api_served.url, hook_url=f"{hooks_served.url}/hooks/sandboxed")
    api.app = emulator
    assert "${env" not in json.dumps(settings) and settings["base_url"] == api_served.url
    made = Amocrm("crm", settings, now=lambda: NOW)
    made.pipelines = {"own": Pipeline("own", "crm", "777", {"new": Stage("new", "7771"),
                                                            "won": Stage("won", "142", outcome="won")})}

    async def go() -> Any:
        try:
            created = await made.perform("deal.create", {"pipeline": "own", "stage": "new", "title": "A"}, "k")
            async with httpx.AsyncClient(base_url=api_served.url) as client:
                await client.post("/_emulator/move", json={"lead": int(created.data["id"]), "status_id": 142,
                                                           "pipeline_id": 777})
            return created
        finally:
            await made.aclose()
    created = asyncio.run(go())
    hooks = receiver.wait(2)
    # The sandbox's ?token= is what parse accepts.
    events = sorted((e for hook in hooks for e in made.parse(hook)), key=lambda e: e.type)
    assert [(e.type, e.data["stage"]) for e in events] == [("deal.created", "new"), ("deal.updated", "won")]
    assert events[0].delivery_id == created.events[0].delivery_id
    assert {dict(parse_qsl(h.body.decode()))["account[subdomain]"] for h in hooks} == {"clinic"}


def test_config_schema_wants_secrets_from_the_environment() -> None:
    schema = Draft202012Validator(Amocrm.config_schema)
    good = {"type": "amocrm", "subdomain": "clinic", "token": "${env:AMO_TOKEN}",
            "hook_secret": "${env:AMO_HOOK_SECRET}", "poll_every": "5m", "users": {"admin": 1},
            "fields": {"visit_at": {"id": 1, "type": "date_time"}, "service": 2}}
    assert list(schema.iter_errors(good)) == []
    for bad in ({**good, "token": "eyJhbGciOi"}, {k: v for k, v in good.items() if k != "subdomain"},
                {**good, "hook_secret": "plain"}, {**good, "colour": "red"}):
        assert list(schema.iter_errors(bad)), bad
    assert Amocrm.poll_every == 300.0 and connector().base_url() == "https://apfitness.amocrm.ru"


class TestContract(ConnectorContract):
    type = "amocrm"
    settings = {"users": {"admin": 555}, "subdomain": "apfitness"}
    pipelines = {"sales": Pipeline("sales", "it", "6950551", {"new": Stage("new", "58141807"),
                                                              "won": Stage("won", "142", outcome="won")})}
    written = {"subdomain": "apfitness", "token": "${env:AMO_TOKEN}", "hook_secret": "${env:AMO_HOOK_SECRET}"}
    secret_settings = ("token", "hook_secret")

    def build(self, sandbox: Sandboxes) -> Sandbox:
        box = super().build(sandbox)
        # The pacer keeps 7 a second with 0.15 s to spare for jitter; a loaded test machine delays a request by
        # more, and the emulator then counts 8 in its second. The limit has tests of its own (above).
        box.emulator.faults.limits = False
        return box

    def webhook(self, box: Sandbox, secret: str | None) -> Inbound:
        return inbound(STATUS_HOOK, token=secret)

    def malformed(self, box: Sandbox) -> list[Inbound]:
        secret = self.secret(box)
        return [inbound(body, token=secret) for body in (b"leads[status][0][id]=\xff\xfe", "not a form", "",
                                                         "leads[status][0][id]=abc&leads[status][0][last_modified]=1")]

    async def samples(self, box: Sandbox) -> dict[str, Mapping[str, Any]]:
        deal = await box.created("deal.create", {"pipeline": "sales", "stage": "new", "title": "Анна",
                                                 "contact": "+79161234500"})
        contact = next(e for e in box.events if e.type == "deal.created").data["contact"]
        return {"deal.create": {"pipeline": "sales", "stage": "new", "title": "Анна", "amount": 3500,
                                "responsible": "admin", "fields": {"phone": "+79161234567"}},
                "deal.move": {"deal": deal, "stage": "won"}, "deal.update": {"deal": deal, "fields": {"amount": 4000}},
                "task.create": {"title": "Позвонить", "assignee": "admin", "due": "1d", "deal": deal},
                "deal.assign": {"deal": deal, "to": "admin"},
                "contact.update": {"contact": contact, "fields": {"email": "anna@example.com"}},
                "note.add": {"deal": deal, "text": "Клиент просил перезвонить"}}

    async def change(self, box: Sandbox) -> None:
        async with httpx.AsyncClient(trust_env=False) as web:
            answer = await web.post(f"{box.url}/_emulator/lead", json={"name": "Из формы", "price": 900})
            assert answer.status_code == 200, answer.text
