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

A 500 that every request gets (a local server that cannot load its model) is a server
that is down, not busy: ``DeadServer`` stops the run when nothing has succeeded and the
answers so far are the same server error, as a ``base_url`` nobody answers on does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from holysheep_nb.outcome import RunStop

#: Answers, all the same HTTP 500 with nothing succeeded before them, that stop the run.
DEAD_ANSWERS = 4
#: ... coming from at least this many rows (one row's own 500s are that row's problem).
DEAD_ROWS = 2


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


@dataclass(slots=True)
class DeadServer:
    """Whether every answer so far is the same HTTP 500, with nothing succeeded yet."""

    answers: int = 0
    #: The rows those answers were for; None once watching ended (something else came back).
    rows: set[object] | None = field(default_factory=set)
    detail: str | None = None

    def heard(self, row_id: object, status: int | None, detail: str) -> RunStop | None:
        """An answer for ``row_id``; the run's stop when the server seems down, else None."""
        if self.rows is None or status is None:
            return None
        if status != 500 or (self.detail is not None and detail != self.detail):
            self.rows = None  # a success, or another answer: this server is not simply down
            return None
        self.detail = detail
        self.answers += 1
        self.rows.add(row_id)
        if self.answers < DEAD_ANSWERS or len(self.rows) < DEAD_ROWS:
            return None
        self.rows = None
        return RunStop(
            f"the server answered HTTP 500 to every request: {detail}",
            "the server is up but failing (a local server that cannot load its model says "
            "so): check its log, fix it, and run the cell again",
        )
