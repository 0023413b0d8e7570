"""The run report (SPEC §7): counts, failure causes, percentiles, tokens, cost and renderings."""

from __future__ import annotations

import copy
import json
import math
import sys
from types import SimpleNamespace
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
import pytest

from holysheep_nb.errors import ConfigError
from holysheep_nb.report import MAX_LATENCY_SAMPLE, Prices, RunReport, failure_cause
from holysheep_nb.results import RunStats

matplotlib.use("Agg")

NA = np.nan


def result_frame(rows: list[tuple[Any, ...]], *, tokens: bool = True) -> pd.DataFrame:
    """A result frame from (response, error, latency, cached, prompt_tokens, completion_tokens)."""
    frame: pd.DataFrame = pd.DataFrame(
        rows,
        columns=["response", "error", "latency", "cached", "prompt_tokens", "completion_tokens"],
    )
    frame["cached"] = frame["cached"].astype(bool)
    for column in ("prompt_tokens", "completion_tokens"):
        if tokens:
            frame[column] = frame[column].astype("Int64")
        else:
            del frame[column]
    return frame


#: Ten rows: 5 answered (2 from the cache), 5 failed (2 never sent).
ROWS = [
    ("positive", NA, 0.5, False, 100, 2),
    ("negative", NA, 1.5, False, 200, 3),
    ("positive", NA, 2.5, False, 300, 4),
    ("positive", NA, NA, True, 1000, 1000),  # tokens of the original run: not paid again
    ("neutral", NA, NA, True, NA, NA),
    (NA, "HTTP 400: bad request", 0.25, False, NA, NA),
    (NA, "timeout after 6 attempts", 60.0, False, NA, NA),
    (NA, "HTTP 400: context too long: 9000 tokens", 3.0, False, NA, NA),
    (NA, "missing prompt", NA, False, NA, NA),
    (NA, "not sent: authentication failed (HTTP 401)", NA, False, NA, NA),
]
SENT_LATENCIES = [0.5, 1.5, 2.5, 0.25, 60.0, 3.0]


def make_report(frame: pd.DataFrame | None = None, **kwargs: Any) -> RunReport:
    stats = RunStats(
        requests_sent=9, retries=4, rate_limited=2, prompt_tokens=7, completion_tokens=8
    )
    options: dict[str, Any] = {"stats": stats, "elapsed": 4.0, **kwargs}
    return RunReport.from_frame(result_frame(ROWS) if frame is None else frame, **options)


@pytest.mark.parametrize(
    ("error", "cause"),
    [
        ("HTTP 400: <provider message>", "HTTP 400"),
        ("HTTP 400: context too long: 9000 tokens", "HTTP 400"),
        ("HTTP 503 after 6 attempts: Service Unavailable", "HTTP 503"),
        ("HTTP 429 after 1 attempt", "HTTP 429"),
        ("timeout after 6 attempts", "timeout"),
        ("connection error after 6 attempts: Connection reset by peer", "connection error"),
        ("malformed response after 6 attempts: not JSON: <html>", "malformed response"),
        ("authentication failed (HTTP 401): Incorrect API key", "authentication failed (HTTP 401)"),
        ("not sent: authentication failed (HTTP 401)", "authentication failed (HTTP 401)"),
        ("authentication failed (HTTP 403): forbidden", "authentication failed (HTTP 403)"),
        ("not sent: authentication failed (HTTP 403)", "authentication failed (HTTP 403)"),
        ("missing prompt", "missing prompt"),
        ("missing value for column 'title'", "missing value for column 'title'"),
        ("missing value for column 'a:b'", "missing value for column 'a:b'"),
        ("not in label set: 'unsure'", "not in label set"),
        ("quota exceeded: try again tomorrow", "quota exceeded"),
        ("something odd", "something odd"),
        ("  spaced out  ", "spaced out"),
        ("first line: detail\nsecond line", "first line"),
        ("x" * 80, "x" * 59 + "…"),
        ("", "unknown error"),
        (": no cause", "unknown error"),
    ],
)
def test_failure_cause(error: str, cause: str) -> None:
    assert failure_cause(error) == cause
    assert len(failure_cause(error)) <= 60


def test_counts_and_causes() -> None:
    report = make_report()
    assert (report.rows, report.succeeded, report.failed) == (10, 5, 5)
    assert (report.cached, report.not_sent) == (2, 2)
    assert report.failures == (
        ("HTTP 400", 2),
        ("authentication failed (HTTP 401)", 1),
        ("missing prompt", 1),
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


def test_frame_without_token_columns_uses_engine_counters() -> None:
    report = make_report(result_frame(ROWS, tokens=False), prices=Prices(1.0, 1.0))
    assert (report.prompt_tokens, report.completion_tokens) == (7, 8)
    assert report.cost == pytest.approx(0.015)
    assert report.succeeded == 5


@pytest.mark.parametrize("value", [-0.1, math.nan, math.inf, True, "0.1", None])
def test_prices_are_validated(value: Any) -> None:
    with pytest.raises(ConfigError, match=r"Prices\.output_per_1k must be a number >= 0") as info:
        Prices(input_per_1k=0.1, output_per_1k=value)
    assert isinstance(info.value, ValueError)
    assert Prices(input_per_1k=0, output_per_1k=1).output_per_1k == 1


def test_nullable_dtypes_are_read() -> None:
    frame: pd.DataFrame = pd.DataFrame(
        {
            "response": pd.array(["a", None, None], dtype="str"),
            "error": pd.array(
                [None, "HTTP 500 after 6 attempts: x", "missing prompt"], dtype="str"
            ),
            "latency": pd.array([0.2, 0.4, None], dtype="Float64"),
            "cached": pd.array([False, None, False], dtype="boolean"),
        }
    )
    report = make_report(frame)
    assert (report.succeeded, report.failed, report.cached, report.not_sent) == (1, 2, 0, 1)
    assert report.failures == (("HTTP 500", 1), ("missing prompt", 1))
    assert report.latency_max == 0.4
    assert report.prompt_tokens == 7


def test_latency_sample_is_capped_evenly_and_deterministically() -> None:
    n = 50_000
    latencies = np.random.default_rng(7).exponential(0.5, n)
    frame: pd.DataFrame = pd.DataFrame(
        {"response": ["ok"] * n, "error": [NA] * n, "latency": latencies, "cached": [False] * n}
    )
    report = make_report(frame)
    assert len(report.latency_sample) == MAX_LATENCY_SAMPLE
    assert report.latency_sample[0] == latencies.min()
    assert report.latency_sample[-1] == latencies.max() == report.latency_max
    assert list(report.latency_sample) == sorted(report.latency_sample)
    assert np.median(report.latency_sample) == pytest.approx(np.median(latencies), rel=0.01)
    assert make_report(frame).latency_sample == report.latency_sample
    # The repr a notebook saves stays one short line, not 10,000 latencies.
    assert repr(report) == (
        f"RunReport(rows={n}, succeeded={n}, failed=0, cached=0, elapsed={report.elapsed:.3f})"
    )
    printed: list[str] = []
    printer = SimpleNamespace(text=printed.append)  # what IPython hands to _repr_pretty_
    report._repr_pretty_(printer, cycle=False)
    assert printed == [str(report)]


def test_empty_frame() -> None:
    report = make_report(result_frame([]), elapsed=0.0)
    assert (report.rows, report.succeeded, report.failed, report.not_sent) == (0, 0, 0, 0)
    assert report.latency_p50 is report.latency_p95 is report.latency_p99 is None
    assert report.latency_max is None
    assert report.latency_sample == ()
    assert report.failures == ()
    assert "0 rows" in str(report)
    assert "n/a" in report._repr_html_()
    json.dumps(report.to_dict())


def test_not_a_result_frame() -> None:
    with pytest.raises(ConfigError, match="no column 'cached'"):
        make_report(result_frame(ROWS).drop(columns="cached"))
    with pytest.raises(ConfigError, match="label_column 'label'"):
        make_report(label_column="label")


def test_labels_and_timeline() -> None:
    report = make_report(label_column="response", timeline=[(0, 3, 1, 0), (1.0, 6, 3, 2)])
    assert report.labels == (("positive", 3), ("negative", 1), ("neutral", 1))
    assert report.timeline == ((0.0, 3, 1, 0), (1.0, 6, 3, 2))
    assert make_report().labels == ()
    assert make_report().timeline == ()


def test_text_rendering() -> None:
    report = make_report(
        prices=Prices(input_per_1k=0.5, output_per_1k=2.0), label_column="response"
    )
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
    report = RunReport.from_frame(
        result_frame([("ok", NA, 0.1, False, 1_234_567, 23_456)]),
        stats=RunStats(retries=12_345),
        elapsed=42.1,
        prices=Prices(input_per_1k=1.0, output_per_1k=1.0),
    )
    text = str(report)
    assert "1,234,567 / 23,456" in text
    assert "12,345" in text
    assert "$1,258.02" in text
    assert text.startswith("holysheep_nb run: 1 row in 42.1 s")


def test_html_is_a_table_and_escapes_everything() -> None:
    rows = [
        *ROWS,
        (NA, "<script>alert(1)</script>", 1.0, False, NA, NA),
        ("<b>x</b>", NA, 1.0, False, 1, 1),
    ]
    page = make_report(result_frame(rows), label_column="response")._repr_html_()
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
    report = make_report(prices=Prices(0.5, 2.0), label_column="response", timeline=[(0, 3, 1, 0)])
    data = report.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["failures"] == {
        "HTTP 400": 2,
        "authentication failed (HTTP 401)": 1,
        "missing prompt": 1,
        "timeout": 1,
    }
    assert data["labels"] == {"positive": 3, "negative": 1, "neutral": 1}
    assert data["timeline"] == [[0.0, 3, 1, 0]]
    assert data["rows"] == 10
    assert data["cost"] == pytest.approx(0.318)
    assert make_report(result_frame([]), elapsed=0.0).to_dict()["latency_p50"] is None


def test_report_survives_dataframe_attrs_copies() -> None:
    frame = result_frame(ROWS)
    report = make_report(frame)
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
    assert [line.get_label() for line in timeline.get_lines()] == ["requests", "retries", "429s"]


def test_plot_on_a_given_axes_and_with_nothing_sent() -> None:
    from matplotlib.figure import Figure

    ax = Figure().subplots()
    assert make_report(result_frame([]), elapsed=0.0).plot(ax=ax) is ax
    assert not ax.patches
    assert ax.texts[0].get_text() == "no request sent"


def test_plot_without_matplotlib(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError) as info:
        make_report().plot()
    assert str(info.value) == "report.plot() needs matplotlib: pip install 'holysheep_nb[plot]'"
