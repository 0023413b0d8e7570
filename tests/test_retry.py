"""The pure retry functions, by table (docs/contract.md, "Failure kinds")."""

from __future__ import annotations

from collections.abc import Mapping
from email.utils import formatdate

import pytest
from multidict import CIMultiDict

from holysheep_nb.outcome import OutcomeKind
from holysheep_nb.policies import RetryPolicy
from holysheep_nb.provider_errors import ProviderError
from holysheep_nb.retry import (
    Verdict,
    backoff_delay,
    budget_hold,
    classify_status,
    judge,
    next_delay,
    parse_duration,
    parse_retry_after,
    wait_too_long,
)

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, Verdict.OK),
        (201, Verdict.OK),
        (400, Verdict.FAIL),
        (401, Verdict.STOP),
        (402, Verdict.STOP),
        (403, Verdict.STOP),
        (404, Verdict.STOP),
        (408, Verdict.RETRY),
        (409, Verdict.RETRY),
        (413, Verdict.FAIL),
        (422, Verdict.FAIL),
        (425, Verdict.RETRY),
        (429, Verdict.RETRY),
        (500, Verdict.RETRY),
        (501, Verdict.FAIL),
        (502, Verdict.RETRY),
        (503, Verdict.RETRY),
        (504, Verdict.RETRY),
        (505, Verdict.FAIL),
        (520, Verdict.RETRY),
        (302, Verdict.FAIL),
    ],
)
def test_classify_status(status: int, verdict: Verdict) -> None:
    assert classify_status(status) is verdict


#: Error bodies as providers send them (shapes from OpenAI's, OpenRouter's, Azure's and
#: DeepSeek's error documentation), and what each calls for.
OPENAI_QUOTA = ProviderError(
    "You exceeded your current quota, please check your plan and billing details.",
    code="insufficient_quota",
    type="insufficient_quota",
)
OPENROUTER_FLAGGED = ProviderError(
    "Input flagged by moderation",
    code="403",
    metadata={"reasons": ["harassment"], "flagged_input": "you are...", "provider_name": "x"},
)
DEEPSEEK_FORMAT = ProviderError(
    "This response_format type is unavailable now", type="invalid_request_error"
)
AZURE_FILTER = ProviderError(
    "The response was filtered due to the prompt triggering Azure OpenAI's content management policy.",
    code="content_filter",
)
MODEL_404 = ProviderError(
    "The model `gpt-9` does not exist or you do not have access to it.", code="model_not_found"
)


@pytest.mark.parametrize(
    ("status", "error", "structured", "verdict", "kind", "cause"),
    [
        (200, None, False, Verdict.OK, OutcomeKind.OK, None),
        (429, ProviderError("Rate limit reached"), False, Verdict.RETRY, OutcomeKind.SERVER, None),
        (
            429,
            OPENAI_QUOTA,
            False,
            Verdict.STOP,
            OutcomeKind.SERVER,
            "quota exhausted (HTTP 429 insufficient_quota)",
        ),
        (
            429,
            ProviderError("x", code="billing_hard_limit_reached"),
            False,
            Verdict.STOP,
            OutcomeKind.SERVER,
            "quota exhausted (HTTP 429 billing_hard_limit_reached)",
        ),
        (
            401,
            ProviderError("Incorrect API key"),
            False,
            Verdict.STOP,
            OutcomeKind.AUTH,
            "authentication failed (HTTP 401)",
        ),
        (
            403,
            ProviderError("forbidden"),
            False,
            Verdict.STOP,
            OutcomeKind.AUTH,
            "authentication failed (HTTP 403)",
        ),
        (403, OPENROUTER_FLAGGED, False, Verdict.FAIL, OutcomeKind.FILTERED, None),
        (
            402,
            ProviderError("Insufficient credits"),
            False,
            Verdict.STOP,
            OutcomeKind.HTTP,
            "out of credits (HTTP 402)",
        ),
        (
            404,
            MODEL_404,
            False,
            Verdict.STOP,
            OutcomeKind.HTTP,
            f"model not found (HTTP 404): {MODEL_404.message}",
        ),
        (
            404,
            ProviderError("Not Found"),
            False,
            Verdict.STOP,
            OutcomeKind.HTTP,
            "not found (HTTP 404): Not Found",
        ),
        (400, DEEPSEEK_FORMAT, True, Verdict.FALLBACK, OutcomeKind.HTTP, None),
        (400, DEEPSEEK_FORMAT, False, Verdict.FAIL, OutcomeKind.HTTP, None),
        (
            400,
            ProviderError("bad", param="response_format"),
            True,
            Verdict.FALLBACK,
            OutcomeKind.HTTP,
            None,
        ),
        (400, ProviderError("context too long"), True, Verdict.FAIL, OutcomeKind.HTTP, None),
        (400, AZURE_FILTER, False, Verdict.FAIL, OutcomeKind.FILTERED, None),
        (503, ProviderError("overloaded"), False, Verdict.RETRY, OutcomeKind.SERVER, None),
    ],
)
def test_judge_tells_row_failures_from_run_failures(
    status: int,
    error: ProviderError | None,
    structured: bool,
    verdict: Verdict,
    kind: OutcomeKind,
    cause: str | None,
) -> None:
    judgement = judge(status, error, structured=structured)
    assert (judgement.verdict, judgement.kind) == (verdict, kind)
    assert (judgement.stop.cause if judgement.stop else None) == cause
    if judgement.stop is not None:
        assert judgement.stop.advice


def test_a_wait_beyond_the_longest_accepted_names_the_wait() -> None:
    stop = wait_too_long(3600, 429)
    assert stop.cause == "the provider asked to wait 3,600 s (HTTP 429 with Retry-After)"
    assert "max_retry_after=3600" in stop.advice


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"retry-after": "2"}, 2.0),
        ({"Retry-After": "0.25"}, 0.25),
        ({"retry-after": "0"}, 0.0),
        ({"retry-after": "-3"}, None),
        ({"retry-after": "soon"}, None),
        ({"retry-after": "nan"}, None),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
        ({"retry-after-ms": "junk", "retry-after": "9"}, 9.0),
        ({"retry-after": formatdate(NOW + 30, usegmt=True)}, 30.0),
        ({"retry-after": formatdate(NOW - 30, usegmt=True)}, 0.0),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:00"}, None),  # no zone: ambiguous, ignored
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers, NOW) == expected


def test_backoff_doubles_from_initial_and_caps_at_max_wait() -> None:
    policy = RetryPolicy(initial_wait=0.5, max_wait=4.0)
    ceilings = [backoff_delay(n, policy, jitter=1.0) for n in range(1, 8)]
    assert ceilings == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]


def test_full_jitter_scales_the_whole_window() -> None:
    policy = RetryPolicy(initial_wait=1.0, max_wait=60.0)
    assert backoff_delay(3, policy, jitter=0.0) == 0.0
    assert backoff_delay(3, policy, jitter=0.25) == 1.0
    assert backoff_delay(3, policy, jitter=0.5) == 2.0


def test_server_hint_replaces_backoff_up_to_the_cap() -> None:
    policy = RetryPolicy(initial_wait=1.0, max_wait=8.0, max_retry_after=20.0)
    assert next_delay(1, policy, retry_after=None, jitter=0.5) == 0.5
    assert next_delay(1, policy, retry_after=3.0, jitter=0.5) == 3.0
    assert next_delay(1, policy, retry_after=0.0, jitter=0.5) == 0.0
    assert next_delay(1, policy, retry_after=3600.0, jitter=0.5) == 20.0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("1h2m3.5s", 3723.5),
        ("20ms", 0.02),
        ("0.085s", 0.085),
        ("250us", 0.00025),
        ("0.5", 0.5),
        (" 2 ", 2.0),
        ("", None),
        ("soon", None),
        ("5 s", None),
        ("1s junk", None),
        ("-1", None),
        ("nan", None),
    ],
)
def test_parse_duration_reads_openai_and_plain_resets(text: str, seconds: float | None) -> None:
    result = parse_duration(text)
    assert result == (None if seconds is None else pytest.approx(seconds))


def limit(requests: str | None = None, tokens: str | None = None) -> dict[str, str]:
    """x-ratelimit headers: ``"remaining/reset"`` for requests and tokens."""
    headers = {}
    for kind, value in (("requests", requests), ("tokens", tokens)):
        if value is not None:
            remaining, reset = value.split("/")
            headers[f"x-ratelimit-remaining-{kind}"] = remaining
            headers[f"x-ratelimit-reset-{kind}"] = reset
    return headers


@pytest.mark.parametrize(
    ("headers", "in_flight", "hold"),
    [
        ({}, 0, None),  # a server that sends no budget
        (limit(requests="10/2s"), 3, None),  # plenty left
        (limit(requests="3/2s"), 3, 2.0),  # the ones in flight will use the rest
        (limit(requests="0/1.5s"), 0, 1.5),
        (limit(tokens="0/6m0s"), 0, 360.0),
        (limit(tokens="120/1s"), 50, None),  # tokens: held only when none are left
        (limit(requests="0/2s", tokens="0/5s"), 0, 5.0),  # the longer wait wins
        (limit(requests="x/2s"), 0, None),  # unreadable: ignored, never a crash
        (limit(requests="0/later"), 0, None),
        # aiohttp's headers are case-insensitive, as providers capitalise as they please
        (
            CIMultiDict(
                {"X-RateLimit-Remaining-Requests": "0", "X-RateLimit-Reset-Requests": "3s"}
            ),
            0,
            3.0,
        ),
    ],
)
def test_budget_hold_waits_for_the_reset_once_the_budget_is_spent(
    headers: Mapping[str, str], in_flight: int, hold: float | None
) -> None:
    assert budget_hold(headers, in_flight) == hold
