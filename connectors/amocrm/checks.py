"""What an amoCRM action would refuse or get wrong, found by `validate` from the params as written and the
connector's settings (`Amocrm.check_params`): the actions' own rules, applied to what is known before a run."""
from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from automator.actions.crm import NOTE_TARGETS
from automator.checks import (STAGE_HINT, UNKNOWN, CheckContext, ParamProblem, by_phone_hint, choice_hint,
                             foreign_contact, literal)
from automator.errors import Rejected
from .mapping import (CLOSED, CONTACT_KEYS, LEAD_COLUMNS, SOURCE_IS_READ_ONLY, TRACKING, e164, people_of, price,
                      tag_names, unix_time)
from .people import CONTACT_FIELDS


def check(action: str, params: Mapping[str, Any], options: Mapping[str, Any], context: CheckContext
          ) -> list[ParamProblem]:
    """The problems amoCRM would have with one action step's params."""
    users = people_of(options)
    custom = {str(k) for k in (options.get("fields") or {})}
    found: list[ParamProblem] = []
    if action in ("deal.create", "deal.move", "deal.update"):
        found += _fields(action, params.get("fields"), custom, users, context)
    if action in ("deal.create", "deal.move"):
        found += _stage(params, context)
    if action in ("deal.move", "deal.update", "deal.assign"):
        found += _number(params.get("deal"), ("deal",), "deal")
    if action == "deal.assign":
        found += _user(params.get("to"), ("to",), users, context)
    if action == "contact.update":
        found += _contact_fields(params.get("fields"), {str(k) for k in (options.get("contact_fields") or {})},
                                 users, context)
        found += _contact_id(params, context)
    if action == "note.add":
        found += _note(params)
    if action == "deal.create":
        found += _user(params.get("responsible"), ("responsible",), users, context)
        found += _amount(params.get("amount"), ("amount",))
        found += _contact(params, context)
    if action == "task.create":
        found += _user(params.get("assignee"), ("assignee",), users, context)
        found += _due(params.get("due"))
        found += _number(params.get("deal"), ("deal",), "deal")
        found += _task_client(params.get("client"), context)
    return found


def _fields(action: str, fields: Any, custom: set[str], users: Mapping[str, Any], context: CheckContext
            ) -> list[ParamProblem]:
    """Lead columns (title, amount, responsible), the custom fields of the `fields:` setting and, for a create,
    the client's phone, email and name: amoCRM has no field for any other name."""
    if not isinstance(fields, Mapping):
        return []
    known = {*LEAD_COLUMNS, "tags", *TRACKING, *custom, *(CONTACT_KEYS if action == "deal.create" else ())}
    found = []
    for name, value in fields.items():
        path = ("fields", name)
        if name in ("stage", "pipeline"):
            found.append(ParamProblem(path, f"{action} cannot set the deal's {name} through `fields:`",
                                      STAGE_HINT[action], key=True))
        elif name == "lead_source":
            found.append(ParamProblem(path, SOURCE_IS_READ_ONLY, "write the advert's source as utm_source", key=True))
        elif name not in known:
            found.append(_unmapped(str(name), known, context, "amoCRM field", "leads under `fields:`"))
        elif name == "amount":
            found += _amount(value, path)
        elif name == "responsible":
            found += _user(value, path, users, context)
        elif name == "tags":
            found += _tags(value, path)
    return found


def _unmapped(name: str, known: set[str], context: CheckContext, what: str, where: str) -> ParamProblem:
    """A field name amoCRM has no field for: a did-you-mean, or how to map it to a custom field (`where`)."""
    guess = choice_hint(name, known, "fields")
    how = (f"map it to a custom field of {where} of connector '{context.connector}' in automator.yaml "
           f"({name}: <field id>)")
    return ParamProblem(("fields", name), f"connector '{context.connector}' (amocrm) has no {what} for '{name}'",
                        f"{guess} Or {how}" if guess.startswith("did you mean") else
                        f"{how}; known: " + ", ".join(sorted(known)), key=True)


def _tags(value: Any, path: tuple[str | int, ...]) -> list[ParamProblem]:
    """Tags are a list of names: a single text would be refused (it is not split at commas: a name may hold one)."""
    known = literal(value)
    if known is UNKNOWN:
        return []
    try:
        tag_names(known, "tags")
    except Rejected as exc:
        return [ParamProblem(path, str(exc), "write a list: tags: [VIP, повторный] (an empty list clears them)")]
    return []


def _contact_fields(fields: Any, custom: set[str], users: Mapping[str, Any], context: CheckContext
                    ) -> list[ParamProblem]:
    """A contact's name, phone, email, responsible and tags, and the custom fields of `contact_fields:`."""
    if not isinstance(fields, Mapping):
        return []
    known = {*CONTACT_FIELDS, *custom}
    found = []
    for name, value in fields.items():
        path = ("fields", name)
        if name not in known:
            found.append(_unmapped(str(name), known, context, "contact field", "contacts under `contact_fields:`"))
        elif name == "responsible":
            found += _user(value, path, users, context)
        elif name == "tags":
            found += _tags(value, path)
        elif name == "phone" and literal(value) is not UNKNOWN and e164(literal(value)) is None:
            found.append(ParamProblem(path, f"'{literal(value)}' is not a phone number",
                                      'write it in full, such as "+79161234567"'))
    return found


def _contact_id(params: Mapping[str, Any], context: CheckContext) -> list[ParamProblem]:
    """contact.update's `contact:` is an amoCRM contact id or a phone to find (or make) it by; another system's
    record id written in a template would change whichever amoCRM contact has that number."""
    if "contact" not in params:
        return []  # the run's client: a person, whom the engine sends as amoCRM knows them (identity.py)
    value = params["contact"]
    known = literal(value)
    if known is UNKNOWN:
        others = context.foreign(value)
        if not others:
            return []
        return [ParamProblem(("contact",), f"'{value.source}' is an id from {context.named(others)}, but amoCRM "
                                           "takes `contact:` as its own contact id: another person's card would "
                                           "change", by_phone_hint(context, "amoCRM"))]
    text = "" if known is None else str(known).strip()
    if not text or text.isdigit() or e164(text) is not None:
        return []
    return [ParamProblem(("contact",), f"'{text}' is neither an amoCRM contact id nor a phone number",
                         by_phone_hint(context, "amoCRM"))]


def _note(params: Mapping[str, Any]) -> list[ParamProblem]:
    """A note goes on one record: the contact, else the lead, else the deal (in amoCRM a lead is the deal)."""
    named = [k for k in NOTE_TARGETS if k in params]
    found = [p for k in named for p in _number(params[k], (k,), k)]
    if len(named) > 1:
        found.append(ParamProblem((named[1],), f"note.add names {' and '.join(named)}: amoCRM puts a note on one "
                                               "record", f"keep one of {', '.join(named)}"))
    return found


def _stage(params: Mapping[str, Any], context: CheckContext) -> list[ParamProblem]:
    """amoCRM addresses a stage by its pipeline's id and its status id, both numbers (142/143 for a stage whose
    `outcome:` is won/lost): a pipeline file without them cannot be moved into."""
    pipeline, stage = context.pipeline(params), literal(params.get("stage"))
    if pipeline is None or not isinstance(stage, str) or stage not in pipeline.stages:
        return []
    where = f" in {pipeline.location.path}" if pipeline.location is not None else ""
    if pipeline.crm_id is None or not str(pipeline.crm_id).isdigit():
        at = ("pipeline",) if "pipeline" in params else ("stage",)
        return [ParamProblem(at, f"pipeline '{pipeline.name}' has no amoCRM pipeline id (a number) as its `id:`",
                             f"write its id{where}: 142/143 exist in every pipeline, so a stage alone is ambiguous")]
    spec = pipeline.stages[stage]
    if str(spec.crm_id).isdigit() or spec.outcome in CLOSED:
        return []
    return [ParamProblem(("stage",), f"stage '{stage}' of pipeline '{pipeline.name}' has the id '{spec.crm_id}': "
                                     "amoCRM status ids are numbers",
                         f"correct its `id:`{where} (or give it `outcome: won` or `lost`, amoCRM's 142 and 143)")]


def _user(value: Any, path: tuple[str, ...], users: Mapping[str, Any], context: CheckContext) -> list[ParamProblem]:
    """An employee is a name of the `users:` setting or an amoCRM user id; a literal that is neither is refused."""
    known = literal(value)
    if known is UNKNOWN or known in (None, ""):
        return []
    text = str(known).strip()
    if text in users or text.isdigit():
        return []
    return [ParamProblem(path, f"{path[-1]} '{text}' is neither a name under `users:` or `roles:` of connector "
                               f"'{context.connector}' (amocrm) nor an amoCRM user id",
                         choice_hint(text, users, "users") + " (`users:` and `roles:` map a name to an amoCRM user id)")]


def _amount(value: Any, path: tuple[str | int, ...]) -> list[ParamProblem]:
    known = literal(value)
    if known is UNKNOWN or known in (None, ""):
        return []
    try:
        price(known)
    except Rejected as exc:
        return [ParamProblem(path, str(exc), "write it as 15000")]
    return []


def _number(value: Any, path: tuple[str, ...], what: str) -> list[ParamProblem]:
    known = literal(value)
    if known is UNKNOWN or known in (None, "") or str(known).strip().lstrip("-").isdigit():
        return []
    return [ParamProblem(path, f"{what} '{known}' is not an amoCRM id (a number)",
                         f'write an amoCRM id, or a template such as "{{{{ event.{what} }}}}"')]


def _due(value: Any) -> list[ParamProblem]:
    known = literal(value)
    if known is UNKNOWN or known in (None, ""):
        return []
    try:
        unix_time(known, datetime.now(UTC))
    except Rejected as exc:
        return [ParamProblem(("due",), str(exc), "write a duration from now (1d, 2h) or a date and time with its "
                                                 "offset (2026-03-02T18:00:00+03:00)")]
    return []


def _contact(params: Mapping[str, Any], context: CheckContext) -> list[ParamProblem]:
    """`contact:` is an amoCRM contact id or a phone to find (or make) the contact by. Another system's client id,
    written or put there by the engine for the run's client, would link the lead to another person."""
    found = foreign_contact(params, context, "amoCRM", "lead")
    if found is not None:
        return found
    known = literal(params["contact"])
    hint = by_phone_hint(context, "amoCRM")
    text = "" if known is None else str(known).strip()
    fields = found if isinstance(found := params.get("fields"), Mapping) else {}
    if not text or text.isdigit() or e164(text) is not None or "phone" in fields or "email" in fields:
        return []
    return [ParamProblem(("contact",), f"'{text}' is neither an amoCRM contact id nor a phone number", hint)]


def _task_client(value: Any, context: CheckContext) -> list[ParamProblem]:
    """A task's `client:` (without `deal:`) puts it on the amoCRM contact of that id."""
    known = literal(value)
    if known is not UNKNOWN:
        return _number(value, ("client",), "client")
    others = context.foreign(value)
    if not others:
        return []
    return [ParamProblem(("client",), f"'{value.source}' is an id from {context.named(others)}, but amoCRM puts the "
                                      "task on its own contact of that id: another person's card",
                         "leave `client:` out and give `deal:`, or an amoCRM contact id such as "
                         '"{{ deal.client }}"')]
