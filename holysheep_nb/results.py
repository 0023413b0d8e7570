"""What the engine reports: one ``RowResult`` per row and live ``RunStats`` for the run."""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass, field

#: Categories used to group failures in the report; ``RowResult.error_kind`` is one of these.
ERROR_KINDS = (
    "http",  # a non-retryable HTTP status (4xx other than auth, 501, 505)
    "auth",  # 401/403, and rows not sent after one
    "timeout",  # every attempt timed out
    "connection",  # connection refused/reset/dropped on every attempt
    "server",  # retryable status (429, 5xx, ...) on every attempt
    "malformed",  # the provider's 200 answer was not a chat completion
    "missing",  # missing prompt / missing template value: never sent
    "other",
)


@dataclass(frozen=True, slots=True)
class RowResult:
    """The final outcome of one row: exactly one of ``response`` / ``error`` is set.

    ``latency`` runs from the row's first attempt to its final outcome, retries and backoff
    included; it is ``None`` when the row was never sent.
    """

    row_id: Hashable
    response: str | None = None
    error: str | None = None
    error_kind: str | None = None
    latency: float | None = None
    attempts: int = 0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None

    @property
    def ok(self) -> bool:
        """True when the row got an answer."""
        return self.error is None


@dataclass(slots=True)
class RunStats:
    """Counters the engine updates as it goes; the progress bar and the report read them."""

    started: float = 0.0
    finished: float | None = None
    requests_sent: int = 0
    retries: int = 0
    rate_limited: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    succeeded: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    status_counts: Counter[int] = field(default_factory=Counter)
