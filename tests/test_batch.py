"""``batch=True`` end to end against the local server's files and batches routes.

The server runs a batch's lines through the chat route's own rules, so the same rows sent
online and in a batch must come back the same; its counters (uploads, batches created,
lines run, chat requests) prove what was sent. Polling runs on a fake clock.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from aiohttp import web

import holysheep_nb  # noqa: F401 - registers the accessor
from holysheep_nb.accessor import _job
from holysheep_nb.batch import (
    BatchError,
    BatchHandle,
    BatchJob,
    BatchLimits,
    BatchUnavailableError,
)
from holysheep_nb.batch.cli import main as batches_cli
from holysheep_nb.batch.lines import request_line, split
from holysheep_nb.batch.records import BatchRecords
from holysheep_nb.errors import HolySheepWarning
from holysheep_nb.labels import LabelSet
from holysheep_nb.prices import Prices
from holysheep_nb.sample import load_reviews
from holysheep_nb.server import LocalServer, ServerConfig
from tests.fakes import FakeClock

LABELS = ["positive", "negative", "neutral"]
#: Markers whose answer is the same online and in a batch (no retry decides it).
MARKERS = ("{{fault:400}}", "{{fault:refusal}}", "{{fault:content-filter}}", "{{fault:length}}",
           "{{fault:moderation}}")  # fmt: skip
COMPARED = ["label", "response", "error", "finish_reason", "prompt_tokens", "completion_tokens",
            "attempts", "shared"]  # fmt: skip


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with LocalServer() as running:
        yield running


@pytest.fixture
def cache(tmp_path: Path) -> str:
    return str(tmp_path / "answers.sqlite")


def frame(texts: list[str | None]) -> pd.DataFrame:
    return pd.DataFrame({"text": texts})


def batch_job(
    df: pd.DataFrame, clock: FakeClock, limits: BatchLimits | None = None, **options: Any
) -> BatchJob:
    """The job ``label(..., batch=True)`` builds, on a fake clock."""
    options.setdefault("progress", False)
    job = _job(df, "text", None, options, LabelSet(LABELS))
    return BatchJob(
        job.source, job.options, answer_format=job.answer_format, limits=limits, clock=clock
    )


def batch_stats(server: LocalServer) -> dict[str, int]:
    stats: dict[str, int] = server.stats()["batches"]
    return stats


def test_5000_rows_in_a_batch_come_back_as_online(server: LocalServer, cache: str) -> None:
    reviews = load_reviews(5000)
    texts = reviews["text"].tolist()
    for number, position in enumerate(range(0, 5000, 101)):
        texts[position] = f"{texts[position]} {MARKERS[number % len(MARKERS)]}"
    texts[7] = None
    df = frame(texts)
    options: dict[str, Any] = {"labels": LABELS, "base_url": server.base_url, "progress": False}

    online = df.holysheep.label("text", cache=False, **options)
    server.reset()
    batched = df.holysheep.label("text", cache=cache, batch=True, **options)

    pd.testing.assert_frame_equal(batched[COMPARED], online[COMPARED])
    assert batched["error"].notna().sum() == len(range(0, 5000, 101)) + 1
    assert batched["latency"].isna().all()
    distinct = df["text"].dropna().nunique()
    assert batch_stats(server)["lines_run"] == distinct
    assert server.stats()["requests"] == 0  # nothing went to the chat route
    report = batched.holysheep.report()
    assert report.batch_ids
    assert report.requests_sent == distinct == online.holysheep.report().requests_sent
    assert report.deduplicated == online.holysheep.report().deduplicated > 0
    assert (report.succeeded, report.failed) == (
        online.holysheep.report().succeeded,
        online.holysheep.report().failed,
    )
    # The answers are in the cache under the online keys: an online run now sends only the
    # rows whose error left nothing to keep (a cut answer with text is kept, as online).
    again = df.holysheep.label("text", cache=cache, **options)
    unkept = sum(t is not None and "{{fault" in t and "length" not in t for t in texts)
    assert server.stats()["requests"] == unkept
    assert again["label"].equals(online["label"])


def test_a_restart_mid_batch_reattaches_without_a_second_upload(
    cache: str, clock: FakeClock
) -> None:
    df = frame([f"review {i}: I love it" if i % 2 else f"review {i}: awful" for i in range(60)])
    with LocalServer(ServerConfig(batch_polls=3)) as server:
        handle = df.holysheep.batch.label(
            "text", labels=LABELS, base_url=server.base_url, cache=cache, progress=False
        )
        assert isinstance(handle, BatchHandle)
        assert len(handle.batch_ids) == 1
        assert batch_stats(server)["uploads"] == 1
        # The kernel restarts: the handle is gone; the same cell runs again with a new job.
        out = asyncio.run(batch_job(df, clock, base_url=server.base_url, cache=cache).run())
        assert (batch_stats(server)["uploads"], batch_stats(server)["created"]) == (1, 1)
        assert out.holysheep.report().batch_ids == handle.batch_ids
        assert out["error"].isna().all()
        assert out["label"].tolist() == ["negative", "positive"] * 30
        assert clock.sleeps == [1.0, 2.0]  # three polls, waits doubling
        # Once collected, the same call is answered from the cache: no batch at all.
        third = asyncio.run(batch_job(df, clock, base_url=server.base_url, cache=cache).run())
        assert third["cached"].all()
        assert batch_stats(server)["created"] == 1


def test_the_batch_namespace_submits_then_collects_later(server: LocalServer, cache: str) -> None:
    df = frame(["great", "bad", "great"])
    handle = df.holysheep.batch.complete(
        "text", base_url=server.base_url, cache=cache, progress=False
    )
    assert isinstance(handle, BatchHandle)
    assert handle.requests == 2
    assert "collect()" in repr(handle)
    assert handle.status() == {handle.batch_ids[0]: "completed"}
    out = handle.collect()
    assert out["response"].tolist() == ["positive", "negative", "positive"]
    with BatchRecords(cache) as records:
        assert [r.collected is not None for r in records.all()] == [True]


def test_failed_requests_leave_exactly_those_rows_and_one_call_resends_them(
    server: LocalServer, cache: str
) -> None:
    texts = [f"row {i} is lovely" for i in range(20)]
    failing = {3, 11, 17}
    for i in failing:
        texts[i] += " {{fault:503*1}}"  # fails the first time it is run, not the second
    df = frame(texts)
    options: dict[str, Any] = {"labels": LABELS, "base_url": server.base_url, "progress": False}

    first = df.holysheep.label("text", cache=cache, batch=True, **options)
    assert set(np.flatnonzero(first["error"].notna())) == failing
    assert first.loc[3, "error"].startswith("HTTP 503 after 1 attempt: ")
    # The same call again sends only the failed rows, in a new batch.
    second = df.holysheep.label("text", cache=cache, batch=True, **options)
    assert batch_stats(server)["created"] == 2
    assert batch_stats(server)["lines_run"] == 20 + len(failing)
    assert second["error"].isna().all()
    assert int((~second["cached"]).sum()) == len(failing)
    assert second["label"].tolist() == ["positive"] * 20


def test_a_provider_without_batches_gives_a_clear_error_and_nothing_else(cache: str) -> None:
    df = frame(["great", "bad"])
    with LocalServer(ServerConfig(batches=False)) as server:
        with pytest.raises(BatchUnavailableError) as raised:
            df.holysheep.label(
                "text", labels=LABELS, base_url=server.base_url, cache=cache, batch=True,
                progress=False,
            )  # fmt: skip
        message = str(raised.value)
        assert "no Batch API (HTTP 404 on POST /files" in message
        assert "nothing was uploaded or charged" in message
        assert "without batch=True" in message
        stats = server.stats()
        assert stats["requests"] == 0
        assert batch_stats(server)["uploads"] == 0
    with BatchRecords(cache) as records:
        assert records.all() == []


def test_a_large_input_is_split_by_the_provider_limits(
    server: LocalServer, cache: str, clock: FakeClock
) -> None:
    df = frame([f"item {i} is fine" for i in range(100)])
    limits = BatchLimits(max_requests=40)
    out = asyncio.run(batch_job(df, clock, limits, base_url=server.base_url, cache=cache).run())
    assert batch_stats(server)["created"] == 3
    assert len(out.holysheep.report().batch_ids) == 3
    assert out["error"].isna().all()


def test_split_respects_requests_and_bytes() -> None:
    lines = [request_line(f"id{i}", "m", [{"role": "user", "content": "x" * 50}], {})
             for i in range(10)]  # fmt: skip
    size = len(lines[0])
    files = split(lines, BatchLimits(max_requests=4, max_bytes=3 * size))
    assert [f.count(b"\n") for f in files] == [3, 3, 3, 1]
    assert b"".join(files) == b"".join(lines)
    assert split(lines, BatchLimits(max_requests=4)) == [
        b"".join(lines[0:4]),
        b"".join(lines[4:8]),
        b"".join(lines[8:]),
    ]


def test_expiry_and_cancel_leave_the_rows_never_run_not_sent(cache: str, clock: FakeClock) -> None:
    df = frame([f"text {i} is great" for i in range(8)])
    with LocalServer(ServerConfig(batch_polls=4, batch_expiry=0)) as server:
        out = asyncio.run(batch_job(df, clock, base_url=server.base_url, cache=cache).run())
        assert out["error"].isna().sum() == 2  # a quarter ran before the window closed
        assert out["error"].iloc[-1].startswith("not sent: batch batch_expired: ")
    with LocalServer(ServerConfig(batch_polls=4)) as server:
        handle = asyncio.run(
            batch_job(df, clock, base_url=server.base_url, cache=cache + ".2").submit()
        )
        handle.cancel()  # its status check is a poll: a quarter has run by then
        out = handle.collect()
        assert batch_stats(server)["cancels"] == 1
        assert out["error"].isna().sum() == 2  # what ran before the cancel is kept
        assert out["error"].iloc[2:].str.startswith("not sent: batch batch_cancelled").all()


def test_interrupting_stops_waiting_not_the_batch(cache: str) -> None:
    class Interrupted(FakeClock):
        async def sleep(self, seconds: float) -> None:
            raise asyncio.CancelledError

    df = frame(["great"])
    with LocalServer(ServerConfig(batch_polls=10)) as server:
        job = batch_job(df, Interrupted(), base_url=server.base_url, cache=cache)
        advice = "python -m holysheep_nb batches cancel batch_"
        with pytest.warns(HolySheepWarning, match=advice), pytest.raises(asyncio.CancelledError):
            asyncio.run(job.run())
        assert batch_stats(server)["cancels"] == 0
        with BatchRecords(cache) as records:
            assert [r.collected for r in records.all()] == [None]


def test_estimate_shows_the_batch_price(server: LocalServer) -> None:
    df = frame(["great", "bad"])
    options: dict[str, Any] = {
        "labels": LABELS,
        "base_url": server.base_url,
        "prices": Prices(1.0, 2.0),
        "cache": False,
    }
    online = df.holysheep.estimate("text", **options)
    batched = df.holysheep.estimate("text", batch=True, **options)
    assert online.cost is not None
    assert batched.cost == pytest.approx(online.cost / 2)
    assert "up to 24 h" in str(batched)
    assert "batch price" in str(batched)
    with pytest.raises(ValueError, match="batch_discount"):
        Prices(1.0, 1.0, batch_discount=0)


def test_batches_list_and_cancel_commands(
    cache: str, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    df = frame(["great", "bad"])
    with LocalServer(ServerConfig(batch_polls=5)) as server:
        handle = asyncio.run(batch_job(df, clock, base_url=server.base_url, cache=cache).submit())
        (batch_id,) = handle.batch_ids
        assert batches_cli(["list", "--cache", cache]) == 0
        listed = capsys.readouterr().out
        assert f"{batch_id}  " in listed
        assert "2 requests" in listed
        assert "in_progress" in listed
        assert batches_cli(["cancel", batch_id, "--cache", cache]) == 0
        assert "cancelling" in capsys.readouterr().out
        assert batches_cli(["cancel", "batch_unknown", "--cache", cache]) == 1
        assert batch_stats(server)["cancels"] == 1


async def test_files_without_batches_say_the_upload_cost_nothing_and_remove_it(
    cache: str, clock: FakeClock
) -> None:
    """A provider with /files but no /batches: the uploaded file is deleted again."""
    seen: list[str] = []

    async def files(request: web.Request) -> web.Response:
        seen.append(f"{request.method} {request.path}")
        await request.read()
        return web.json_response({"id": "file-1", "object": "file", "purpose": "batch"})

    async def other(request: web.Request) -> web.Response:
        seen.append(f"{request.method} {request.path}")
        return web.json_response({"error": {"message": "Not found"}}, status=404)

    app = web.Application()
    app.router.add_route("POST", "/v1/files", files)
    app.router.add_route("DELETE", "/v1/files/file-1", files)
    app.router.add_route("*", "/{tail:.*}", other)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        job = batch_job(
            frame(["great"]), clock, base_url=f"http://127.0.0.1:{port}/v1", cache=cache
        )
        with pytest.raises(BatchUnavailableError, match="no batch was created, so nothing"):
            await job.run()
    finally:
        await runner.cleanup()
    assert seen == ["POST /v1/files", "POST /v1/batches", "DELETE /v1/files/file-1"]


def test_a_batch_the_provider_forgot_is_forgotten_and_sent_anew(
    server: LocalServer, cache: str, clock: FakeClock
) -> None:
    df = frame(["great", "bad"])
    asyncio.run(batch_job(df, clock, base_url=server.base_url, cache=cache).submit())
    server.reset()  # the provider no longer knows the batch
    with pytest.raises(BatchError, match=r"HTTP 404 .* run the cell again to submit the rows anew"):
        asyncio.run(batch_job(df, clock, base_url=server.base_url, cache=cache).run())
    out = asyncio.run(batch_job(df, clock, base_url=server.base_url, cache=cache).run())
    assert out["error"].isna().all()
    assert batch_stats(server)["created"] == 1


def test_submit_only_is_a_deprecated_alias_of_the_batch_namespace(
    server: LocalServer, cache: str
) -> None:
    df = frame(["great", "bad"])
    options = {"base_url": server.base_url, "cache": cache, "progress": False}
    with pytest.warns(DeprecationWarning, match=r"df\.holysheep\.batch\.label"):
        handle = df.holysheep.label("text", labels=LABELS, submit_only=True, **options)
    assert isinstance(handle, BatchHandle)
    with pytest.warns(DeprecationWarning, match="submit_only=True is deprecated"):
        again = asyncio.run(
            df.holysheep.alabel("text", labels=LABELS, batch=True, submit_only=True, **options)
        )
    assert isinstance(again, BatchHandle)
    assert again.batch_ids == handle.batch_ids  # re-attached: one batch
    assert handle.collect()["label"].tolist() == ["positive", "negative"]


async def test_await_the_batch_namespace(server: LocalServer, cache: str) -> None:
    df = frame(["great", "bad"])
    handle = await df.holysheep.batch.alabel(
        "text", labels=LABELS, base_url=server.base_url, cache=cache, progress=False
    )
    out = await handle.acollect()
    assert out["label"].tolist() == ["positive", "negative"]


def test_a_fresh_process_reattaches_to_the_batch_of_an_earlier_one(tmp_path: Path) -> None:
    """Two kernels in turn (two processes), one cache file: one upload, one batch."""
    cell = (
        "import sys, pandas as pd, holysheep_nb\n"
        "df = pd.DataFrame({'text': ['great', 'awful', 'fine']})\n"
        "kw = dict(labels=['positive', 'negative', 'neutral'], base_url=sys.argv[1],\n"
        "          cache=sys.argv[2], batch=True, progress=False)\n"
        "if sys.argv[3] == 'submit':\n"
        "    print(df.holysheep.batch.label('text', **kw).batch_ids[0])\n"
        "else:\n"
        "    out = df.holysheep.label('text', **kw)\n"
        "    print(out.holysheep.report().batch_ids[0], ','.join(out['label']))\n"
    )
    cache = str(tmp_path / "shared.sqlite")
    with LocalServer(ServerConfig(batch_polls=2)) as server:

        def kernel(step: str) -> str:
            done = subprocess.run(
                [sys.executable, "-c", cell, server.base_url, cache, step],
                capture_output=True, text=True, timeout=60, check=True,
            )  # fmt: skip
            return done.stdout.strip()

        submitted = kernel("submit")
        collected = kernel("collect")
        assert collected == f"{submitted} positive,negative,neutral"
        assert (batch_stats(server)["uploads"], batch_stats(server)["created"]) == (1, 1)


def test_extract_in_a_batch_comes_back_as_online(server: LocalServer, cache: str) -> None:
    df = frame(["The kettle is great, five stars", "Broken lid {{fault:400}}", None])
    schema = {"product": str, "stars": int}
    options: dict[str, Any] = {"schema": schema, "base_url": server.base_url, "progress": False}
    online = df.holysheep.extract("text", cache=False, **options)
    batched = df.holysheep.extract("text", cache=cache, batch=True, **options)
    compared = ["product", "stars", "response", "error"]
    pd.testing.assert_frame_equal(batched[compared], online[compared])
    assert batched["error"].notna().tolist() == [False, True, True]


def test_a_label_in_a_batch_has_its_confidence_as_online(cache: str) -> None:
    """logprobs=True in a batch gave every row a NaN confidence: the batch's answers were read
    without their logprobs, so the threshold and escalate() loop had nothing to go on."""
    reviews = load_reviews(40)
    options: dict[str, Any] = {
        "labels": LABELS, "model": "sim-small", "temperature": 0, "logprobs": True,
        "progress": False,
    }  # fmt: skip
    with LocalServer(ServerConfig(batch_polls=1)) as server:
        online = reviews.holysheep.label("text", base_url=server.base_url, cache=False, **options)
        batched = reviews.holysheep.label(
            "text", base_url=server.base_url, cache=cache, batch=True, **options
        )
        again = reviews.holysheep.label("text", base_url=server.base_url, cache=cache, **options)
    assert online["confidence"].notna().all()
    pd.testing.assert_series_equal(batched["confidence"], online["confidence"])
    assert again["cached"].all()  # and the cache kept the batch's logprobs
    pd.testing.assert_series_equal(again["confidence"], online["confidence"])
