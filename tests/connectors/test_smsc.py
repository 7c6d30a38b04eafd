"""The SMSC connector against its emulator over real HTTP: sends, the key-derived id, errors 1-9, cost, sandbox."""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx
import jsonschema
import pytest

from automator.connector_contract import ConnectorContract, Sandbox, Swap
from automator.errors import Rejected, Retryable, Uncertain
from automator_connectors.smsc import Smsc, api
from automator_connectors.smsc.emulator import SANDBOX_LOGIN, SANDBOX_PSW, SmscEmulator
from connector_support import Loop, form_of, get, post, run, send

LOGIN, PSW, APIKEY = "salon", "secret", "key-123"

# Answers quoted by the reference (§4.2, fmt=3).
SENT_SAMPLE = {"id": 12345, "cnt": 1}
SENT_COST_SAMPLE = {"id": 12345, "cnt": 1, "cost": "3.5", "balance": "1200.75"}
AUTH_SAMPLE = {"error": "authorise error", "error_code": 2}

pytestmark = pytest.mark.usefixtures("loop")


@pytest.fixture
def emu(served: tuple[Swap, str], clock: list[float]) -> SmscEmulator:
    emulator = SmscEmulator(login=LOGIN, psw=PSW, apikey=APIKEY, balance=100.0, senders=["Salon"],
                            now=lambda: clock[0])
    served[0].app = emulator
    return emulator


def connector(url: str, **extra: Any) -> Smsc:
    made = Loop.connector(lambda settings: Smsc("sms", {"login": LOGIN, "psw": PSW, "base_url": url, "sender": "Salon", **settings}),
                          url, **extra)
    assert isinstance(made, Smsc)
    return made


def shape(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    return type(value).__name__


# ---- sending -----------------------------------------------------------------------------------

def test_send_posts_the_documented_form_and_records_the_message(emu: SmscEmulator, url: str) -> None:
    text = "Напоминаем: завтра в 10:00 запись к мастеру Анне"
    data = send(connector(url), "8 916 123-45-67", text, key="run-7/step-2")
    call = emu.calls[-1]
    assert (call.method, call.path) == ("POST", "/sys/send.php")
    assert call.headers["content-type"] == "application/x-www-form-urlencoded"
    msg_id = api.message_id("run-7/step-2")
    assert form_of(emu) == {"login": LOGIN, "psw": PSW, "phones": "79161234567", "mes": text, "charset": "utf-8",
                            "fmt": "3", "op": "1", "cost": "3", "id": str(msg_id), "sender": "Salon"}
    assert data == {"gateway": "smsc", "id": msg_id, "to": ["+79161234567"], "encoding": "UCS-2",
                    "length": len(text), "units": len(text), "parts": 1,
                    "messages": [{"phone": "+79161234567", "status": "sent", "cost": "3.5"}],
                    "sent": 1, "duplicates": 0, "failed": 0, "cnt": 1, "cost": "3.5", "balance": "96.50"}
    [message] = emu.state()["messages"]["79161234567"]
    assert (message["text"], message["parts"], message["sender"], message["status"], message["id"]) == \
        (text, 1, "Salon", "sent", str(msg_id))


def test_apikey_replaces_login_and_password(emu: SmscEmulator, url: str) -> None:
    send(Smsc("sms", {"apikey": APIKEY, "base_url": url}), "+7 (916) 123-45-67", "Hi")
    sent = form_of(emu)
    assert sent["apikey"] == APIKEY and "login" not in sent and "psw" not in sent and "sender" not in sent


def test_long_cyrillic_text_counts_parts(emu: SmscEmulator, url: str) -> None:
    data = send(connector(url), "89161234567", "я" * 135)
    assert (data["parts"], data["cnt"], data["cost"]) == (3, 3, "10.5")


def test_several_numbers_with_one_undeliverable_is_a_partial_success(emu: SmscEmulator, url: str) -> None:
    emu.undeliverable = {"79031234567"}
    data = send(connector(url), "89161234567; +7 903 123-45-67", "Акция")
    assert form_of(emu)["phones"] == "79161234567,79031234567"
    assert (data["sent"], data["failed"]) == (1, 1)
    assert data["messages"][1] == {"phone": "+79031234567", "status": "failed", "code": 8, "cost": "0"}
    assert list(emu.state()["messages"]) == ["79161234567"]


def test_message_id_is_stable_and_in_range() -> None:
    assert api.message_id("k") == api.message_id("k") != api.message_id("k2")
    assert all(1 <= api.message_id(f"key-{n}") <= api.MAX_ID for n in range(200))


# ---- the duplicate window ----------------------------------------------------------------------

def test_the_same_effect_within_a_minute_is_error_9_and_counts_as_sent(emu: SmscEmulator, url: str,
                                                                      clock: list[float]) -> None:
    send(connector(url), "89161234567", "Ждём вас", key="e-1")
    clock[0] += 30
    again = send(connector(url), "89161234567", "Ждём вас", key="e-1")
    assert (again["sent"], again["duplicates"], again["messages"][0]["code"]) == (0, 1, 9)
    assert len(emu.messages) == 1
    # Another effect with the same text is another request (another id): sent.
    assert send(connector(url), "89161234567", "Ждём вас", key="e-2")["sent"] == 1
    # Past the minute the same effect would be sent again: why `deduplicates` stays False.
    clock[0] += 31
    assert send(connector(url), "89161234567", "Ждём вас", key="e-1")["sent"] == 1
    assert len(emu.messages) == 3 and Smsc.deduplicates is False


# ---- errors ------------------------------------------------------------------------------------

def test_wrong_password_is_rejected_with_the_documented_body(emu: SmscEmulator, url: str) -> None:
    with pytest.raises(Rejected, match="error 2"):
        send(Smsc("sms", {"login": LOGIN, "psw": "wrong", "base_url": url}), "89161234567", "Hi")
    body = post(f"{url}/sys/send.php", data={"login": LOGIN, "psw": "bad", "phones": "79161234567",
                                                   "mes": "x", "fmt": "3"})
    assert (body.status_code, body.json()) == (200, AUTH_SAMPLE)


def test_no_money_is_error_3_with_the_id(emu: SmscEmulator, url: str) -> None:
    emu.balance = 1.0
    with pytest.raises(Rejected, match="error 3"):
        send(connector(url), "89161234567", "Привет", key="k")
    assert emu.messages == []
    body = post(f"{url}/sys/send.php", data={**form_of(emu)}).json()
    assert body == {"error": "no money", "error_code": 3, "id": api.message_id("k")}


def test_unapproved_sender_and_forbidden_text_are_error_6(emu: SmscEmulator, url: str) -> None:
    with pytest.raises(Rejected, match="error 6"):
        send(connector(url, sender="Other"), "89161234567", "Привет")
    emu.forbidden = {"казино"}
    with pytest.raises(Rejected, match="error 6"):
        send(connector(url), "89161234567", "Лучшее казино")


def test_all_numbers_undeliverable_is_error_8(emu: SmscEmulator, url: str) -> None:
    emu.undeliverable = {"79161234567"}
    with pytest.raises(Rejected, match="error 8"):
        send(connector(url), "89161234567", "Привет")


@pytest.mark.parametrize(("code", "error"), [(1, Rejected), (2, Rejected), (3, Rejected), (4, Retryable),
                                             (5, Rejected), (6, Rejected), (7, Rejected), (8, Rejected)])
def test_each_error_code_is_classified(emu: SmscEmulator, url: str, code: int, error: type[Exception]) -> None:
    emu.faults.extra["error"] = {"code": code, "count": 1}
    with pytest.raises(error, match=f"error {code}") as caught:
        send(connector(url), "89161234567", "Привет")
    assert getattr(caught.value, "retry_after", None) == (api.BLOCKED_WAIT if code == 4 else None)
    assert emu.messages == []


def test_forced_error_9_is_done(emu: SmscEmulator, url: str) -> None:
    emu.faults.extra["error"] = 9
    assert send(connector(url), "89161234567", "Привет")["duplicates"] == 1


def test_five_failed_logins_block_the_ip_with_error_4(emu: SmscEmulator, url: str, clock: list[float]) -> None:
    for _ in range(5):
        with pytest.raises(Rejected):
            send(connector(url, psw="wrong"), "89161234567", "Привет")
    with pytest.raises(Retryable, match="error 4") as caught:
        send(connector(url), "89161234567", "Привет")
    assert caught.value.retry_after == api.BLOCKED_WAIT
    clock[0] += 1801
    assert send(connector(url), "89161234567", "Привет")["sent"] == 1


def test_a_hundred_failed_requests_in_a_row_block_for_ten_minutes(emu: SmscEmulator, url: str,
                                                                  clock: list[float]) -> None:
    with httpx.Client(base_url=url) as client:
        for _ in range(100):
            assert client.post("/sys/send.php", data={"login": LOGIN, "psw": PSW, "phones": "79161234567",
                                                      "fmt": "3"}).json()["error_code"] == 1
        assert client.post("/sys/send.php", data={"login": LOGIN, "psw": PSW, "phones": "79161234567",
                                                  "mes": "x", "fmt": "3"}).json() == \
            {"error": "ip is blocked", "error_code": 4}
    clock[0] += 601
    assert send(connector(url), "89161234567", "Привет")["sent"] == 1


# ---- refused before sending --------------------------------------------------------------------

def test_invalid_phone_is_rejected_without_a_call(emu: SmscEmulator, url: str) -> None:
    with pytest.raises(Rejected, match="12345"):
        send(connector(url), "8 916 123, 12345", "Привет")
    assert emu.calls == []


def test_more_than_1000_characters_is_rejected_without_a_call(emu: SmscEmulator, url: str) -> None:
    assert send(connector(url), "89161234567", "a" * 1000)["parts"] == 7
    with pytest.raises(Rejected, match="1001 characters"):
        send(connector(url), "89161234567", "a" * 1001, key="other")
    assert len(emu.calls) == 1


# ---- transport and proxy failures --------------------------------------------------------------

def test_garbage_is_uncertain() -> None:
    garbage = Smsc("sms", {"apikey": APIKEY},
                   transport=httpx.MockTransport(lambda r: httpx.Response(200, text="OK - 1 SMS, ID - 1")))
    with pytest.raises(Uncertain):
        send(garbage, "89161234567", "Hi")


# ---- cost, charset, samples --------------------------------------------------------------------

def test_cost_prices_without_sending(emu: SmscEmulator, url: str) -> None:
    conn = connector(url)
    priced = run(conn, lambda: conn.cost({"to": "89161234567, 89031234567", "text": "я" * 71}))
    sent = form_of(emu)
    assert sent["cost"] == "1" and "id" not in sent
    assert (priced["cost"], priced["cnt"], priced["parts"]) == ("14", 4, 2)
    assert [m["status"] for m in priced["messages"]] == ["ok", "ok"]
    assert emu.messages == [] and emu.balance == 100.0


def test_without_charset_smsc_reads_windows_1251(emu: SmscEmulator, url: str) -> None:
    # What a client forgetting charset=utf-8 gets: its UTF-8 text stored as mojibake.
    post(f"{url}/sys/send.php", data={"login": LOGIN, "psw": PSW, "phones": "79161234567", "mes": "Привет",
                                            "fmt": "3"})
    assert emu.messages[0]["text"] == "Привет".encode().decode("cp1251")
    send(connector(url), "89031234567", "Привет")
    assert emu.messages[1]["text"] == "Привет"


def test_emulator_answers_have_the_documented_shapes(emu: SmscEmulator, url: str) -> None:
    base = {"login": LOGIN, "psw": PSW, "phones": "79161234567", "mes": "Hi", "fmt": "3", "charset": "utf-8"}
    assert shape(post(f"{url}/sys/send.php", data={**base, "id": "12345"}).json()) == shape(SENT_SAMPLE)
    with_cost = post(f"{url}/sys/send.php", data={**base, "mes": "Hi 2", "cost": "3"}).json()
    assert shape(with_cost) == shape(SENT_COST_SAMPLE)
    assert post(f"{url}/sys/send.php", data={**base, "mes": "Hi 3", "fmt": "0"}).text.startswith("OK - 1 SMS")


def test_the_connector_reads_the_captured_samples() -> None:
    conn = Smsc("sms", {"apikey": APIKEY},
                transport=httpx.MockTransport(lambda r: httpx.Response(200, json=SENT_COST_SAMPLE)))
    data = send(conn, "89161234567", "Hi")
    assert (data["sent"], data["cost"], data["balance"], data["cnt"]) == (1, "3.5", "1200.75", 1)
    refused = Smsc("sms", {"apikey": APIKEY},
                   transport=httpx.MockTransport(lambda r: httpx.Response(200, json=AUTH_SAMPLE)))
    with pytest.raises(Rejected, match="authorise error"):
        send(refused, "89161234567", "Hi")


def test_emulator_status_balance_and_messages(emu: SmscEmulator, url: str) -> None:
    data = send(connector(url), "89161234567", "Привет", key="s")
    auth = {"login": LOGIN, "psw": PSW, "fmt": "3"}
    status = post(f"{url}/sys/status.php", data={**auth, "phone": "79161234567", "id": str(data["id"])}).json()
    assert status["status"] == 0
    post(f"{url}/_emulator/deliver", json={"id": data["id"], "phone": "79161234567", "status": 1})
    status = post(f"{url}/sys/status.php", data={**auth, "phone": "79161234567", "id": str(data["id"])}).json()
    assert status["status"] == 1 and "last_date" in status
    assert post(f"{url}/sys/status.php", data={**auth, "phone": "79161234567", "id": "1"}).json()["status"] == -3
    assert post(f"{url}/sys/balance.php", data=auth).json() == {"balance": "96.50"}
    assert [m["status"] for m in get(f"{url}/_emulator/messages").json()] == ["delivered"]


# ---- settings, limits, sandbox -----------------------------------------------------------------

def test_config_schema_wants_secrets_as_env_references() -> None:
    jsonschema.validate({"type": "smsc", "login": "${env:SMSC_LOGIN}", "psw": "${env:SMSC_PSW}", "sender": "Salon"},
                        Smsc.config_schema)
    jsonschema.validate({"type": "smsc", "apikey": "${env:SMSC_APIKEY}"}, Smsc.config_schema)
    jsonschema.validate({"type": "smsc", "login": "salon", "psw": "${env:SMSC_PSW}"}, Smsc.config_schema)
    for bad in ({"type": "smsc", "login": "${env:SMSC_LOGIN}"}, {"type": "smsc", "login": "salon", "psw": "pw"}, {"type": "smsc", "apikey": "plain-key"},
                {"type": "smsc"}, {"type": "smsc", "apikey": "${env:K}", "test": True}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, Smsc.config_schema)


def test_declared_contract() -> None:
    assert Smsc.rate_limit == (5.0, 10)
    assert Smsc.actions["sms.send"].delivery == "at_most_once"


@pytest.mark.parametrize("options", [{"login": "${env:SMSC_LOGIN}", "psw": "${env:SMSC_PSW}", "sender": "Salon"},
                                     {"apikey": "${env:SMSC_APIKEY}"}])
def test_sandbox_talks_to_its_emulator(served: tuple[Swap, str], options: dict[str, str]) -> None:
    swap, url = served
    settings, emulator = Smsc.sandbox("sms", options, base_url=url, hook_url="http://127.0.0.1:1/hooks/sms")
    if "apikey" in options:
        assert set(settings) == {"base_url", "apikey"}
    else:
        assert settings == {"base_url": url, "login": SANDBOX_LOGIN, "psw": SANDBOX_PSW, "sender": "Salon"}
    swap.app = emulator
    assert send(Smsc("sms", settings), "89161234567", "Привет")["sent"] == 1
    assert emulator.state()["messages"]["79161234567"][0]["sender"] == options.get("sender")


class TestContract(ConnectorContract):
    type = "smsc"
    settings = {"login": "${env:SMSC_LOGIN}", "psw": "${env:SMSC_PSW}", "sender": "Salon"}
    secret_settings = ("psw",)

    async def samples(self, box: Sandbox) -> dict[str, Mapping[str, Any]]:
        return {"sms.send": {"to": "+79161234567", "text": "Привет"},
                "report.send": {"report": "channels", "period": "last_week", "to": "+79161234567"}}
