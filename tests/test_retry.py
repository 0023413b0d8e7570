"""The pure retry functions, by table (SPEC §4)."""

from __future__ import annotations

from email.utils import formatdate

import pytest

from holysheep_nb.config import RetryPolicy
from holysheep_nb.retry import (
    Verdict,
    backoff_delay,
    classify_status,
    next_delay,
    parse_retry_after,
)

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, Verdict.OK),
        (201, Verdict.OK),
        (400, Verdict.FAIL),
        (401, Verdict.AUTH),
        (403, Verdict.AUTH),
        (404, Verdict.FAIL),
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
