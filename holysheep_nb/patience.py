"""How long a run waits for a provider that answers "later", and when it gives up.

A rate-limit 429 (any 429 but a spent quota, which stops the run: ``retry.judge``) says the
provider will take the request later. It spends none of the row's attempts: a run that
starts on a budget spent by the run before it would otherwise lose its rows to six quick
429s, each told to wait a few milliseconds. The run slows instead: 429s back to back, or
budget headers that say "spent", hold every new send (``holds.BudgetHolds``), and a rate the
provider states paces the sends from then on.

The waiting is bounded by the run's own ``max_retry_after``, twice:

- the run (``Patience``): when nothing but rate-limit 429s has come back for that long, the
  run stops with that reason and the provider's message. Rows not answered yet are
  "not sent", and a re-run of the cell sends only them;
- a row (``RowState.limited_for``): a row refused for that long in all while other rows are
  answered (a request the provider never takes, such as one larger than a tokens-per-minute
  limit) fails with its 429.
"""

from __future__ import annotations

from dataclasses import dataclass

from holysheep_nb.outcome import RunStop


@dataclass(slots=True)
class Patience:
    """Since when the run has heard nothing but rate-limit 429s (see the module docstring)."""

    limit: float  # seconds: the policy's max_retry_after
    since: float | None = None  # clock time of the first 429 since the last other answer

    def heard(self, status: int | None, now: float) -> None:
        """An answer of ``status`` came back (None: no answer, which says nothing)."""
        if status == 429:
            if self.since is None:
                self.since = now
        elif status is not None:
            self.since = None

    def stop(self, now: float, detail: str) -> RunStop | None:
        """The run's stop when only 429s have come back for ``limit`` seconds, else None."""
        if self.since is None or now - self.since < self.limit:
            return None
        return RunStop(
            f"the provider answered only 429 (rate limited) for {now - self.since:,.0f} s: "
            f"{detail}",
            "pass requests_per_minute= at your plan's limit so the run paces itself, or "
            f"max_retry_after= above {self.limit:.0f} to wait longer; run the cell again: "
            "only the rows not answered are sent",
        )
