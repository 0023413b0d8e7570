"""``RunReport.plot()``: the latency histogram, and requests, retries and 429s per second.

Kept apart from ``report`` so that matplotlib (the ``[plot]`` extra) is imported only here,
and only when a plot is asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from holysheep_nb.report import RunReport

_PLOT_HINT = "report.plot() needs matplotlib: pip install 'holysheep_nb[plot]'"


def plot(report: RunReport, ax: Axes | None) -> Figure | Axes:
    """The histogram on ``ax`` (returned), or a new Figure with the timeline beside it."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(_PLOT_HINT) from exc
    if ax is not None:
        _latency(report, ax)
        return ax
    panels = 2 if report.timeline else 1
    figure, axes = plt.subplots(1, panels, figsize=(6 * panels, 3.6), squeeze=False)
    _latency(report, axes[0, 0])
    if report.timeline:
        _timeline(report, axes[0, 1])
    figure.tight_layout()
    # pyplot would show the figure again at the end of the cell, after the returned one.
    plt.close(figure)
    return figure


def _latency(report: RunReport, ax: Axes) -> None:
    sent = report.rows - report.cached - report.not_sent
    title = f"latency of {sent:,} rows sent"
    if len(report.latency_sample) < sent:
        title += f" (sample of {len(report.latency_sample):,})"
    ax.set_title(title)
    ax.set_xlabel("seconds")
    ax.set_ylabel("rows")
    if not report.latency_sample:
        ax.text(0.5, 0.5, "no request sent", ha="center", va="center", transform=ax.transAxes)
        return
    ax.hist(report.latency_sample, bins=50, color="tab:blue", alpha=0.8)
    for name, value, style in (("p50", report.latency_p50, "--"), ("p95", report.latency_p95, ":")):
        if value is not None:
            ax.axvline(value, color="black", linestyle=style, label=f"{name} {value:.3f} s")
    ax.legend()


def _timeline(report: RunReport, ax: Axes) -> None:
    seconds, requests, retries, limited = zip(*report.timeline, strict=True)
    # 429s as bars beneath, retries dashed on top: a 429 is usually retried, so the two
    # counts often match second for second and one line would hide the other.
    ax.bar(seconds, limited, width=0.9, align="edge", color="tab:red", alpha=0.35,
           label="429s", zorder=1)  # fmt: skip
    ax.plot(seconds, requests, label="requests", color="tab:blue", zorder=2)
    ax.plot(seconds, retries, label="retries", color="tab:orange", linestyle="--",
            marker=".", zorder=3)  # fmt: skip
    ax.set_title("per second")
    ax.set_xlabel("seconds since start")
    ax.legend()
