"""The connectors of a project as the daemon runs them: built from automator.yaml (secrets resolved, sandboxed on
request), and closed when they retire."""
from __future__ import annotations

import logging
from pathlib import Path
from collections.abc import Iterable, Mapping
from typing import Any

from automator.clock import Clock
from automator.config.load import builtin_connectors
from automator.config.project import Project
from automator.connector import ConfigError, Connector, MissingEnv, env_values, resolve_env
from automator.report_delivery import ChildComposer

log = logging.getLogger(__name__)


def build_connectors(project: Project, db: Any, clock: Clock, *, sandbox: str | None = None,
                     emulators: dict[str, Any] | None = None,
                     types: Mapping[str, type[Connector]] | None = None,
                     announce: bool = True) -> dict[str, Connector]:
    """One instance per connector of automator.yaml, its `${env:...}` secrets resolved.

    With `sandbox` (the daemon's own address), every connector that talks to an outside system is pointed at
    its emulator, served by the daemon under `/_sandbox/<name>` and sending its webhooks to `/hooks/<name>`;
    the emulators are kept in `emulators` (an existing one is reused, so a reload keeps its data). A connector
    type without an emulator is played by `local`. `announce`: log which system plays each connector (the
    daemon does; its engine process, building the same connectors, does not say it again).
    """
    found = dict(types) if types is not None else builtin_connectors()
    out: dict[str, Connector] = {}
    missing: list[MissingEnv] = []  # every variable not set, reported at once
    for name, conf in project.config.connectors.items():
        cls = found.get(conf.type)
        if cls is None:
            raise ConfigError(f"connector {name!r}: type {conf.type!r} is not installed")
        options = {k: v for k, v in conf.options.items() if k != "type"}
        if sandbox is not None and not cls.in_store:
            emulated = cls.sandbox(name, options, base_url=f"{sandbox}/_sandbox/{name}",
                                   hook_url=f"{sandbox}/hooks/{name}")
            if emulated is None:
                if announce:
                    log.info("sandbox: connector %s (%s) is played by local", name, conf.type,
                             extra={"connector": name})
                cls, options = builtin_connectors()["local"], {}
            else:
                options, emulator = emulated
                if emulators is not None:
                    kept = emulators.get(name)
                    emulators[name] = kept if kept is not None and type(kept) is type(emulator) else emulator
                if announce:
                    log.info("sandbox: connector %s (%s) talks to its emulator", name, conf.type,
                             extra={"connector": name})
                out[name] = cls.create(name, options, db=db, now=clock.now)
                continue
        try:
            resolved = resolve_env(options, f"connector {name!r}")
        except MissingEnv as exc:
            unset = {path for _, path, _ in exc.missing}
            if sandbox is None or not cls.in_store or not unset <= set(cls.webhook_auth):
                missing.append(exc)
                continue
            # In the sandbox, an in-store connector whose webhook secret is not set is one without it: it accepts
            # no webhook (401) and performs its actions, so the example runs on a fresh machine, opening nothing.
            resolved = resolve_env({k: v for k, v in options.items() if k not in unset}, f"connector {name!r}")
            if announce:
                log.warning("sandbox: connector %s accepts no webhooks: %s", name,
                            ", ".join(sorted(f"{path} needs {var}" for _, path, var in exc.missing)),
                            extra={"connector": name})
        if not missing:
            out[name] = cls.create(name, resolved, db=db, now=clock.now)
            out[name].secrets |= env_values(options)
    if missing:
        raise MissingEnv.combined(missing)
    store = store_file(db)
    for name, connector in out.items():
        connector.pipelines = {n: p for n, p in project.pipelines.items() if p.connector == name}
        if store is not None:
            connector.compose = ChildComposer.for_daemon(store, project.root)
    return out


def store_file(db: Any) -> Path | None:
    """The file of the daemon's database (a sqlite_utils Database), where a report's child process reads it; None
    for one in memory."""
    conn = getattr(db, "conn", None)
    if conn is None:
        return None
    for _seq, name, file in conn.execute("pragma database_list").fetchall():
        if name == "main":
            return Path(file) if file else None
    return None


async def close_connectors(connectors: Iterable[Connector]) -> None:
    """Close each connector; one that fails to close is logged, not raised (the others still close)."""
    for connector in connectors:
        try:
            await connector.aclose()
        except Exception:  # closing is best effort: a connector that cannot close must not block the stop
            log.exception("connector %s did not close cleanly", connector.name)
