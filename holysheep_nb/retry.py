"""Retry decisions as pure functions: what to retry, how long to wait, what the server said.

The engine only loops; every decision lives here so it can be tested with tables. What is
retried follows openai-python (408, 409, 429, 5xx) plus 425 Too Early; 501 Not Implemented
and 505 HTTP Version Not Supported will not change on a retry.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Mapping
from email.utils import parsedate_to_datetime

from multidict import CIMultiDict, CIMultiDictProxy

from holysheep_nb.policies import RetryPolicy

_RETRYABLE_4XX = frozenset({408, 409, 425, 429})
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(h|ms|us|µs|ns|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
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


def parse_duration(text: str) -> float | None:
    """Seconds in an ``x-ratelimit-reset-*`` value: ``"1s"``, ``"6m0s"``, ``"20ms"``, ``"0.5"``.

    OpenAI writes Go-style durations; some compatible servers write plain seconds.
    """
    text = text.strip()
    seconds = _finite_float(text)
    if seconds is not None:
        return seconds if seconds >= 0 else None
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        return None
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)


def budget_hold(headers: Mapping[str, str], in_flight: int) -> float | None:
    """Seconds to hold new sends because the provider's budget is spent, or None.

    Read from the ``x-ratelimit-remaining-*`` / ``x-ratelimit-reset-*`` headers that OpenAI
    and compatible servers send with every answer: when the requests left are no more than
    those already in flight (each will use one), or no tokens are left, waiting for the reset
    costs less than the burst of 429s that sending would bring.
    """
    holds = []
    requests = _budget(headers, "requests")
    if requests is not None and requests[0] <= in_flight:
        holds.append(requests[1])
    tokens = _budget(headers, "tokens")
    if tokens is not None and tokens[0] <= 0:
        holds.append(tokens[1])
    return max(holds) if holds else None


def _budget(headers: Mapping[str, str], kind: str) -> tuple[float, float] | None:
    """``(units left, seconds to reset)`` from the ``x-ratelimit-*-<kind>`` headers."""
    remaining = _header(headers, f"x-ratelimit-remaining-{kind}")
    if remaining is None:  # most servers: one lookup per answer, on the hot path
        return None
    reset = _header(headers, f"x-ratelimit-reset-{kind}")
    if reset is None:
        return None
    left, wait = _finite_float(remaining), parse_duration(reset)
    return None if left is None or wait is None else (left, wait)


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
    if value is None and not isinstance(headers, CIMultiDictProxy | CIMultiDict):
        value = headers.get(name.title())  # a plain dict; aiohttp's headers ignore case
    return value.strip() if isinstance(value, str) else None


def _finite_float(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None
