"""``ddf.holysheep`` on a LocalCluster of 2 worker processes against the embedded server.

The cluster's workers inherit this process's environment (``PYTHONPATH`` included), so they
import the same ``holysheep_nb``; every run names its own cache file under ``tmp_path``.
The server's own counters (``/_stats``) judge what was sent: requests, the most in flight
and arrival times.

The limit is judged on the scheduler's clock: the scheduler (in this process) runs a
``RecordingPlugin``, which keeps the send time it gave every send, and every window of those
times is counted. Nothing here depends on how fast the machine is: what the provider's
sliding window makes of real arrival times (429 shares, the rate reached) is measured by
``benchmarks/run.py --only dask``, not asserted here.
"""

from __future__ import annotations

import os
import re
import warnings
from collections import defaultdict
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
from holysheep_nb import Prices
from holysheep_nb.dask.accessor import run_key
from holysheep_nb.dask.plugin import PLUGIN_NAME, LimitsPlugin
from holysheep_nb.errors import ConfigError, HolySheepWarning
from holysheep_nb.server import Latency, ServerConfig, ServerProcess

LABELS = ["positive", "negative", "neutral"]
#: Columns that differ between two runs of the same rows by nature (timing).
TIMING = ["latency"]


class RecordingPlugin(LimitsPlugin):
    """The scheduler plugin, keeping per run every send time it gave and the pace then."""

    def __init__(self) -> None:
        super().__init__()
        self.given: defaultdict[str, list[tuple[float, float | None]]] = defaultdict(list)

    async def admit(self, run: str, lease: str, worker: str, tokens: float) -> dict[str, Any]:
        reply = await super().admit(run, lease, worker, tokens)
        if "at" in reply:
            self.given[run].append((reply["at"], self.runs[run].pace))
        return reply


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cache_dir = tmp_path_factory.mktemp("worker-cache")
    env = {"HOLYSHEEP_CACHE_DIR": str(cache_dir)}
    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        worker_dashboard_address=None,
        env=env,
    ) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def client(cluster: LocalCluster) -> Iterator[Client]:
    with Client(cluster) as client:
        # Registered before any partition runs: theirs (idempotent) is then a no-op.
        client.register_plugin(RecordingPlugin(), name=PLUGIN_NAME)
        yield client


@pytest.fixture
def recorded(cluster: LocalCluster, client: Client) -> RecordingPlugin:
    """The plugin instance the scheduler (in this process) holds."""
    plugin = cluster.scheduler.plugins[PLUGIN_NAME]
    assert isinstance(plugin, RecordingPlugin)
    return plugin


def _most_in_any_window(times: list[float], per_minute: float) -> None:
    """Every window of ``times`` (the scheduler's clock) holds at most ``rate * T + 1``
    sends: the bound of docs/contract.md, "Rate limits and 429s"."""
    times = sorted(times)
    rate = per_minute / 60.0
    for first, start in enumerate(times):
        for last in range(first, len(times)):
            assert last - first + 1 <= rate * (times[last] - start) + 1 + 1e-9, (first, last)


def _sent_no_earlier_than_given(arrivals: list[float], given: list[float]) -> None:
    """The workers sent no request before its time: the k-th arrival at the server comes no
    earlier than the k-th send time the scheduler gave (both on the machine's monotonic
    clock; a send waits out its turn after the scheduler's answer, so each arrival is
    later than its own send time, and sorted, the k-th arrival is too)."""
    assert len(arrivals) == len(given)
    for arrival, at in zip(sorted(arrivals), sorted(given), strict=True):
        assert arrival >= at - 1e-6


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


def test_told_the_limit_the_cluster_stays_under_it(
    client: Client, recorded: RecordingPlugin, tmp_path: Path
) -> None:
    """Told ``requests_per_minute``, the scheduler gives the cluster's sends times that keep
    every window of its clock under ``rate * T + 1``, and every worker waits for its turn.

    The server enforces no limit here (a 429 would depend on real arrival times): every
    request is answered 200, so each one the server saw is one send the scheduler admitted.
    """
    rpm, rows = 2400, 100
    with ServerProcess(ServerConfig(record_times=True)) as server:
        ddf = dd.from_pandas(_frame(rows), npartitions=4)
        out = ddf.holysheep.complete(
            "text",
            base_url=server.base_url,
            cache=tmp_path / "told.sqlite",
            requests_per_minute=rpm,
            max_concurrent=8,
        )
        result = out.compute()
        stats = server.stats()
    assert result["error"].isna().all()
    assert stats["by_status"] == {"200": rows}
    given = recorded.given[run_key(out)]
    assert len(given) == rows  # every send asked the scheduler, once
    assert all(pace == pytest.approx(rpm) for _, pace in given)
    times = [at for at, _ in given]
    _most_in_any_window(times, rpm)
    assert max(times) - min(times) >= (rows - 1) * 60 / rpm  # paced, not one burst
    _sent_no_earlier_than_given(stats["times"], times)
    assert stats["max_in_flight"] <= 8


def test_not_told_the_limit_the_cluster_paces_at_the_stated_rate(
    client: Client, recorded: RecordingPlugin, tmp_path: Path
) -> None:
    """Not told the limit, the workers pass on the answers' ``x-ratelimit-*`` headers; once
    the scheduler's count says the provider's budget is spent, it holds the cluster until
    the reset and from then on paces every send at the rate the provider states (30 over a
    5 s window: 360 a minute).

    The first 30 sends go unpaced (16 at a time, answered at once): they spend the window
    well within its 5 s, so the budget is spent and the pace set in every run. How many
    429s the provider's sliding window gives at real arrival times is a benchmark figure
    (``benchmarks/run.py --only dask``).
    """
    rows, stated = 45, 360
    config = ServerConfig(rpm=stated, limit_window=5.0, record_times=True)
    with ServerProcess(config) as server:
        ddf = dd.from_pandas(_frame(rows), npartitions=4)
        out = ddf.holysheep.complete(
            "text", base_url=server.base_url, cache=tmp_path / "untold.sqlite", max_concurrent=16
        )
        result = out.compute()
        stats = server.stats()
    assert result["error"].isna().all()
    given = recorded.given[run_key(out)]
    assert len(given) == stats["requests"]  # every send, retries included, was admitted
    paces = [pace for _, pace in given if pace is not None]
    paced = [at for at, pace in given if pace is not None]
    assert len(paced) >= rows - 30  # at least every row past the first window's budget
    # The stated rate: the window's 30 over the longest reset read so far, which is the
    # whole 5 s for the window's first request and a little less for the later ones; the
    # readings of the first 16, sent at once, are in before the 30th send.
    assert stated <= min(paces) <= max(paces) <= stated * 5 / 4
    _most_in_any_window(paced, max(paces))
    _sent_no_earlier_than_given(stats["times"], [at for at, _ in given])
    report = out.holysheep.report()
    assert report.paused >= 1  # the hold for the spent budget is in the report


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
    # The dry run on the cluster's workers (the schema pickled to them) matches pandas'.
    estimated = ddf.holysheep.estimate("text", schema=Review, **options)
    assert estimated == ddf.compute().holysheep.estimate("text", schema=Review, **options)
    assert estimated.output_tokens is not None


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


# --- estimate(): every partition read where it lives, the limits the cluster's ------------------


def test_estimate_over_partitions_is_the_pandas_estimate(
    server: ServerProcess, tmp_path: Path
) -> None:
    """Nothing sent; every partition estimated against the cache; the time that of the whole
    run under the cluster-wide max_concurrent (three partitions alone would add up to more)."""
    frame = _frame(90)
    cache = str(tmp_path / "estimate.sqlite")
    frame.head(30).holysheep.label("text", labels=LABELS, base_url=server.base_url, cache=cache)
    server.reset()
    options: dict[str, Any] = {
        "labels": LABELS, "base_url": server.base_url, "cache": cache, "max_concurrent": 4,
        "latency": 2.0, "prices": Prices(input_per_1k=1.0, output_per_1k=2.0),
    }  # fmt: skip
    ddf = dd.from_pandas(frame, npartitions=3)
    with dask.config.set(scheduler="sync"):
        estimate = ddf.holysheep.estimate("text", **options)
        series = ddf["text"].holysheep.estimate(**options)
    whole = frame.holysheep.estimate("text", **options)
    assert (estimate.rows, estimate.cached, estimate.to_send) == (90, 30, 60)
    assert estimate.seconds == whole.seconds == pytest.approx(15 * 2.0)
    assert estimate.cost == pytest.approx(whole.cost)
    assert {**estimate.to_dict(), "cost": 0} == {**whole.to_dict(), "cost": 0}
    assert series.input_tokens == estimate.input_tokens
    assert server.stats()["requests"] == 0


def test_estimate_counts_repeats_within_each_partition_as_its_run_finds_them() -> None:
    ddf = dd.from_pandas(pd.DataFrame({"text": ["the same kettle"] * 4}), npartitions=2)
    with dask.config.set(scheduler="sync"):
        estimate = ddf.holysheep.estimate("text", base_url="http://127.0.0.1:9/v1", cache=False)
    assert (estimate.to_send, estimate.deduplicated) == (2, 2)


def _unreadable(partition: pd.DataFrame) -> pd.DataFrame:
    raise AssertionError("a partition was read")


def test_estimate_refuses_bad_options_before_reading_a_partition() -> None:
    ddf = dd.from_pandas(_frame(4), npartitions=2)
    unreadable = ddf.map_partitions(_unreadable, meta=ddf._meta)
    base = {"base_url": "http://127.0.0.1:9/v1", "cache": False}
    with dask.config.set(scheduler="sync"):
        with pytest.raises(ConfigError, match="did you mean max_concurrent"):
            unreadable.holysheep.estimate("text", max_concurent=4, **base)
        with pytest.raises(ConfigError, match="nope"):
            unreadable.holysheep.estimate("nope", **base)
        with pytest.raises(ConfigError, match="batch=True is not available"):
            unreadable.holysheep.estimate("text", batch=True, **base)
        with pytest.raises(AssertionError, match="a partition was read"):
            unreadable.holysheep.estimate("text", **base)


def test_the_bar_registers_the_plugin_before_it_asks_the_scheduler() -> None:
    """Asked before the first partition registered the plugin, the scheduler logged a
    traceback and "No handler holysheep_status found" at every poll (a fresh user saw 11)."""
    import logging

    from holysheep_nb.dask.report import _plugin_names

    logged: list[str] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            logged.append(record.getMessage())

    catch = Catch(level=logging.WARNING)
    logging.getLogger("distributed.core").addHandler(catch)
    try:
        with (
            LocalCluster(n_workers=1, processes=False, dashboard_address=":0") as fresh,
            Client(fresh) as client,
        ):
            assert PLUGIN_NAME not in client.run_on_scheduler(_plugin_names)
            out = dd.from_pandas(_frame(4), npartitions=2).holysheep.complete(
                "text", base_url="http://127.0.0.1:9/v1", cache=False
            )
            with holysheep_nb.dask.progress(out, enabled=False):
                assert PLUGIN_NAME in client.run_on_scheduler(_plugin_names)
    finally:
        logging.getLogger("distributed.core").removeHandler(catch)
    assert not [line for line in logged if "holysheep" in line]
