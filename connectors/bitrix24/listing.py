"""List methods of the emulated portal: Bitrix24's filter prefixes, `select` masks, `order`, pages of 50."""
from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from .api import PAGE


class Fail(Exception):
    """A method's refusal: HTTP status, Bitrix `error` code (often empty) and `error_description`."""

    def __init__(self, status: int, code: str, description: str) -> None:
        super().__init__(description)
        self.status, self.code, self.description = status, code, description


def comm_key(value: str, kind: str) -> str:
    """A phone or e-mail as duplicates are matched: digits with a leading Russian 8 read as 7; e-mail lower-cased."""
    if kind == "EMAIL":
        return value.strip().lower()
    digits = re.sub(r"\D", "", value)
    return "7" + digits[1:] if len(digits) == 11 and digits[0] == "8" else digits


_PREFIXES = ("!@", ">=", "<=", "!=", "=%", "%=", ">", "<", "@", "%", "=", "!")


def _comparable(value: Any) -> Any:
    if value is None:
        return None
    text = str(value)
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return text
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone(timedelta(hours=3)))  # the portal's time zone
    return moment.timestamp()


def _matches(row: Mapping[str, Any], key: str, wanted: Any) -> bool:
    op = next((p for p in _PREFIXES if key.startswith(p)), "")
    name = key[len(op):].upper()
    have = row.get(name)
    if name in ("PHONE", "EMAIL") and isinstance(have, list):
        return any(comm_key(m["VALUE"], name) == comm_key(str(wanted), name) for m in have)
    if op in ("@", "!@"):
        options = {str(v) for v in (wanted if isinstance(wanted, list) else [wanted])}
        return (str(have) in options) == (op == "@")
    if op in ("%", "=%", "%="):
        needle = str(wanted).strip("%").lower()
        return needle in str(have or "").lower()
    if op in ("", "="):
        if isinstance(wanted, list):
            return str(have) in {str(v) for v in wanted}
        if have is None:
            return wanted in ("", None)
        return bool(_comparable(have) == _comparable(wanted))
    if op in ("!", "!="):
        return have is None or _comparable(have) != _comparable(wanted)
    a, b = _comparable(have), _comparable(wanted)
    if a is None or b is None or type(a) is not type(b):
        return False
    return {">": a > b, ">=": a >= b, "<": a < b, "<=": a <= b}[op]


def listing(rows: list[dict[str, Any]], p: Mapping[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One page of a list method over `rows`: `(result, {"total", "next"?})`."""
    flt = p.get("filter") or {}
    order = p.get("order") or {"ID": "ASC"}
    if not isinstance(flt, Mapping):
        raise Fail(400, "", "Parameter 'filter' must be array.")
    if not isinstance(order, Mapping):
        raise Fail(400, "", "Parameter 'order' must be array.")
    found = [r for r in rows if all(_matches(r, str(k), v) for k, v in flt.items())]
    for name, direction in reversed(list(order.items())):
        found.sort(key=functools.partial(_order_key, str(name).upper()), reverse=str(direction).upper() == "DESC")
    try:
        start = int(str(p.get("start", 0) or 0))
    except ValueError:
        start = 0
    page = found[max(start, 0):max(start, 0) + PAGE]
    select = p.get("select") or ["*", "UF_*"]
    select = [str(s).upper() for s in (select if isinstance(select, list) else [select])]
    out = [_select(r, select) for r in page]
    extra: dict[str, Any] = {}
    if start != -1:
        extra["total"] = len(found)
        if max(start, 0) + PAGE < len(found):
            extra["next"] = max(start, 0) + PAGE
    return out, extra


def _order_key(name: str, row: Mapping[str, Any]) -> tuple[bool, tuple[int, Any]]:
    """How `order: {NAME: ...}` sorts a row: the rows without a comparable NAME last, the others by it."""
    return _comparable(row.get(name)) is None, _sortable(row.get(name))


def _sortable(value: Any) -> tuple[int, Any]:
    c = _comparable(value)
    return (0, c) if isinstance(c, float) else (1, str(c or ""))


def _select(row: Mapping[str, Any], select: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in row.items():
        custom = name.startswith("UF_")
        if name in select or ("*" in select and not custom) or ("UF_*" in select and custom):
            out[name] = value
    if "ID" in row:
        out.setdefault("ID", row["ID"])
    return out
