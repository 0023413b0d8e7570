"""``ddf.holysheep`` on a LocalCluster of 2 worker processes against the embedded server.

The cluster's workers inherit this process's environment (``PYTHONPATH`` included), so they
import the same ``holysheep_nb``; every run names its own cache file under ``tmp_path``.
The server's own counters (``/_stats``) judge what was sent: requests, 429s, the most in
flight and arrival times.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import dask
import dask.dataframe as dd
import pandas as pd
import pytest
from distributed import Client, LocalCluster
from pydantic import BaseModel

import holysheep_nb.dask
from holysheep_nb.errors import ConfigError, HolySheepWarning
from holysheep_nb.policies import RateLimits
from holysheep_nb.server import Latency, ServerConfig, ServerProcess

LABELS = ["positive", "negative", "neutral"]
#: Columns that differ between two runs of the same rows by nature (timing).
TIMING = ["latency"]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    cache_dir = tmp_path_factory.mktemp("worker-cache")
    env = {"HOLYSHEEP_CACHE_DIR": str(cache_dir)}
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            worker_dashboard_address=None,
            env=env,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


@pytest.fixture
def server() -> Iterator[ServerProcess]:
    with ServerProcess(ServerConfig(latency=Latency.fixed(0.005))) as process:
        yield process


def _frame(rows: int) -> pd.DataFrame:
    moods = ["I love it", "it broke, awful", "it is a kettle"]
    return pd.DataFrame(
        {"text": [f"{moods[i % 3]} (review {i})" for i in range(rows)], "id": range(rows)},
        index=pd.RangeIndex(100, 100 + rows),
    )


def _same_results(dask_result: pd.DataFrame, pandas_result: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(
        dask_result.drop(columns=TIMING), pandas_result.drop(columns=TIMING)
    )


def test_complete_and_label_equal_the_pandas_path(
    client: Client, server: ServerProcess, tmp_path: Path
) -> None:
    ddf = dd.from_pandas(_frame(90), npartitions=3)
    source = ddf.compute()  # what every partition holds (Dask's own dtypes for the input)
    options: dict[str, Any] = {"base_url": server.base_url, "cache": False, "progress": False}

    out = ddf.holysheep.label("text", labels=LABELS, **options)
    assert out.npartitions == 3
    assert server.stats()["requests"] == 0  # lazy: the call sent nothing
    result = out.compute()
    expected = source.holysheep.label("text", labels=LABELS, **options)
    assert list(out.dtypes.items()) == list(expected.dtypes.items())  # the meta is right
    _same_results(result, expected)
    assert result["error"].isna().all()
    assert server.stats()["requests"] == 2 * 90  # every row once in each path

    completed = ddf.holysheep.complete(template="Review {id}: {text}", **options).compute()
    _same_results(completed, source.holysheep.complete(template="Review {id}: {text}", **options))
    series = ddf["text"].holysheep.complete(**options).compute()
    _same_results(series, source["text"].holysheep.complete(**options))


def test_told_the_limit_the_cluster_stays_under_it(client: Client, tmp_path: Path) -> None:
    rpm, rows = 1200, 100
    # A 4 s window: the 1% the pace leaves unused there is 40 ms of room for arrival jitter
    # between worker processes (20 ms over 2 s, too little on a loaded 2-core machine).
    config = ServerConfig(rpm=rpm, limit_window=4.0, record_times=True)
    with ServerProcess(config) as server:
        ddf = dd.from_pandas(_frame(rows), npartitions=4)
        out = ddf.holysheep.complete(
            "text",
            base_url=server.base_url,
            cache=tmp_path / "told.sqlite",
            requests_per_minute=rpm,
            max_concurrent=8,
        ).compute()
        stats = server.stats()
    assert out["error"].isna().all()
    assert stats["requests"] == rows
    assert stats["by_status"] == {"200": rows}  # not one 429
    burst = RateLimits(requests_per_minute=rpm).request_capacity
    assert burst is not None
    times = sorted(stats["times"])
    for first, start in enumerate(times):  # every window of the combined sends
        for last in range(first, len(times)):
            # Arrival times at the server: 5 ms of network jitter allowed per window.
            assert last - first + 1 <= rpm / 60 * (times[last] - start + 0.005) + burst
    assert stats["max_in_flight"] <= 8


def test_not_told_the_limit_few_requests_are_refused(client: Client, tmp_path: Path) -> None:
    # The workers learn the limit from the x-ratelimit-* headers: the first window goes out
    # at once, then the scheduler paces every send at the stated rate. 16 wide over a 2 s
    # window there are four window turnovers; before the cluster paced as one, each
    # turnover was a burst racing the last window's out, and up to 5% of requests were
    # refused there (each worker's hold reached the scheduler after the sends it should
    # have stopped).
    config = ServerConfig(rpm=1200, limit_window=2.0, latency=Latency.fixed(0.005))
    with ServerProcess(config) as server:
        ddf = dd.from_pandas(_frame(200), npartitions=4)
        out = ddf.holysheep.complete(
            "text", base_url=server.base_url, cache=tmp_path / "untold.sqlite", max_concurrent=16
        ).compute()
        stats = server.stats()
    assert out["error"].isna().all()
    refused = stats["by_status"].get("429", 0)
    assert refused <= 0.02 * stats["requests"], stats


def _die_after_storing(answers: int) -> None:
    """Runs on one worker: kill its process as soon as it has stored ``answers`` answers."""
    from holysheep_nb.cache.store import ResponseCache

    original = ResponseCache.flush
    stored = [0]

    def flush(self: ResponseCache) -> None:
        pending = self.pending
        original(self)
        stored[0] += pending
        if stored[0] >= answers:
            os._exit(1)

    ResponseCache.flush = flush  # type: ignore[method-assign]


def test_a_lost_worker_loses_no_row_and_pays_for_none_twice(
    client: Client, server: ServerProcess, tmp_path: Path
) -> None:
    rows = 80
    frame = _frame(rows)
    first = sorted(client.scheduler_info()["workers"])[0]
    client.run(_die_after_storing, 10, workers=[first])
    ddf = dd.from_pandas(frame, npartitions=4)
    # One send in flight in the whole cluster: when the worker dies, its last answer is
    # stored and nothing else of it is on the way, so any request the server sees twice
    # would be an answer paid for again.
    out = ddf.holysheep.complete(
        "text", base_url=server.base_url, cache=tmp_path / "resume.sqlite", max_concurrent=1
    )
    result = out.compute()
    assert result["error"].isna().all()
    assert result.index.equals(frame.index)
    assert server.stats()["requests"] == rows  # every row paid for exactly once
    report = out.holysheep.report()
    assert report.rows == rows
    assert report.cached >= 10  # the retried partition found what the lost worker stored
    assert first not in client.scheduler_info()["workers"]


def test_a_stop_on_one_worker_stops_the_others(client: Client, tmp_path: Path) -> None:
    with ServerProcess(ServerConfig(api_key="the-right-key")) as server:
        ddf = dd.from_pandas(_frame(60), npartitions=4)
        out = ddf.holysheep.complete(
            "text",
            base_url=server.base_url,
            api_key="a-wrong-key",
            cache=tmp_path / "stop.sqlite",
            max_concurrent=4,
        )
        stopped = r"authentication failed \(HTTP 401\)"
        with (
            pytest.warns(HolySheepWarning, match=stopped),
            holysheep_nb.dask.progress(out, enabled=False),
        ):
            result = out.compute()
        sent = server.stats()["requests"]
    # Only sends already let through when the stop reached the scheduler went out.
    assert sent <= 8
    not_sent = result["error"].str.startswith("not sent: authentication failed (HTTP 401)")
    assert not_sent.sum() >= 60 - sent
    report = out.holysheep.report()
    assert report.stop_cause == "authentication failed (HTTP 401)"
    assert "stopped early: authentication failed (HTTP 401)" in str(report)


def test_one_bar_and_one_report_for_the_whole_run(
    client: Client,
    server: ServerProcess,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("TQDM_DISABLE")
    ddf = dd.from_pandas(_frame(60), npartitions=3)
    out = ddf.holysheep.label(
        "text", labels=LABELS, base_url=server.base_url, cache=tmp_path / "bar.sqlite"
    )
    with holysheep_nb.dask.progress(out):
        out.compute()
    bar = capsys.readouterr().err
    # From pandas, the total is known before any partition starts: no "0row" first line.
    assert re.match(r"\s*holysheep:\s+0%.* 0/60 ", bar), bar
    assert re.search(r"holysheep: 100%.* 60/60 .*ok=60", bar), bar
    assert "held" not in bar.rsplit("\r", 1)[-1]
    report = out.holysheep.report()
    assert (report.rows, report.succeeded, report.partitions, report.npartitions) == (60, 60, 3, 3)
    assert sum(share.rows for share in report.workers) == 60
    assert {share.worker for share in report.workers} <= set(client.scheduler_info()["workers"])
    assert dict(report.labels) == {"positive": 20, "negative": 20, "neutral": 20}
    assert "by worker" in str(report)
    assert report.to_dict()["workers"][0]["rows"] > 0

    again = out.compute()  # a second compute is served from the workers' cache
    assert again["cached"].all()


class Review(BaseModel):
    """A schema for extract(); at module level, so the workers import it by name."""

    sentiment: Literal["positive", "negative", "neutral"]


def test_extract_equals_the_pandas_path(client: Client, server: ServerProcess) -> None:
    ddf = dd.from_pandas(_frame(30), npartitions=2)
    options: dict[str, Any] = {"base_url": server.base_url, "cache": False, "progress": False}
    out = ddf.holysheep.extract("text", schema=Review, **options)
    expected = ddf.compute().holysheep.extract("text", schema=Review, **options)
    assert list(out.dtypes.items()) == list(expected.dtypes.items())
    result = out.compute()
    _same_results(result, expected)
    assert result["error"].isna().all()


def test_without_a_distributed_client_it_says_to_start_one(server: ServerProcess) -> None:
    ddf = dd.from_pandas(_frame(4), npartitions=2)
    out = ddf.holysheep.complete("text", base_url=server.base_url, cache=False)
    with dask.config.set(scheduler="sync"), pytest.raises(ConfigError, match=r"Client\(\)"):
        out.compute()


def test_bad_options_fail_at_the_call_before_anything_is_computed() -> None:
    ddf = dd.from_pandas(_frame(4), npartitions=2)
    with pytest.raises(ConfigError, match="max_concurrent"):
        ddf.holysheep.complete("text", base_url="http://127.0.0.1:9/v1", max_concurrent=0)
    with pytest.raises(ConfigError, match="nope"):
        ddf.holysheep.complete("nope", base_url="http://127.0.0.1:9/v1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ddf.holysheep.complete("text", base_url="http://127.0.0.1:9/v1")  # lazy: nothing sent
