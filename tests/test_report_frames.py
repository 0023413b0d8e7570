"""The report follows the frame (docs/guide.md, "The run report"): joined frames, filtered
frames, rows answered by an identical row's request, and the report's wording."""

from __future__ import annotations

import json

import matplotlib
import numpy as np
import pandas as pd
import pytest

from holysheep_nb import HolySheepError, RunReport
from holysheep_nb.outcome import OutcomeKind, RowOutcome, RunStats
from holysheep_nb.server import ServerConfig, start_server
from tests.fakes import FakeClock
from tests.scripted import Reply, error_body, scripted
from tests.test_engine import engine, run_all

matplotlib.use("Agg")


async def run(frame: pd.DataFrame, **options: object) -> pd.DataFrame:
    async with await start_server(ServerConfig(echo=True)) as server:
        out: pd.DataFrame = await frame.holysheep.acomplete(
            "text", base_url=server.base_url, cache=False, progress=False, **options
        )
    return out


def texts(tag: str, n: int) -> pd.DataFrame:
    return pd.DataFrame({"text": [f"{tag} {i}" for i in range(n)]})


async def test_joined_frames_say_how_to_get_one_report_and_combine_adds_up() -> None:
    first = await run(texts("a", 8))
    second = await run(pd.DataFrame({"text": ["b 0", "{{fault:400}}", "b 2"]}), max_retries=0)
    joined = pd.concat([first, second])
    with pytest.raises(HolySheepError, match=r"RunReport\.combine\(") as caught:
        joined.holysheep.report()
    assert "pd.concat" in str(caught.value)

    one, two = first.holysheep.report(), second.holysheep.report()
    both = RunReport.combine([one, two])
    assert (both.rows, both.succeeded, both.failed) == (11, 10, 1)
    assert both.requests_sent == one.requests_sent + two.requests_sent
    assert both.failures == (("HTTP 400", 1),)
    assert both.elapsed == pytest.approx(one.elapsed + two.elapsed)
    assert both.frame_rows == len(joined)
    assert both.latency_max == max(one.latency_max or 0, two.latency_max or 0)
    assert both.for_frame(len(joined)) is both  # the joined frame is all of it
    with pytest.raises(Exception, match="at least one report"):
        RunReport.combine([])


async def test_a_filtered_frame_says_its_report_is_the_whole_runs() -> None:
    out = await run(texts("f", 20))
    whole = out.holysheep.report()
    assert "this frame holds" not in str(whole)
    part = out[out.index < 12].holysheep.report()
    assert part.rows == 20
    assert "this frame holds 12 of the run's 20 rows, the counts below are the whole run's" in (
        str(part)
    )
    assert "this frame holds 12" in part._repr_html_()
    assert part.to_dict()["shown_rows"] == 12


async def test_rows_answered_by_an_identical_request_report_its_attempts() -> None:
    frame = pd.DataFrame({"text": ["{{fault:500}}"] * 4 + ["fine"]})
    out = await run(frame, max_retries=2, max_concurrent=4)
    errors = out["error"].tolist()
    assert errors[0].startswith("HTTP 500 after 3 attempts")
    assert errors[1:4] == [errors[0]] * 3  # not "after 0 attempts"
    assert out["shared"].tolist() == [False, True, True, True, False]
    assert out["attempts"].tolist() == [3, 3, 3, 3, 1]
    assert out.holysheep.report().requests_sent == 4  # asked once, retried twice, and "fine"


def adapted_report(paused: int) -> RunReport:
    stats = RunStats(requests_sent=3, paused=paused, paused_seconds=2.0)
    for i in range(3):
        stats.record(RowOutcome(i, OutcomeKind.OK, "ok", latency=1.0))
    return RunReport.from_run(stats, latency=np.ones(3), elapsed=1.0)


def test_wording_of_holds_and_requests_at_once() -> None:
    assert "(1 time)" in str(adapted_report(1))
    assert "(2 times)" in str(adapted_report(2))
    report = RunReport(**{**vars(adapted_report(1)), "concurrency": 16, "concurrency_lowest": 14})
    text = str(report)
    assert "in flight at the end" not in text
    assert "requests at once" in text
    assert "(at the end of the run; 429s took it as low as 14)" in text


def test_to_dict_leaves_the_latency_sample_out_unless_asked() -> None:
    stats = RunStats(requests_sent=500)
    for i in range(500):
        stats.record(RowOutcome(i, OutcomeKind.OK, "ok", latency=i / 100))
    report = RunReport.from_run(stats, latency=np.arange(500) / 100, elapsed=5.0)
    small = report.to_dict()
    assert "latency_sample" not in small
    assert len(json.dumps(small)) < 2000
    assert len(report.to_dict(latency_sample=True)["latency_sample"]) == 500


def test_latency_shows_the_time_held_for_the_budget_apart() -> None:
    stats = RunStats(requests_sent=4)
    for i in range(4):
        stats.record(RowOutcome(i, OutcomeKind.OK, "ok", latency=5.0))
    latency = np.array([5.0, 5.0, 5.0, 5.0])
    held = np.array([4.0, 4.0, 0.0, 0.0])
    report = RunReport.from_run(stats, latency=latency, elapsed=6.0, held=held)
    assert report.latency_max == 5.0
    assert report.unheld_max == 5.0
    assert report.unheld_p50 == pytest.approx(np.percentile([1.0, 1.0, 5.0, 5.0], 50))
    assert "without the time held for the budget" in str(report)
    plain = RunReport.from_run(stats, latency=latency, elapsed=6.0, held=np.zeros(4))
    assert plain.unheld_p50 is None
    assert "held for the budget" not in str(plain)


async def test_the_engine_measures_the_time_a_retry_was_held(clock: FakeClock) -> None:
    """Three 429s back to back hold every send for 5 s: the rows that waited say how long."""
    limited = Reply(429, error_body("rate limited"), {"Retry-After": "5"})
    with scripted(clock) as server:
        for prompt in ("row0", "row1", "row2"):
            server.script(prompt, limited)
        results, stats = await run_all(
            engine(clock, max_concurrent=3), [f"row{i}" for i in range(6)]
        )
    assert stats.paused == 1
    held = {i: r.held for i, r in results.items()}
    # The third 429 waited out the whole 5 s hold before its retry (more on the fake clock,
    # whose sleeps run one after another).
    assert held[2] >= 5.0
    for i, outcome in results.items():
        assert outcome.latency is not None
        assert 0.0 <= outcome.held <= outcome.latency, (i, outcome)
    assert all(held[i] == 0.0 for i in range(3, 6))  # first sends: held before their latency


def test_the_plot_draws_retries_above_the_429s() -> None:
    stats = RunStats(requests_sent=3)
    stats.record(RowOutcome(0, OutcomeKind.OK, "ok", latency=1.0))
    report = RunReport.from_run(
        stats, latency=np.ones(1), elapsed=2.0, timeline=[(0, 3, 2, 2), (1, 2, 2, 2)]
    )
    figure = report.plot()
    timeline = figure.axes[1]
    lines = {line.get_label(): line for line in timeline.get_lines()}
    bars = [patch for patch in timeline.patches]
    assert len(bars) == 2  # the 429s, as bars
    assert lines["retries"].get_linestyle() == "--"
    assert lines["retries"].get_zorder() > max(bar.get_zorder() for bar in bars)
    assert list(lines["retries"].get_ydata()) == [2, 2]
