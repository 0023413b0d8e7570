"""The run report: what happened in one run and why rows failed, at a glance.

``RunReport.from_run`` reads the run's one tally (``RunStats``: rows by outcome, failures
by cause, requests, retries, every 429, tokens) and the rows' latencies. The report
renders as text in a terminal, as an HTML table in a notebook, as a plain dict for logs,
and plots a latency histogram with the optional matplotlib extra.

``RunReport.combine`` adds up the reports of several runs (frames joined by ``pd.concat``).
The plot lives in ``report_plot`` (matplotlib is imported there only).

Length: one frozen record with three renderings (text, HTML, dict) and its combination
across runs; the renderings share the sections built in ``_sections``.
"""

from __future__ import annotations

import contextlib
import math
from collections import Counter
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any, overload

import numpy as np

from holysheep_nb._render import Sections, render_html, render_text
from holysheep_nb.carried import Carried, carried, from_file
from holysheep_nb.errors import ConfigError
from holysheep_nb.outcome import EXAMPLES, RunStats, RunStop
from holysheep_nb.prices import Prices
from holysheep_nb.usage import ModelUsage, add_up, cost_text

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: The counts that add up when runs are combined (``RunReport.combine``).
_SUMS = (
    "succeeded", "failed", "cached", "not_sent", "deduplicated", "retries", "rate_limited",
    "requests_sent", "resent", "truncated", "prompt_tokens", "completion_tokens", "paused",
)  # fmt: skip

#: 429s cost a run time worth a "to do" line when they held every send for this many
#: seconds in all, or were this share of its requests (stray 429s below it cost only their
#: own rows a wait, which pacing would not save).
PACE_SHARE = 0.1
#: Where a result frame keeps its run's report (``frame.attrs``, as a ``carried.Carried``).
REPORT_ATTR = "holysheep_report"
PACE_HOLD = 1.0
#: Most latencies kept for the histogram: the report lives in ``DataFrame.attrs``.
MAX_LATENCY_SAMPLE = 10_000


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
    #: The same percentiles without the time retries waited for the pace or a spent budget
    #: (None when no row waited): what the provider took, apart from what the run held.
    unheld_p50: float | None = None
    unheld_p95: float | None = None
    unheld_p99: float | None = None
    unheld_max: float | None = None
    #: Rows of the frame the run returned, and of the frame asked for its report when that
    #: has fewer or more (a filtered frame): the counts stay the whole run's, and say so.
    frame_rows: int | None = None
    shown_rows: int | None = None
    #: Tokens and cost per model (``usage.ModelUsage``), set by the accessor for every call.
    models: tuple[ModelUsage, ...] = ()
    #: Rows asked again of another model (``escalate``), and the samples read (``votes``: every
    #: row's, a repeat's and a cache hit's too).
    escalated: int = 0
    samples: int = 0
    #: (cause, first rows' errors) of causes that group rows naming their own file (a bad
    #: image's), so the report says which files without a line each.
    failure_examples: tuple[tuple[str, tuple[str, ...]], ...] = ()

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
        held: np.ndarray | None = None,
        frame_rows: int | None = None,
    ) -> RunReport:
        """Build the report of a run from its tally and the rows' latencies.

        ``stats`` is the run's one tally of outcomes and requests; ``latency`` holds each
        row's latency in seconds (NaN for rows not sent in this run); ``held`` the part of
        each latency spent held for the pace or a spent budget (seconds, 0 for none);
        ``labels`` counts rows per label for a labelling run; ``frame_rows`` is the length of
        the frame the run returns.
        """
        if not math.isfinite(elapsed) or elapsed < 0:
            raise ConfigError(f"elapsed must be a number of seconds >= 0, got {elapsed!r}")
        sent = ~np.isnan(latency)
        latencies = np.sort(latency[sent])
        unheld: tuple[float | None, ...] = (None,) * 4
        if held is not None and held[sent].any():
            unheld = _percentiles(np.sort(latency[sent] - held[sent]))
        cost = None
        if prices is not None:
            cost = (
                stats.prompt_tokens * prices.input_per_1k
                + stats.completion_tokens * prices.output_per_1k
            ) / 1000

        p50, p95, p99, highest = _percentiles(latencies)
        rows = stats.done
        window = stats.concurrency
        return cls(
            rows=rows,
            succeeded=stats.succeeded,
            failed=stats.failed,
            cached=stats.cached,
            not_sent=stats.not_sent,
            deduplicated=stats.deduplicated,
            failures=most_frequent(stats.failures),
            retries=stats.retries,
            rate_limited=stats.rate_limited,
            requests_sent=stats.requests_sent,
            resent=stats.resent,
            truncated=stats.truncated,
            elapsed=float(elapsed),
            throughput=rows / elapsed if elapsed > 0 else 0.0,
            latency_p50=p50,
            latency_p95=p95,
            latency_p99=p99,
            latency_max=highest,
            unheld_p50=unheld[0],
            unheld_p95=unheld[1],
            unheld_p99=unheld[2],
            unheld_max=unheld[3],
            frame_rows=frame_rows,
            prompt_tokens=stats.prompt_tokens,
            completion_tokens=stats.completion_tokens,
            cost=cost,
            latency_sample=tuple(_even_sample(latencies, MAX_LATENCY_SAMPLE).tolist()),
            labels=most_frequent(labels or Counter()),
            failed_fields=most_frequent(stats.failed_fields),
            timeline=tuple((float(t), int(n), int(r), int(k)) for t, n, r, k in timeline),
            concurrency=window.settled if window else None,
            concurrency_lowest=window.lowest if window else None,
            concurrency_cap=window.cap if window else None,
            paused=stats.paused,
            paused_seconds=stats.paused_seconds,
            stop_cause=stats.stop.cause if stats.stop else None,
            stop_advice=stats.stop.advice if stats.stop else None,
            failure_examples=tuple(
                (cause, tuple(shown)) for cause, shown in sorted(stats.examples.items())
            ),
        )

    @classmethod
    def combine(cls, reports: Iterable[RunReport]) -> RunReport:
        """One report for several runs, e.g. the frames joined by ``pd.concat``.

        Counts, failures, labels, tokens and cost (when every run had prices) add up;
        ``elapsed`` is the runs' total time and the timeline runs one after another; latency
        percentiles are read from the runs' latency samples (exact while no run had more than
        ``MAX_LATENCY_SAMPLE`` rows sent). A stopped run's cause is kept (the first one).
        Raises ``ConfigError`` for no report.
        """
        parts = list(reports)
        if not parts:
            raise ConfigError("RunReport.combine() needs at least one report")
        stats = RunStats()
        failures: Counter[str] = Counter()
        failed_fields: Counter[str] = Counter()
        labels: Counter[str] = Counter()
        timeline: list[tuple[float, int, int, int]] = []
        offset = 0.0
        for part in parts:
            for name in _SUMS:
                setattr(stats, name, getattr(stats, name) + getattr(part, name))
            stats.paused_seconds += part.paused_seconds
            failures.update(dict(part.failures))
            for cause, shown in part.failure_examples:
                kept = stats.examples.setdefault(cause, [])
                kept.extend(shown[: EXAMPLES - len(kept)])
            failed_fields.update(dict(part.failed_fields))
            labels.update(dict(part.labels))
            timeline.extend((t + offset, n, r, k) for t, n, r, k in part.timeline)
            offset += max(part.elapsed, float(len(part.timeline)))
        stats.failures = failures
        stats.failed_fields = failed_fields
        stopped = next((part for part in parts if part.stop_cause is not None), None)
        if stopped is not None:
            stats.stop = RunStop(stopped.stop_cause or "", stopped.stop_advice or "")
        costs = [part.cost for part in parts]
        combined = cls.from_run(
            stats,
            latency=np.array([t for part in parts for t in part.latency_sample], float),
            elapsed=sum(part.elapsed for part in parts),
            labels=labels,
            timeline=timeline,
        )
        frame_rows = [part.frame_rows for part in parts]
        return replace(
            combined,
            cost=None if None in costs else sum(c for c in costs if c is not None),
            batch_ids=tuple(i for part in parts for i in part.batch_ids),
            frame_rows=None if None in frame_rows else sum(r for r in frame_rows if r is not None),
            models=add_up(usage for part in parts for usage in part.models),
            escalated=sum(part.escalated for part in parts),
            samples=sum(part.samples for part in parts),
        )

    def for_frame(self, rows: int) -> RunReport:
        """This report as asked from a frame of ``rows`` rows: a frame filtered from the run's
        says it holds only some of the run's rows (the counts stay the run's)."""
        if self.frame_rows is None or rows == self.frame_rows:
            return self
        return replace(self, shown_rows=rows)

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

    @property
    def stop(self) -> RunStop | None:
        """Why the run stopped early (its cause and advice, as one line by ``str``), or None."""
        if self.stop_cause is None:
            return None
        return RunStop(self.stop_cause, self.stop_advice or "")

    @classmethod
    def from_dict(cls, plain: Mapping[str, Any]) -> RunReport:
        """The report ``to_dict`` gave (a result frame read back from Parquet keeps it in the
        file's metadata): every count and figure, and the latencies behind the histogram when
        the dict has ``latency_sample``. Raises ``ConfigError`` for a dict that is not one."""
        names = {item.name for item in fields(cls)}
        try:
            values = {name: value for name, value in plain.items() if name in names}
            return cls(
                **{
                    **values,
                    "failures": tuple(values["failures"].items()),
                    "failure_examples": tuple(
                        (cause, tuple(shown)) for cause, shown in values["failure_examples"].items()
                    ),
                    "labels": tuple(values["labels"].items()),
                    "failed_fields": tuple(values["failed_fields"].items()),
                    "timeline": tuple(tuple(second) for second in values["timeline"]),
                    "batch_ids": tuple(values["batch_ids"]),
                    "models": tuple(ModelUsage(**usage) for usage in values["models"]),
                    "latency_sample": tuple(values.get("latency_sample", ())),
                }
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(
                f"not the dict of a run report ({type(exc).__name__}: {exc})"
            ) from None

    def to_dict(self, *, latency_sample: bool = False) -> dict[str, Any]:
        """The report as a plain JSON-able dict (lists and dicts only).

        ``latency_sample=True`` adds the sorted latencies behind the percentiles (up to
        ``MAX_LATENCY_SAMPLE`` floats): left out by default, to keep a logged dict short.
        """
        sample = {"latency_sample": list(self.latency_sample)} if latency_sample else {}
        return {
            "rows": self.rows,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "cached": self.cached,
            "not_sent": self.not_sent,
            "deduplicated": self.deduplicated,
            "failures": dict(self.failures),
            "failure_examples": {cause: list(shown) for cause, shown in self.failure_examples},
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
            "unheld_p50": self.unheld_p50,
            "unheld_p95": self.unheld_p95,
            "unheld_p99": self.unheld_p99,
            "unheld_max": self.unheld_max,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost": self.cost,
            **sample,
            "labels": dict(self.labels),
            "failed_fields": dict(self.failed_fields),
            "timeline": [list(second) for second in self.timeline],
            "batch_ids": list(self.batch_ids),
            "frame_rows": self.frame_rows,
            "shown_rows": self.shown_rows,
            "models": [usage._asdict() for usage in self.models],
            "escalated": self.escalated,
            "samples": self.samples,
        }

    @overload
    def plot(self, ax: None = None) -> Figure: ...
    @overload
    def plot(self, ax: Axes) -> Axes: ...

    def plot(self, ax: Axes | None = None) -> Figure | Axes:
        """Plot the latency histogram (and requests per second when there is a timeline).

        Without ``ax``, returns a new Figure that Jupyter shows once as a cell's last
        expression (save it anywhere with ``.savefig``). With ``ax``, draws only the histogram
        there and returns that Axes. Needs the ``[plot]`` extra (matplotlib).
        """
        from holysheep_nb.report_plot import plot

        return plot(self, ax)

    @property
    def pace_advice(self) -> str | None:
        """What to do when 429s cost the run time (``PACE_SHARE``, ``PACE_HOLD``): pass a
        ``requests_per_minute`` the provider takes, so the run paces itself instead of being
        refused and held; None when they did not, or when the run stopped (its stop says)."""
        if self.stop_cause is not None or not self.rate_limited or self.elapsed <= 0:
            return None
        share = self.rate_limited / max(self.requests_sent, 1)
        if share < PACE_SHARE and self.paused_seconds < PACE_HOLD:
            return None
        accepted = (self.requests_sent - self.rate_limited) / self.elapsed * 60
        accepted = max(1, math.floor(accepted + 1e-9))
        return (
            f"429s cost this run time ({share:.0%} of requests, {self.paused_seconds:,.1f} s "
            f"held): pass requests_per_minute={accepted} (what the provider took) or your "
            "plan's limit, and the run paces itself instead"
        )

    def _sections(self) -> tuple[str, Sections]:
        """The title and (heading, [(label, value, note)]) blocks, for text and HTML alike.

        The first block, the summary, has no heading.
        """
        noun = "row" if self.rows == 1 else "rows"
        title = f"holysheep_nb run: {self.rows:,} {noun} in {self.elapsed:,.1f} s"
        if self.requests_sent:  # a rate of rows never sent (cached, refused) says nothing
            title += f" ({self.throughput:,.1f} rows/s)"
        if self.shown_rows is not None:
            title += (
                f"; this frame holds {self.shown_rows:,} of the run's {self.frame_rows:,} rows, "
                "the counts below are the whole run's"
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
            learned = ["at the end of the run"]
            if self.concurrency_lowest != self.concurrency:
                learned.append(f"429s took it as low as {self.concurrency_lowest}")
            if self.concurrency_cap is not None:
                learned.append(f"the provider accepts about {self.concurrency_cap} at once")
            summary.append(("requests at once", f"{self.concurrency}", f"({'; '.join(learned)})"))
        if self.paused:
            times = f"{self.paused:,} time{'s' if self.paused != 1 else ''}"
            summary.append(("held for the budget", f"{self.paused_seconds:,.1f} s", f"({times})"))
        for name in ("p50", "p95", "p99", "max"):
            value = getattr(self, f"latency_{name}")
            unheld = getattr(self, f"unheld_{name}")
            note = (
                "" if unheld is None else f"({unheld:.3f} s without the time held for the budget)"
            )
            summary.append((f"latency {name}", "n/a" if value is None else f"{value:.3f} s", note))
        tokens = f"{self.prompt_tokens:,} / {self.completion_tokens:,}"
        summary.append(("tokens in/out", tokens, ""))
        if self.cost is not None:
            summary.append(("cost", cost_text(self.cost), ""))
        if self.samples:
            summary.append(
                ("samples", f"{self.samples:,}", "(votes read, repeats and cache hits too)")
            )
        if self.escalated:
            summary.append(("escalated", f"{self.escalated:,}", "(rows asked again)"))
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
                examples = dict(self.failure_examples) if counts is self.failures else {}
                shares = [
                    (key, f"{n:,}", _share(n, self.rows) + _examples(examples.get(key, ())))
                    for key, n in counts
                ]
                sections.append((heading, shares))
        if self.models:
            lines = [
                (
                    usage.model,
                    f"{usage.prompt_tokens:,} / {usage.completion_tokens:,}",
                    f"({usage.rows:,} row{'' if usage.rows == 1 else 's'}; "
                    f"cost {cost_text(usage.cost)})",
                )
                for usage in self.models
            ]
            sections.append(("by model: tokens in/out", lines))
        if self.pace_advice is not None:
            sections.append(("429s cost time", [("to do", "", self.pace_advice)]))
        return title, sections


def _percentiles(
    ordered: np.ndarray,
) -> tuple[float | None, float | None, float | None, float | None]:
    """p50, p95, p99 and the highest of sorted values (all None when there is none)."""
    if not ordered.size:
        return None, None, None, None
    p50, p95, p99 = (float(v) for v in np.percentile(ordered, [50, 95, 99]))
    return p50, p95, p99, float(ordered[-1])


def _share(count: int, total: int) -> str:
    """``count`` as a percentage of ``total``; "<0.1%" rather than a misleading "0.0%"."""
    share = count / total
    return "<0.1%" if share < 0.001 else f"{share:.1%}"


def _examples(errors: tuple[str, ...]) -> str:
    """A grouped cause's example errors, after its share: ``  e.g. image file not found: ...``."""
    return f"  e.g. {'; '.join(errors)}" if errors else ""


def most_frequent(counts: Counter[str]) -> tuple[tuple[str, int], ...]:
    """``(key, count)`` pairs, most frequent first, ties in alphabetical order."""
    return tuple(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _even_sample(values: np.ndarray, limit: int) -> np.ndarray:
    """At most ``limit`` values evenly spread over ``values`` (first and last included)."""
    if values.size <= limit:
        return values
    picks: np.ndarray = values[np.linspace(0, values.size - 1, limit).round().astype(int)]
    return picks


def attach(attrs: MutableMapping[Any, Any], report: RunReport) -> None:
    """Keep ``report`` in a frame's ``attrs`` (with its plain form, for Parquet: ``carried``)."""
    attrs[REPORT_ATTR] = Carried(report, report.to_dict())


def attached(attrs: Mapping[Any, Any]) -> RunReport | None:
    """The report kept in a frame's ``attrs``, or None. A frame read back from Parquet has
    the report's plain form only (``carried``): it is read back (``RunReport.from_dict``)."""
    report = carried(attrs, REPORT_ATTR, RunReport)
    if report is None and from_file(attrs, REPORT_ATTR):
        with contextlib.suppress(ConfigError):  # a dict of someone else's: no report
            return RunReport.from_dict(attrs[REPORT_ATTR])
    return report
