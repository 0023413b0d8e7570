"""Retry decisions as pure functions: what to retry, how long to wait, what the server said.

The engine only loops; every decision lives here so it can be tested with tables. What is
retried follows openai-python (408, 409, 429, 5xx) plus 425 Too Early; 501 Not Implemented
and 505 HTTP Version Not Supported will not change on a retry. What stops the whole run is
decided here too (``judge``).
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from multidict import CIMultiDict, CIMultiDictProxy

from holysheep_nb.outcome import OutcomeKind, RunStop
from holysheep_nb.policies import RetryPolicy
from holysheep_nb.provider_errors import ProviderError

_RETRYABLE_4XX = frozenset({408, 409, 425, 429})
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(h|ms|us|µs|ns|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_PERMANENT_5XX = frozenset({501, 505})
#: Header mappings that ignore case (aiohttp's); a tuple, as ``isinstance`` reads it fastest.
_CASELESS = (CIMultiDictProxy, CIMultiDict)


class Verdict(enum.Enum):
    """What to do after an answer."""

    OK = "ok"
    RETRY = "retry"
    FAIL = "fail"  # this row's final error
    STOP = "stop"  # every row would fail the same way: stop the run
    FALLBACK = "fallback"  # send again without ``response_format``, for the rest of the run


@dataclass(frozen=True, slots=True)
class Judgement:
    """The verdict on one answer, the kind a failure gets, and the stop it calls for."""

    verdict: Verdict
    kind: OutcomeKind = OutcomeKind.OK
    stop: RunStop | None = None


_OK = Judgement(Verdict.OK)
_RETRY = Judgement(Verdict.RETRY, OutcomeKind.SERVER)
_FAIL = Judgement(Verdict.FAIL, OutcomeKind.HTTP)
_KEY_ADVICE = "check the API key (HOLYSHEEP_API_KEY or api_key=...)"
_CREDIT_ADVICE = (
    "add credits or raise the account's limit, then run the cell again "
    "(rows already answered come from the cache)"
)


def classify_status(status: int) -> Verdict:
    """What an HTTP status alone says: OK, RETRY, STOP (401/402/403/404) or FAIL."""
    if 200 <= status < 300:
        return Verdict.OK
    if status in (401, 402, 403, 404):
        return Verdict.STOP
    if status in _RETRYABLE_4XX or (500 <= status < 600 and status not in _PERMANENT_5XX):
        return Verdict.RETRY
    return Verdict.FAIL


def judge(status: int, error: ProviderError | None, *, structured: bool = False) -> Judgement:
    """What to do with an answer of ``status`` whose error body said ``error``.

    The statuses that concern the whole run stop it (``docs/contract.md``, "Failures that
    stop the run"): a refused key (401, and 403 unless the body says this input was
    flagged, as OpenRouter's moderation does), no credits (402), a model or URL that does
    not exist (404), and a quota 429 (``insufficient_quota``), which waiting never clears.
    A 400 that rejects ``response_format`` on a ``structured`` request asks for the
    fallback; Azure's 400 ``content_filter`` is the row's filtered input.
    """
    verdict = classify_status(status)
    if verdict is Verdict.OK:
        return _OK
    error = error or ProviderError("")
    if verdict is Verdict.RETRY:
        if status == 429 and error.quota_exhausted:
            cause = f"quota exhausted (HTTP 429{' ' + error.code if error.code else ''})"
            return Judgement(Verdict.STOP, OutcomeKind.SERVER, RunStop(cause, _CREDIT_ADVICE))
        return _RETRY
    if verdict is Verdict.STOP:
        return _stop_for(status, error)
    if structured and status in (400, 422) and error.about_response_format:
        return Judgement(Verdict.FALLBACK, OutcomeKind.HTTP)
    if status == 400 and "content_filter" in f"{error.code} {error.type}":
        return Judgement(Verdict.FAIL, OutcomeKind.FILTERED)
    return _FAIL


def wait_too_long(seconds: float, status: int | None) -> RunStop:
    """The stop for a ``Retry-After`` beyond ``RetryPolicy.max_retry_after``: waiting that
    long inside a notebook cell is worse than stopping and saying so."""
    return RunStop(
        f"the provider asked to wait {seconds:,.0f} s (HTTP {status} with Retry-After)",
        f"run the cell again later, or pass max_retry_after={seconds:.0f} to wait that long",
    )


#: The 404 message of Azure OpenAI's gateway for a path that is not a deployment's.
_AZURE_NOT_FOUND = "Resource not found"


def _stop_for(status: int, error: ProviderError) -> Judgement:
    if status == 403 and error.input_flagged:
        return Judgement(Verdict.FAIL, OutcomeKind.FILTERED)
    if status in (401, 403):
        stop = RunStop(f"authentication failed (HTTP {status})", _KEY_ADVICE)
        return Judgement(Verdict.STOP, OutcomeKind.AUTH, stop)
    if status == 402:
        return Judgement(
            Verdict.STOP, OutcomeKind.HTTP, RunStop("out of credits (HTTP 402)", _CREDIT_ADVICE)
        )
    if error.message == _AZURE_NOT_FOUND:
        # Azure's gateway answers any path but a deployment's this way: a /v1 URL there means
        # the client did not know it was talking to Azure.
        stop = RunStop(
            f"not found (HTTP 404): {error.message} (Azure OpenAI's answer)",
            "api_version= is missing: pass the resource endpoint as base_url, "
            "api_version='2024-10-21' (or your resource's) and the deployment as model=",
        )
    elif "model" in f"{error.code} {error.message}".lower():
        # The engine names the closest of the server's models in the advice (model_list).
        stop = RunStop(
            f"model not found (HTTP 404): {error.message}", "check model=", missing_model=True
        )
    else:
        stop = RunStop(
            f"not found (HTTP 404): {error.message}",
            "check base_url: it should end where the server's /chat/completions starts "
            "(usually /v1)",
        )
    return Judgement(Verdict.STOP, OutcomeKind.HTTP, stop)


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


def retry_hint(headers: Mapping[str, str], error: ProviderError, now_wall: float) -> float | None:
    """Seconds the provider asks us to wait: its headers (``parse_retry_after``), else the
    ``RetryInfo`` ``retryDelay`` in the error body (Gemini sends no header), or None."""
    seconds = parse_retry_after(headers, now_wall)
    return error.retry_delay if seconds is None else seconds


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
    requests = budget_left(headers, "requests")
    if requests is not None and requests[0] <= in_flight:
        holds.append(requests[1])
    tokens = budget_left(headers, "tokens")
    if tokens is not None and tokens[0] <= 0:
        holds.append(tokens[1])
    return max(holds) if holds else None


def states_budget(headers: Mapping[str, str]) -> bool:
    """False when ``headers`` (aiohttp's) state no budget at all, as most servers' answers
    do: then neither ``budget_hold`` nor a window's reset has anything to read."""
    if not isinstance(headers, _CASELESS):
        return True  # a plain dict: its names may be in any case, read the long way
    return (
        "x-ratelimit-remaining-requests" in headers
        or "x-ratelimit-remaining-tokens" in headers
        or "x-ratelimit-reset-requests" in headers
    )


def budget_left(headers: Mapping[str, str], kind: str) -> tuple[float, float] | None:
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
    if value is None and not isinstance(headers, _CASELESS):
        value = headers.get(name.title())  # a plain dict; aiohttp's headers ignore case
    return value.strip() if isinstance(value, str) else None


def _finite_float(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None
