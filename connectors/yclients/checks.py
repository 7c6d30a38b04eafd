"""What a YCLIENTS action would refuse or get wrong, found by `validate` from the params as written and the
connector's settings (`Yclients.check_params`): a category the company does not have, ids that are not YCLIENTS's."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from automator.checks import UNKNOWN, CheckContext, ParamProblem, choice_hint, literal


def check(action: str, params: Mapping[str, Any], options: Mapping[str, Any], context: CheckContext
          ) -> list[ParamProblem]:
    """The problems YCLIENTS would have with one action step's params."""
    found: list[ParamProblem] = []
    if action == "client.set_category":
        found += _category(params.get("category"), options.get("categories"), context)
        found += _id(params, "client", context)
    if action == "yclients.loyalty_cards":
        found += _id(params, "client", context)
    if action == "booking.set_status":
        found += _id(params, "booking", context)
    return found


def allowed_category(title: str, categories: Any) -> bool:
    """Whether the `categories:` setting (when there is one) lists this title, compared as YCLIENTS' labels are:
    ignoring case and the spaces around it."""
    if not isinstance(categories, list):
        return True
    return title.strip().casefold() in {str(c).strip().casefold() for c in categories}


def _category(value: Any, categories: Any, context: CheckContext) -> list[ParamProblem]:
    known = literal(value)
    if known is UNKNOWN:
        return []
    title = "" if known is None else str(known).strip()
    if not title:
        return [ParamProblem(("category",), "the category is empty", "name a client category, such as VIP")]
    if allowed_category(title, categories):
        return []
    return [ParamProblem(("category",), f"'{title}' is not among the client categories of connector "
                                        f"'{context.connector}' (yclients) `categories:`",
                         choice_hint(title, categories, "categories") + " (add it to `categories:` in automator.yaml "
                         "once the company has it)")]


def _id(params: Mapping[str, Any], what: str, context: CheckContext) -> list[ParamProblem]:
    """A record's or client's id is a YCLIENTS number: a literal of another form, or another system's id, is not."""
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
    return [ParamProblem((what,), f"a YCLIENTS {what} id is a number, not '{known}'",
                         f"leave `{what}:` out for the run's {what}, or write its YCLIENTS id")]
