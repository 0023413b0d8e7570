"""The batch client retries by the run's ``RetryPolicy``, as the engine retries a row.

Each case scripts the provider's answers (aioresponses) and reads the waits off a fake
clock: full jitter on the backoff, ``Retry-After`` obeyed, ``max_retries`` respected, and a
``Retry-After`` beyond ``max_retry_after`` failing at once.
"""

from __future__ import annotations

import pytest
from aioresponses import aioresponses

from holysheep_nb.batch.client import BatchClient, BatchError
from holysheep_nb.endpoint import Endpoint
from holysheep_nb.policies import RetryPolicy
from tests.fakes import FakeClock

BASE = "http://127.0.0.1:9/v1"
URL = f"{BASE}/batches/batch_1"
BATCH = {"id": "batch_1", "status": "in_progress"}


def client(clock: FakeClock, policy: RetryPolicy) -> BatchClient:
    endpoint = Endpoint(base_url=BASE, api_key="sk-test")
    return BatchClient(endpoint, timeout=5.0, clock=clock, retry=policy, jitter=lambda: 0.5)


async def test_backoff_is_full_jitter_and_a_retry_after_replaces_it(clock: FakeClock) -> None:
    policy = RetryPolicy(max_retries=5, initial_wait=1.0, max_wait=30.0)
    with aioresponses() as mocked:
        mocked.get(URL, status=503, payload={"error": {"message": "busy"}})
        mocked.get(URL, status=503, payload={"error": {"message": "busy"}})
        mocked.get(URL, status=429, payload={}, headers={"Retry-After": "7"})
        mocked.get(URL, status=200, payload=BATCH)
        async with client(clock, policy) as batches:
            assert await batches.retrieve("batch_1") == BATCH
    # 0.5 of the first ceiling (1 s), 0.5 of the second (2 s), then the server's 7 s.
    assert clock.sleeps == [0.5, 1.0, 7.0]


async def test_max_retries_bounds_the_attempts(clock: FakeClock) -> None:
    policy = RetryPolicy(max_retries=1, initial_wait=1.0)
    with aioresponses() as mocked:
        for _ in range(3):
            mocked.get(URL, status=502, payload={"error": {"message": "bad gateway"}})
        async with client(clock, policy) as batches:
            with pytest.raises(BatchError, match="HTTP 502") as raised:
                await batches.retrieve("batch_1")
        calls = sum(len(sent) for sent in mocked.requests.values())
    assert raised.value.status == 502
    assert calls == 2  # the first attempt and max_retries=1 retry
    assert clock.sleeps == [0.5]


async def test_a_retry_after_beyond_the_policy_fails_at_once(clock: FakeClock) -> None:
    policy = RetryPolicy(max_retry_after=60.0)
    with aioresponses() as mocked:
        mocked.get(URL, status=429, payload={}, headers={"Retry-After": "600"})
        async with client(clock, policy) as batches:
            with pytest.raises(BatchError, match="max_retry_after=600") as raised:
                await batches.retrieve("batch_1")
    assert raised.value.status == 429
    assert clock.sleeps == []


async def test_creating_a_batch_is_not_repeated_after_a_5xx(clock: FakeClock) -> None:
    with aioresponses() as mocked:
        mocked.post(f"{BASE}/batches", status=500, payload={"error": {"message": "oops"}})
        async with client(clock, RetryPolicy()) as batches:
            with pytest.raises(BatchError, match="HTTP 500"):
                await batches.create("file-1", {})
    assert clock.sleeps == []
