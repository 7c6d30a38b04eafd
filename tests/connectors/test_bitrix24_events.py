"""The bitrix24 connector's inbound events, catch-up poll, sandbox, and its emulator against real captured answers."""
from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode

import pytest

from automator.connector import Inbound
from automator.emulator import serve
from automator.errors import InboundRejected
from automator_connectors.bitrix24 import Bitrix24
from automator_connectors.bitrix24.emulator import Bitrix24Emulator
from test_bitrix24 import CODE, HTTP, PIPELINES, TOKEN, Sink, emu, run, server, sink, wait_hooks  # noqa: F401

# The captured outgoing-webhook body (reference §1.6).
CAPTURED = ("event=ONCRMDEALUPDATE&event_handler_id=975&data%5BFIELDS%5D%5BID%5D=759&ts=1736405807"
            "&auth%5Bdomain%5D=some-domain.bitrix24.com&auth%5Bclient_endpoint%5D=https%3A%2F%2Fsome-domain.bitrix24"
            ".com%2Frest%2F&auth%5Bserver_endpoint%5D=https%3A%2F%2Foauth.bitrix.info%2Frest%2F"
            "&auth%5Bmember_id%5D=d897063e1ce7c5eb9f04b9751eef5915"
            "&auth%5Bapplication_token%5D=jvh9y1ulvt2m6k5or90v9mg8nn32ozas").encode()
# fast_bitrix24 tests/real_responses/crm_contact_add_batch.py (a batch whose sub-calls all succeeded).
REAL_BATCH_OK = {"result": {"result": {"order0000000000": 58943}, "result_error": [], "result_total": [],
                            "result_next": [],
                            "result_time": {"order0000000000": {
                                "start": 1729696689.155923, "finish": 1729696689.250884,
                                "duration": 0.09496116638183594, "processing": 0.09366798400878906,
                                "date_start": "2024-10-23T18:18:09+03:00", "date_finish": "2024-10-23T18:18:09+03:00",
                                "operating_reset_at": 1729697289, "operating": 0}}},
                 "time": {"start": 1729696689.134943, "finish": 1729696689.251536, "duration": 0.1165928840637207,
                          "processing": 0.09575891494750977, "date_start": "2024-10-23T18:18:09+03:00",
                          "date_finish": "2024-10-23T18:18:09+03:00", "operating_reset_at": 1729697289,
                          "operating": 0}}
# fast_bitrix24 tests/real_responses/crm_get_batch_mix_success_and_errors.py: numeric keys → errors as a list.
REAL_BATCH_MIX_ERRORS = [{"error": "", "error_description": "ID is not defined or invalid."},
                         {"error": "", "error_description": "Not found"}]
# fast_bitrix24 tests/real_responses/crm_dealcategory_stage_list.py (first rows).
REAL_STAGES = [{"NAME": "Сбор документов", "SORT": 10, "STATUS_ID": "C2:NEW"},
               {"NAME": "Ожидание оплаты", "SORT": 20, "STATUS_ID": "C2:PREPARATION"}]
# crm.deal.get of the reference (§1.5), the keys and value kinds of a real deal.
REAL_DEAL = {"ID": "410", "TITLE": "New Deal #1", "TYPE_ID": "COMPLEX", "STAGE_ID": "PREPARATION",
             "PROBABILITY": "99", "CURRENCY_ID": "EUR", "OPPORTUNITY": "1000000.00", "IS_MANUAL_OPPORTUNITY": "Y",
             "TAX_VALUE": "0.00", "LEAD_ID": None, "COMPANY_ID": "9", "CONTACT_ID": "84", "QUOTE_ID": None,
             "BEGINDATE": "2024-08-30T02:00:00+02:00", "CLOSEDATE": "2024-09-09T02:00:00+02:00",
             "ASSIGNED_BY_ID": "1", "CREATED_BY_ID": "1", "MODIFY_BY_ID": "1",
             "DATE_CREATE": "2024-08-30T14:29:00+02:00", "DATE_MODIFY": "2024-08-30T14:29:00+02:00",
             "OPENED": "Y", "CLOSED": "N", "COMMENTS": "[B]Example comment[/B]", "ADDITIONAL_INFO": "…",
             "LOCATION_ID": None, "CATEGORY_ID": "0", "STAGE_SEMANTIC_ID": "P", "IS_NEW": "N", "IS_RECURRING": "N",
             "IS_RETURN_CUSTOMER": "N", "IS_REPEATED_APPROACH": "N", "SOURCE_ID": "CALLBACK",
             "SOURCE_DESCRIPTION": "…", "ORIGINATOR_ID": None, "ORIGIN_ID": None, "MOVED_BY_ID": "1",
             "MOVED_TIME": "2024-08-30T14:29:00+02:00", "LAST_ACTIVITY_TIME": "2024-08-30T14:29:00+02:00",
             "UTM_SOURCE": "google", "UTM_MEDIUM": "CPC", "UTM_CAMPAIGN": None, "UTM_CONTENT": None, "UTM_TERM": None,
             "LAST_ACTIVITY_BY": "1"}

# crm.contact.get of the contract (part 2 §2.1), the keys and value kinds of a real contact.
REAL_CONTACT = {"ID": "43", "POST": "Administrator", "COMMENTS": "постоянный клиент", "HONORIFIC": "HNR_RU_1",
                "NAME": "John", "SECOND_NAME": "Doe", "LAST_NAME": "Smith", "PHOTO": None, "LEAD_ID": None,
                "TYPE_ID": "PARTNER", "SOURCE_ID": "WEB", "SOURCE_DESCRIPTION": "форма /promo", "COMPANY_ID": "12",
                "BIRTHDATE": "2001-11-11T02:00:00+02:00", "EXPORT": "N", "HAS_PHONE": "Y", "HAS_EMAIL": "Y",
                "HAS_IMOL": "N", "DATE_CREATE": "2024-08-15T10:38:21+02:00", "DATE_MODIFY": "2024-08-15T10:38:21+02:00",
                "ASSIGNED_BY_ID": "6", "CREATED_BY_ID": "1", "MODIFY_BY_ID": "1", "OPENED": "Y",
                "ORIGINATOR_ID": None, "ORIGIN_ID": None, "ORIGIN_VERSION": None, "FACE_ID": None,
                "LAST_ACTIVITY_TIME": "2024-08-15T10:38:21+02:00", "ADDRESS": None, "UTM_SOURCE": "google",
                "UTM_MEDIUM": "CPC", "UTM_CAMPAIGN": "summer_sale", "UTM_CONTENT": "header_banner",
                "UTM_TERM": "discount", "LAST_ACTIVITY_BY": "1",
                "PHONE": [{"ID": "156", "VALUE_TYPE": "WORK", "VALUE": "+13333333555", "TYPE_ID": "PHONE"},
                          {"ID": "157", "VALUE_TYPE": "HOME", "VALUE": "8 916 123-45-67", "TYPE_ID": "PHONE"}],
                "EMAIL": [{"ID": "158", "VALUE_TYPE": "MAILING", "VALUE": "johnsmith@example.mailing",
                           "TYPE_ID": "EMAIL"}]}
# tasks.task.get of the contract (part 2 §2.9): a completed task bound to a deal and a contact.
REAL_TASK = {"id": "8017", "title": "Перезвонить", "status": "5", "responsibleId": "547", "createdBy": "503",
             "deadline": "2026-03-04T19:00:00+03:00", "closedDate": "2026-03-02T10:55:00+03:00", "closedBy": "547",
             "ufCrmTask": ["D_1723", "C_627"]}


def inbound(body: bytes, method: str = "POST") -> Inbound:
    return Inbound(connector="crm", method=method, path="/hooks/crm", query={},
                   headers={"content-type": "application/x-www-form-urlencoded"}, body=body,
                   received_at=datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc))


def control(emu: Bitrix24Emulator, what: str, body: dict[str, Any]) -> Any:
    answer = HTTP.post(f"{emu.url}/_emulator/{what}", json=body)  # type: ignore[attr-defined]
    assert answer.status_code == 200, answer.text
    return answer.json()


def body_of(hook: tuple[str, dict[str, str], bytes]) -> bytes:
    return hook[2]


# ---- inbound webhooks ------------------------------------------------------------------------------------

def test_webhooks_the_emulator_sends_become_deal_events(emu: Bitrix24Emulator, sink: Sink) -> None:
    deal_id = control(emu, "manager/deal", {"fields": {"TITLE": "Иванова", "CATEGORY_ID": 4, "OPPORTUNITY": 9000,
                                                       "CONTACT_ID": 75, "UF_CRM_SERVICE": "ЛФК"}})["id"]
    emu.skew += 2  # a later second, as a manager moving it a bit later
    control(emu, "manager/move", {"id": deal_id, "stage_id": "C4:UC_WARM", "by": 6})
    added, moved = wait_hooks(sink, 2)
    assert added[0] == "POST" and added[1]["content-type"] == "application/x-www-form-urlencoded"

    async def both(c: Bitrix24) -> Any:
        return await c.parse(inbound(body_of(added))), await c.parse(inbound(body_of(moved)))
    [created], [updated] = run(emu, both, fields={"service": "UF_CRM_SERVICE"})
    deal = emu.state()["deals"][0]
    assert created.type == "deal.created" and created.entity.id == str(deal_id)
    assert created.delivery_id == f"deal:{deal_id}@{deal['DATE_CREATE']}"
    assert updated.type == "deal.updated" and updated.delivery_id == f"deal:{deal_id}@{deal['DATE_MODIFY']}"
    assert updated.data["pipeline"] == "rehabilitation" and updated.data["stage"] == "warmed_up"
    assert {k: updated.data[k] for k in ("pipeline_id", "stage_id", "title", "contact", "amount", "service",
                                         "outcome", "closed")} == {
        "pipeline_id": "4", "stage_id": "C4:UC_WARM", "title": "Иванова", "contact": "75", "amount": "9000.00",
        "service": "ЛФК", "outcome": "open", "closed": False}
    assert updated.at == datetime.fromisoformat(deal["DATE_MODIFY"])
    # One request a webhook: the deal and its contact (75, not in this portal: no contact event) in one batch.
    assert [c.path.rsplit("/", 1)[-1] for c in emu.calls if c.path.startswith("/rest/")] == ["batch"] * 2


def test_lead_delete_and_pipeline_move_events(emu: Bitrix24Emulator, sink: Sink) -> None:
    control(emu, "manager/lead", {"fields": {"TITLE": "Заявка с сайта", "NAME": "Анна", "SOURCE_ID": "WEB",
                                             "SOURCE_DESCRIPTION": "форма /promo", "UTM_SOURCE": "vk",
                                             "UTM_CAMPAIGN": "spring", "MODIFY_BY_ID": "99",
                                             "PHONE": [{"VALUE": "8 916 123-45-67", "VALUE_TYPE": "MOBILE"}]}})
    deal_id = control(emu, "manager/deal", {"fields": {"TITLE": "x"}})["id"]
    control(emu, "manager/move", {"id": deal_id, "stage_id": "C4:NEW", "category_id": 4})
    control(emu, "manager/delete", {"id": deal_id})
    hooks = wait_hooks(sink, 5)
    names = [dict(p.split("=", 1) for p in h[2].decode().split("&"))["event"] for h in hooks]
    assert sorted(names) == sorted(["ONCRMLEADADD", "ONCRMDEALADD", "ONCRMDEALUPDATE", "ONCRMDEALMOVETOCATEGORY",
                                    "ONCRMDEALDELETE"])
    by_name = dict(zip(names, hooks))

    async def all_of(c: Bitrix24) -> Any:
        return {name: await c.parse(inbound(body_of(hook))) for name, hook in by_name.items()}
    parsed = run(emu, all_of)
    [lead] = parsed["ONCRMLEADADD"]
    assert lead.type == "lead.created" and lead.entity is None
    assert (lead.data["name"], lead.data["phone"], lead.data["title"]) == ("Анна", "+79161234567", "Заявка с сайта")
    assert lead.delivery_id.startswith("lead:")
    # Where it came from, as the portal keeps it on the lead; who changed it last is the portal's to say (the
    # manager's MODIFY_BY_ID is not a field a form sets).
    assert {k: lead.data.get(k) for k in ("lead_source", "source_description", "utm_source", "utm_campaign",
                                          "utm_medium", "modified_by")} == {
        "lead_source": "WEB", "source_description": "форма /promo", "utm_source": "vk", "utm_campaign": "spring",
        "utm_medium": None, "modified_by": emu.portal.user_id}
    [deleted] = parsed["ONCRMDEALDELETE"]
    assert (deleted.type, deleted.delivery_id) == ("deal.deleted", f"deal:{deal_id}@deleted")
    assert parsed["ONCRMDEALADD"] == parsed["ONCRMDEALUPDATE"] == parsed["ONCRMDEALMOVETOCATEGORY"] == []  # gone


def test_forged_missing_and_malformed_webhooks_are_refused(emu: Bitrix24Emulator) -> None:
    forged = CAPTURED.replace(TOKEN.encode(), b"x" * len(TOKEN))
    cases = [(forged, 401, "auth"), (CAPTURED.split(b"&auth%5Bapplication_token%5D")[0], 401, "auth"),
             (b"", 401, "auth"), (b"\xff\xfe", 400, "malformed"),
             (urlencode({"auth[application_token]": TOKEN, "data[FIELDS][ID]": "1"}).encode(), 400, "malformed"),
             (urlencode({"event": "ONCRMDEALADD", "data[FIELDS][ID]": "1 or 1", "auth[application_token]": TOKEN}
                        ).encode(), 400, "malformed"),
             (b"event=ONCRMDEALADD&&&=&auth%5Bapplication_token%5D=" + TOKEN.encode(), 400, "malformed")]

    async def each(c: Bitrix24) -> list[tuple[int, str]]:
        out = []
        for body, _, _ in cases:
            with pytest.raises(InboundRejected) as refused:
                await c.parse(inbound(body))
            out.append((refused.value.status, refused.value.word))
        with pytest.raises(InboundRejected) as method:
            await c.parse(inbound(CAPTURED, method="GET"))
        out.append((method.value.status, method.value.word))
        return out
    assert run(emu, each) == [(s, w) for _, s, w in cases] + [(405, "method")]
    assert emu.calls == []  # nothing was fetched for a refused webhook


def test_the_captured_body_domain_check_and_events_not_handled(emu: Bitrix24Emulator) -> None:
    async def go(c: Bitrix24) -> Any:
        return await c.parse(inbound(CAPTURED))
    assert run(emu, go) == []  # deal 759 is not in this portal: nothing to report
    [call] = [c.json() for c in emu.calls]
    assert call["cmd"] == {"deal": "crm.deal.get?id=759",
                           "contact": "crm.contact.get?id=%24result%5Bdeal%5D%5BCONTACT_ID%5D"}
    with pytest.raises(InboundRejected) as other:
        run(emu, go, domain="clinic.bitrix24.ru")
    assert other.value.status == 401
    contact = urlencode({"event": "ONCRMCONTACTADD", "data[FIELDS][ID]": "5", "auth[application_token]": TOKEN})
    assert run(emu, lambda c: c.parse(inbound(contact.encode()))) == []


def test_a_webhook_whose_deal_cannot_be_read_is_refused_with_503(emu: Bitrix24Emulator) -> None:
    emu.faults.update({"storm": {"status": 503, "count": 1}})
    with pytest.raises(InboundRejected) as refused:
        run(emu, lambda c: c.parse(inbound(CAPTURED)))
    assert (refused.value.status, refused.value.word) == (503, "unavailable")


# ---- catch-up poll ---------------------------------------------------------------------------------------

def test_poll_returns_changes_no_webhook_brought_once_with_the_webhooks_ids(emu: Bitrix24Emulator,
                                                                             sink: Sink) -> None:
    first = control(emu, "manager/deal", {"fields": {"TITLE": "before", "CATEGORY_ID": 4}})["id"]
    [hook] = wait_hooks(sink, 1)
    _, cursor = run(emu, lambda c: c.poll(None))
    assert cursor == f"{emu.state()['deals'][0]['DATE_MODIFY']}|{first}"
    emu.skew += 2
    emu.faults.extra["silent"] = True  # the daemon was down: these webhooks are lost
    control(emu, "manager/move", {"id": first, "stage_id": "C4:PREPARATION"})
    second = control(emu, "manager/deal", {"fields": {"TITLE": "while away", "CATEGORY_ID": 4}})["id"]
    emu.skew += 2
    control(emu, "manager/move", {"id": second, "stage_id": "C4:UC_WARM"})
    assert len(sink.got) == 1

    async def go(c: Bitrix24) -> Any:
        return await c.poll(cursor)
    events, moved_on = run(emu, go)
    deals = {d["ID"]: d for d in emu.state()["deals"]}
    assert [(e.type, e.entity.id, e.delivery_id) for e in events] == [
        ("deal.updated", str(first), f"deal:{first}@{deals[str(first)]['DATE_MODIFY']}"),
        ("deal.created", str(second), f"deal:{second}@{deals[str(second)]['DATE_CREATE']}"),
        ("deal.updated", str(second), f"deal:{second}@{deals[str(second)]['DATE_MODIFY']}")]
    assert events[0].data["stage"] == "thinking" and events[2].data["stage"] == "warmed_up"
    assert moved_on == f"{deals[str(second)]['DATE_MODIFY']}|{second}"
    assert run(emu, lambda c: c.poll(moved_on)) == ([], moved_on)  # once
    # the webhook that did arrive and the poll from before it name that change alike
    [from_hook] = run(emu, lambda c: c.parse(inbound(hook[2])))
    earlier, _ = run(emu, lambda c: c.poll("2000-01-01T00:00:00+03:00"))
    assert from_hook.delivery_id in {e.delivery_id for e in earlier}


def test_poll_pages_through_many_changes_in_one_batch(emu: Bitrix24Emulator) -> None:
    emu.faults.extra["silent"] = True
    for n in range(120):
        emu.portal.deal_add({"fields": {"TITLE": f"deal {n}"}})
    events, cursor = run(emu, lambda c: c.poll("2000-01-01T00:00:00+03:00"))
    assert [e.data["title"] for e in events] == [f"deal {n}" for n in range(120)]
    assert all(e.type == "deal.created" and e.data["pipeline"] == "first_sales" for e in events)
    rest = [c for c in emu.calls if c.path.startswith("/rest/")]
    assert [c.path.rsplit("/", 1)[-1] for c in rest] == ["crm.deal.list", "batch"]
    first = rest[0].json()
    assert first == {"filter": {">=DATE_MODIFY": "2000-01-01T00:00:00+03:00"},
                     "order": {"DATE_MODIFY": "ASC", "ID": "ASC"}, "select": ["*", "UF_*"], "start": 0}
    assert sorted(rest[1].json()["cmd"]) == ["p100", "p50"]
    assert cursor.count(",") == 119  # all made within the same second(s): each named once
    assert run(emu, lambda c: c.poll(cursor))[0] == []


# ---- the emulator against real captured answers ----------------------------------------------------------

def _shape(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(v) for v in value[:1]]
    return "num" if isinstance(value, (int, float)) and not isinstance(value, bool) else type(value).__name__


def test_batch_answers_have_the_real_shape(emu: Bitrix24Emulator) -> None:
    base = f"{emu.url}/rest/1/{CODE}"  # type: ignore[attr-defined]
    ok = HTTP.post(f"{base}/batch", json={"halt": 0, "cmd": {
        "order0000000000": "crm.contact.add?fields[NAME]=Анна"}}).json()
    assert _shape(ok) == _shape(REAL_BATCH_OK)
    emu.faults.extra["silent"] = True
    emu.portal.deal_add({"fields": {"TITLE": "x"}})
    mixed = HTTP.post(f"{base}/batch", json={"cmd": ["crm.deal.get?id=0", "crm.deal.get?id=391",
                                                      "crm.deal.get?id=999"]}).json()["result"]
    assert mixed["result_error"] == REAL_BATCH_MIX_ERRORS  # numeric keys: a bare list, as captured
    assert list(mixed["result"]) == ["1"] and mixed["result_total"] == [] and mixed["result_next"] == []
    nested = HTTP.post(f"{base}/batch", json={"cmd": {"a": "batch?cmd[b]=crm.deal.list"}}).json()["result"]
    assert nested["result_error"]["a"]["error"] == "ERROR_BATCH_METHOD_NOT_ALLOWED"
    many = HTTP.post(f"{base}/batch", json={"cmd": {str(n): "crm.deal.list" for n in range(51)}})
    assert (many.status_code, many.json()["error"]) == (400, "ERROR_BATCH_LENGTH_EXCEEDED")


def test_deal_stage_and_list_answers_have_the_real_shape(emu: Bitrix24Emulator) -> None:
    base = f"{emu.url}/rest/1/{CODE}"  # type: ignore[attr-defined]
    emu.add_pipeline(2, "Банкротство", [("C2:NEW", "Сбор документов"), ("C2:PREPARATION", "Ожидание оплаты")])
    stages = HTTP.post(f"{base}/crm.dealcategory.stage.list", json={"id": 2}).json()["result"]
    assert stages[:2] == REAL_STAGES
    deal_id = HTTP.post(f"{base}/crm.deal.add", json={"fields": {"TITLE": "x", "CATEGORY_ID": 2,
                                                                  "OPPORTUNITY": 1000000}}).json()["result"]
    assert isinstance(deal_id, int)
    deal = HTTP.post(f"{base}/crm.deal.get", json={"id": deal_id}).json()["result"]
    assert set(REAL_DEAL) <= set(deal)
    for key, real in REAL_DEAL.items():
        if real is not None and deal[key] is not None:
            assert type(deal[key]) is type(real), key
    assert deal["OPPORTUNITY"] == "1000000.00" and datetime.fromisoformat(deal["DATE_CREATE"]).utcoffset()
    missing = HTTP.post(f"{base}/crm.deal.get", json={"id": 999})
    assert (missing.status_code, missing.json()) == (400, {"error": "", "error_description": "Not found"})
    emu.faults.extra["silent"] = True
    for n in range(60):
        emu.portal.deal_add({"fields": {"TITLE": f"d{n}"}})
    page = HTTP.post(f"{base}/crm.deal.list", json={"order": {"ID": "DESC"}, "select": ["ID"]}).json()
    assert (len(page["result"]), page["total"], page["next"]) == (50, 61, 50)
    assert set(page["time"]) == set(REAL_BATCH_OK["time"])
    last = HTTP.post(f"{base}/crm.deal.list", json={"start": 50, "select": ["ID"]}).json()
    assert len(last["result"]) == 11 and "next" not in last
    quick = HTTP.post(f"{base}/crm.deal.list", json={"start": -1, "filter": {"@ID": [deal_id]}}).json()
    assert "total" not in quick and [d["ID"] for d in quick["result"]] == [str(deal_id)]
    wrong = HTTP.post(f"{emu.url}/rest/1/other/crm.deal.list")  # type: ignore[attr-defined]
    assert (wrong.status_code, wrong.json()["error"]) == (401, "NO_AUTH_FOUND")
    unknown = HTTP.post(f"{base}/crm.deal.nothing")
    assert unknown.status_code == 404 and unknown.json() == {"error": "ERROR_METHOD_NOT_FOUND",
                                                             "error_description": "Method not found!"}
    categories = HTTP.post(f"{base}/crm.category.list", json={"entityTypeId": 2}).json()["result"]["categories"]
    assert {c["id"] for c in categories} >= {0, 2}
    statuses = HTTP.post(f"{base}/crm.status.list", json={"filter": {"ENTITY_ID": "DEAL_STAGE_2"}}).json()
    assert [s["STATUS_ID"] for s in statuses["result"]][:2] == ["C2:NEW", "C2:PREPARATION"]


# ---- sandbox ---------------------------------------------------------------------------------------------

def test_sandbox_talks_to_its_emulator_and_its_webhooks_pass_parse() -> None:
    receiver = Sink()
    with serve(receiver) as daemon:
        _sandbox(receiver, f"{daemon.url}/hooks/crm")


def _sandbox(receiver: Sink, hook_url: str) -> None:
    settings, emulator = Bitrix24.sandbox("crm", {"webhook_url": "${env:B24_WEBHOOK_URL}",
                                                  "application_token": "${env:B24_APP_TOKEN}", "plan": "enterprise",
                                                  "fields": {"service": "UF_CRM_SERVICE"}},
                                          base_url="http://placeholder/_sandbox/crm", hook_url=hook_url)
    assert settings["webhook_url"] == "http://placeholder/_sandbox/crm/rest/1/sandbox/"
    assert settings["plan"] == "enterprise" and settings["fields"] == {"service": "UF_CRM_SERVICE"}
    assert isinstance(emulator, Bitrix24Emulator) and emulator.bucket_size == 250
    with serve(emulator) as served:
        settings["webhook_url"] = f"{served.url}/rest/1/sandbox/"

        async def main() -> Any:
            c = Bitrix24("crm", settings)
            c.pipelines = PIPELINES
            try:
                made = await c.perform("deal.create", {"pipeline": "rehabilitation", "stage": "new", "title": "S",
                                                       "fields": {"service": "ЛФК"}}, "k")
                await asyncio.to_thread(wait_hooks, receiver, 1)
                [parsed] = await c.parse(inbound(receiver.got[0][2]))
                return made, parsed
            finally:
                await c.aclose()
        made, parsed = asyncio.run(main())
    assert parsed.type == "deal.created" and parsed.entity.id == made.data["id"]
    assert (parsed.data["pipeline"], parsed.data["stage"], parsed.data["service"]) == ("rehabilitation", "new", "ЛФК")
    assert emulator.state()["categories"][-1]["id"] == 4  # learned from the stage it was sent


def test_the_webhook_of_our_own_change_carries_what_the_action_reported(emu: Bitrix24Emulator, sink: Sink) -> None:
    """The daemon knows a webhook as the echo of its effect when it holds every field the effect reported."""
    from automator.model import same

    async def go(c: Bitrix24) -> Any:
        seen = [0]

        async def then_hook(result: Any) -> Any:  # read the webhook before the next change, as the daemon would
            seen[0] += 1  # each of these changes sends exactly one webhook
            hook = wait_hooks(sink, seen[0])[seen[0] - 1]
            emu.skew += 2
            return result, (await c.parse(inbound(hook[2])))[0]
        made = await then_hook(await c.perform("deal.create", {
            "pipeline": "rehabilitation", "stage": "new", "title": "Эхо", "contact": "75", "responsible": "admin",
            "amount": "15000", "fields": {"service": "ЛФК", "COMMENTS": "из YCLIENTS"}}, "k1"))
        deal_id = made[0].data["id"]
        moved = await then_hook(await c.perform("deal.move", {
            "deal": deal_id, "pipeline": "rehabilitation", "stage": "booked",
            "fields": {"visit_at": "2026-03-02T18:00:00+03:00", "service": "Массаж"}}, "k2"))
        updated = await then_hook(await c.perform("deal.update", {
            "deal": deal_id, "fields": {"amount": 3500, "responsible": "7"}}, "k3"))
        pairs = [made, moved, updated]
        return [r for r, _ in pairs], [w for _, w in pairs]
    results, parsed = run(emu, go)
    for result, webhook in zip(results, parsed):
        [reported] = result.events
        missing = {k: v for k, v in reported.data.items() if not same(webhook.data.get(k), v)}
        assert missing == {}, (reported.type, missing, webhook.data)


def test_first_poll_of_an_empty_portal_starts_from_now(emu: Bitrix24Emulator) -> None:
    events, cursor = run(emu, lambda c: c.poll(None))
    assert events == [] and abs((datetime.fromisoformat(cursor) - datetime.now(timezone.utc)).total_seconds()) < 5


def test_a_stage_move_says_which_manager_made_it(emu: Bitrix24Emulator, sink: Sink) -> None:
    deal_id = control(emu, "manager/deal", {"fields": {"TITLE": "Иванова", "STAGE_ID": "NEW", "UTM_SOURCE": "vk"}})["id"]
    emu.skew += 2  # the move a second later: its own DATE_MODIFY, its own delivery id
    control(emu, "manager/move", {"id": deal_id, "stage_id": "PREPARATION", "by": 17})
    hooks = wait_hooks(sink, 2)

    async def both(c: Bitrix24) -> Any:
        return [event for hook in hooks for event in await c.parse(inbound(body_of(hook)))]
    moved = [e for e in run(emu, both) if e.data.get("stage_id") == "PREPARATION"]
    assert moved and {(e.data["modified_by"], e.data["utm_source"]) for e in moved} == {("17", "vk")}
