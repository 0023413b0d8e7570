"""Retry decisions as pure functions: what to retry, how long to wait, what the server said.

The engine only loops; every decision lives here so it can be tested with tables. What is
retried follows openai-python (408, 409, 429, 5xx) plus 425 Too Early; 501 Not Implemented
and 505 HTTP Version Not Supported will not change on a retry.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from email.utils import parsedate_to_datetime

from holysheep_nb.config import RetryPolicy

_RETRYABLE_4XX = frozenset({408, 409, 425, 429})
_PERMANENT_5XX = frozenset({501, 505})


class Verdict(enum.Enum):
    """What to do with an HTTP status."""

    OK = "ok"
    RETRY = "retry"
    AUTH = "auth"  # abort the run: the key is refused
    FAIL = "fail"  # this row's final error


def classify_status(status: int) -> Verdict:
    """Map an HTTP status to what the engine does next."""
    if 200 <= status < 300:
        return Verdict.OK
    if status in (401, 403):
        return Verdict.AUTH
    if status in _RETRYABLE_4XX or (500 <= status < 600 and status not in _PERMANENT_5XX):
        return Verdict.RETRY
    return Verdict.FAIL


def parse_retry_after(headers: Mapping[str, str], now_wall: float) -> float | None:
    """Seconds the server asks us to wait, or None when it gave no usable hint.

    Reads ``retry-after-ms`` first (OpenAI's finer hint), then ``Retry-After`` as seconds,
    then as an HTTP date relative to ``now_wall`` (epoch seconds). A date in the past means 0.
    """
    millis = _header(headers, "retry-after-ms")
    if millis is not None:
        seconds = _finite_float(millis)
        if seconds is not None and seconds >= 0:
            return seconds / 1000.0
    value = _header(headers, "retry-after")
    if value is None:
        return None
    seconds = _finite_float(value)
    if seconds is not None:
        return seconds if seconds >= 0 else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now_wall)


def backoff_delay(retry_number: int, policy: RetryPolicy, jitter: float) -> float:
    """Full-jitter exponential backoff for the ``retry_number``-th retry (1-based).

    ``jitter`` is a uniform draw in [0, 1); full jitter ("Exponential Backoff And Jitter",
    AWS Architecture Blog, 2015) spreads retries of many clients over the whole window, which
    clears a 429 storm fastest.
    """
    ceiling = min(policy.max_wait, policy.initial_wait * 2.0 ** (retry_number - 1))
    return jitter * ceiling


def next_delay(
    retry_number: int, policy: RetryPolicy, retry_after: float | None, jitter: float
) -> float:
    """The wait before the next attempt: the server's hint (capped) or the backoff."""
    if retry_after is not None:
        return min(retry_after, policy.max_retry_after)
    return backoff_delay(retry_number, policy, jitter)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        value = headers.get(name.title())
    return value.strip() if isinstance(value, str) else None


def _finite_float(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None
