"""One progress bar per run: a widget in Jupyter, text in a terminal, nothing when disabled.

The bar is refreshed by the run's periodic tick rather than on every row, so its cost does
not grow with throughput.
"""

from __future__ import annotations

import sys
from typing import Any

from tqdm import std

from holysheep_nb.outcome import RunStats


def _notebook_tqdm() -> type[std.tqdm] | None:
    """The widget bar when running in a Jupyter kernel that has ipywidgets, else None.

    ``tqdm.auto`` makes the same choice but warns ("IProgress not found") in a kernel
    without ipywidgets; this falls back to the text bar silently instead.
    """
    if "ipykernel" not in sys.modules:
        return None
    try:
        from IPython import get_ipython

        shell = get_ipython()
        if shell is None or type(shell).__name__ != "ZMQInteractiveShell":
            return None
        import ipywidgets  # noqa: F401 - only checking that it is there
        from tqdm.notebook import tqdm as notebook_tqdm
    except ImportError:
        return None
    return notebook_tqdm  # type: ignore[no-any-return]


class RunProgress:
    """Shows the run's tally: rows done, with ok / failed / retried / cached in the postfix.

    It counts nothing itself: every figure is read from the run's ``RunStats``, the one
    tally the report is built from too.
    """

    def __init__(self, total: int, *, enabled: bool = True, description: str = "holysheep"):
        bar_class = _notebook_tqdm() or std.tqdm
        options: dict[str, Any] = {"total": total, "desc": description, "unit": "row"}
        if bar_class is std.tqdm:
            options.update(dynamic_ncols=True, file=sys.stderr)
        if not enabled:
            # Only when asked: passing disable at all would override TQDM_DISABLE=1.
            options["disable"] = True
        self._bar = bar_class(smoothing=0.1, **options)

    def refresh(self, stats: RunStats) -> None:
        """Bring the bar up to date; called from the run's periodic tick."""
        bar = self._bar
        if bar.disable:
            return
        # A dict keeps this order; keyword arguments would be sorted by tqdm.
        bar.set_postfix(
            {
                "ok": stats.succeeded,
                "failed": stats.failed,
                "retried": stats.retries,
                "cached": stats.cached,
            },
            refresh=False,
        )
        delta = stats.done - bar.n
        if delta:
            bar.update(delta)
        else:
            bar.refresh()

    def close(self, stats: RunStats) -> None:
        """Draw the final state and close the bar."""
        self.refresh(stats)
        self._bar.close()
