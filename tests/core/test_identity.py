"""Matching an event from a system to one person (automator/identity.py), over a real store's links."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from automator.identity import Link, ids_of, match, phone_of, resolve
from automator.model import EntityRef, Event
from automator.store.sqlite import SqliteStore

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
ANNA = "+79161234567"


def keep(store: SqliteStore, links: tuple[Link, ...]) -> None:
    for link in links:
        store.link(link.system, link.ext_id, link.client, T0)


def arrive(store: SqliteStore, event: Event) -> Event:
    resolved, links = resolve(event, store)
    keep(store, links)
    return resolved


def client(ident: str, source: str, **data: object) -> Event:
    return Event(id=f"{source}-{ident}", type="client.updated", at=T0, entity=EntityRef("client", ident),
                 data=data, source=source)


def test_one_phone_from_two_systems_is_one_person_who_keeps_both_ids() -> None:
    store = SqliteStore()
    first = arrive(store, client("77", "booking", name="Анна", phone=ANNA))
    second = arrive(store, client("5", "crm", name="Анна Петрова", phone=ANNA))
    assert first.entity == second.entity == EntityRef("client", "77")  # the first system's id, free: kept
    assert second.data["ids"] == {"booking": "77", "crm": "5"}
    assert second.data["name"] == "Анна Петрова" and second.data["phone"] == ANNA


def test_the_same_id_in_two_systems_is_two_people() -> None:
    store = SqliteStore()
    yclients = arrive(store, client("77", "booking", phone=ANNA))
    bitrix = arrive(store, client("77", "crm", phone="+79031112233"))
    assert yclients.entity == EntityRef("client", "77")
    assert bitrix.entity == EntityRef("client", "crm:77")  # "77" names someone else already
    assert arrive(store, client("77", "crm")).entity == EntityRef("client", "crm:77")  # by its link, no phone


def test_a_deals_contact_names_the_person_and_stays_the_crms_own_id() -> None:
    store = SqliteStore()
    arrive(store, client("77", "booking", phone=ANNA))
    arrive(store, client("5", "crm", phone=ANNA))
    deal = arrive(store, Event(id="d", type="deal.created", at=T0, entity=EntityRef("deal", "9"),
                               data={"contact": "5", "stage": "new"}, source="crm"))
    assert deal.data == {"contact": "5", "client": "77", "stage": "new"}
    booking = arrive(store, Event(id="b", type="booking.created", at=T0, entity=EntityRef("booking", "1001"),
                                  data={"client": "77", "status": "confirmed"}, source="booking"))
    assert booking.data["client"] == "77"


def test_a_bare_reference_joins_the_person_once_the_phone_is_known() -> None:
    store = SqliteStore()
    arrive(store, client("77", "booking", phone=ANNA))
    deal = arrive(store, Event(id="d", type="deal.created", at=T0, entity=EntityRef("deal", "9"),
                               data={"contact": "5"}, source="crm"))
    assert deal.data["client"] == "5"  # nobody knows contact 5 yet: a person of its own
    contact = arrive(store, client("5", "crm", phone=ANNA))
    assert contact.entity == EntityRef("client", "77") and store.client_of("crm", "5") == "77"


def test_a_known_person_is_not_moved_by_a_phone_someone_else_has() -> None:
    store = SqliteStore()
    arrive(store, client("77", "booking", phone=ANNA))
    arrive(store, client("5", "crm", phone="+79031112233"))
    arrive(store, client("6", "crm", phone="+79035556677"))
    moved = arrive(store, client("6", "crm", phone=ANNA))  # a typo, or a shared family phone: not a merge
    assert moved.entity == EntityRef("client", "6") and store.client_of("phone", ANNA) == "77"


def test_events_naming_no_client_pass_as_they_are() -> None:
    store = SqliteStore()
    event = Event(id="t", type="timer.fired", at=T0, data={"rule": "r"}, source="engine")
    assert resolve(event, store) == (event, ())


def test_only_e164_counts_as_a_phone() -> None:
    assert phone_of(ANNA) == ANNA and phone_of(" +79161234567 ") == ANNA
    assert phone_of("89161234567") is None and phone_of("") is None and phone_of(None) is None


def test_match_and_ids_of() -> None:
    store = SqliteStore()
    assert match("booking", "77", ANNA, store) == ("77", (Link("booking", "77", "77"), Link("phone", ANNA, "77")))
    assert ids_of([("booking", "77"), ("phone", ANNA), ("crm", "5"), ("crm", "6")]) == {"booking": "77", "crm": "5"}


class _Run:
    """What an action's hooks read of a run (automator.actions.spec.ActionRun), over a store."""

    def __init__(self, store: SqliteStore, scope: dict[str, object]) -> None:
        self.store, self.scope = store, scope

    def entity(self, ref: EntityRef) -> object:
        return self.store.entity(ref)

    def client_of(self, system: str, ext_id: str) -> str | None:
        return self.store.client_of(system, ext_id)

    def links_of(self, client: str) -> list[tuple[str, str]]:
        return self.store.links_of(client)


def test_each_system_is_sent_its_own_id_of_the_person_or_their_phone() -> None:
    from automator.actions import CANONICAL
    from automator.actions.people import new_booking, new_deal, to_system
    from automator.core.outcome import StepError
    from automator.model import Entity

    store = SqliteStore()
    arrive(store, client("77", "booking", phone=ANNA))
    store.put_entity(Entity(EntityRef("client", "77"), {"name": "Анна", "phone": ANNA}, T0))
    arrive(store, client("5", "crm"))  # known to the CRM by id only
    run = _Run(store, {"client": {"id": "77"}, "booking": {"id": "1001"}, "deal": {"id": "9"}})
    deal = new_deal({"pipeline": "p", "stage": "new", "title": "T"}, run)  # type: ignore[arg-type]
    assert deal["contact"] == "77" and deal["booking"] == "1001"
    assert to_system(CANONICAL["deal.create"], deal, "crm", run)["contact"] == ANNA  # type: ignore[arg-type]
    booking = new_booking({"staff_id": 1, "services": [2], "datetime": "2026-03-09T12:00:00+03:00"}, run)  # type: ignore[arg-type]
    assert to_system(CANONICAL["booking.create"], booking, "booking", run) == {  # type: ignore[arg-type]
        "staff_id": 1, "services": [2], "datetime": "2026-03-09T12:00:00+03:00", "client": "77", "deal": "9",
        "client_phone": ANNA, "client_name": "Анна"}
    given = {"client": "olga", "category": "VIP"}  # automator's own id (a test's given:): as it is
    assert to_system(CANONICAL["client.set_category"], given, "booking", run) == given  # type: ignore[arg-type]
    with pytest.raises(StepError, match=r"^client.set_category: client 5 has no id in booking and no phone to "
                                        r"find them by \(known as crm 5\)$"):
        to_system(CANONICAL["client.set_category"], {"client": "5", "category": "VIP"}, "booking", run)  # type: ignore[arg-type]


def test_two_contacts_of_one_crm_with_one_phone_are_one_person_who_shows_both() -> None:
    store = SqliteStore()
    arrive(store, client("5", "crm", phone=ANNA))
    second = arrive(store, client("6", "crm", phone=ANNA))  # a duplicate card in the CRM
    assert second.entity == EntityRef("client", "5")
    assert second.data["ids"] == {"crm": "5"} and second.data["all_ids"] == {"crm": ["5", "6"]}


def test_a_telegram_chat_that_shares_its_own_phone_is_the_person_with_it() -> None:
    """The Telegram connector tells a client's private chat as `client.updated` (with the phone they shared) and
    names the chat as the message's `client`: the chat becomes one more id of the person (`client.ids.tg`)."""
    store = SqliteStore()
    arrive(store, client("77", "booking", name="Анна", phone=ANNA))
    shared = arrive(store, client("900000002", "tg", name="Анна", phone=ANNA))
    assert shared.entity == EntityRef("client", "77") and shared.data["ids"] == {"booking": "77", "tg": "900000002"}
    message = arrive(store, Event(id="m", type="message.received", at=T0, source="tg",
                                  data={"chat_id": 900000002, "text": "Хочу записаться", "client": "900000002"}))
    assert message.data["client"] == "77"
BORIS = "+79031112233"


def _record(store: SqliteStore, ident: str, **fields: object) -> None:
    """A client stored as automator's own (a local form's, or one stored before links existed): no link names them."""
    from automator.model import Entity

    store.put_entity(Entity(EntityRef("client", ident), dict(fields), T0))


def test_a_client_stored_before_links_is_adopted_only_when_the_phones_agree() -> None:
    store = SqliteStore()
    _record(store, "1005", name="Анна", phone=ANNA)  # a local form's client
    _record(store, "1006", name="Вера")  # no phone known
    _record(store, "1007", name="Глеб", phone=BORIS)
    stranger = arrive(store, client("1005", "crm", phone=BORIS))  # the CRM's contact 1005 is someone else
    assert stranger.entity == EntityRef("client", "crm:1005") and store.client_of("phone", BORIS) == "crm:1005"
    assert arrive(store, client("1006", "crm", phone=ANNA)).entity == EntityRef("client", "1006")  # one phone unknown
    assert arrive(store, client("1007", "booking")).entity == EntityRef("client", "1007")  # the event's unknown
    assert arrive(store, client("1008", "booking", phone="+79035556677")).entity == EntityRef("client", "1008")


def test_a_reported_client_without_phone_is_not_merged_into_whoever_has_the_phone_they_give_later() -> None:
    store = SqliteStore()
    arrive(store, client("77", "booking", name="Анна", phone=ANNA))
    child = arrive(store, client("78", "booking", name="Миша"))  # a YCLIENTS client with no phone
    _record(store, "78", name="Миша", ids={"booking": "78"})  # the decision on that event stores them
    later = arrive(store, client("78", "booking", name="Миша", phone=ANNA))  # the mother's phone
    assert child.entity == later.entity == EntityRef("client", "78")
    assert store.client_of("booking", "78") == "78" and store.client_of("phone", ANNA) == "77"


def test_a_person_no_system_reported_goes_to_a_crm_by_phone_or_not_at_all() -> None:
    from automator.actions import CANONICAL
    from automator.actions.people import to_system
    from automator.core.outcome import StepError

    store = SqliteStore()
    _record(store, "1005", name="Анна", phone=ANNA)  # a local form's client, with a phone
    _record(store, "1006", name="Вера")  # and without
    run = _Run(store, {"client": {"id": "1005"}})
    deal = {"pipeline": "p", "stage": "new", "title": "T"}
    # The bug: "1005" went to Bitrix24 as contact 1005, someone else's card.
    assert to_system(CANONICAL["deal.create"], {**deal, "contact": "1005"}, "crm", run)["contact"] == ANNA  # type: ignore[arg-type]
    for action, params in (("deal.create", {**deal, "contact": "1006"}),
                           ("contact.update", {"contact": "1006", "fields": {"name": "В"}}),
                           ("note.add", {"contact": "1006", "text": "t"}),
                           ("task.create", {"title": "t", "assignee": "admin", "client": "1006"})):
        with pytest.raises(StepError, match=rf"^{action}: client 1006 has no id in crm and no phone to find them "
                                            r"by$"):
            to_system(CANONICAL[action], params, "crm", run)  # type: ignore[arg-type]
    # The booking system's client actions: by phone when known, else by automator's own id (its client's id).
    tier = {"client": "1005", "category": "VIP"}
    assert to_system(CANONICAL["client.set_category"], tier, "booking", run)["client"] == ANNA  # type: ignore[arg-type]
    bare = {"client": "1006", "category": "VIP"}
    assert to_system(CANONICAL["client.set_category"], bare, "booking", run) == bare  # type: ignore[arg-type]
    linked = {"client": "1007", "category": "VIP"}
    arrive(store, client("1007", "crm"))  # known to the CRM by id only: not the booking system's client 1007
    with pytest.raises(StepError, match=r"client 1007 has no id in booking and no phone to find them by "
                                        r"\(known as crm 1007\)$"):
        to_system(CANONICAL["client.update"], {**linked, "fields": {"name": "x"}}, "booking", run)  # type: ignore[arg-type]


def test_a_contact_written_as_the_crms_own_id_or_a_phone_is_sent_as_it_is() -> None:
    from automator.actions import CANONICAL
    from automator.actions.people import new_deal, to_system

    store = SqliteStore()
    arrive(store, client("77", "booking", phone=ANNA))
    arrive(store, client("5", "crm", phone=ANNA))  # Anna's Bitrix24 contact
    arrive(store, client("77", "crm", phone=BORIS))  # Bitrix24's contact 77: Boris, person crm:77
    run = _Run(store, {"client": {"id": "77"}})
    spec = CANONICAL["deal.create"]
    deal = {"pipeline": "p", "stage": "new", "title": "T"}
    # The run's client (the default, or `{{ client.id }}`) is the person: Anna's contact 5, not Boris's 77.
    assert to_system(spec, new_deal(dict(deal), run), "crm", run)["contact"] == "5"  # type: ignore[arg-type]
    assert to_system(spec, {**deal, "contact": "77"}, "crm", run)["contact"] == "5"  # type: ignore[arg-type]
    # `{{ deal.contact }}`: the CRM's own id of a contact it reported, unchanged.
    other = _Run(store, {"client": {"id": "crm:77"}})
    assert to_system(spec, {**deal, "contact": "5"}, "crm", other)["contact"] == "5"  # type: ignore[arg-type]
    # Boris's deal's contact 77 is Boris's card, though Anna's person id is "77" too.
    assert to_system(spec, {**deal, "contact": "77"}, "crm", other)["contact"] == "77"  # type: ignore[arg-type]
    assert to_system(spec, {**deal, "contact": BORIS}, "crm", run)["contact"] == BORIS  # type: ignore[arg-type]
    # A person's id the CRM does not know as a contact: that person, by their id there.
    assert to_system(spec, {**deal, "contact": "crm:77"}, "crm", run)["contact"] == "77"  # type: ignore[arg-type]
    # An id naming no person at all: a contact automator has not seen, the CRM's to find (or refuse).
    assert to_system(spec, {**deal, "contact": "31"}, "crm", run)["contact"] == "31"  # type: ignore[arg-type]
