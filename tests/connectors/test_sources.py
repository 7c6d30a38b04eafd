"""Where a lead, deal or booking came from, as each connector reads it from its system's payloads: the source
fields the channel map classifies (`lead_source`, `utm_*`, `source_description`, `tags`) and who made a change
(`modified_by`, for "who moved the stage")."""
from __future__ import annotations

from typing import Any

import pytest

from automator.channels import DEFAULTS
from automator.errors import Rejected
from automator_connectors.amocrm.mapping import FieldMap, deal_data, lead_from_v4, lead_from_webhook, parse_php_form
from automator_connectors.bitrix24 import events as bitrix_events
from automator_connectors.bitrix24.mapping import canonical_contact, canonical_deal, canonical_lead
from automator_connectors.yclients.mapping import booking_fields, booking_source

# crm.lead.get as contract part 2 §2.6 shows the lead crm.lead.add made, with the portal's own columns.
BITRIX_LEAD = {"ID": "3465", "TITLE": "Заявка с сайта", "NAME": "Анна", "LAST_NAME": "Иванова", "STATUS_ID": "NEW",
               "SOURCE_ID": "WEB", "SOURCE_DESCRIPTION": "форма /promo", "ASSIGNED_BY_ID": "6", "OPENED": "Y",
               "CREATED_BY_ID": "1", "MODIFY_BY_ID": "6", "DATE_CREATE": "2026-03-02T10:00:00+03:00",
               "PHONE": [{"ID": "1", "VALUE": "+79161234567", "VALUE_TYPE": "MOBILE", "TYPE_ID": "PHONE"}],
               "UTM_SOURCE": "yandex", "UTM_MEDIUM": "cpc", "UTM_CAMPAIGN": "spring", "UTM_CONTENT": "banner1",
               "UTM_TERM": "стрижка"}


def test_a_bitrix24_lead_carries_its_source_description_utm_and_who_changed_it() -> None:
    data = canonical_lead(BITRIX_LEAD)
    assert {k: data[k] for k in ("lead_source", "source_description", "utm_source", "utm_medium", "utm_campaign",
                                 "utm_content", "utm_term", "modified_by")} == {
        "lead_source": "WEB", "source_description": "форма /promo", "utm_source": "yandex", "utm_medium": "cpc",
        "utm_campaign": "spring", "utm_content": "banner1", "utm_term": "стрижка", "modified_by": "6"}
    event = bitrix_events.lead_created("crm", BITRIX_LEAD, None)
    # A site form filled in after a Yandex advert is the advert's: the specific channel comes before the site.
    assert event.data["utm_campaign"] == "spring" and DEFAULTS.classify(event.data) == "yandex_direct"


def test_a_bitrix24_deal_and_contact_say_who_made_the_change() -> None:
    deal = {"ID": "410", "CATEGORY_ID": "4", "STAGE_ID": "C4:WON", "STAGE_SEMANTIC_ID": "S", "SOURCE_ID": "CALL",
            "MODIFY_BY_ID": "12", "MOVED_BY_ID": "12", "UTM_SOURCE": "vk", "UTM_CAMPAIGN": None}
    data = canonical_deal(deal, {}, lambda stage, category: ("sales", "won"))
    assert (data["lead_source"], data["utm_source"], data["modified_by"], data["stage"]) == ("CALL", "vk", "12", "won")
    assert "utm_campaign" not in data  # Bitrix's null is no value
    contact = canonical_contact({"ID": "7", "NAME": "Анна", "SOURCE_ID": "WEB", "MODIFY_BY_ID": "3"}, {})
    assert (contact["lead_source"], contact["modified_by"]) == ("WEB", "3")


# A `leads[status]` webhook item (legacy v2 names) and a v4 lead of the same lead.
AMO_ITEM = {"id": "10701093", "name": "Абонемент", "status_id": "142", "old_status_id": "58141811",
            "pipeline_id": "6950551", "price": "22500", "responsible_user_id": "2079676", "last_modified": "1539782664",
            "modified_user_id": "2079718", "date_create": "1539780000", "source_id": "5501",
            "tags": {"0": {"id": "1", "name": "instagram"}},
            "custom_fields": {"0": {"id": "681120", "code": "UTM_SOURCE", "values": {"0": {"value": "ig"}}},
                              "1": {"id": "681122", "code": "UTM_CAMPAIGN", "values": {"0": {"value": "spring"}}}}}


def test_an_amocrm_lead_gives_its_source_tags_utm_and_who_changed_it() -> None:
    state = lead_from_webhook(AMO_ITEM, "status")
    data = deal_data(state, ("sales", "won"), FieldMap(), {"5501": "site"})
    assert {k: data[k] for k in ("lead_source", "utm_source", "utm_campaign", "tags", "modified_by")} == {
        "lead_source": "site", "utm_source": "ig", "utm_campaign": "spring", "tags": ["instagram"],
        "modified_by": "2079718"}
    # An unnamed source is its id; no source at all is no lead_source.
    assert deal_data(state, None, FieldMap())["lead_source"] == "5501"
    assert "lead_source" not in deal_data(lead_from_webhook({**AMO_ITEM, "source_id": "0"}, "status"), None, FieldMap())
    v4 = lead_from_v4({"id": 10701093, "status_id": 142, "pipeline_id": 6950551, "updated_at": 1539782664,
                       "updated_by": 2079718, "source_id": 5501, "_embedded": {"tags": [{"id": 1, "name": "vk"}]},
                       "custom_fields_values": [{"field_id": 681120, "field_code": "UTM_SOURCE",
                                                 "values": [{"value": "vk"}]}]})
    polled = deal_data(v4, None, FieldMap(), {"5501": "site"})
    assert (polled["lead_source"], polled["utm_source"], polled["modified_by"]) == ("site", "vk", "2079718")


def test_a_webhook_form_reaches_the_same_fields() -> None:
    form = parse_php_form("leads[update][0][id]=5&leads[update][0][status_id]=58141807&leads[update][0][pipeline_id]=1"
                          "&leads[update][0][last_modified]=1700000000&leads[update][0][modified_user_id]=77"
                          "&leads[update][0][tags][0][name]=vk")
    data = deal_data(lead_from_webhook(form["leads"]["update"]["0"], "update"), None, FieldMap())
    assert (data["modified_by"], data["tags"]) == ("77", ["vk"]) and DEFAULTS.classify(data) == "vk"


def test_amocrm_refuses_to_write_a_lead_source_and_writes_utm_source_to_its_tracking_field() -> None:
    with pytest.raises(Rejected, match="only when an integration creates the lead"):
        FieldMap().lead_body({"lead_source": "site"}, {})
    assert FieldMap().lead_body({"utm_source": "vk"}, {}) == {
        "custom_fields_values": [{"field_code": "UTM_SOURCE", "values": [{"value": "vk"}]}]}


def _record(**source: Any) -> dict[str, Any]:
    # The source-related keys of a real record (reference §2.4), as an admin's record has them.
    return {"id": 1, "online": False, "api_id": "", "from_url": "", "bookform_id": 0, "record_from": "",
            "is_mobile": 0, **source}


@pytest.mark.parametrize(("source", "expected"), [
    ({}, {"lead_source": "admin"}),
    ({"api_id": "run-1/do/0"}, {"lead_source": "api"}),
    ({"online": True}, {"lead_source": "online"}),
    ({"online": True, "bookform_id": 767416}, {"lead_source": "widget"}),
    ({"online": True, "is_mobile": 1, "bookform_id": 767416}, {"lead_source": "mobile_app"}),
    ({"online": True, "record_from": "Prodoctorov "}, {"lead_source": "prodoctorov"}),
    ({"online": True, "from_url": "https://salon.example/book?utm_source=vk&UTM_CAMPAIGN=spring&utm_term="},
     {"lead_source": "widget", "utm_source": "vk", "utm_campaign": "spring"}),
], ids=["admin", "api", "online", "widget", "mobile-app", "record-from", "page-utm"])
def test_a_yclients_record_says_where_it_was_made(source: dict[str, Any], expected: dict[str, str]) -> None:
    assert booking_source(_record(**source)) == expected
    fields = booking_fields(_record(**source), company_id="1", branch=None, tz=None)
    assert {k: fields[k] for k in expected} == expected


def test_a_partial_yclients_record_leaves_the_source_alone() -> None:
    assert booking_source({"id": 1, "attendance": 1}) == {}
    assert "lead_source" not in booking_fields({"id": 1, "attendance": 1}, company_id="1", branch=None, tz=None)


def test_the_default_channels_read_what_yclients_produces() -> None:
    assert DEFAULTS.classify(booking_source(_record(online=True, record_from="prodoctorov"))) == "aggregator"
    assert DEFAULTS.classify(booking_source(_record())) == "walk_in"
    assert DEFAULTS.classify(booking_source(_record(online=True, from_url="https://x.ru/?utm_source=vk"))) == "vk"


def test_a_contact_or_client_named_by_its_phone_leaves_the_name_the_product_knows() -> None:
    # A Bitrix24 contact made for a deal with only the phone to go on, and a YCLIENTS client made for an action
    # (the name both systems require is the phone): their answers and webhooks must not rename Анна to her phone.
    from automator_connectors.bitrix24.mapping import canonical_contact
    from automator_connectors.yclients.mapping import client_fields

    made = canonical_contact({"ID": "71", "NAME": "+79161234567",
                              "PHONE": [{"VALUE": "+79161234567", "VALUE_TYPE": "MOBILE"}]}, {})
    assert "name" not in made and made["phone"] == "+79161234567"
    named = canonical_contact({"ID": "72", "NAME": "Анна", "PHONE": [{"VALUE": "89161234567"}]}, {})
    assert named["name"] == "Анна"
    assert "name" not in client_fields({"id": 5, "name": "79161234567", "phone": "+79161234567"}, tz=None)
    assert client_fields({"id": 5, "name": "Анна", "phone": "79161234567"}, tz=None)["name"] == "Анна"
