"""One progress bar on the client for a whole Dask run.

A result of ``ddf.holysheep`` is lazy: it runs when something computes it (``compute()``,
``to_parquet()``, ``persist()`` then ``wait``), which may be far from the call. So the bar
is a context around whatever computes it::

    out = ddf.holysheep.label("text", labels=labels)
    with holysheep_nb.dask.progress(out):
        out.to_parquet("labelled/")

A thread polls the scheduler (one round trip every ``interval`` seconds) for the rows done
in every partition, as the workers publish them, and draws them on one bar (a widget in
Jupyter, text elsewhere). The total is the sum of the partitions' rows once every partition
has started (``total=`` gives it up front). At the end the bar shows the final count, and a
run that stopped early (authentication, quota) says so once, with a ``HolySheepWarning``.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from tqdm import std

from holysheep_nb.errors import HolySheepWarning
from holysheep_nb.progress import _notebook_tqdm

if TYPE_CHECKING:
    import dask.dataframe as dd

#: Seconds between two polls of the scheduler.
POLL_SECONDS = 0.2


class ClusterBar:
    """The bar: rows done across every partition, partitions finished in the postfix."""

    def __init__(self, npartitions: int, total: int | None, enabled: bool = True) -> None:
        bar_class = _notebook_tqdm() or std.tqdm
        options: dict[str, Any] = {"total": total, "desc": "holysheep", "unit": "row"}
        if bar_class is std.tqdm:
            options.update(dynamic_ncols=True, file=sys.stderr)
        if not enabled:
            options["disable"] = True
        self._bar = bar_class(smoothing=0.1, **options)
        self._npartitions = npartitions
        self._total_known = total is not None

    def refresh(self, status: dict[str, Any] | None) -> None:
        """Draw the scheduler's ``holysheep_status`` of the run (None: not started yet)."""
        bar = self._bar
        if bar.disable or status is None:
            return
        parts = status["partitions"].values()
        if not self._total_known and len(parts) >= self._npartitions:
            bar.total = sum(part["rows"] for part in parts)
            self._total_known = True
        finished = sum(part["report"] is not None for part in parts)
        postfix = {"partitions": f"{finished}/{self._npartitions}"}
        if status["held_for"] > 0:
            postfix["held"] = f"{status['held_for']:.0f}s"
        if status["stop"]:
            postfix["stopped"] = status["stop"][0]
        bar.set_postfix(postfix, refresh=False)
        delta = sum(part["done"] for part in parts) - bar.n
        if delta:
            bar.update(delta)
        else:
            bar.refresh()

    def close(self) -> None:
        """Close the bar."""
        self._bar.close()


@contextlib.contextmanager
def progress(
    frame: dd.DataFrame, *, total: int | None = None, enabled: bool = True
) -> Iterator[ClusterBar]:
    """Show one bar for the run that makes ``frame`` while the block computes it.

    ``frame`` is a result of ``ddf.holysheep``; ``total`` the rows, if known (else read from
    the partitions as they start). Needs the distributed client the run computes on.
    """
    from distributed import get_client

    from holysheep_nb.dask.accessor import run_key

    run = run_key(frame)
    client = get_client()
    bar = ClusterBar(frame.npartitions, total, enabled)
    done = threading.Event()
    last: list[dict[str, Any] | None] = [None]

    def status() -> dict[str, Any] | None:
        with contextlib.suppress(Exception):  # the plugin is not there before the first task
            return client.sync(client.scheduler.holysheep_status, run=run)  # type: ignore[no-any-return]
        return None

    def poll() -> None:
        while not done.wait(POLL_SECONDS):
            last[0] = status() or last[0]
            bar.refresh(last[0])

    poller = threading.Thread(target=poll, name="holysheep-dask-progress", daemon=True)
    poller.start()
    try:
        yield bar
    finally:
        done.set()
        poller.join()
        final = status() or last[0]
        bar.refresh(final)
        bar.close()
    if final is not None and final["stop"]:
        cause, advice = final["stop"]
        warnings.warn(
            f"holysheep_nb stopped the run: {cause}: {advice}", HolySheepWarning, stacklevel=3
        )
