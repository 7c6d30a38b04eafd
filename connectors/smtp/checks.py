"""What an smtp action would refuse, found by `validate` from the params as written and the connector's settings
(`Smtp.check_params`): a `to` that is neither a name under `recipients:` nor an e-mail address."""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from automator.checks import UNKNOWN, CheckContext, ParamProblem, choice_hint, literal

# A mailbox: a local part, then a domain of dot-separated labels (no label holds a dot, so nothing backtracks).
ADDRESS = re.compile(r"^[^@\s,;<>]{1,64}@[^@\s,;<>.]{1,63}(\.[^@\s,;<>.]{1,63}){1,8}$")


def check(action: str, params: Mapping[str, Any], options: Mapping[str, Any], context: CheckContext
          ) -> list[ParamProblem]:
    """The problems the smtp connector would have with one step's `to`."""
    names = {str(k) for k in (options.get("recipients") or {})}
    to = literal(params.get("to"))
    if to is UNKNOWN or to in (None, ""):
        return []
    hint = (f"`recipients:` of connector '{context.connector}' in automator.yaml names each address (name: address); "
            + choice_hint(str(to), names, "recipients"))
    if action == "notify":
        if str(to) not in names:
            return [ParamProblem(("to",), f"connector '{context.connector}' (smtp) has no recipient named '{to}'",
                                 hint)]
        return []
    bad = [item for item in (p.strip() for p in re.split(r"[,;]", str(to))) if item and item not in names
           and not ADDRESS.match(item)]
    if bad:
        return [ParamProblem(("to",), f"'{bad[0]}' is neither an e-mail address nor a name under `recipients:` of "
                                      f"connector '{context.connector}' (smtp)", hint)]
    return []
