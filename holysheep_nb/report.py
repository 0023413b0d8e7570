"""The run report: what happened in one run and why rows failed, at a glance.

``RunReport.from_run`` reads the run's one tally (``RunStats``: rows by outcome, failures
by cause, requests, retries, every 429, tokens) and the rows' latencies. The report
renders as text in a terminal, as an HTML table in a notebook, as a plain dict for logs,
and plots a latency histogram with the optional matplotlib extra.

Length: one frozen record with three renderings (text, HTML, dict) and a plot; they share
the sections built in ``_sections``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, overload

import numpy as np

from holysheep_nb._render import Sections, render_html, render_text
from holysheep_nb.errors import ConfigError
from holysheep_nb.outcome import RunStats
from holysheep_nb.prices import Prices

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Most latencies kept for the histogram: the report lives in ``DataFrame.attrs``.
MAX_LATENCY_SAMPLE = 10_000

_PLOT_HINT = "report.plot() needs matplotlib: pip install 'holysheep_nb[plot]'"


@dataclass(frozen=True, kw_only=True)
class RunReport:
    """Counts, failure causes, latency percentiles, tokens and cost of one run."""

    rows: int
    succeeded: int
    failed: int
    cached: int
    not_sent: int  # failed rows never sent: missing prompt or value, or after an auth abort
    deduplicated: int  # rows answered by another row's identical request (asked once)
    failures: tuple[tuple[str, int], ...]  # (cause, rows), most frequent first
    retries: int
    rate_limited: int  # every 429 answer the server sent, retried or not
    requests_sent: int  # resends included
    resent: int  # requests sent again without spending an attempt (the server never read them)
    truncated: int  # rows whose answer was cut at the token limit (finish_reason "length")
    elapsed: float  # seconds
    throughput: float  # rows per second over ``elapsed``
    latency_p50: float | None  # over rows sent in this run; None when none was
    latency_p95: float | None
    latency_p99: float | None
    latency_max: float | None
    prompt_tokens: int
    completion_tokens: int
    cost: float | None  # USD, when prices were given
    latency_sample: tuple[float, ...]  # sorted, at most MAX_LATENCY_SAMPLE
    labels: tuple[tuple[str, int], ...] = ()  # (label, rows), most frequent first
    failed_fields: tuple[tuple[str, int], ...] = ()  # (schema field, rows), most frequent first
    timeline: tuple[tuple[float, int, int, int], ...] = ()  # (second, requests, retries, 429s)
    concurrency: int | None = None  # requests in flight the run settled on (429s taught it)
    concurrency_lowest: int | None = None
    concurrency_cap: int | None = None  # a provider cap on requests in flight found from 429s
    paused: int = 0  # times every new send was held for a spent budget
    paused_seconds: float = 0.0
    stop_cause: str | None = None  # why the run stopped early, if it did
    stop_advice: str | None = None  # what to do about it
    #: The provider batches that answered the run (``batch=True``): no latency is measured,
    #: and the cost is at the batch price.
    batch_ids: tuple[str, ...] = ()

    @classmethod
    def from_run(
        cls,
        stats: RunStats,
        *,
        latency: np.ndarray,
        elapsed: float,
        prices: Prices | None = None,
        labels: Counter[str] | None = None,
        timeline: Iterable[tuple[float, int, int, int]] = (),
    ) -> RunReport:
        """Build the report of a run from its tally and the rows' latencies.

        ``stats`` is the run's one tally of outcomes and requests; ``latency`` holds each
        row's latency in seconds (NaN for rows not sent in this run); ``labels`` counts rows
        per label for a labelling run.
        """
        if not math.isfinite(elapsed) or elapsed < 0:
            raise ConfigError(f"elapsed must be a number of seconds >= 0, got {elapsed!r}")
        latencies = np.sort(latency[~np.isnan(latency)])
        cost = None
        if prices is not None:
            cost = (
                stats.prompt_tokens * prices.input_per_1k
                + stats.completion_tokens * prices.output_per_1k
            ) / 1000

        def percentile(q: float) -> float | None:
            return float(np.percentile(latencies, q)) if latencies.size else None

        rows = stats.done
        window = stats.concurrency
        return cls(
            rows=rows,
            succeeded=stats.succeeded,
            failed=stats.failed,
            cached=stats.cached,
            not_sent=stats.not_sent,
            deduplicated=stats.deduplicated,
            failures=_most_frequent(stats.failures),
            retries=stats.retries,
            rate_limited=stats.rate_limited,
            requests_sent=stats.requests_sent,
            resent=stats.resent,
            truncated=stats.truncated,
            elapsed=float(elapsed),
            throughput=rows / elapsed if elapsed > 0 else 0.0,
            latency_p50=percentile(50),
            latency_p95=percentile(95),
            latency_p99=percentile(99),
            latency_max=float(latencies[-1]) if latencies.size else None,
            prompt_tokens=stats.prompt_tokens,
            completion_tokens=stats.completion_tokens,
            cost=cost,
            latency_sample=tuple(_even_sample(latencies, MAX_LATENCY_SAMPLE).tolist()),
            labels=_most_frequent(labels or Counter()),
            failed_fields=_most_frequent(stats.failed_fields),
            timeline=tuple((float(t), int(n), int(r), int(k)) for t, n, r, k in timeline),
            concurrency=window.limit if window else None,
            concurrency_lowest=window.lowest if window else None,
            concurrency_cap=window.cap if window else None,
            paused=stats.paused,
            paused_seconds=stats.paused_seconds,
            stop_cause=stats.stop.cause if stats.stop else None,
            stop_advice=stats.stop.advice if stats.stop else None,
        )

    def __deepcopy__(self, memo: dict[int, Any]) -> RunReport:
        # Immutable all the way down, and pandas deep-copies DataFrame.attrs on most operations:
        # sharing it keeps ``out.head()`` from copying 10,000 latencies each time.
        return self

    def __str__(self) -> str:
        """The report as aligned plain text for a terminal."""
        return render_text(*self._sections())

    def __repr__(self) -> str:
        # The generated repr would dump up to 10,000 latencies into every saved notebook.
        return (
            f"RunReport(rows={self.rows}, succeeded={self.succeeded}, failed={self.failed}, "
            f"cached={self.cached}, elapsed={self.elapsed:.3f})"
        )

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """IPython's plain-text display (a terminal IPython, a notebook saved as text)."""
        printer.text(str(self))

    def _repr_html_(self) -> str:
        """The report as a compact HTML table for Jupyter."""
        return render_html(*self._sections(), css_class="holysheep-report")

    def to_dict(self) -> dict[str, Any]:
        """The report as a plain JSON-able dict (lists and dicts only)."""
        return {
            "rows": self.rows,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "cached": self.cached,
            "not_sent": self.not_sent,
            "deduplicated": self.deduplicated,
            "failures": dict(self.failures),
            "retries": self.retries,
            "rate_limited": self.rate_limited,
            "requests_sent": self.requests_sent,
            "resent": self.resent,
            "truncated": self.truncated,
            "concurrency": self.concurrency,
            "concurrency_lowest": self.concurrency_lowest,
            "concurrency_cap": self.concurrency_cap,
            "paused": self.paused,
            "paused_seconds": self.paused_seconds,
            "stop_cause": self.stop_cause,
            "stop_advice": self.stop_advice,
            "elapsed": self.elapsed,
            "throughput": self.throughput,
            "latency_p50": self.latency_p50,
            "latency_p95": self.latency_p95,
            "latency_p99": self.latency_p99,
            "latency_max": self.latency_max,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost": self.cost,
            "latency_sample": list(self.latency_sample),
            "labels": dict(self.labels),
            "failed_fields": dict(self.failed_fields),
            "timeline": [list(second) for second in self.timeline],
            "batch_ids": list(self.batch_ids),
        }

    @overload
    def plot(self, ax: None = None) -> Figure: ...
    @overload
    def plot(self, ax: Axes) -> Axes: ...

    def plot(self, ax: Axes | None = None) -> Figure | Axes:
        """Plot the latency histogram (and requests per second when there is a timeline).

        Without ``ax``, returns a new Figure that Jupyter shows once as a cell's last
        expression (save it anywhere with ``.savefig``). With ``ax``, draws only the histogram
        there and returns that Axes.
        """
        try:
            import matplotlib.pyplot as plt
        except ImportError as exc:
            raise ImportError(_PLOT_HINT) from exc
        if ax is not None:
            self._plot_latency(ax)
            return ax
        panels = 2 if self.timeline else 1
        figure, axes = plt.subplots(1, panels, figsize=(6 * panels, 3.6), squeeze=False)
        self._plot_latency(axes[0, 0])
        if self.timeline:
            self._plot_timeline(axes[0, 1])
        figure.tight_layout()
        # pyplot would show the figure again at the end of the cell, after the returned one.
        plt.close(figure)
        return figure

    def _plot_latency(self, ax: Axes) -> None:
        sent = self.rows - self.cached - self.not_sent
        title = f"latency of {sent:,} rows sent"
        if len(self.latency_sample) < sent:
            title += f" (sample of {len(self.latency_sample):,})"
        ax.set_title(title)
        ax.set_xlabel("seconds")
        ax.set_ylabel("rows")
        if not self.latency_sample:
            ax.text(0.5, 0.5, "no request sent", ha="center", va="center", transform=ax.transAxes)
            return
        ax.hist(self.latency_sample, bins=50, color="tab:blue", alpha=0.8)
        for name, value, style in (("p50", self.latency_p50, "--"), ("p95", self.latency_p95, ":")):
            if value is not None:
                ax.axvline(value, color="black", linestyle=style, label=f"{name} {value:.3f} s")
        ax.legend()

    def _plot_timeline(self, ax: Axes) -> None:
        seconds, requests, retries, limited = zip(*self.timeline, strict=True)
        ax.plot(seconds, requests, label="requests")
        ax.plot(seconds, retries, label="retries")
        ax.plot(seconds, limited, label="429s", color="tab:red")
        ax.set_title("per second")
        ax.set_xlabel("seconds since start")
        ax.legend()

    def _sections(self) -> tuple[str, Sections]:
        """The title and (heading, [(label, value, note)]) blocks, for text and HTML alike.

        The first block, the summary, has no heading.
        """
        noun = "row" if self.rows == 1 else "rows"
        title = (
            f"holysheep_nb run: {self.rows:,} {noun} in {self.elapsed:,.1f} s "
            f"({self.throughput:,.1f} rows/s)"
        )
        not_sent = f"(not sent: {self.not_sent:,})" if self.not_sent else ""
        resent = f"(resent unread: {self.resent:,})" if self.resent else ""
        summary = [
            ("succeeded", f"{self.succeeded:,}", ""),
            ("failed", f"{self.failed:,}", not_sent),
            ("cached", f"{self.cached:,}", ""),
            ("requests sent", f"{self.requests_sent:,}", resent),
            ("retries", f"{self.retries:,}", f"(429s: {self.rate_limited:,})"),
        ]
        if self.deduplicated:
            repeats = (
                "repeats",
                f"{self.deduplicated:,}",
                "(same request as another row: asked once)",
            )
            summary.insert(3, repeats)
        if self.batch_ids:
            count = len(self.batch_ids)
            summary.append(
                (
                    "batch",
                    ", ".join(self.batch_ids),
                    f"(the provider's Batch API, {count} batch{'es' if count > 1 else ''}: "
                    "no latency measured; cost at the batch price)",
                )
            )
        if self.truncated:
            summary.append(("truncated", f"{self.truncated:,}", "(cut at max_tokens)"))
        adapted = self.concurrency_cap is not None or self.concurrency_lowest != self.concurrency
        if self.concurrency is not None and adapted:
            learned = f"(lowest {self.concurrency_lowest}"
            if self.concurrency_cap is not None:
                learned += f"; the provider accepts about {self.concurrency_cap} at once"
            summary.append(("in flight at the end", f"{self.concurrency}", learned + ")"))
        if self.paused:
            summary.append(
                ("held for the budget", f"{self.paused_seconds:,.1f} s", f"({self.paused:,} times)")
            )
        for name in ("p50", "p95", "p99", "max"):
            value = getattr(self, f"latency_{name}")
            summary.append((f"latency {name}", "n/a" if value is None else f"{value:.3f} s", ""))
        tokens = f"{self.prompt_tokens:,} / {self.completion_tokens:,}"
        summary.append(("tokens in/out", tokens, ""))
        if self.cost is not None:
            cost = f"${self.cost:,.2f}" if self.cost >= 1 else f"${self.cost:.4f}"
            summary.append(("cost", cost, ""))
        sections: Sections = []
        if self.stop_cause is not None:
            # The cause leads: it explains every "not sent" row below.
            sections.append(
                (f"stopped early: {self.stop_cause}", [("to do", "", self.stop_advice or "")])
            )
        sections.append(("", summary))
        for heading, counts in (
            ("failures by cause", self.failures),
            ("failures by field", self.failed_fields),
            ("labels", self.labels),
        ):
            if counts:
                shares = [(key, f"{n:,}", _share(n, self.rows)) for key, n in counts]
                sections.append((heading, shares))
        return title, sections


def _share(count: int, total: int) -> str:
    """``count`` as a percentage of ``total``; "<0.1%" rather than a misleading "0.0%"."""
    share = count / total
    return "<0.1%" if share < 0.001 else f"{share:.1%}"


def _most_frequent(counts: Counter[str]) -> tuple[tuple[str, int], ...]:
    """``(key, count)`` pairs, most frequent first, ties in alphabetical order."""
    return tuple(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _even_sample(values: np.ndarray, limit: int) -> np.ndarray:
    """At most ``limit`` values evenly spread over ``values`` (first and last included)."""
    if values.size <= limit:
        return values
    picks: np.ndarray = values[np.linspace(0, values.size - 1, limit).round().astype(int)]
    return picks
