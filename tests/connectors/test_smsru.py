"""The SMS.ru connector against its emulator over real HTTP: sends, codes, partial failures, cost, sandbox."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from collections.abc import Mapping
from typing import Any

import httpx
import jsonschema
import pytest

from automator.connector_contract import ConnectorContract, Sandbox, Swap
from automator.errors import Rejected, Retryable, Uncertain
from automator_connectors.smsru import Smsru, api
from automator_connectors.smsru.emulator import SANDBOX_API_ID, SmsruEmulator
from connector_support import Loop, form_of, get, post, run, send

API_ID = "test-api-id"

# Samples quoted by the reference (§4.1, from sms.ru/api/send and /api/cost).
SEND_SAMPLE = {"status": "OK", "status_code": 100,
               "sms": {"79255070602": {"status": "OK", "status_code": 100, "sms_id": "000000-10000000"},
                       "74993221627": {"status": "ERROR", "status_code": 207,
                                       "status_text": "На этот номер (или один из номеров) нельзя отправлять "
                                                      "сообщения, либо указано более 100 номеров в списке получателей"}},
               "balance": 4122.56}
AUTH_SAMPLE = {"status": "ERROR", "status_code": 200, "status_text": "Неправильный api_id"}
COST_SAMPLE = {"status": "OK", "status_code": 100,
               "sms": {"79255070602": {"status": "OK", "status_code": 100, "cost": 0.00, "sms": 1}},
               "total_cost": 0.00, "total_sms": 1}

pytestmark = pytest.mark.usefixtures("loop")


@pytest.fixture
def emu(served: tuple[Swap, str], clock: list[float]) -> SmsruEmulator:
    emulator = SmsruEmulator(api_id=API_ID, balance=100.0, senders=["Salon"], now=lambda: clock[0])
    served[0].app = emulator
    return emulator


def connector(url: str, **extra: Any) -> Smsru:
    made = Loop.connector(lambda settings: Smsru("sms", {"api_id": API_ID, "base_url": url, "sender": "Salon", **settings}),
                          url, **extra)
    assert isinstance(made, Smsru)
    return made


def shape(value: Any) -> Any:
    """Keys and value types, recursively: what a captured sample and the emulator must share."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    return "number" if isinstance(value, (int, float)) and not isinstance(value, bool) else type(value).__name__


# ---- sending -----------------------------------------------------------------------------------

def test_send_posts_the_documented_form_and_records_the_message(emu: SmsruEmulator, url: str) -> None:
    text = "Напоминаем: завтра в 10:00 запись к мастеру Анне"
    data = send(connector(url), "8 916 123-45-67", text)
    call = emu.calls[-1]
    assert (call.method, call.path) == ("POST", "/sms/send")
    assert call.headers["content-type"] == "application/x-www-form-urlencoded"
    assert form_of(emu) == {"api_id": API_ID, "to": "79161234567", "msg": text, "json": "1", "from": "Salon"}
    sms_id = emu.messages[0]["sms_id"]
    assert data == {"gateway": "smsru", "test": False, "to": ["+79161234567"], "encoding": "UCS-2",
                    "length": len(text), "units": len(text), "parts": 1,
                    "messages": [{"phone": "+79161234567", "status": "sent", "code": 100, "sms_id": sms_id}],
                    "sent": 1, "duplicates": 0, "failed": 0, "balance": 96.0}
    state = emu.state()
    assert state["balance"] == 96.0
    [message] = state["messages"]["79161234567"]
    assert (message["text"], message["parts"], message["sender"], message["status"]) == (text, 1, "Salon", "sent")


def test_long_latin_text_is_billed_per_part(emu: SmsruEmulator, url: str) -> None:
    data = send(connector(url), "+7 (916) 123-45-67", "x" * 307)
    assert (data["encoding"], data["parts"], data["balance"]) == ("GSM-7", 3, 88.0)
    assert emu.messages[0]["parts"] == 3


def test_without_sender_no_from_is_sent(emu: SmsruEmulator, url: str) -> None:
    send(Smsru("sms", {"api_id": API_ID, "base_url": url}), "9161234567", "Hi")
    assert "from" not in form_of(emu)


def test_test_mode_is_answered_like_a_send_but_not_sent_or_charged(emu: SmsruEmulator, url: str) -> None:
    data = send(connector(url, test=True), "89161234567", "Проверка")
    assert form_of(emu)["test"] == "1"
    assert data["test"] is True and data["sent"] == 1 and data["balance"] == 100.0
    assert emu.messages[0]["status"] == "test" and emu.state()["balance"] == 100.0


def test_several_numbers_with_one_failing_is_a_partial_success(emu: SmsruEmulator, url: str) -> None:
    emu.faults.extra["numbers"] = {"79031234567": 207}
    data = send(connector(url), "+79161234567, 8 903 123-45-67", "Акция")
    assert form_of(emu)["to"] == "79161234567,79031234567"
    assert (data["sent"], data["failed"]) == (1, 1)
    failed = data["messages"][1]
    assert (failed["phone"], failed["status"], failed["code"]) == ("+79031234567", "failed", 207)
    assert "нельзя отправлять" in failed["error"]
    assert list(emu.state()["messages"]) == ["79161234567"]


def test_every_number_refused_is_rejected(emu: SmsruEmulator, url: str) -> None:
    emu.stop_list = {"79161234567"}
    emu.no_route = {"79031234567"}
    with pytest.raises(Rejected, match="209.*207|207.*209"):
        send(connector(url), "89161234567, 89031234567", "Акция")
    assert emu.messages == []


def test_every_number_failing_with_one_worth_retrying_retries(emu: SmsruEmulator, url: str) -> None:
    emu.faults.extra["numbers"] = {"79161234567": 220, "79031234567": 207}
    with pytest.raises(Retryable):
        send(connector(url), "89161234567, 89031234567", "Акция")


# ---- duplicates and flood codes ----------------------------------------------------------------

def test_the_same_text_within_a_minute_is_231_and_counts_as_sent(emu: SmsruEmulator, url: str,
                                                                 clock: list[float]) -> None:
    send(connector(url), "89161234567", "Ждём вас")
    clock[0] += 30
    again = send(connector(url), "89161234567", "Ждём вас")
    assert (again["sent"], again["duplicates"], again["messages"][0]["code"]) == (0, 1, 231)
    assert len(emu.messages) == 1
    # Past the minute SMS.ru sends it again: why the connector does not claim to deduplicate.
    clock[0] += 31
    assert send(connector(url), "89161234567", "Ждём вас")["sent"] == 1
    assert len(emu.messages) == 2 and Smsru.deduplicates is False


def test_the_same_text_too_often_in_a_day_is_232_and_counts_as_sent(emu: SmsruEmulator, url: str,
                                                                    clock: list[float]) -> None:
    emu.identical_per_day = 1
    send(connector(url), "89161234567", "Ждём вас")
    clock[0] += 3600
    data = send(connector(url), "89161234567", "Ждём вас")
    assert (data["duplicates"], data["messages"][0]["code"]) == (1, 232)


def test_a_number_over_its_daily_limit_is_230_retried_after_midnight(emu: SmsruEmulator, url: str,
                                                                    clock: list[float]) -> None:
    emu.per_number_per_day = 1
    send(connector(url), "89161234567", "Первое")
    with pytest.raises(Retryable, match="230") as caught:
        send(connector(url), "89161234567", "Второе")
    # Retried after the next Moscow midnight, however near it is (the exact figure: the test below).
    assert caught.value.retry_after is not None and api.MIDNIGHT_MARGIN < caught.value.retry_after < 86400 + 120


def test_the_account_over_its_daily_limit_is_206_retried_after_midnight(emu: SmsruEmulator, url: str) -> None:
    emu.daily_limit = 0
    with pytest.raises(Retryable, match="206") as caught:
        send(connector(url), "89161234567", "Привет")
    assert caught.value.retry_after is not None and caught.value.retry_after > 60


def test_seconds_to_midnight_is_moscow_midnight() -> None:
    # 20:59:00 UTC is 23:59 in Moscow: one minute to midnight, plus the margin.
    assert api.seconds_to_midnight(datetime(2027, 1, 15, 20, 59, tzinfo=timezone.utc)) == 60 + api.MIDNIGHT_MARGIN


# ---- request-level codes -----------------------------------------------------------------------

def test_wrong_api_id_is_rejected_with_the_documented_body(emu: SmsruEmulator, url: str) -> None:
    with pytest.raises(Rejected, match="200"):
        send(Smsru("sms", {"api_id": "wrong", "base_url": url}), "89161234567", "Привет")
    body = post(f"{url}/sms/send", data={"api_id": "wrong", "to": "79161234567", "msg": "x", "json": "1"})
    assert (body.status_code, body.json()) == (200, AUTH_SAMPLE)


def test_no_money_is_201(emu: SmsruEmulator, url: str) -> None:
    emu.balance = 1.0
    with pytest.raises(Rejected, match="201"):
        send(connector(url), "89161234567", "Привет")
    assert emu.messages == []


def test_unapproved_sender_is_204(emu: SmsruEmulator, url: str) -> None:
    with pytest.raises(Rejected, match="204"):
        send(Smsru("sms", {"api_id": API_ID, "base_url": url, "sender": "Other"}), "89161234567", "Привет")


@pytest.mark.parametrize(("code", "error"), [
    *((c, Rejected) for c in (200, 201, 202, 203, 204, 205, 207, 208, 209, 210, 211, 212, 213, 233, 300, 301, 302)),
    (220, Retryable), (500, Retryable), (206, Retryable), (230, Retryable)])
def test_each_request_level_code_is_classified(emu: SmsruEmulator, url: str, code: int,
                                               error: type[Exception]) -> None:
    emu.faults.extra["code"] = {"code": code, "count": 1}
    with pytest.raises(error, match=str(code)) as caught:
        send(connector(url), "89161234567", "Привет")
    wait = getattr(caught.value, "retry_after", None)
    assert (wait is not None) == (code in (206, 230))
    assert emu.messages == []


@pytest.mark.parametrize("code", [231, 232])
def test_duplicate_codes_for_the_whole_request_are_done(emu: SmsruEmulator, url: str, code: int) -> None:
    emu.faults.extra["code"] = code
    data = send(connector(url), "89161234567, 89031234567", "Привет")
    assert (data["sent"], data["duplicates"]) == (0, 2)


# ---- refused before sending --------------------------------------------------------------------

def test_invalid_phone_is_rejected_without_a_call(emu: SmsruEmulator, url: str) -> None:
    with pytest.raises(Rejected, match="12345"):
        send(connector(url), "12345", "Привет")
    assert emu.calls == []


def test_more_than_8_parts_is_rejected_without_a_call(emu: SmsruEmulator, url: str) -> None:
    assert send(connector(url), "89161234567", "я" * 536)["parts"] == 8
    with pytest.raises(Rejected, match="9 SMS"):
        send(connector(url), "89161234567", "я" * 537, key="effect-2")
    assert len(emu.calls) == 1


# ---- transport and proxy failures --------------------------------------------------------------

def test_storm_503_retries_after_its_retry_after(emu: SmsruEmulator, url: str) -> None:
    emu.faults.storm = {"status": 503, "count": 1, "retry_after": 7}
    with pytest.raises(Retryable) as caught:
        send(connector(url), "89161234567", "Привет")
    assert caught.value.retry_after == 7


def test_http_500_retries_and_504_is_uncertain(emu: SmsruEmulator, url: str) -> None:
    emu.faults.fail = {"status": 500, "count": 1}
    with pytest.raises(Retryable):
        send(connector(url), "89161234567", "Привет")
    emu.faults.storm = {"status": 504, "count": 1}
    with pytest.raises(Uncertain):
        send(connector(url), "89161234567", "Привет")


def test_an_unreadable_200_is_uncertain() -> None:
    conn = Smsru("sms", {"api_id": API_ID}, transport=httpx.MockTransport(lambda r: httpx.Response(200, text="100")))
    with pytest.raises(Uncertain):
        send(conn, "89161234567", "Привет")


# ---- cost --------------------------------------------------------------------------------------

def test_cost_prices_without_sending(emu: SmsruEmulator, url: str) -> None:
    conn = connector(url)
    priced = run(conn, lambda: conn.cost({"to": "89161234567, 89031234567", "text": "я" * 71}))
    assert (emu.calls[-1].path, form_of(emu)["to"]) == ("/sms/cost", "79161234567,79031234567")
    assert (priced["total_cost"], priced["total_sms"], priced["parts"]) == (16.0, 4, 2)
    assert priced["messages"][0] == {"phone": "+79161234567", "status": "ok", "code": 100, "cost": 8.0, "sms": 2}
    assert emu.messages == [] and emu.balance == 100.0


# ---- the emulator against the reference's samples ----------------------------------------------

def test_emulator_send_answer_has_the_documented_shape(emu: SmsruEmulator, url: str) -> None:
    emu.no_route = {"74993221627"}
    body = post(f"{url}/sms/send", data={"api_id": API_ID, "to": "79255070602,74993221627", "msg": "Hi",
                                               "json": "1"}).json()
    assert shape(body) == shape(SEND_SAMPLE)
    assert body["sms"]["74993221627"] == SEND_SAMPLE["sms"]["74993221627"]


def test_emulator_cost_answer_has_the_documented_shape(emu: SmsruEmulator, url: str) -> None:
    body = post(f"{url}/sms/cost", data={"api_id": API_ID, "to": "79255070602", "msg": "Hi",
                                               "json": "1"}).json()
    assert shape(body) == shape(COST_SAMPLE)


def test_the_connector_reads_the_captured_sample_as_a_partial_success() -> None:
    conn = Smsru("sms", {"api_id": API_ID},
                 transport=httpx.MockTransport(lambda r: httpx.Response(200, json=SEND_SAMPLE)))
    data = send(conn, "+79255070602, +74993221627", "Hi")
    assert (data["sent"], data["failed"], data["balance"]) == (1, 1, 4122.56)
    assert data["messages"][0]["sms_id"] == "000000-10000000"


def test_emulator_status_balance_text_answers_and_utf8(emu: SmsruEmulator, url: str) -> None:
    send(connector(url), "89161234567", "Привет")
    sms_id = emu.messages[0]["sms_id"]
    post(f"{url}/_emulator/deliver", json={"sms_id": sms_id, "status_code": 103})
    status = post(f"{url}/sms/status", data={"api_id": API_ID, "sms_id": sms_id, "json": "1"}).json()
    assert status["sms"][sms_id] == {"status": "OK", "status_code": 103, "status_text": "Сообщение доставлено"}
    assert post(f"{url}/my/balance", data={"api_id": API_ID, "json": "1"}).json() == \
        {"status": "OK", "status_code": 100, "balance": 96.0}
    plain = post(f"{url}/sms/send", data={"api_id": API_ID, "to": "79031234567", "msg": "Hi"}).text
    assert plain.splitlines()[0] == "100" and plain.splitlines()[-1].startswith("balance=")
    cp1251 = post(f"{url}/sms/send", content=b"api_id=" + API_ID.encode() + b"&to=79161234567&json=1&msg=" +
                        "".join(f"%{b:02X}" for b in "Привет".encode("cp1251")).encode(),
                        headers={"Content-Type": "application/x-www-form-urlencoded"}).json()
    assert cp1251["status_code"] == 212
    listed = get(f"{url}/_emulator/messages", params={"phone": "+79161234567"}).json()
    assert [m["sms_id"] for m in listed] == [sms_id]


# ---- settings, limits, sandbox -----------------------------------------------------------------

def test_config_schema_wants_the_api_id_as_an_env_reference() -> None:
    good = {"type": "smsru", "api_id": "${env:SMSRU_API_ID}", "sender": "Salon", "test": True}
    jsonschema.validate(good, Smsru.config_schema)
    for bad in ({**good, "api_id": "A1B2-C3D4"}, {"type": "smsru"}, {**good, "test": "yes"}, {**good, "x": 1}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, Smsru.config_schema)


def test_declared_contract() -> None:
    # SMS.ru publishes no request rate; the chosen safe one (module docstring), and at_most_once sends.
    assert Smsru.rate_limit == (5.0, 10)
    assert Smsru.actions["sms.send"].delivery == "at_most_once"
    assert set(Smsru.actions) == {"sms.send", "report.send"}
    assert Smsru.actions["report.send"].delivery == "at_most_once"


def test_sandbox_talks_to_its_emulator(served: tuple[Swap, str]) -> None:
    swap, url = served
    settings, emulator = Smsru.sandbox("sms", {"api_id": "${env:SMSRU_API_ID}", "sender": "Salon"},
                                       base_url=url, hook_url="http://127.0.0.1:1/hooks/sms")
    assert settings == {"api_id": SANDBOX_API_ID, "base_url": url, "test": False, "sender": "Salon"}
    swap.app = emulator
    data = send(Smsru("sms", settings), "89161234567", "Привет")
    assert data["sent"] == 1
    assert emulator.state()["messages"]["79161234567"][0]["sender"] == "Salon"
    assert json.loads(get(f"{url}/_emulator/state").text)["balance"] == 996.0


class TestContract(ConnectorContract):
    type = "smsru"
    settings = {"api_id": "${env:SMSRU_API_ID}", "sender": "Salon"}
    secret_settings = ("api_id",)

    async def samples(self, box: Sandbox) -> dict[str, Mapping[str, Any]]:
        return {"sms.send": {"to": "+79161234567", "text": "Привет"},
                "report.send": {"report": "channels", "period": "last_week", "to": "+79161234567"}}
