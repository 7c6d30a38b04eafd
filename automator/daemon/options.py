"""How one daemon runs, as the operator chose it: `automator run`'s flags and automator.yaml's `daemon:` block,
resolved into one value before the daemon is built.

What a test injects instead (a clock, connector types, a retry policy) is not an option: it stays a parameter of
the Daemon.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from automator.clock import parse_duration
from automator.config.settings import Config
from automator.daemon.admission import MAX_BACKLOG
from automator.daemon.listener import Limits
from automator.daemon.retry import RetryPolicy, retry_policy

RETENTION = timedelta(days=30)
MAX_BODY = 1_000_000


@dataclass(frozen=True, slots=True)
class LogOptions:
    """How both processes log (`--log-format`, `--log-level`, `--no-mask`)."""

    format: str = "text"
    level: str = "INFO"
    mask: bool = True  # phone numbers and names hidden

    def for_child(self) -> dict[str, Any]:
        """The settings the engine process reads them from (see automator.daemon.engine_process)."""
        return {"log_format": self.format, "log_level": self.level, "mask": self.mask}


@dataclass(frozen=True, slots=True)
class DaemonOptions:
    """Everything an operator chooses for one daemon; built by `daemon_options`, which says where each comes from."""

    db_path: Path
    host: str
    port: int  # 0: one the system picks
    sandbox: bool  # every outside system played by its emulator
    synchronous: str  # FULL survives power loss; NORMAL only process crashes
    reload: bool  # watch the rule files and swap in a valid change
    processes: int  # 2: rules are decided by a second process (another core)
    log: LogOptions
    max_body: int
    max_backlog: int
    limits: Limits
    retention: timedelta  # how long settled history is kept
    retry: RetryPolicy


def store_path(root: Path, config: Config) -> Path:
    """The database file: `store:` of automator.yaml, relative to the project, `automator.db` by default."""
    path = Path(config.store or "automator.db")
    return path if path.is_absolute() else root / path


def daemon_options(root: Path, config: Config, *, host: str = "127.0.0.1", port: int = 8080,
                   sandbox: bool = False, db_path: str | Path | None = None, synchronous: str = "FULL",
                   reload: bool = True, processes: int = 2, log: LogOptions = LogOptions()) -> DaemonOptions:
    """The options of a daemon serving the project at `root` whose automator.yaml is `config`.

    The keywords are `automator run`'s flags. `--db` wins over `store:`; `daemon:` (checked by its schema) sets
    max_body, max_backlog, the listener's limits, keep_history and retry, each with its default when absent.
    """
    settings = config.daemon
    return DaemonOptions(
        db_path=Path(db_path) if db_path else store_path(root, config),
        host=host, port=port, sandbox=sandbox, synchronous=synchronous, reload=reload, processes=processes, log=log,
        max_body=int(settings.get("max_body", MAX_BODY)),
        max_backlog=int(settings.get("max_backlog", MAX_BACKLOG)),
        limits=Limits.from_settings(settings),
        retention=parse_duration(settings["keep_history"]).approx() if "keep_history" in settings else RETENTION,
        retry=retry_policy(settings.get("retry") or {}))
