"""A daemon's options: `automator run`'s flags and automator.yaml's `daemon:` block resolved into one value."""
from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from automator.config.settings import Config
from automator.daemon.admission import MAX_BACKLOG
from automator.daemon.listener import Limits
from automator.daemon.options import MAX_BODY, RETENTION, LogOptions, daemon_options
from automator.daemon.retry import RetryPolicy

ROOT = Path("/srv/salon")


def config(store: str | None = None, **daemon: Any) -> Config:
    return Config(timezone=ZoneInfo("Europe/Moscow"), store=store, daemon=daemon)


def test_without_flags_or_a_daemon_block_every_option_is_its_default() -> None:
    options = daemon_options(ROOT, config())
    assert (options.host, options.port, options.sandbox) == ("127.0.0.1", 8080, False)
    assert (options.synchronous, options.reload, options.processes) == ("FULL", True, 2)
    assert options.db_path == ROOT / "automator.db"
    assert options.log == LogOptions(format="text", level="INFO", mask=True)
    assert (options.max_body, options.max_backlog, options.retention) == (MAX_BODY, MAX_BACKLOG, RETENTION)
    assert options.limits == Limits()
    assert options.retry == RetryPolicy()


def test_the_flags_are_taken_as_given() -> None:
    log = LogOptions(format="json", level="WARNING", mask=False)
    options = daemon_options(ROOT, config(), host="0.0.0.0", port=0, sandbox=True, synchronous="NORMAL",
                             reload=False, processes=1, log=log)
    assert (options.host, options.port, options.sandbox) == ("0.0.0.0", 0, True)
    assert (options.synchronous, options.reload, options.processes, options.log) == ("NORMAL", False, 1, log)


@pytest.mark.parametrize(("store", "flag", "expected"), [
    (None, None, ROOT / "automator.db"),
    ("data/salon.db", None, ROOT / "data/salon.db"),  # relative to the project, not to where it is run from
    ("/var/lib/automator/salon.db", None, Path("/var/lib/automator/salon.db")),
    ("data/salon.db", Path("elsewhere.db"), Path("elsewhere.db")),  # --db wins over store:, as given
    (None, "/tmp/flag.db", Path("/tmp/flag.db")),
])
def test_the_database_is_the_db_flag_else_the_store_setting_else_automator_db(
        store: str | None, flag: str | Path | None, expected: Path) -> None:
    assert daemon_options(ROOT, config(store), db_path=flag).db_path == expected


def test_the_daemon_block_sets_what_it_names() -> None:
    options = daemon_options(ROOT, config(max_body=2048, max_backlog=10, keep_history="7d", header_timeout="2s",
                                          max_connections=3, retry={"attempts": 3, "first_delay": "5s", "max_delay": "1m"}))
    assert (options.max_body, options.max_backlog, options.retention) == (2048, 10, timedelta(days=7))
    assert options.limits == Limits(header_timeout=2.0, max_connections=3)
    assert options.retry == RetryPolicy(attempts=3, base=5.0, cap=60.0)


def test_the_daemon_block_leaves_the_flags_alone() -> None:
    options = daemon_options(ROOT, config(max_body=2048), port=9000, reload=False)
    assert (options.port, options.reload, options.max_body) == (9000, False, 2048)


def test_options_are_one_frozen_value() -> None:
    options = daemon_options(ROOT, config())
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.port = 1  # type: ignore[misc]
    assert options == daemon_options(ROOT, config())


def test_the_engine_process_is_told_the_log_options_under_its_names() -> None:
    assert LogOptions(format="json", level="DEBUG", mask=False).for_child() == {
        "log_format": "json", "log_level": "DEBUG", "mask": False}
