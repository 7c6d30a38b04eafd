"""The connector contract: Connector base, @action, ActionSpec binding, entry-point discovery."""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field, replace
from importlib.metadata import entry_points
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import date, datetime
from typing import Any, ClassVar, TypeVar

from automator.actions import CANONICAL, ActionSpec
from automator.catalogue import Catalogue, load_text as load_catalogue_text
from automator.checks import CheckContext, ParamProblem
from automator.model import Entity, Event, Pipeline
from automator.report_delivery import Compose, no_composer

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "automator.connectors"
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class Inbound:
    """One webhook request as the daemon received it: what a connector's `parse` authenticates and reads."""

    connector: str
    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]  # names in lower case
    body: bytes
    received_at: Any = None  # datetime; the daemon's clock


@dataclass(frozen=True, slots=True)
class SpendRow:
    """What was spent on advertising on one day, in one channel (a name of automator.yaml's `channels:`) and
    campaign (`""` for none): integer minor units (kopecks) of `currency`. A connector's `spend` yields these."""

    day: date
    channel: str
    campaign: str
    amount_minor: int
    currency: str = "RUB"


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
    # (requests per second, burst) the system allows; the daemon's outbox keeps to it. None: no limit. Not a
    # ClassVar: a connector whose limit is a setting (`rate:`, a Bitrix24 plan) sets its own.
    rate_limit: tuple[float, int] | None = None
    # True for connectors that write into the daemon's own database (local): performed on the store's thread.
    in_store: ClassVar[bool] = False
    # True when the ids in this type's events are its system's own (a YCLIENTS client id, a Bitrix24 contact id):
    # the store resolves them to persons when it journals them, and the engine sends this connector each person's
    # id in its system (or phone). False for `local`, whose events and records name automator's persons already.
    own_ids: ClassVar[bool] = True
    # True when performing the same effect key twice changes nothing (the system deduplicates by the key):
    # then even an at_most_once effect interrupted mid-call is safely tried again instead of parked.
    deduplicates: ClassVar[bool] = False
    # The settings that authenticate this type's webhooks (a shared secret, the token its URL carries). A type
    # that receives webhooks (overrides `parse`) names them here: while any of them is unset, or when it names
    # none, the daemon refuses every webhook to the connector before `parse` runs. No endpoint is ever open.
    webhook_auth: ClassVar[tuple[str, ...]] = ()
    starts_on_send: ClassVar[bool] = False  # see WebConnector: True when every request waits for the call's mark
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
        # The pipelines of pipelines/*.yaml this connector owns (set by the daemon): stage names ↔ CRM ids.
        self.pipelines: Mapping[str, Pipeline] = {}
        # How it composes a report for `report.send` (set by the daemon: a child process over its store); without a
        # store at hand, every report.send is refused saying why.
        self.compose: Compose = no_composer(name)
        # Why its webhooks are refused (None: they are authenticated), decided once from the resolved settings.
        self.webhook_refusal = self.refuses_webhooks(name, config)
        # Values never echoed in an answer or a log line: its webhook secrets here, every value the daemon took
        # from the environment for it added by the daemon (see `env_values`).
        self.secrets: frozenset[str] = frozenset(str(config[k]) for k in self.webhook_auth if config.get(k))

    @classmethod
    def receives_webhooks(cls) -> bool:
        """Whether the type reads webhooks at all (it overrides `parse`)."""
        return cls.parse is not Connector.parse

    @classmethod
    def refuses_webhooks(cls, name: str, options: Mapping[str, Any]) -> str | None:
        """Why a connector of this type with these settings cannot authenticate webhooks, so accepts none; None
        when it can, or when the type receives none. Read on written settings by `validate` (a `${env:NAME}`
        counts as set) and on resolved ones by the daemon (an empty variable does not)."""
        if not cls.receives_webhooks():
            return None
        if not cls.webhook_auth:
            return f"connector {name!r} ({cls.type}) declares no way to authenticate webhooks: it accepts none"
        unset = [setting for setting in cls.webhook_auth if not options.get(setting)]
        if unset:
            return (f"connector {name!r} ({cls.type}) has no {' and no '.join(f'`{s}`' for s in unset)} set: "
                    "it accepts no webhooks")
        return None

    def redact(self, text: str) -> str:
        """`text` with every secret of this connector replaced by `***`: for reasons and log lines, which may
        quote what a request or a system's answer carried."""
        for secret in self._redacted():
            if secret in text:
                text = text.replace(secret, "***")
        return text

    def _redacted(self) -> list[str]:
        from urllib.parse import quote

        # Longest first, so a secret that contains another (a webhook URL and its key) goes whole. Also
        # percent-encoded, as a form body or a query string carries it; a value this short is no secret.
        found = {form for secret in self.secrets for form in (secret, quote(secret, safe="")) if len(secret) >= 4}
        return sorted(found, key=len, reverse=True)

    def stage_ids(self, pipeline: str, stage: str) -> tuple[str | None, str]:
        """The CRM's own (pipeline id, stage id) of a stage named in business words; raises Rejected if unknown."""
        from automator.errors import Rejected

        found = self.pipelines.get(pipeline)
        if found is None or stage not in found.stages:
            raise Rejected(f"connector {self.name!r} owns no stage {stage!r} in pipeline {pipeline!r}")
        return found.crm_id, found.stages[stage].crm_id

    def stage_named(self, crm_stage: str, crm_pipeline: str | None = None) -> tuple[str, str] | None:
        """The (pipeline, stage) names of a CRM stage id (and pipeline id, where stage ids repeat across
        pipelines, as amoCRM's 142/143 do); None for a stage no pipeline file names."""
        for pipeline in self.pipelines.values():
            if crm_pipeline is not None and pipeline.crm_id is not None and str(pipeline.crm_id) != str(crm_pipeline):
                continue
            for stage in pipeline.stages.values():
                if str(stage.crm_id) == str(crm_stage):
                    return pipeline.name, stage.name
        return None

    @classmethod
    def check_params(cls, action: str, params: Mapping[str, Any], options: Mapping[str, Any],
                     context: CheckContext) -> list[ParamProblem]:
        """What this connector would refuse (or do wrong) in an action step's params, found by `validate`.

        Called for every action step that goes to a connector of this type (`via:`, else the deal's pipeline's
        connector, else the first that performs the action: the daemon's own choice), with the params as the rule
        writes them: a text with `{{ }}` is an `automator.expr.Template`, anything else is as written
        (`automator.checks.literal` tells what a param is whatever the run, `lone_field` and `reads` what a
        template reads). `options` are the connector's settings in automator.yaml as written (a secret is its
        `${env:NAME}`); `context` names the connector and carries the pipelines, the catalogue (who fills which
        field) and the rule's trigger. Each problem names the param's path in the params, so `validate` reports it
        at that param's line and column. Only what the action itself would refuse belongs here, decided without
        a network call; the default finds nothing."""
        return []

    @classmethod
    def produces(cls, name: str, options: Mapping[str, Any]) -> Catalogue:
        """The events this connector (named `name`, with these settings) produces and the entity fields it fills:
        the `catalogue.yaml` beside the type's module, read once per type. A type whose events depend on its
        settings (`local`'s `events:`) adds to it here."""
        return _package_catalogue(cls)

    @classmethod
    def create(cls, name: str, options: Mapping[str, Any], *, db: Any, now: Callable[[], Any]) -> Connector:
        """Build an instance for the daemon. `db` is the daemon's database (only in-store connectors use it)."""
        return cls(name, options)

    async def aclose(self) -> None:
        """Release what the connector holds (pooled connections); called when the daemon stops or reloads."""

    @classmethod
    def sandbox(cls, name: str, options: Mapping[str, Any], *, base_url: str, hook_url: str
                ) -> tuple[dict[str, Any], Any] | None:
        """For `automator run --sandbox`: settings that point this connector at its emulator (served at
        `base_url`, sending webhooks to `hook_url`) and the emulator itself; None to be played by `local`."""
        return None

    def sandbox_given(self, emulator: Any, entities: Sequence[Entity]) -> None:
        """For `automator test --sandbox`: make a test's `given:` entities exist in this connector's emulator
        (returned by `sandbox`), in the system's own form and under their ids, where the connector reads them (the
        deal a `deal.move` reads, the booking whose status it sets); without webhooks. The default seeds none."""

    # Catch-up polling: connectors of systems that send each webhook once (and never again) override `poll`.
    poll_every: ClassVar[float | None] = None  # seconds between polls by default; None: the connector cannot poll

    async def poll(self, cursor: str | None) -> tuple[list[Event], str | None]:
        """What changed since `cursor` (None: since the daemon first started), as events with delivery ids that
        match the ones its webhooks carry, so the journal keeps each change once; and the new cursor."""
        return [], cursor

    # History: connectors of systems that keep a past the store never saw (visits made before automator ran)
    # override `backfill`; `automator backfill CONNECTOR --since DATE` consumes it.
    @classmethod
    def can_backfill(cls) -> bool:
        """Whether the type has a history to backfill (it overrides `backfill`)."""
        return cls.backfill is not Connector.backfill

    async def backfill(self, since: datetime) -> AsyncIterator[Event]:
        """An optional capability: the system's history since `since`, as the events its live changes would have
        been, with the delivery ids they carry (so a change already journaled is kept once). Each client's
        `client.updated` comes before that client's other events, so that the person exists, with their phone,
        when their history arrives. Reads through the system's API within its rate limit; raises errors from
        `automator.errors`. The default has nothing to give: it raises NotImplementedError at the first step."""
        raise NotImplementedError(f"connector {self.name!r} ({self.type}) has no history to backfill")
        yield  # unreachable: it makes this an async generator, as the overrides are

    # Ad spend: connectors of systems that know what advertising cost (an ad cabinet, a call-tracking service)
    # override `spend`; `automator spend pull CONNECTOR --since DATE` stores it for the channels report.
    @classmethod
    def can_report_spend(cls) -> bool:
        """Whether the type reports ad spend (it overrides `spend`)."""
        return cls.spend is not Connector.spend

    async def spend(self, since: date, until: date) -> AsyncIterator[SpendRow]:
        """An optional capability: the spend of every day from `since` to `until` (both included), one SpendRow per
        day, channel and campaign, the channel named as automator.yaml's `channels:` name it. Each day given is the
        whole of that day's spend in its channel: a day pulled again replaces what was stored. Reads through the
        system's API within its rate limit; raises errors from `automator.errors`. The default has nothing to
        give: it raises NotImplementedError at the first step."""
        raise NotImplementedError(f"connector {self.name!r} ({self.type}) reports no ad spend")
        yield  # unreachable: it makes this an async generator, as the overrides are

    def parse(self, request: Inbound) -> list[Event] | Awaitable[list[Event]]:
        """Authenticate one webhook and translate it into events; raise InboundRejected to refuse it.

        May be a coroutine function. Each event should carry the system's delivery id when it sends one.
        """
        from automator.errors import InboundRejected

        raise InboundRejected(404, f"connector {self.name!r} ({self.type}) receives no webhooks", "unknown_connector")

    def perform(self, action_name: str, params: Mapping[str, Any], key: str) -> Any:
        """Perform one action; `key` is the effect's idempotency key. Returns an ActionResult (or a coroutine of
        one, for connectors whose actions are `async def`); raises errors from `automator.errors`."""
        method = self._methods.get(action_name)
        if method is None:
            raise KeyError(f"connector {self.type!r} has no action {action_name!r}")
        return getattr(self, method)(params, key)


    def recover(self, action_name: str, params: Mapping[str, Any], key: str) -> Any:
        """Look in the system for what an interrupted try of this effect made; None when it made nothing.

        Called before a try whose earlier try may have been performed without an answer (the daemon was killed
        mid-call, or the call timed out): for an action whose API takes no idempotency key, the connector writes
        the effect `key` into the record it creates (a field the API's own search can filter by) and finds it
        here, so that the retry does not create it twice. Returns the ActionResult performing it would have
        returned (the effect is then settled done, its events journaled), or None to have the action performed;
        may be a coroutine function, like the actions. The default finds nothing: actions that are idempotent by
        themselves (moves, updates) or whose system deduplicates by the key need no lookup."""
        return None


_CATALOGUES: dict[type, Catalogue] = {}


def _package_catalogue(cls: type[Connector]) -> Catalogue:
    found = _CATALOGUES.get(cls)
    if found is None:
        import sys
        from pathlib import Path

        module = sys.modules.get(cls.__module__)
        path = Path(module.__file__).with_name("catalogue.yaml") if module and module.__file__ else None
        if path is None or not path.is_file():
            found = Catalogue()
        else:
            found = load_catalogue_text(path.read_text(encoding="utf-8"), cls.type, str(path))
        _CATALOGUES[cls] = found
    return found


def vendor_schemas(types: Mapping[str, type[Connector]]) -> dict[str, dict[str, Any]]:
    """The params schemas of vendor-only actions: each connector package's `schemas/*.json`, named
    `actions/<file>` (so `@action("bitrix24.comment")` is validated by `schemas/bitrix24.comment.json`)."""
    import json
    import sys
    from pathlib import Path

    found: dict[str, dict[str, Any]] = {}
    for cls in types.values():
        module = sys.modules.get(cls.__module__)
        folder = Path(module.__file__).parent / "schemas" if module and module.__file__ else None
        if folder is None or not folder.is_dir():
            continue
        for file in sorted(folder.glob("*.json")):
            found[f"actions/{file.name}"] = json.loads(file.read_text(encoding="utf-8"))
    return found


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


class ConfigError(Exception):
    """A connector's settings cannot be used (a `${env:NAME}` that is not set, a bad value)."""


class MissingEnv(ConfigError):
    """`${env:NAME}` references whose variables are not set: every one found, with its connector and setting."""

    def __init__(self, missing: list[tuple[str, str, str]]) -> None:
        self.missing = missing  # (where, setting path, variable name)
        lines = [f"{where}: {path} needs the environment variable {name}" for where, path, name in missing]
        if len(lines) == 1:
            super().__init__(f"{lines[0]}, which is not set")
        else:
            super().__init__(f"{len(lines)} environment variables are not set:\n  " + "\n  ".join(lines))

    @classmethod
    def combined(cls, errors: list[MissingEnv]) -> MissingEnv:
        """One error reporting what all of `errors` report."""
        return cls([item for error in errors for item in error.missing])


ENV_REFERENCE = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}")


def _map_strings(value: Any, fn: Callable[[str, str], Any], path: str = "") -> Any:
    """`value` rebuilt with every string `s` at setting path `p` replaced by `fn(s, p)`."""
    if isinstance(value, str):
        return fn(value, path)
    if isinstance(value, Mapping):
        return {k: _map_strings(v, fn, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_map_strings(v, fn, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def resolve_env(options: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Replace every `${env:NAME}` in a connector's settings with the variable's value; secrets never live in files.

    Only for the configuration's own literal text: never call it on anything rendered from data, or an event
    that carries `${env:NAME}` would read the daemon's environment. Raises MissingEnv naming every variable
    that is not set, not only the first.
    """
    missing: list[tuple[str, str, str]] = []

    def resolve(text: str, path: str) -> str:
        def sub(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                missing.append((where, path, name))
                return ""
            return os.environ[name]
        return ENV_REFERENCE.sub(sub, text)

    resolved = _map_strings(dict(options), resolve)
    if missing:
        raise MissingEnv(missing)
    return resolved


def env_values(options: Mapping[str, Any]) -> frozenset[str]:
    """The values of the (set) environment variables a connector's settings reference: its secrets, which the
    daemon never echoes (see `Connector.redact`)."""
    found: set[str] = set()

    def collect(text: str, _path: str) -> str:
        found.update(os.environ[n] for n in ENV_REFERENCE.findall(text) if os.environ.get(n))
        return text

    _map_strings(options, collect)
    return frozenset(found)


def json_body(response: Any) -> Any:
    """An answer's JSON, as `response.json()` reads it, with orjson (several times faster on a CRM's record); an
    answer that is not UTF-8 goes to httpx, which honours its charset. Raises ValueError when it is not JSON."""
    import orjson

    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return response.json()


def retry_after(response: Any) -> float | None:
    """The Retry-After header in seconds (it may be a number or an HTTP date), if the answer has one."""
    from email.utils import parsedate_to_datetime
    from datetime import datetime, timezone

    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def check_status(response: Any, what: str) -> None:
    """Map an HTTP answer to the error tree: 429 and 5xx retry (honouring Retry-After), other 4xx are refused."""
    from automator.errors import Rejected, Retryable

    code = response.status_code
    if code < 400 and not 300 <= code < 400:
        return
    text = f"{what}: HTTP {code} {response.text[:300]!r}" if hasattr(response, "text") else f"{what}: HTTP {code}"
    if code == 429 or code >= 500:
        raise Retryable(text, retry_after(response))
    raise Rejected(text)


async def call_http(coro: Any, what: str) -> Any:
    """Await an httpx call, mapping transport failures (httpx's `map_httpcore_exceptions`, one level up):
    a request that cannot have left (connect errors and timeouts) retries; one that may have reached the
    system without a readable answer (read timeouts, a dropped connection) is uncertain."""
    import httpx

    from automator.errors import Retryable, Uncertain

    from automator.errors import Rejected

    try:
        return await coro
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        raise Retryable(f"{what}: {type(exc).__name__}: {exc}") from exc
    except (httpx.UnsupportedProtocol, httpx.LocalProtocolError, httpx.InvalidURL) as exc:
        # Refused on our side before anything was sent: no retry can make such a request valid.
        raise Rejected(f"{what}: {type(exc).__name__}: {exc}") from exc
    except (httpx.TimeoutException, httpx.TransportError) as exc:
        raise Uncertain(f"{what}: {type(exc).__name__}: {exc}") from exc


class WebConnector(Connector):
    """A connector that talks to its system over HTTP: one shared httpx client per instance, made on first use
    (inside the daemon's event loop) by `automator.http.new_client`; tests pass `transport=` to replace the
    network (httpx.MockTransport, or httpx.ASGITransport over the connector's emulator)."""

    deadline: float = 15.0  # seconds for one whole call; a `timeout:` setting replaces it
    # Every request goes through `self.http` and automator.http.send, which wait for the outbox's mark that the
    # call has begun (automator/call_start.py): so the mark is written just before the first byte leaves. A
    # subclass that talks to its system another way sets False, and its calls are marked begun before they start.
    starts_on_send: ClassVar[bool] = True
    default_base_url: ClassVar[str] = ""  # the system's public API; a `base_url:` setting replaces it

    def __init__(self, name: str, config: Mapping[str, Any], *, transport: Any = None) -> None:
        super().__init__(name, config)
        if config.get("timeout"):
            self.deadline = float(config["timeout"])
        self._transport = transport
        self._client: Any = None

    def use_transport(self, transport: Any) -> None:
        """Send every later call through `transport` (`automator test --sandbox`: the emulator's ASGI app)."""
        self._transport, self._client = transport, None

    def base_url(self) -> str:
        """Where the system's API lives: the `base_url:` setting (an emulator, a mirror), else the public one."""
        return str(self.config.get("base_url") or self.default_base_url).rstrip("/")

    def default_headers(self) -> dict[str, str]:
        """Headers every call carries (authentication, content negotiation)."""
        return {}

    @property
    def http(self) -> Any:
        """The shared httpx.AsyncClient."""
        if self._client is None:
            from automator.http import new_client

            self._client = new_client(base_url=self.base_url(), transport=self._transport,
                                      headers=self.default_headers(), timeout=self.deadline)
        return self._client

    async def request(self, method: str, url: str, what: str, **kwargs: Any) -> Any:
        """One call within the deadline, with transport failures mapped onto the error tree (not the status:
        each system reads its own error envelope)."""
        from automator.http import send

        return await call_http(send(self.http, method, url, deadline=self.deadline, **kwargs), what)

    async def aclose(self) -> None:
        """Close the pooled connections."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None
