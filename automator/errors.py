"""The exception tree of connector calls and inbound webhooks; foreign errors are mapped to it at the edge.

    ConnectorError                  a connector call did not succeed
    ├── Retryable(retry_after)      timeouts before sending, connection refused, 5xx, 429: try again later
    ├── Rejected                    the system refused the request (4xx other than 429): trying again won't help
    └── Uncertain                   the request went out and no readable answer came back: it may have happened
    InboundRejected(status)         a webhook the daemon refuses: bad auth, too large, malformed
"""
from __future__ import annotations


class ConnectorError(Exception):
    """A connector call did not succeed."""


class Retryable(ConnectorError):
    """Worth trying again; `retry_after` (seconds) is the system's own word on when, if it said."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Rejected(ConnectorError):
    """The system refused the request; repeating it changes nothing."""


class Uncertain(ConnectorError):
    """The request may have been performed: retry only what is safe to repeat."""


class InboundRejected(Exception):
    """A webhook refused with an HTTP status and a short reason (logged, never journaled)."""

    def __init__(self, status: int, reason: str, word: str = "malformed") -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.word = word  # the metric label: auth | too_large | malformed | method
