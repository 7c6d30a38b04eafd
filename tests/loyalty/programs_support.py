"""What the programs' tests share: loyalty.yaml compiled through the real loader, and visits replayed one by one
through the programs' mechanics on a history in memory (as the engine decides them, one event at a time)."""
from __future__ import annotations

import textwrap
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from automator.config.load import load_project
from automator.config.problems import Problem
from automator.config.project import Project
from automator.loyalty import programs
from automator.loyalty.config import LoyaltyConfig
from automator.loyalty.decision import Happening, Outcome
from automator.loyalty.ledger import Entry, balance
from automator.loyalty.replay import History
from automator.model import Entity, EntityRef, Event, Visit

MSK = ZoneInfo("Europe/Moscow")
RULES = """
    rules:
      - id: hello
        when: {event: nps.received}
        do:
          - notify: {to: admin, text: "{{ event.score }}"}
    """


def loaded(make_project: Callable[..., Path], loyalty: str, segments: str | None = None
           ) -> tuple[Project | None, list[Problem]]:
    """A real project folder with this loyalty.yaml (and segments.yaml), loaded: the project, or the problems."""
    root = make_project(RULES, segments=segments)
    (root / "loyalty.yaml").write_text(textwrap.dedent(loyalty))
    return load_project(root)


def compiled(make_project: Callable[..., Path], loyalty: str, segments: str | None = None
             ) -> tuple[LoyaltyConfig | None, list[Problem]]:
    """loyalty.yaml (and segments.yaml) loaded in a real project folder: the programs, or the problems."""
    project, problems = loaded(make_project, loyalty, segments)
    return (project.loyalty if project is not None else None), problems


def at(text: str) -> datetime:
    """A moment in Moscow: "2026-03-02 10:00"."""
    return datetime.fromisoformat(text).replace(tzinfo=MSK)


class Clinic:
    """Clients visiting, each visit decided by the programs as the engine would, their rows kept in memory."""

    def __init__(self, config: LoyaltyConfig, clients: dict[str, dict[str, Any]] | None = None,
                 phones: dict[str, str] | None = None) -> None:
        self.config = config
        self.history = History({c: Entity(EntityRef("client", c), f) for c, f in (clients or {}).items()}, phones)
        self.outcomes: list[Outcome] = []

    def visit(self, client: str, when: str, amount: int, *, ident: str, category: str | None = None,
              services: tuple[str, ...] = ()) -> Outcome:
        """A paid visit (`amount` in kopecks) decided: the rows are kept, the visit joins the history."""
        visit = Visit(id=f"yclients:{ident}", client=client, at=at(when), amount=amount, category=category,
                      services=services, source="yclients")
        event = Event(id=f"ev-{ident}", type="visit.completed", at=visit.at, entity=EntityRef("client", client),
                      data={"visit": ident}, source="yclients")
        entity = self.history.entity(EntityRef("client", client)) or Entity(EntityRef("client", client), {})
        found = programs.on_event(self.config, self.history, Happening(event, entity, (visit,), visit.at, MSK))
        self.history.keep(found.entries)
        self.history.add_visit(visit)
        self.outcomes.append(found)
        return found

    def refund(self, client: str, when: str, ident: str, amount: str | None = None) -> Outcome:
        """`visit.refunded` of the visit `ident` (partial with `amount`) decided."""
        data = {"visit": ident, **({"amount": amount} if amount else {})}
        event = Event(id=f"refund-{ident}-{when}", type="visit.refunded", at=at(when),
                      entity=EntityRef("client", client), data=data, source="yclients")
        entity = self.history.entity(EntityRef("client", client)) or Entity(EntityRef("client", client), {})
        found = programs.on_event(self.config, self.history, Happening(event, entity, (), at(when), MSK))
        self.history.keep(found.entries)
        return found

    def timer(self, outcome: Outcome, when: str | None = None) -> Outcome:
        """The first timer `outcome` set, fired (at its moment, or `when`)."""
        timer = outcome.timers[0]
        moment = at(when) if when else timer.due_at
        event = Event(id=f"{timer.id}@{moment.isoformat()}", type="timer.fired", at=moment,
                      entity=EntityRef.parse(timer.key), source="timer",
                      data={"kind": timer.kind, "payload": dict(timer.payload)})
        found = programs.on_timer(self.config, self.history, Happening(event, None, (), moment, MSK))
        self.history.keep(found.entries)
        return found

    def rows(self, client: str, account: str | None = None) -> list[Entry]:
        """A client's rows (of one account)."""
        return [e for e in self.history.ledger_of(client) if account is None or e.account == account]

    def points(self, client: str, program: str, when: str) -> int:
        """What the client can spend at `when`, in kopecks."""
        return balance(self.history.ledger_of(client), f"points:{program}").available(at(when))
