"""What a Bitrix24 action would refuse or get wrong, found by `validate` from the params as written and the
connector's settings (`Bitrix24.check_params`): the actions' own rules, applied to what is known before a run."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from automator.actions.crm import NOTE_TARGETS
from automator.checks import (STAGE_HINT, UNKNOWN, CheckContext, ParamProblem, by_phone_hint, choice_hint,
                             foreign_contact, literal)
from automator.errors import Rejected
from .mapping import (CONTACT_FIELDS, DEAL_FIELDS, MULTIFIELDS, RESERVED, bitrix_field, comm_value, contact_field,
                      e164, looks_like_phone, stage_category)

DEAL_ACTIONS = ("deal.create", "deal.move", "deal.update")
# `deal:` is a Bitrix24 deal id
ON_A_DEAL = ("deal.move", "deal.update", "deal.assign", "note.add", "bitrix24.todo", "bitrix24.comment")


def check(action: str, params: Mapping[str, Any], options: Mapping[str, Any], context: CheckContext
          ) -> list[ParamProblem]:
    """The problems Bitrix24 would have with one action step's params."""
    custom = {str(k): str(v) for k, v in (options.get("fields") or {}).items()}
    roles = {str(k): str(v) for k, v in (options.get("roles") or {}).items()}
    found: list[ParamProblem] = []
    if action in DEAL_ACTIONS:
        found += _fields(action, params.get("fields"), custom, roles, context)
    if action in ("deal.create", "deal.move"):
        found += _stage(params, context)
    if action in ON_A_DEAL:
        found += _deal(params.get("deal"))
    if action == "deal.create":
        found += _user(params.get("responsible"), ("responsible",), roles, context)
        found += _amount(params.get("amount"))
        found += _contact(params, context)
    if action == "task.create":
        found += _user(params.get("assignee"), ("assignee",), roles, context)
        found += _due(params.get("due"))
        found += _task_client(params.get("client"), context)
    if action == "bitrix24.todo":
        found += _user(params.get("responsible"), ("responsible",), roles, context)
        found += _due(params.get("due"))
    if action == "bitrix24.contact":
        found += _phone(params.get("phone"))
    if action in ("deal.assign", "lead.assign"):
        found += _user(params.get("to"), ("to",), roles, context)
    if action in ("lead.assign", "note.add"):
        found += _record(params.get("lead"), "lead", 'write one such as "{{ event.lead_id }}"')
    if action == "note.add":
        found += _one_target(params)
    if action in ("note.add", "contact.update") and "contact" in params:
        found += _contact(params, context, "note" if action == "note.add" else "contact update")
    if action == "contact.update":
        contact_custom = {str(k): str(v) for k, v in (options.get("contact_fields") or {}).items()}
        found += _contact_fields(params.get("fields"), contact_custom, roles, context)
    return found


def _one_target(params: Mapping[str, Any]) -> list[ParamProblem]:
    """A note goes to one timeline: Bitrix24's comment has one ENTITY_TYPE and ENTITY_ID."""
    named = [kind for kind in NOTE_TARGETS if kind in params]
    if len(named) < 2:
        return []
    return [ParamProblem((named[1],), f"note.add goes to one timeline, but names {' and '.join(named)}",
                         "keep one of them: a note is a comment of one deal, lead or contact in Bitrix24", key=True)]


def _record(value: Any, kind: str, hint: str | None = None) -> list[ParamProblem]:
    """A literal `deal:`/`lead:` must be a Bitrix24 id: a positive whole number."""
    known = literal(value)
    if known is UNKNOWN or known in (None, ""):
        return []
    text = str(known).strip()
    if text.isdigit() and int(text) != 0:
        return []
    return [ParamProblem((kind,), f"'{text}' is not a Bitrix24 {kind} id (a number)", hint)]


def _contact_fields(fields: Any, custom: Mapping[str, str], roles: Mapping[str, str], context: CheckContext
                    ) -> list[ParamProblem]:
    """Each name of contact.update's `fields:` must be a contact field the connector maps (its `contact_fields:`
    setting, the standard ones) or a Bitrix24 code: Bitrix24 drops an unknown field without a word. Literal phones
    and e-mails must be valid, a literal responsible a role or a user id."""
    if not isinstance(fields, Mapping):
        return []
    found: list[ParamProblem] = []
    for name, value in fields.items():
        path = ("fields", name)
        try:
            code = contact_field(str(name), custom)
        except Rejected as exc:
            guess = choice_hint(str(name), [*custom, *CONTACT_FIELDS], "fields")
            found.append(ParamProblem(path, f"connector '{context.connector}' (bitrix24): {exc}",
                                      guess if guess.startswith("did you mean") else
                                      f"map it under `contact_fields:` of connector '{context.connector}' in "
                                      "automator.yaml or write the Bitrix24 code (the standard ones: "
                                      f"{', '.join(CONTACT_FIELDS)})", key=True))
            continue
        known = literal(value)
        if code in MULTIFIELDS and known is not UNKNOWN and known not in (None, "", []):
            for item in known if isinstance(known, list) else [known]:
                try:
                    comm_value(item, code)
                except Rejected as exc:
                    found.append(ParamProblem(path, f"{name}: {exc}",
                                              "write it as +79161234567" if code == "PHONE" else "write name@host.ru"))
        elif code == "ASSIGNED_BY_ID":
            found += _user(value, path, roles, context)
    return found


def _fields(action: str, fields: Any, custom: Mapping[str, str], roles: Mapping[str, str], context: CheckContext
            ) -> list[ParamProblem]:
    """Each name of `fields:` must be one the connector maps (its `fields:` setting, the standard deal fields) or
    a Bitrix24 code: Bitrix24 drops a field it does not know without a word, so the connector refuses it."""
    if not isinstance(fields, Mapping):
        return []
    found = []
    for name, value in fields.items():
        path = ("fields", name)
        try:
            code = bitrix_field(str(name), custom)
        except Rejected:
            if name in ("stage", "pipeline"):
                found.append(ParamProblem(path, f"{action} cannot set the deal's {name} through `fields:`",
                                          STAGE_HINT[action], key=True))
                continue
            guess = choice_hint(str(name), [*custom, *DEAL_FIELDS], "fields")
            mapped = ", ".join(sorted(custom)) or "none"
            how = (f"map it under `fields:` of connector '{context.connector}' in automator.yaml ({name}: UF_CRM_…) "
                   "or write the Bitrix24 code")
            found.append(ParamProblem(
                path, f"connector '{context.connector}' (bitrix24) maps no Bitrix24 field '{name}'",
                f"{guess} Or {how}" if guess.startswith("did you mean") else
                f"{how} (mapped there: {mapped}; the standard ones: title, amount, responsible, comments, source, …)",
                key=True))
            continue
        if code in RESERVED:
            found.append(ParamProblem(path, f"field '{name}' ({code}) is set by the connector itself, not by "
                                            "`fields:`", "leave it out (a deal's stage is deal.move's)", key=True))
        elif code == "ASSIGNED_BY_ID" and action == "deal.update":
            found += _user(value, path, roles, context)
    return found


def _stage(params: Mapping[str, Any], context: CheckContext) -> list[ParamProblem]:
    """A stage of another pipeline (an id without that pipeline's `Cn:` prefix) is refused before any call: it is
    the pipeline file's id that is wrong, and the step is where it fails."""
    pipeline, stage = context.pipeline(params), literal(params.get("stage"))
    if pipeline is None or not isinstance(stage, str) or stage not in pipeline.stages:
        return []
    where = f" in {pipeline.location.path}" if pipeline.location is not None else ""
    category = str(pipeline.crm_id or "0")
    if not category.isdigit():
        at = ("pipeline",) if "pipeline" in params else ("stage",)
        return [ParamProblem(at, f"pipeline '{pipeline.name}' has the id '{category}': Bitrix24 pipeline ids "
                                 "(CATEGORY_ID) are numbers", f"write its CATEGORY_ID as `id:`{where}")]
    stage_id = pipeline.stages[stage].crm_id
    if stage_category(stage_id) == int(category):
        return []
    scheme = f"C{category}:…" if category != "0" else "without a Cn: prefix"
    return [ParamProblem(("stage",), f"stage '{stage}' of pipeline '{pipeline.name}' has the id '{stage_id}', which "
                                     f"is not a stage of Bitrix24 pipeline {category} (its stage ids are {scheme})",
                         f"correct the stage's `id:`{where}")]


def _deal(value: Any) -> list[ParamProblem]:
    return _record(value, "deal", 'leave `deal:` out for the run\'s deal, or write one such as "{{ event.deal }}"')


def _user(value: Any, path: tuple[str, ...], roles: Mapping[str, str], context: CheckContext) -> list[ParamProblem]:
    """A person is a role of the `roles:` setting or a Bitrix24 user id; a literal that is neither is refused."""
    known = literal(value)
    if known is UNKNOWN or known in (None, ""):
        return []
    text = str(known).strip()
    if text in roles or text.isdigit():
        return []
    return [ParamProblem(path, f"{path[-1]} '{text}' is neither a role under `roles:` of connector "
                               f"'{context.connector}' (bitrix24) nor a Bitrix24 user id",
                         choice_hint(text, roles, "roles") + " (`roles:` maps a name to a Bitrix24 user id)")]


def _amount(value: Any) -> list[ParamProblem]:
    known = literal(value)
    if known is UNKNOWN or known in (None, ""):
        return []
    try:
        float(known)
    except (TypeError, ValueError):
        return [ParamProblem(("amount",), f"amount '{known}' is not a number", "write it as 15000 or 15000.50")]
    return []


def _due(value: Any) -> list[ParamProblem]:
    from . import _when

    known = literal(value)
    if known is UNKNOWN or known in (None, ""):
        return []
    try:
        _when(known)
    except Rejected as exc:
        return [ParamProblem(("due",), f"due: {exc}",
                             "write a duration from now (1d, 2h) or a date and time with its offset "
                             "(2026-03-02T18:00:00+03:00)")]
    return []


def _phone(value: Any) -> list[ParamProblem]:
    known = literal(value)
    if known is UNKNOWN or known in (None, "") or e164(known) is not None:
        return []
    return [ParamProblem(("phone",), f"'{known}' is not a valid phone number", "write it as +79161234567")]


def _contact(params: Mapping[str, Any], context: CheckContext, record: str = "deal") -> list[ParamProblem]:
    """`contact:` is a Bitrix24 contact id or a phone (the contact with it is found, or made). Another system's
    client id, written or put there by the engine for the run's client, would name whichever Bitrix24 contact has
    that number."""
    found = foreign_contact(params, context, "Bitrix24", record)
    if found is not None:
        return found
    known = literal(params["contact"])
    hint = by_phone_hint(context, "Bitrix24")
    text = "" if known is None else str(known).strip()
    if not text or text.isdigit() and not looks_like_phone(text):
        return []
    if looks_like_phone(text):
        if e164(text) is None:
            return [ParamProblem(("contact",), f"'{text}' is not a valid phone number", "write it as +79161234567")]
        return []
    return [ParamProblem(("contact",), f"'{text}' is neither a Bitrix24 contact id nor a phone number", hint)]


def _task_client(value: Any, context: CheckContext) -> list[ParamProblem]:
    """A task's `client:` binds it to the Bitrix24 contact of that id (UF_CRM_TASK `C_<id>`)."""
    others = context.foreign(value) if literal(value) is UNKNOWN else ()
    if not others:
        return []
    return [ParamProblem(("client",), f"'{value.source}' is an id from {context.named(others)}, but Bitrix24 binds "
                                      "the task to its own contact of that id (UF_CRM_TASK C_…): another person's "
                                      "card", "leave `client:` out (`deal:` binds the task to the deal), or give a "
                                      'Bitrix24 contact id such as "{{ deal.contact }}"')]
