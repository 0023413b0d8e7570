"""The run report: counts, failure causes, percentiles, tokens, cost and renderings."""

from __future__ import annotations

import copy
import json
import math
import sys
from collections import Counter
from types import SimpleNamespace
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
import pytest

from holysheep_nb.errors import ConfigError
from holysheep_nb.outcome import OutcomeKind, RowOutcome, RunStats
from holysheep_nb.report import MAX_LATENCY_SAMPLE, Prices, RunReport

matplotlib.use("Agg")

K = OutcomeKind

#: Ten rows: 5 answered (2 from the cache), 5 failed (2 never sent).
OUTCOMES = [
    RowOutcome(0, K.OK, "positive", latency=0.5, prompt_tokens=100, completion_tokens=2),
    RowOutcome(1, K.OK, "negative", latency=1.5, prompt_tokens=200, completion_tokens=3),
    RowOutcome(2, K.OK, "positive", latency=2.5, prompt_tokens=300, completion_tokens=4),
    # Tokens of the original run: not paid again.
    RowOutcome(3, K.OK, "positive", cached=True, prompt_tokens=1000, completion_tokens=1000),
    RowOutcome(4, K.OK, "neutral", cached=True),
    RowOutcome(5, K.HTTP, status=400, detail="bad request", attempts=1, latency=0.25),
    RowOutcome(6, K.TIMEOUT, attempts=6, latency=60.0),
    RowOutcome(7, K.HTTP, status=400, detail="context too long", attempts=1, latency=3.0),
    RowOutcome(8, K.MISSING_PROMPT, detail="missing prompt"),
    RowOutcome(9, K.NOT_SENT, detail="authentication failed (HTTP 401)"),
]
SENT_LATENCIES = [0.5, 1.5, 2.5, 0.25, 60.0, 3.0]


def make_report(
    outcomes: list[RowOutcome] | None = None, *, with_labels: bool = False, **kwargs: Any
) -> RunReport:
    """The report of a run whose rows ended as ``outcomes``, counted by the run's tally."""
    outcomes = OUTCOMES if outcomes is None else outcomes
    stats = RunStats(requests_sent=9, retries=4, rate_limited=2)
    for outcome in outcomes:
        stats.record(outcome)
    latency = np.array([np.nan if o.latency is None else o.latency for o in outcomes])
    labels = Counter(o.response for o in outcomes if o.kind is K.OK) if with_labels else None
    options: dict[str, Any] = {"latency": latency, "elapsed": 4.0, "labels": labels, **kwargs}
    return RunReport.from_run(stats, **options)


def answered(latencies: np.ndarray) -> list[RowOutcome]:
    return [RowOutcome(i, K.OK, "ok", latency=float(t)) for i, t in enumerate(latencies)]


def test_counts_and_causes() -> None:
    report = make_report()
    assert (report.rows, report.succeeded, report.failed) == (10, 5, 5)
    assert (report.cached, report.not_sent) == (2, 2)
    assert report.failures == (
        ("HTTP 400", 2),
        ("missing prompt", 1),
        ("not sent: authentication failed (HTTP 401)", 1),
        ("timeout", 1),
    )
    assert (report.requests_sent, report.retries, report.rate_limited) == (9, 4, 2)


def test_percentiles_over_rows_sent_in_this_run() -> None:
    report = make_report()
    expected = np.percentile(SENT_LATENCIES, [50, 95, 99])
    assert report.latency_p50 == pytest.approx(expected[0])
    assert report.latency_p95 == pytest.approx(expected[1])
    assert report.latency_p99 == pytest.approx(expected[2])
    assert report.latency_p50 == pytest.approx(2.0)
    assert report.latency_max == 60.0
    assert report.latency_sample == tuple(sorted(SENT_LATENCIES))


def test_elapsed_and_throughput() -> None:
    report = make_report(elapsed=4.0)
    assert report.elapsed == 4.0
    assert report.throughput == pytest.approx(2.5)
    assert make_report(elapsed=0).throughput == 0.0


@pytest.mark.parametrize("elapsed", [-1.0, math.nan, math.inf])
def test_bad_elapsed(elapsed: float) -> None:
    with pytest.raises(ConfigError, match="elapsed"):
        make_report(elapsed=elapsed)


def test_tokens_skip_cached_rows_and_cost_uses_prices() -> None:
    report = make_report(prices=Prices(input_per_1k=0.5, output_per_1k=2.0))
    assert (report.prompt_tokens, report.completion_tokens) == (600, 9)
    assert report.cost == pytest.approx(600 * 0.5 / 1000 + 9 * 2.0 / 1000)
    assert make_report().cost is None


@pytest.mark.parametrize("value", [-0.1, math.nan, math.inf, True, "0.1", None])
def test_prices_are_validated(value: Any) -> None:
    with pytest.raises(ConfigError, match=r"Prices\.output_per_1k must be a number >= 0") as info:
        Prices(input_per_1k=0.1, output_per_1k=value)
    assert isinstance(info.value, ValueError)
    assert Prices(input_per_1k=0, output_per_1k=1).output_per_1k == 1


def test_latency_sample_is_capped_evenly_and_deterministically() -> None:
    n = 50_000
    latencies = np.random.default_rng(7).exponential(0.5, n)
    report = make_report(answered(latencies))
    assert len(report.latency_sample) == MAX_LATENCY_SAMPLE
    assert report.latency_sample[0] == latencies.min()
    assert report.latency_sample[-1] == latencies.max() == report.latency_max
    assert list(report.latency_sample) == sorted(report.latency_sample)
    assert np.median(report.latency_sample) == pytest.approx(np.median(latencies), rel=0.01)
    assert make_report(answered(latencies)).latency_sample == report.latency_sample
    # The repr a notebook saves stays one short line, not 10,000 latencies.
    assert repr(report) == (
        f"RunReport(rows={n}, succeeded={n}, failed=0, cached=0, elapsed={report.elapsed:.3f})"
    )
    printed: list[str] = []
    printer = SimpleNamespace(text=printed.append)  # what IPython hands to _repr_pretty_
    report._repr_pretty_(printer, cycle=False)
    assert printed == [str(report)]


def test_empty_run() -> None:
    report = make_report([], elapsed=0.0)
    assert (report.rows, report.succeeded, report.failed, report.not_sent) == (0, 0, 0, 0)
    assert report.latency_p50 is report.latency_p95 is report.latency_p99 is None
    assert report.latency_max is None
    assert report.latency_sample == ()
    assert report.failures == ()
    assert "0 rows" in str(report)
    assert "n/a" in report._repr_html_()
    json.dumps(report.to_dict())


def test_labels_and_timeline() -> None:
    report = make_report(with_labels=True, timeline=[(0, 3, 1, 0), (1.0, 6, 3, 2)])
    assert report.labels == (("positive", 3), ("negative", 1), ("neutral", 1))
    assert report.timeline == ((0.0, 3, 1, 0), (1.0, 6, 3, 2))
    assert make_report().labels == ()
    assert make_report().timeline == ()


def test_a_run_that_sent_nothing_shows_no_rate() -> None:
    """Rows refused before sending (or all from the cache) in a few ms are no speed."""
    stats = RunStats()
    outcomes = [RowOutcome(i, K.NOT_SENT, detail="cannot connect") for i in range(50)]
    for outcome in outcomes:
        stats.record(outcome)
    report = RunReport.from_run(stats, latency=np.full(50, np.nan), elapsed=0.006)
    assert str(report).splitlines()[0] == "holysheep_nb run: 50 rows in 0.0 s"
    assert report.throughput > 0  # the figure is still in the dict, for whoever wants it


def test_text_rendering() -> None:
    report = make_report(prices=Prices(input_per_1k=0.5, output_per_1k=2.0), with_labels=True)
    text = str(report)
    lines = text.splitlines()
    assert lines[0] == "holysheep_nb run: 10 rows in 4.0 s (2.5 rows/s)"
    assert lines[1].split() == ["succeeded", "5"]
    assert lines[2].split() == ["failed", "5", "(not", "sent:", "2)"]
    assert "  cached " in text
    assert lines[5].split() == ["retries", "4", "(429s:", "2)"]
    assert lines[6].split() == ["latency", "p50", "2.000", "s"]
    assert lines[9].split() == ["latency", "max", "60.000", "s"]
    assert "600 / 9" in text
    assert "$0.3180" in text
    failures_at = lines.index("failures by cause")
    assert lines[failures_at + 1].split() == ["HTTP", "400", "2", "20.0%"]
    assert lines[lines.index("labels") + 1].split() == ["positive", "3", "30.0%"]
    # Values line up in one column within each block.
    summary = lines[1:failures_at]
    assert len({len(line.split("   (")[0]) for line in summary}) == 1


def test_large_numbers_are_grouped() -> None:
    stats = RunStats(retries=12_345)
    stats.record(
        RowOutcome(0, K.OK, "ok", latency=0.1, prompt_tokens=1_234_567, completion_tokens=23_456)
    )
    report = RunReport.from_run(
        stats,
        latency=np.array([0.1]),
        elapsed=42.1,
        prices=Prices(input_per_1k=1.0, output_per_1k=1.0),
    )
    text = str(report)
    assert "1,234,567 / 23,456" in text
    assert "12,345" in text
    assert "$1,258.02" in text
    assert text.startswith("holysheep_nb run: 1 row in 42.1 s")


def test_html_is_a_table_and_escapes_everything() -> None:
    outcomes = [
        *OUTCOMES,
        RowOutcome(10, K.MISSING_PROMPT, detail="<script>alert(1)</script>"),
        RowOutcome(11, K.OK, "<b>x</b>", latency=1.0, prompt_tokens=1, completion_tokens=1),
    ]
    page = make_report(outcomes, with_labels=True)._repr_html_()
    assert page.startswith("<table")
    assert page.endswith("</table>")
    assert page.count("<tr>") == page.count("</tr>") > 10
    assert "<script>" not in page
    assert "<b>x</b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page
    assert "failures by cause" in page
    assert "HTTP 400" in page


def test_to_dict_round_trips_through_json() -> None:
    report = make_report(prices=Prices(0.5, 2.0), with_labels=True, timeline=[(0, 3, 1, 0)])
    data = report.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["failures"] == {
        "HTTP 400": 2,
        "missing prompt": 1,
        "not sent: authentication failed (HTTP 401)": 1,
        "timeout": 1,
    }
    assert data["labels"] == {"positive": 3, "negative": 1, "neutral": 1}
    assert data["timeline"] == [[0.0, 3, 1, 0]]
    assert data["rows"] == 10
    assert data["cost"] == pytest.approx(0.318)
    assert make_report([], elapsed=0.0).to_dict()["latency_p50"] is None


def test_report_survives_dataframe_attrs_copies() -> None:
    frame = pd.DataFrame({"response": ["a", "b", "c"]})
    report = make_report()
    frame.attrs["holysheep_report"] = report
    assert copy.deepcopy(report) is report
    assert frame.head(2).attrs["holysheep_report"] == report


def test_plot_histogram() -> None:
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    figure = make_report().plot()
    assert isinstance(figure, Figure)
    (ax,) = figure.axes
    bars = [patch for patch in ax.patches if isinstance(patch, Rectangle)]
    assert len(bars) == 50
    assert sum(bar.get_height() for bar in bars) == len(SENT_LATENCIES)
    assert "6 rows sent" in ax.get_title()


def test_plot_with_timeline_adds_a_panel() -> None:
    figure = make_report(timeline=[(0, 3, 1, 0), (1, 6, 3, 2)]).plot()
    histogram, timeline = figure.axes
    assert len(histogram.patches) == 50
    assert [line.get_label() for line in timeline.get_lines()] == ["requests", "retries"]
    assert [text.get_text() for text in timeline.get_legend().get_texts()] == [
        "requests", "retries", "429s",
    ]  # fmt: skip


def test_plot_on_a_given_axes_and_with_nothing_sent() -> None:
    from matplotlib.figure import Figure

    ax = Figure().subplots()
    assert make_report([], elapsed=0.0).plot(ax=ax) is ax
    assert not ax.patches
    assert ax.texts[0].get_text() == "no request sent"


def test_plot_without_matplotlib(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError) as info:
        make_report().plot()
    assert str(info.value) == "report.plot() needs matplotlib: pip install 'holysheep_nb[plot]'"
