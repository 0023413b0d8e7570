"""One progress bar on the client for a whole Dask run.

A result of ``ddf.holysheep`` is lazy: it runs when something computes it (``compute()``,
``to_parquet()``, ``persist()`` then ``wait``), which may be far from the call. So the bar
is a context around whatever computes it::

    out = ddf.holysheep.label("text", labels=labels)
    with holysheep_nb.dask.progress(out):
        out.to_parquet("labelled/")

A thread polls the scheduler (one round trip every ``POLL_SECONDS``) for every partition's
counts (rows succeeded, failed, retries, cached), as the workers publish them every 0.5 s,
and draws their sum on the pandas path's bar (``RunProgress``: a widget in Jupyter, text
elsewhere), a hold for a spent budget included (as on the pandas bar: one with a second or
more left, never on the final line).

The total is on the bar from the start when it is known without computing anything: the
input is a pandas frame in memory (``dd.from_pandas``, see ``accessor.run_rows``), or
``total=`` gives it. Otherwise the bar shows the rows done and ``started=k/n partitions``
(each partition tells the scheduler its rows as it starts), and the total once every
partition has started: ``len(ddf)`` would be another pass over the data. At the end the bar
shows the final counts, and a run that stopped early (authentication, quota) says so once,
with a ``HolySheepWarning``.
"""

from __future__ import annotations

import contextlib
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import IO, TYPE_CHECKING, Any

from holysheep_nb.errors import HolySheepWarning
from holysheep_nb.outcome import RunStats
from holysheep_nb.progress import RunProgress

if TYPE_CHECKING:
    import dask.dataframe as dd

#: Seconds between two polls of the scheduler.
POLL_SECONDS = 0.2


class ClusterBar:
    """The run's bar: the sum of every partition's counts, as the scheduler has them.

    ``total`` is None when unknown at the start; ``file`` and ``now`` are ``RunProgress``'s.
    """

    def __init__(
        self,
        npartitions: int,
        total: int | None,
        enabled: bool = True,
        *,
        file: IO[str] | None = None,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._progress = RunProgress(total, enabled=enabled, file=file, now=now)
        self._npartitions = npartitions
        self._total_known = total is not None
        self._now = now
        self.stats = RunStats()

    def refresh(self, status: dict[str, Any] | None, *, final: bool = False) -> None:
        """Draw the scheduler's ``holysheep_status`` of the run (None: not started yet)."""
        if status is None:
            status = {"partitions": {}}
        parts = status["partitions"].values()
        extra: dict[str, object] = {}
        if not self._total_known:
            if len(parts) >= self._npartitions:
                self._progress.set_total(sum(part["rows"] for part in parts))
                self._total_known = True
            else:  # a total of the started ones would be a made-up figure
                extra["started"] = f"{len(parts)}/{self._npartitions} partitions"
        stats = self.stats
        stats.succeeded, stats.failed, stats.retries, stats.cached = (
            sum(part["tally"][index] for part in parts) for index in range(4)
        )
        # The cluster's hold, on this bar's clock; the scheduler's word each time, so a hold
        # it no longer has is not drawn from an older reading.
        held_for = status.get("held_for", 0.0)
        stats.held_until = self._now() + held_for if held_for > 0 else None
        stats.hold_reason = status.get("hold_reason", "") if held_for > 0 else ""
        if final:
            self._progress.close(stats, extra)
        else:
            self._progress.refresh(stats, extra)


@contextlib.contextmanager
def progress(
    frame: dd.DataFrame, *, total: int | None = None, enabled: bool = True
) -> Iterator[ClusterBar]:
    """Show one bar for the run that makes ``frame`` while the block computes it.

    ``frame`` is a result of ``ddf.holysheep``; ``total`` the rows, if known (else known at
    the call for a frame from pandas, or read from the partitions as they start). Needs the
    distributed client the run computes on.
    """
    from distributed import get_client

    from holysheep_nb.dask.accessor import run_key, run_rows
    from holysheep_nb.dask.plugin import LimitsPlugin

    run = run_key(frame)
    client = get_client()
    # The scheduler's handlers come with the plugin, which the first partition to start
    # would register: asked before, the scheduler logs a traceback at every poll.
    client.register_plugin(LimitsPlugin())  # idempotent: a no-op once registered
    bar = ClusterBar(frame.npartitions, run_rows(frame) if total is None else total, enabled)
    done = threading.Event()
    last: list[dict[str, Any] | None] = [None]

    def status() -> dict[str, Any] | None:
        with contextlib.suppress(Exception):  # a scheduler gone, a connection dropped
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
        bar.refresh(final or {"partitions": {}}, final=True)
    if final is not None and final["stop"]:
        cause, advice = final["stop"]
        warnings.warn(
            f"holysheep_nb stopped the run: {cause}: {advice}", HolySheepWarning, stacklevel=3
        )
