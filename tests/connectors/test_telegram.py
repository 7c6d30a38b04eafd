"""The telegram connector against its emulator over real HTTP on 127.0.0.1: sends, errors, limits, updates."""
from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from automator.connector import ConfigError, Inbound
from automator.connector_contract import ConnectorContract, Hooks, Sandbox, Swap
from automator.daemon.retry import TokenBucket
from automator.emulator import Served, serve
from automator.errors import InboundRejected, Rejected, Retryable, Uncertain
from automator.model import EntityRef
from automator.report_delivery import Composed, ReportRequest
from automator_connectors.telegram import SANDBOX_SECRET, SANDBOX_TOKEN, Telegram
from automator_connectors.telegram.emulator import TelegramEmulator, Upload
from automator_connectors.telegram.text import utf16_length
from automator_connectors.telegram.mapping import IGNORED_UPDATES

TOKEN = "123456789:AAEtest-token-for-the-emulator-abcdef"
SECRET = "s3cret-token_1"
ADMIN, CLIENT, GROUP = 111111111, 222222222, -4000001

# Literal answers from the reference (§4.3), captured from the real Bot API.
SUCCESS = {"ok": True, "result": {"message_id": 42,
           "from": {"id": 987654321, "is_bot": True, "first_name": "MyBot", "username": "my_example_bot"},
           "chat": {"id": 123456789, "first_name": "John", "last_name": "Doe", "username": "johndoe",
                    "type": "private"},
           "date": 1746268800, "text": "…", "entities": [{"offset": 48, "length": 4, "type": "bold"}]}}
CHAT_NOT_FOUND = {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}
UNAUTHORIZED = {"ok": False, "error_code": 401, "description": "Unauthorized"}
BLOCKED = {"ok": False, "error_code": 403, "description": "Forbidden: bot was blocked by the user"}
NOT_FOUND = {"ok": False, "error_code": 404, "description": "Not Found"}
TOO_MANY = {"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 41",
            "parameters": {"retry_after": 41}}
UPGRADED = {"ok": False, "error_code": 400, "description": "Bad Request: group chat was upgraded to a supergroup chat",
            "parameters": {"migrate_to_chat_id": -1001234567890}}


class Clock:
    """Monotonic time the test moves by hand, for the emulator's rate limits."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# One plain client for the test's own calls (control routes, raw Bot API requests): a new one each time would
# build an SSL context each time.
WEB = httpx.Client(trust_env=False, timeout=5)


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[Served, Swap, Served, Hooks]]:
    swap, hooks = Swap(), Hooks("tg")
    with serve(swap) as api_server, serve(hooks) as hook_server:
        yield api_server, swap, hook_server, hooks
    WEB.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def emu(servers: tuple[Served, Swap, Served, Hooks], clock: Clock) -> Iterator[TelegramEmulator]:
    _, swap, hook_server, hooks = servers
    hooks.got.clear()
    swap.app = TelegramEmulator(token=TOKEN, secret_token=SECRET, hook_url=f"{hook_server.url}/hooks/tg",
                                chats=[ADMIN, CLIENT, GROUP], clock=clock)
    yield swap.app
    swap.settled()  # none of its webhooks lands in the next test's Hooks


@pytest.fixture
def url(servers: tuple[Served, Swap, Served, Hooks]) -> str:
    return servers[0].url


@pytest.fixture
def hooks(servers: tuple[Served, Swap, Served, Hooks]) -> Hooks:
    return servers[3]


def make(url: str, **extra: Any) -> Telegram:
    return Telegram("tg", {"type": "telegram", "token": TOKEN, "secret_token": SECRET, "base_url": url,
                           "chats": {"admin": ADMIN, "17": CLIENT, "office": GROUP}, **extra})


def perform(connector: Telegram, action: str, params: dict[str, Any]) -> Any:
    """Run one action on a fresh event loop, closing the connector's client after."""
    async def go() -> Any:
        try:
            return await connector.perform(action, params, "effect-key")
        finally:
            await connector.aclose()
    return asyncio.run(go())


def control(url: str, what: str, body: dict[str, Any]) -> Any:
    answer = WEB.post(f"{url}/_emulator/{what}", json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()


def body_of(emu: TelegramEmulator, index: int = -1) -> Any:
    return json.loads(emu.calls[index].body)


# ---- sending -----------------------------------------------------------------------------------------

def test_message_send_posts_send_message_as_json(emu: TelegramEmulator, url: str) -> None:
    result = perform(make(url), "message.send", {"to": CLIENT, "text": "Ждём вас завтра в 10:00"})
    call, = emu.calls
    assert (call.method, call.path) == ("POST", f"/bot{TOKEN}/sendMessage")
    assert call.headers["content-type"] == "application/json"
    assert json.loads(call.body) == {"chat_id": CLIENT, "text": "Ждём вас завтра в 10:00"}
    stored, = emu.state()["messages"][str(CLIENT)]
    assert stored["text"] == "Ждём вас завтра в 10:00" and stored["from"]["is_bot"] is True
    assert result.data == {"message_id": stored["message_id"], "chat_id": CLIENT, "date": stored["date"]}
    assert result.events == ()


def test_parse_mode_and_preview_settings_go_into_the_body(emu: TelegramEmulator, url: str) -> None:
    text = 'Спасибо! Оставьте <b>отзыв</b>: <a href="https://example.com/r">ссылка</a>'
    perform(make(url, parse_mode="HTML", disable_web_page_preview=True), "message.send",
            {"to": str(CLIENT), "text": text, "channel": "telegram"})
    assert body_of(emu) == {"chat_id": CLIENT, "text": text, "parse_mode": "HTML", "disable_web_page_preview": True}
    stored, = emu.messages[str(CLIENT)]
    assert stored["text"] == "Спасибо! Оставьте отзыв: ссылка"
    assert stored["entities"] == [{"offset": 18, "length": 5, "type": "bold"},
                                  {"offset": 25, "length": 6, "type": "text_link", "url": "https://example.com/r"}]


def test_message_send_to_a_chat_name_or_a_channel_username(emu: TelegramEmulator, url: str) -> None:
    emu.add_chat("@salon_news")
    perform(make(url), "message.send", {"to": "admin", "text": "a"})
    perform(make(url), "message.send", {"to": "@salon_news", "text": "b"})
    assert [body_of(emu, 0)["chat_id"], body_of(emu, 1)["chat_id"]] == [ADMIN, "@salon_news"]
    channel = next(c for c in emu.chats.values() if c["type"] == "channel")
    assert emu.messages[str(channel["id"])][0]["text"] == "b"


@pytest.mark.parametrize(("params", "words"), [
    ({"to": CLIENT, "text": "a", "channel": "whatsapp"}, "not 'whatsapp'"),
    ({"to": "Иван", "text": "a"}, "neither a Telegram chat id"),
    ({"to": CLIENT, "text": "   "}, "the text is empty"),
    ({"to": CLIENT, "text": "x" * 4097}, "4097 characters, over Telegram's 4096"),
])
def test_message_send_refused_before_sending(emu: TelegramEmulator, url: str, params: dict[str, Any],
                                             words: str) -> None:
    with pytest.raises(Rejected, match=words):
        perform(make(url), "message.send", params)
    assert emu.calls == []


def test_notify_addresses_staff_by_role_or_crm_user_id(emu: TelegramEmulator, url: str, clock: Clock) -> None:
    perform(make(url), "notify", {"to": "admin", "text": "Лид 5 ждёт 5 минут"})
    perform(make(url), "notify", {"to": 17, "text": "Ваш лид"})  # a CRM user id written as a key of chats
    assert [(b["chat_id"], b["text"]) for b in map(json.loads, (c.body for c in emu.calls))] == [
        (ADMIN, "Лид 5 ждёт 5 минут"), (CLIENT, "Ваш лид")]
    assert emu.messages[str(ADMIN)][0]["text"] == "Лид 5 ждёт 5 минут"


@pytest.mark.parametrize("to", ["manager", CLIENT, str(ADMIN)])
def test_notify_never_takes_an_employee_for_a_chat_id(emu: TelegramEmulator, url: str, to: Any) -> None:
    with pytest.raises(Rejected, match=r"no chat for .* \(known: 17, admin, office\)"):
        perform(make(url), "notify", {"to": to, "text": "x"})
    assert emu.calls == []


def test_html_is_measured_by_its_visible_text(emu: TelegramEmulator, url: str) -> None:
    text = "<b>" + "x" * 4000 + "</b>" + "<i></i>" * 20  # 4107 characters written, 4000 shown
    perform(make(url, parse_mode="HTML"), "message.send", {"to": CLIENT, "text": text})
    assert emu.messages[str(CLIENT)][0]["text"] == "x" * 4000
    with pytest.raises(Rejected, match="not valid HTML: Unsupported start tag \"script\""):
        perform(make(url, parse_mode="HTML"), "message.send", {"to": ADMIN, "text": "<script>x</script>"})
    assert len(emu.calls) == 1


@pytest.mark.parametrize(("extra", "text"), [
    ({"parse_mode": "MarkdownV2"}, "x" * 4097),  # Markdown is sent as is; Telegram measures it
    ({}, "😀" * 2100),  # 2100 characters, 4200 UTF-16 units: the emulator's stricter reading refuses it
])
def test_telegram_refusing_a_long_text_is_rejected(emu: TelegramEmulator, url: str, extra: dict[str, Any],
                                                   text: str) -> None:
    with pytest.raises(Rejected, match="400 Bad Request: message is too long"):
        perform(make(url, **extra), "message.send", {"to": CLIENT, "text": text})
    assert len(emu.calls) == 1 and emu.messages == {}


# ---- migrated groups ---------------------------------------------------------------------------------

def test_a_migrated_group_is_sent_to_once_more_at_its_new_id(emu: TelegramEmulator, url: str, clock: Clock,
                                                            hooks: Hooks) -> None:
    assert control(url, "migrate", {"chat_id": GROUP}) == {"chat_id": GROUP, "migrate_to_chat_id": -1004000001}
    connector = make(url)

    async def twice() -> list[Any]:
        first = await connector.perform("notify", {"to": "office", "text": "one"}, "k1")
        clock.advance(2)
        second = await connector.perform("notify", {"to": "office", "text": "two"}, "k2")
        await connector.aclose()
        return [first, second]

    first, second = asyncio.run(twice())
    assert first.data == {"message_id": 1, "chat_id": -1004000001, "date": first.data["date"], "migrated_from": GROUP}
    assert [body_of(emu, i)["chat_id"] for i in range(3)] == [GROUP, -1004000001, -1004000001]
    assert second.data["chat_id"] == -1004000001 and "migrated_from" not in second.data
    assert [m["text"] for m in emu.messages["-1004000001"]] == ["one", "two"]
    # the two service messages Telegram sends about the upgrade are accepted and make no event
    assert [make(url).parse(h) for h in hooks.wait(2)] == [[], []]


def test_a_second_migration_is_rejected(emu: TelegramEmulator, url: str) -> None:
    control(url, "migrate", {"chat_id": GROUP, "to": -1001})
    control(url, "migrate", {"chat_id": -1001, "to": -1002})
    with pytest.raises(Rejected, match="moved to -1001, which moved again to -1002"):
        perform(make(url), "message.send", {"to": GROUP, "text": "x"})
    assert len(emu.calls) == 2 and emu.messages == {}


# ---- error classification ----------------------------------------------------------------------------

def test_wrong_or_malformed_token_is_rejected(emu: TelegramEmulator, url: str) -> None:
    connector = Telegram("tg", {"token": "123456789:AAEsomeone-else", "base_url": url})
    with pytest.raises(Rejected, match="401 Unauthorized") as info:
        perform(connector, "message.send", {"to": CLIENT, "text": "x"})
    assert "AAEsomeone-else" not in str(info.value)
    with pytest.raises(Rejected, match="404 Not Found"):
        perform(Telegram("tg", {"token": "not-a-token", "base_url": url}), "message.send", {"to": CLIENT, "text": "x"})
    assert emu.messages == {}


def test_unknown_and_blocked_chats_are_rejected(emu: TelegramEmulator, url: str) -> None:
    with pytest.raises(Rejected, match="400 Bad Request: chat not found"):
        perform(make(url), "message.send", {"to": 333, "text": "x"})
    control(url, "block", {"chat_id": CLIENT})
    with pytest.raises(Rejected, match="403 Forbidden: bot was blocked by the user"):
        perform(make(url), "message.send", {"to": CLIENT, "text": "x"})
    assert emu.state()["blocked"] == [str(CLIENT)] and emu.messages == {}


@pytest.mark.parametrize(("faults", "retry_after"), [
    ({"storm": {"status": 429, "count": 1, "retry_after": 41}}, 41.0),
    ({"storm": {"status": 502, "count": 1}}, None),
    ({"fail": {"status": 500, "count": 1}}, None),
])
def test_limits_and_server_errors_are_retryable(emu: TelegramEmulator, url: str, faults: dict[str, Any],
                                                retry_after: float | None) -> None:
    control(url, "faults", faults)
    with pytest.raises(Retryable) as info:
        perform(make(url), "message.send", {"to": CLIENT, "text": "x"})
    assert info.value.retry_after == retry_after
    assert emu.messages == {}
    assert perform(make(url), "message.send", {"to": CLIENT, "text": "x"}).data["message_id"] == 1


def test_a_dropped_or_slow_answer_is_uncertain_and_never_shows_the_token(emu: TelegramEmulator, url: str) -> None:
    control(url, "faults", {"drop": 1})
    with pytest.raises(Uncertain) as dropped:
        perform(make(url), "message.send", {"to": CLIENT, "text": "x"})
    control(url, "faults", {"delay": 0.5})
    slow = make(url)
    slow.deadline = 0.1
    with pytest.raises(Uncertain, match="took longer") as late:
        perform(slow, "message.send", {"to": ADMIN, "text": "x"})
    control(url, "faults", {"delay": 0})
    for exc in (dropped.value, late.value):
        assert TOKEN not in str(exc) and exc.__cause__ is None and exc.__suppress_context__


def test_a_refused_connection_is_retryable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(Retryable) as info:
        perform(make(f"http://127.0.0.1:{port}"), "message.send", {"to": CLIENT, "text": "x"})
    assert TOKEN not in str(info.value)


def mocked(status: int, content: bytes | str, headers: dict[str, str] | None = None) -> Telegram:
    data = content.encode() if isinstance(content, str) else content
    transport = httpx.MockTransport(lambda request: httpx.Response(status, content=data, headers=headers or {}))
    return Telegram("tg", {"token": TOKEN, "chats": {"admin": ADMIN}}, transport=transport)


@pytest.mark.parametrize(("status", "content", "headers", "error", "retry_after"), [
    (429, json.dumps(TOO_MANY), {}, Retryable, 41.0),
    (429, "", {"Retry-After": "7"}, Retryable, 7.0),
    (502, "<html>502 Bad Gateway</html>", {}, Retryable, None),
    (500, json.dumps({"ok": False, "error_code": 500, "description": "Internal Server Error",
                      "parameters": {"retry_after": 3}}), {}, Retryable, 3.0),
    (400, json.dumps(CHAT_NOT_FOUND), {}, Rejected, None),
    (401, json.dumps(UNAUTHORIZED), {}, Rejected, None),
    (403, json.dumps(BLOCKED), {}, Rejected, None),
    (404, json.dumps(NOT_FOUND), {}, Rejected, None),
    (403, "<html>Forbidden</html>", {}, Rejected, None),
    (200, "<html>", {}, Uncertain, None),
    (200, json.dumps({"ok": True, "result": True}), {}, Uncertain, None),
])
def test_captured_answers_are_classified(status: int, content: str, headers: dict[str, str], error: type,
                                         retry_after: float | None) -> None:
    with pytest.raises(error) as info:
        perform(mocked(status, content, headers), "notify", {"to": "admin", "text": "x"})
    if error is Retryable:
        assert info.value.retry_after == retry_after


def test_the_captured_success_and_migration_answers_are_read() -> None:
    assert perform(mocked(200, json.dumps(SUCCESS)), "notify", {"to": "admin", "text": "x"}).data == {
        "message_id": 42, "chat_id": 123456789, "date": 1746268800}
    answers = iter([httpx.Response(400, json=UPGRADED), httpx.Response(200, json=SUCCESS)])
    sent: list[Any] = []

    def reply(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content)["chat_id"])
        return next(answers)

    connector = Telegram("tg", {"token": TOKEN}, transport=httpx.MockTransport(reply))
    result = perform(connector, "message.send", {"to": GROUP, "text": "x"})
    assert sent == [GROUP, -1001234567890] and result.data["migrated_from"] == GROUP


# ---- the emulator's answers against the captured shapes ---------------------------------------------

def test_the_emulator_answers_in_the_captured_shapes(emu: TelegramEmulator, url: str, clock: Clock) -> None:
    def post(token: str, body: dict[str, Any]) -> httpx.Response:
        return WEB.post(f"{url}/bot{token}/sendMessage", json=body)

    answer = post(TOKEN, {"chat_id": CLIENT, "text": "<b>hi</b>", "parse_mode": "HTML"}).json()
    assert answer.keys() == SUCCESS.keys() and answer["ok"] is True
    result, sample = answer["result"], SUCCESS["result"]
    assert {k for k in sample if k != "entities"} <= result.keys() and result["entities"][0]["type"] == "bold"
    assert result["from"].keys() == sample["from"].keys()
    assert {"id", "type", "first_name"} <= result["chat"].keys()
    assert all(type(result[k]) is type(sample[k]) for k in ("message_id", "date", "text"))
    assert (post(TOKEN, {"chat_id": 333, "text": "x"}).json()) == CHAT_NOT_FOUND
    assert post("123456789:AAEwrong", {"chat_id": CLIENT, "text": "x"}).json() == UNAUTHORIZED
    assert post("nonsense", {"chat_id": CLIENT, "text": "x"}).json() == NOT_FOUND
    emu.blocked.add(str(ADMIN))
    assert post(TOKEN, {"chat_id": ADMIN, "text": "x"}).json() == BLOCKED
    limited = post(TOKEN, {"chat_id": CLIENT, "text": "again"})
    assert limited.status_code == 429 and limited.json() == {**TOO_MANY, "description": "Too Many Requests: retry "
                                                             "after 1", "parameters": {"retry_after": 1}}
    emu.migrated[str(GROUP)] = -1001234567890
    migrated = post(TOKEN, {"chat_id": GROUP, "text": "x"})
    assert migrated.status_code == 400 and migrated.json() == UPGRADED


def test_get_me_form_bodies_and_method_names_in_any_case(emu: TelegramEmulator, url: str) -> None:
    me = WEB.get(f"{url}/bot{TOKEN}/getMe").json()
    assert me["ok"] is True and me["result"]["is_bot"] is True and me["result"]["id"] == 123456789
    form = WEB.post(f"{url}/bot{TOKEN}/SENDMESSAGE", data={"chat_id": str(CLIENT), "text": "form"})
    query = WEB.get(f"{url}/bot{TOKEN}/sendmessage", params={"chat_id": ADMIN, "text": "query"})
    assert form.json()["result"]["text"] == "form" and query.json()["result"]["chat"]["id"] == ADMIN
    assert WEB.post(f"{url}/bot{TOKEN}/sendPhoto").json() == NOT_FOUND
    assert WEB.get(f"{url}/elsewhere").status_code == 404


# ---- rate limits -------------------------------------------------------------------------------------

def test_one_message_a_second_per_chat(emu: TelegramEmulator, url: str, clock: Clock) -> None:
    perform(make(url), "message.send", {"to": CLIENT, "text": "1"})
    clock.advance(0.4)
    with pytest.raises(Retryable, match="429 Too Many Requests: retry after 1") as info:
        perform(make(url), "message.send", {"to": CLIENT, "text": "2"})
    assert info.value.retry_after == 1.0
    perform(make(url), "message.send", {"to": ADMIN, "text": "another chat is free"})
    clock.advance(0.6)
    perform(make(url), "message.send", {"to": CLIENT, "text": "2"})
    assert [m["text"] for m in emu.messages[str(CLIENT)]] == ["1", "2"]


def test_twenty_messages_a_minute_per_group(emu: TelegramEmulator, url: str, clock: Clock) -> None:
    connector = make(url)

    async def burst() -> Exception:
        for i in range(20):
            await connector.perform("message.send", {"to": GROUP, "text": str(i)}, f"k{i}")
            clock.advance(1.5)
        try:
            await connector.perform("message.send", {"to": GROUP, "text": "21st"}, "k21")
        except Retryable as exc:
            return exc
        finally:
            await connector.aclose()
        raise AssertionError("the 21st message in a minute was accepted")

    exc = asyncio.run(burst())
    assert exc.retry_after == 30.0  # the first of the twenty leaves the minute 30 s from now
    assert len(emu.messages[str(GROUP)]) == 20


def test_thirty_messages_a_second_overall_and_the_declared_rate_keeps_to_it(emu: TelegramEmulator, url: str,
                                                                           clock: Clock) -> None:
    chats = [500000 + i for i in range(90)]
    for chat in chats:
        emu.add_chat(chat)
    connector = make(url)

    async def send(to: list[int], when: Callable[[int], float] | None = None) -> list[str]:
        outcome = []
        start = clock.now
        for i, chat in enumerate(to):
            if when is not None:
                clock.now = start + when(i)
            try:
                await connector.perform("message.send", {"to": chat, "text": "x"}, str(chat))
                outcome.append("ok")
            except Retryable as exc:
                outcome.append(f"429 after {exc.retry_after:g}")
        return outcome

    async def main() -> tuple[list[str], list[str]]:
        flood = await send(chats[:31])  # all in one instant
        clock.advance(5)
        bucket = TokenBucket(*Telegram.rate_limit)
        due = [bucket.reserve(0.0) for _ in chats[31:]]  # when the outbox's bucket lets each one go
        paced = await send(chats[31:], lambda i: due[i])
        await connector.aclose()
        return flood, paced

    flood, paced = asyncio.run(main())
    assert flood == ["ok"] * 30 + ["429 after 1"]
    assert paced == ["ok"] * 59
    rate, burst = Telegram.rate_limit
    assert rate + burst <= 30  # no second of the bucket's schedule holds more than Telegram's ~30


# ---- inbound updates ---------------------------------------------------------------------------------

def test_a_user_writing_to_the_bot_becomes_message_received(emu: TelegramEmulator, url: str, hooks: Hooks) -> None:
    update = control(url, "write", {"chat_id": 900000001, "text": "Хочу записаться",
                                    "from": {"id": 900000001, "is_bot": False, "first_name": "Анна",
                                             "username": "anna", "language_code": "ru"}})
    control(url, "write", {"chat_id": ADMIN, "text": "я на месте"})
    first, second = hooks.wait(2)
    assert first.headers["x-telegram-bot-api-secret-token"] == SECRET
    assert first.headers["content-type"] == "application/json"
    event, = make(url).parse(first)
    assert (event.type, event.entity, event.delivery_id, event.source) == (
        "message.received", None, str(update["update_id"]), "tg")
    assert event.id == f"tg:update:{update['update_id']}"
    assert event.at == datetime.fromtimestamp(update["message"]["date"], timezone.utc)
    assert event.data == {"channel": "telegram", "chat_id": 900000001, "chat_type": "private", "message_id": 1,
                          "content": "text", "text": "Хочу записаться", "from_id": 900000001, "username": "anna",
                          "first_name": "Анна", "language_code": "ru", "update_id": update["update_id"],
                          "client": "900000001"}  # the person writing: the journal links the chat to them
    assert emu.chats["900000001"] == {"id": 900000001, "first_name": "Анна", "username": "anna", "type": "private"}
    assert WEB.post(f"{url}/_emulator/write", json={"text": "no chat"}).status_code == 400
    staff, = make(url).parse(second)
    assert staff.data["staff"] == "admin" and staff.data["text"] == "я на месте" and "client" not in staff.data
    # the user's chat is now one the bot may answer in
    assert perform(make(url), "message.send", {"to": 900000001, "text": "Добрый день!"}).data["message_id"] == 2


def test_a_shared_contact_carries_an_e164_phone(emu: TelegramEmulator, url: str, hooks: Hooks) -> None:
    ivan = 900000002  # a client's own chat (CLIENT is a staff chat under `chats:`)
    message = {"message_id": 3, "from": {"id": ivan, "is_bot": False, "first_name": "Иван"},
               "chat": {"id": ivan, "type": "private"}, "date": 1746268800,
               "contact": {"phone_number": "79161234567", "first_name": "Иван", "user_id": ivan}}
    control(url, "update", {"message": message})
    person, event = make(url).parse(hooks.wait(1)[0])
    assert event.data["content"] == "contact" and event.data["phone"] == "+79161234567"
    assert event.data["text"] == "" and event.data["contact_user_id"] == ivan
    # Their own contact: the chat is told to be the person with that phone, before the message names them.
    assert (person.type, person.entity, person.data) == ("client.updated", EntityRef("client", str(ivan)),
                                                         {"phone": "+79161234567", "name": "Иван"})
    assert event.data["client"] == str(ivan) and person.delivery_id != event.delivery_id


@pytest.mark.parametrize("kind", ["edited_message", "callback_query", "my_chat_member"])
def test_other_kinds_of_update_make_no_event(emu: TelegramEmulator, url: str, hooks: Hooks, kind: str) -> None:
    assert kind in IGNORED_UPDATES
    control(url, "update", {kind: {"message_id": 1, "chat": {"id": CLIENT, "type": "private"}, "date": 1}})
    assert make(url).parse(hooks.wait(1)[0]) == []


def inbound(body: bytes, secret: str | None = SECRET) -> Inbound:
    headers = {"content-type": "application/json"}
    if secret is not None:
        headers["x-telegram-bot-api-secret-token"] = secret
    return Inbound(connector="tg", method="POST", path="/hooks/tg", query={}, headers=headers, body=body)


GOOD = json.dumps({"update_id": 5, "message": {"message_id": 1, "chat": {"id": 1, "type": "private"},
                                               "date": 1, "text": "hi"}}).encode()


@pytest.mark.parametrize(("secret", "config_secret"), [
    (None, SECRET), ("wrong", SECRET), (SECRET[:-1], SECRET), ("", SECRET), (SECRET, None)])
def test_a_forged_or_missing_secret_is_refused(secret: str | None, config_secret: str | None) -> None:
    connector = Telegram("tg", {"token": TOKEN, **({"secret_token": config_secret} if config_secret else {})})
    with pytest.raises(InboundRejected) as info:
        connector.parse(inbound(GOOD, secret))
    assert (info.value.status, info.value.word) == (401, "auth")


@pytest.mark.parametrize("body", [
    b"", b"not json", b"\xff\xfe", b"[]", b'"text"', b"{}", b'{"update_id": "5"}', b'{"update_id": -1}',
    b'{"update_id": 5, "message": "hi"}', b'{"update_id": 5, "message": {"message_id": 1, "text": "hi"}}',
    b'{"update_id": 5, "message": {"message_id": 1, "chat": {"id": "1"}, "text": "hi"}}',
    b'{"update_id": 5, "message": {"chat": {"id": 1}, "text": "hi"}}',
])
def test_malformed_updates_are_refused(body: bytes) -> None:
    with pytest.raises(InboundRejected) as info:
        make("http://127.0.0.1:9").parse(inbound(body))
    assert (info.value.status, info.value.word) == (400, "malformed")


def test_a_well_formed_update_is_accepted_directly() -> None:
    event, = make("http://127.0.0.1:9").parse(inbound(GOOD))
    assert event.delivery_id == "5" and event.data["text"] == "hi"


# ---- settings and sandbox ----------------------------------------------------------------------------

def test_settings_schema_wants_secrets_as_env_references() -> None:
    check = Draft202012Validator(Telegram.config_schema)
    good = {"type": "telegram", "token": "${env:TELEGRAM_BOT_TOKEN}", "secret_token": "${env:TELEGRAM_SECRET}",
            "parse_mode": "HTML", "chats": {"admin": 123456, "reception": "-1001234567890", "news": "@salon_news"}}
    assert list(check.iter_errors(good)) == []
    for bad in ({**good, "token": TOKEN}, {**good, "chats": {"admin": "Анна"}}, {**good, "parse_mode": "html"},
                {**good, "retries": 3}, {"type": "telegram"}):
        assert list(check.iter_errors(bad)), bad
    with pytest.raises(ConfigError, match="token is required"):
        Telegram("tg", {})
    with pytest.raises(ConfigError, match="chats.admin is not a chat id"):
        Telegram("tg", {"token": TOKEN, "chats": {"admin": "Анна"}})


def test_sandbox_points_the_connector_at_an_emulator_that_sends_what_parse_accepts(
        servers: tuple[Served, Swap, Served, Hooks]) -> None:
    api_server, swap, hook_server, hooks = servers
    hooks.got.clear()
    options = {"token": "${env:TELEGRAM_BOT_TOKEN}", "secret_token": "${env:TELEGRAM_SECRET}", "parse_mode": "HTML",
               "chats": {"admin": ADMIN, "office": GROUP}}
    settings, emulator = Telegram.sandbox("tg", options, base_url=api_server.url, hook_url=f"{hook_server.url}/h")
    assert settings == {"token": SANDBOX_TOKEN, "secret_token": SANDBOX_SECRET, "base_url": api_server.url,
                        "chats": {"admin": ADMIN, "office": GROUP}, "parse_mode": "HTML"}
    assert isinstance(emulator, TelegramEmulator) and {str(ADMIN), str(GROUP)} <= emulator.chats.keys()
    swap.app = emulator
    connector = Telegram.create("tg", settings, db=None, now=lambda: datetime.now(timezone.utc))
    assert perform(connector, "notify", {"to": "admin", "text": "<b>test</b>"}).data["chat_id"] == ADMIN
    assert emulator.messages[str(ADMIN)][0]["text"] == "test"
    control(api_server.url, "write", {"chat_id": CLIENT, "text": "привет"})
    event, = connector.parse(hooks.wait(1)[0])
    assert event.data["text"] == "привет"
    swap.settled()


class TestContract(ConnectorContract):
    type = "telegram"
    settings = {"chats": {"admins": ADMIN, "17": CLIENT, "owner": GROUP}}
    written = {"token": "${env:TELEGRAM_BOT_TOKEN}", "secret_token": "${env:TELEGRAM_SECRET}",
               "chats": {"admins": ADMIN}}
    secret_settings = ("token", "secret_token")

    def webhook(self, box: Sandbox, secret: str | None) -> Inbound:
        return inbound(GOOD, secret)

    def malformed(self, box: Sandbox) -> list[Inbound]:
        return [inbound(body, self.secret(box)) for body in (b"not json", b"[]", b'{"update_id": "5"}')]

    async def samples(self, box: Sandbox) -> dict[str, Mapping[str, Any]]:
        return {"message.send": {"to": CLIENT, "text": "Ждём вас завтра"}, "notify": {"to": "admins", "text": "Лид"},
                "report.send": {"report": "channels", "period": "last_week", "to": "owner"}}


# ---- report.send: the page as a document ---------------------------------------------------------------

async def _report(request: ReportRequest) -> Composed:
    return Composed(summary="Лиды: 12\nВыручка: 84 000,00 ₽", html=REPORT_PAGE, title="Каналы",
                    filename="report-channels-2026-11-24-2026-11-30.html", period="24.11–30.11.2026")

REPORT_PAGE = "<!doctype html><html lang=\"ru\"><title>Каналы</title><p>Лиды: 12</p></html>".encode()


def test_report_send_uploads_the_page_with_the_summary_as_caption(emu: TelegramEmulator, url: str) -> None:
    connector = make(url, parse_mode="HTML")
    connector.compose = _report
    result = perform(connector, "report.send", {"report": "channels", "period": "last_week", "to": "admin",
                                                "text": "Итоги недели <b>не</b> разметка:"})
    call = emu.calls[-1]
    assert call.path.endswith("/sendDocument") and call.headers["content-type"].startswith("multipart/form-data")
    [message] = emu.messages[str(ADMIN)]
    # Plain text whatever parse_mode says: a caption of figures is no markup.
    assert message["caption"] == "Итоги недели <b>не</b> разметка:\n\nЛиды: 12\nВыручка: 84 000,00 ₽"
    assert message["document"]["file_name"] == "report-channels-2026-11-24-2026-11-30.html"
    assert message["document"]["mime_type"] == "text/html"
    assert emu.documents[message["document"]["file_id"]] == REPORT_PAGE
    assert result.data["chat_id"] == ADMIN and result.data["file_id"] == message["document"]["file_id"]
    assert result.data["period"] == "24.11–30.11.2026"


def test_a_long_summary_is_cut_to_a_caption_telegram_takes(emu: TelegramEmulator, url: str) -> None:
    async def long_report(request: ReportRequest) -> Composed:
        lines = "\n".join(f"Канал {n}: лидов {n}, выручка {n * 1000},00 ₽ 📈" for n in range(100))
        return Composed(summary=lines, html=REPORT_PAGE, title="Каналы", filename="r.html", period="p")

    connector = make(url)
    connector.compose = long_report
    perform(connector, "report.send", {"report": "channels", "period": "last_week", "to": CLIENT})
    caption = emu.messages[str(CLIENT)][-1]["caption"]
    assert utf16_length(caption) <= 1024 and caption.endswith("\n…") and caption.startswith("Канал 0: лидов 0")


def test_report_send_to_an_unknown_chat_is_refused_before_composing(emu: TelegramEmulator, url: str) -> None:
    asked: list[ReportRequest] = []

    async def recording(request: ReportRequest) -> Composed:
        asked.append(request)
        return await _report(request)

    connector = make(url)
    connector.compose = recording
    with pytest.raises(Rejected, match="neither a Telegram chat id nor a name"):
        perform(connector, "report.send", {"report": "channels", "period": "last_week", "to": "boss"})
    assert asked == [] and emu.calls == []


def test_the_emulator_refuses_documents_as_telegram_does(emu: TelegramEmulator, url: str) -> None:
    endpoint = f"{url}/bot{TOKEN}/sendDocument"
    page = ("r.html", REPORT_PAGE, "text/html")
    cases = [({"chat_id": str(ADMIN)}, None, 400, "there is no document in the request"),
             ({"chat_id": str(ADMIN), "document": "https://example.com/r.html"}, None, 400,
              "wrong file identifier/HTTP URL specified"),
             ({"chat_id": str(ADMIN)}, {"document": ("r.html", b"", "text/html")}, 400, "file must be non-empty"),
             ({"chat_id": str(ADMIN), "caption": "я" * 1025}, {"document": page}, 400, "message caption is too long"),
             ({"chat_id": "999"}, {"document": page}, 400, "chat not found")]
    for data, files, status, said in cases:
        answer = WEB.post(endpoint, data=data, files=files) if files else WEB.post(endpoint, data=data)
        assert (answer.status_code, answer.json()["ok"]) == (status, False) and said in answer.json()["description"]
    big = emu.send_document({"chat_id": ADMIN, "document": Upload("r.html", "text/html", b"x" * (50 * 1024 * 1024 + 1))})
    assert big.status == 413 and big.body["description"] == "Request Entity Too Large"
    fine = WEB.post(endpoint, data={"chat_id": str(ADMIN), "caption": "я" * 1024}, files={"document": page})
    assert fine.status_code == 200 and fine.json()["result"]["document"]["file_size"] == len(REPORT_PAGE)
