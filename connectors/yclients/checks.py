"""What a YCLIENTS action would refuse or get wrong, found by `validate` from the params as written and the
connector's settings (`Yclients.check_params`): a category the company does not have or that is in no tier group,
a client field YCLIENTS has not, a booking YCLIENTS could not make, ids that are not YCLIENTS's, points that are not
an exact amount, loyalty settings an action needs."""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from automator.checks import UNKNOWN, CheckContext, ParamProblem, choice_hint, literal
from . import categories, loyalty, mapping

CATEGORY_ACTIONS = ("client.set_category", "client.add_category", "client.remove_category")
E164 = re.compile(r"^\+[1-9]\d{7,14}$")
LOYALTY_ACTIONS = ("loyalty.accrue", "loyalty.spend", "loyalty.set_tier", "yclients.abonement_freeze",
                   "yclients.abonement_unfreeze")


def check(action: str, params: Mapping[str, Any], options: Mapping[str, Any], context: CheckContext
          ) -> list[ParamProblem]:
    """The problems YCLIENTS would have with one action step's params."""
    found: list[ParamProblem] = []
    if action in CATEGORY_ACTIONS:
        found += _category(action, params.get("category"), options, context)
        found += _id(params, "client", context)
    if action == "client.update":
        found += _fields(params.get("fields"))
        found += _id(params, "client", context)
    if action == "booking.create":
        found += _booking(params, context)
    if action in ("yclients.loyalty_cards", "yclients.certificates", "yclients.abonements"):
        found += _id(params, "client", context)
    if action in LOYALTY_ACTIONS:
        found += _loyalty(action, params, options, context)
    if action in ("booking.set_status", "booking.cancel"):
        found += _id(params, "booking", context)
    return found


def _category(action: str, value: Any, options: Mapping[str, Any], context: CheckContext,
              where: str = "category") -> list[ParamProblem]:
    """A category (`where`: the param that names it) the company's settings would refuse, or that replaces no
    other of its kind."""
    known = literal(value)
    if known is UNKNOWN:
        return []
    title = "" if known is None else str(known).strip()
    if not title:
        return [ParamProblem((where,), "the category is empty", "name a client category, such as VIP")]
    groups = options.get("category_groups") if isinstance(options.get("category_groups"), Mapping) else None
    setting = options.get("categories")
    if not categories.declared(title, setting, groups):
        listed = [*setting, *(t for ts in (groups or {}).values() for t in ts)] if isinstance(setting, list) else []
        return [ParamProblem((where,), f"'{title}' is not among the client categories of connector "
                                            f"'{context.connector}' (yclients) `categories:`",
                             choice_hint(title, listed, "categories") + " (add it to `categories:` in "
                             "automator.yaml once the company has it)")]
    if action in ("client.set_category", "loyalty.set_tier") and groups and categories.group_of(title, groups) is None:
        hint = ("write client.add_category for a category beside the others, or put it in its group in "
                "`category_groups:`") if action == "client.set_category" else \
            "put the tiers' categories in one group of `category_groups:`, so that each replaces the others"
        return [ParamProblem((where,), f"'{title}' is in no group of connector '{context.connector}' "
                                       f"`category_groups:`, so {action} only adds it, replacing nothing", hint,
                             severity="warning")]
    return []


def _loyalty(action: str, params: Mapping[str, Any], options: Mapping[str, Any], context: CheckContext
             ) -> list[ParamProblem]:
    """The loyalty actions: a tier's category as client.set_category's, an amount of points that is exact money,
    and the settings the action needs (a card type, the chain)."""
    if action == "loyalty.set_tier":
        named = "category" if params.get("category") not in (None, "") else "tier"
        return _category(action, params.get(named), options, context, named) + _id(params, "client", context)
    if action in ("loyalty.accrue", "loyalty.spend"):
        found = _id(params, "client", context) + _amount(params)
        if "card_type" in params:
            found += _number(params, ("card_type",), "loyalty card type id")
        elif not options.get("loyalty_card_type"):
            found.append(ParamProblem((), f"connector '{context.connector}' sets no `loyalty_card_type`: the points "
                                          "go to the client's only loyalty card, and are refused for a client with "
                                          "several or none", "set loyalty_card_type (the card type id YCLIENTS "
                                                             "shows) under the connector in automator.yaml",
                                      severity="warning"))
        return found
    found = _number(params, ("abonement",), "abonement id")
    if not options.get("chain_id"):
        found.append(ParamProblem((), f"connector '{context.connector}' sets no `chain_id`: abonements belong to the "
                                      "chain, and YCLIENTS freezes them only through it",
                                  "write chain_id (the chain's id YCLIENTS shows) under the connector in "
                                  "automator.yaml"))
    till = literal(params.get("till"))
    if action == "yclients.abonement_freeze" and till not in (UNKNOWN, None) and \
            not re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(till)):
        found.append(ParamProblem(("till",), f"'{till}' is not a day", "write it as 2026-04-15"))
    return found


def _amount(params: Mapping[str, Any]) -> list[ParamProblem]:
    """A literal amount of points is decimal text YCLIENTS's card takes exactly: more than 0, kopecks at most."""
    known = literal(params.get("amount"))
    if known is UNKNOWN or known is None:
        return []
    try:
        loyalty.amount(known)
    except ValueError as exc:
        return [ParamProblem(("amount",), str(exc), 'write it as "150" or "99.50"')]
    return []


def _fields(value: Any) -> list[ParamProblem]:
    """client.update's `fields`: names YCLIENTS clients have, and a birthday YCLIENTS would take."""
    if not isinstance(value, Mapping):
        return []
    found = []
    for name, given in value.items():
        if name not in mapping.UPDATABLE:
            found.append(ParamProblem(("fields", name), f"YCLIENTS clients have no field '{name}'",
                                      choice_hint(str(name), mapping.UPDATABLE, "fields") +
                                      " (a custom field goes under `custom_fields: {code: value}`)", key=True))
            continue
        known = literal(given)
        if known is UNKNOWN:
            continue
        if mapping.UPDATABLE[name] == "birth_date" and known not in (None, ""):
            try:
                mapping.birth_date(known)
            except ValueError as exc:
                found.append(ParamProblem(("fields", name), str(exc), "write it as 1990-05-01"))
        if name == "custom_fields" and not isinstance(known, Mapping):
            found.append(ParamProblem(("fields", name), "custom_fields is a mapping of the custom fields' codes "
                                                        "to their values", "write custom_fields: {source: instagram}"))
    return found


def _booking(params: Mapping[str, Any], context: CheckContext) -> list[ParamProblem]:
    """booking.create's required fields as YCLIENTS takes them (reference part 2 §1.1): the schema has made sure
    they are there; here, that literal ones are what the API accepts."""
    found = _id(params, "client", context)
    if "client" not in params and not context.run_has_client:
        found.append(ParamProblem((), "booking.create needs a client: this rule's runs have none",
                                  'give `client:` (the client\'s YCLIENTS id, or their phone "+7…")'))
    found += _number(params, ("staff_id",), "staff member's id")
    services = params.get("services")
    if isinstance(services, list):
        for index in range(len(services)):
            found += _number(params, ("services", index), "service's id")
    when = literal(params.get("datetime"))
    if when is not UNKNOWN and when is not None and (mapping.parse_datetime(when) is None):
        found.append(ParamProblem(("datetime",), f"'{when}' is not an ISO 8601 time with an offset",
                                  "write it as 2026-03-01T12:00:00+03:00, or a template such as "
                                  "\"{{ booking.starts_at + days(28) }}\""))
    length = literal(params.get("seance_length"))
    if length is not UNKNOWN and length is not None and (not str(length).isdigit() or int(str(length)) < 300):
        found.append(ParamProblem(("seance_length",), f"a booking's length is whole seconds, at least 300, not "
                                                      f"'{length}'", "write 3600 for an hour"))
    return found


def _number(params: Mapping[str, Any], path: tuple[str | int, ...], what: str) -> list[ParamProblem]:
    value: Any = params
    for step in path:
        value = value[step]
    known = literal(value)
    if known is UNKNOWN or known is None or (not isinstance(known, bool) and str(known).strip().isdigit()):
        return []
    return [ParamProblem(path, f"a YCLIENTS {what} is a number, not '{known}'", "write the id YCLIENTS shows")]


def _id(params: Mapping[str, Any], what: str, context: CheckContext) -> list[ParamProblem]:
    """A record's or client's id is a YCLIENTS number (a client may also be given by phone, E.164): a literal of
    another form, or another system's id, is not."""
    if what not in params:
        return []  # the run's: a client is a person, sent as YCLIENTS's own id of them or by phone
    value = params[what]
    known = literal(value)
    if known is UNKNOWN:
        others = context.foreign(value)
        if not others:
            return []
        return [ParamProblem((what,), f"'{value.source}' is an id from {context.named(others)}, not a YCLIENTS "
                                      f"{what} id", f"leave `{what}:` out for the run's {what}, or give the {what}'s "
                                                    "YCLIENTS id")]
    if known in (None, "") or str(known).strip().isdigit():
        return []
    if what == "client" and E164.match(str(known).strip()):
        return []
    return [ParamProblem((what,), f"a YCLIENTS {what} id is a number, not '{known}'",
                         f"leave `{what}:` out for the run's {what}, or write its YCLIENTS id" +
                         (" (or the client's phone, +7…)" if what == "client" else ""))]
