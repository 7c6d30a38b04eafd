"""The connector contract: Connector base, @action, ActionSpec binding, entry-point discovery."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from importlib.metadata import entry_points
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

from automator.actions import CANONICAL, ActionSpec
from automator.model import Event

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "automator.connectors"
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class ActionResult:
    """What performing an action returned: the system's answer and the events it would send back."""

    data: Mapping[str, Any] = field(default_factory=dict)
    events: tuple[Event, ...] = ()


def action(name: str, *, delivery: str | None = None, emits: tuple[str, ...] | None = None,
           schema: str | None = None, description: str | None = None) -> Callable[[F], F]:
    """Mark a connector method as performing the action `name`.

    A canonical action (`deal.move`) takes its spec from the catalogue; keywords override it. A vendor-only
    action (`bitrix24.call`) must name its params `schema`.
    """
    def mark(method: F) -> F:
        base = CANONICAL.get(name) or ActionSpec(name, description or (method.__doc__ or "").strip().split("\n")[0])
        spec = replace(
            base,
            delivery=delivery or base.delivery,
            emits=emits if emits is not None else base.emits,
            schema=schema or base.schema,
            description=description or base.description,
        )
        method.__automator_action__ = spec  # type: ignore[attr-defined]
        return method
    return mark


class Connector:
    """Base of every connector type.

    Subclasses set `type` (the `type:` word in automator.yaml and the entry-point name), `config_schema`
    (JSON Schema of their automator.yaml block) and mark methods with `@action`. The specs are collected on
    the class when it is created, so `actions` is plain data the validator and `automator schema` read
    without instantiating anything.
    """

    type: ClassVar[str] = ""
    config_schema: ClassVar[Mapping[str, Any]] = {"type": "object"}
    actions: ClassVar[Mapping[str, ActionSpec]] = {}
    _methods: ClassVar[Mapping[str, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        specs: dict[str, ActionSpec] = {}
        methods: dict[str, str] = {}
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                spec = getattr(value, "__automator_action__", None)
                if isinstance(spec, ActionSpec):
                    specs[spec.name] = spec
                    methods[spec.name] = attr
        cls.actions = specs
        cls._methods = methods

    def __init__(self, name: str, config: Mapping[str, Any]) -> None:
        self.name = name
        self.config = config

    def perform(self, action_name: str, params: Mapping[str, Any], key: str) -> ActionResult:
        """Perform one action; `key` is the effect's idempotency key."""
        method = self._methods.get(action_name)
        if method is None:
            raise KeyError(f"connector {self.type!r} has no action {action_name!r}")
        result: ActionResult = getattr(self, method)(params, key)
        return result


def discover() -> dict[str, type[Connector]]:
    """Every connector type installed under the `automator.connectors` entry-point group, by type name."""
    found: dict[str, type[Connector]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = ep.load()
        except Exception as exc:  # a broken plugin must not take the others down
            log.warning("connector entry point %s failed to load: %s", ep.name, exc)
            continue
        if isinstance(cls, type) and issubclass(cls, Connector):
            found[cls.type or ep.name] = cls
    return found
