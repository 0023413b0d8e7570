"""The result columns of a run, filled by row position as outcomes arrive, and turned into
the result frame at the end (names by ``columns.free_name``: no input column replaced).
"""

from __future__ import annotations

import math
from array import array
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from holysheep_nb.cache import CachedAnswer
from holysheep_nb.columns import free_name
from holysheep_nb.outcome import OutcomeKind, RowOutcome
from holysheep_nb.stored import known_outcome

#: pandas 3 has a string dtype of its own; pandas 2 keeps Python strings as objects.
_STR_DTYPE: Any = "str" if int(pd.__version__.split(".")[0]) >= 3 else object


class ResultColumns:
    """The result columns of a run, filled by row position as outcomes arrive."""

    def __init__(self, rows: int, *, keep_values: bool = False) -> None:
        self.response: list[str | None] = [None] * rows
        self.error: list[str | None] = [None] * rows
        # Numbers in ``array`` buffers: as compact as numpy's, and a store per row costs a
        # tenth of a numpy item assignment (this is the hot path); numpy views at the end.
        self._latency = array("d", [math.nan]) * rows
        self._held = array("d", [0.0]) * rows  # seconds of each latency held for the budget
        self._cached = array("b", [0]) * rows
        self._shared = array("b", [0]) * rows
        self._attempts = array("q", [0]) * rows
        self._prompt_tokens = array("q", [-1]) * rows
        self._completion_tokens = array("q", [-1]) * rows
        self.finish_reason: list[str | None] = [None] * rows
        self.reasoning: list[str | None] = [None] * rows
        self.tool_calls: list[str | None] = [None] * rows
        #: What the answer reader made of each answer (labels); kept only when there is one.
        self.values: list[Any] | None = [None] * rows if keep_values else None
        self._recorded = array("b", [0]) * rows  # 1: the row has its outcome

    def record(self, position: int, outcome: RowOutcome) -> None:
        """Store a row's final outcome."""
        self._recorded[position] = 1
        self.response[position] = outcome.response
        self.error[position] = None if outcome.kind is OutcomeKind.OK else outcome.error
        if outcome.latency is not None:
            self._latency[position] = outcome.latency
            self._held[position] = outcome.held
        self._cached[position] = outcome.cached
        self._shared[position] = outcome.shared
        self._attempts[position] = outcome.attempts
        if outcome.prompt_tokens is not None:
            self._prompt_tokens[position] = outcome.prompt_tokens
        if outcome.completion_tokens is not None:
            self._completion_tokens[position] = outcome.completion_tokens
        self.finish_reason[position] = outcome.finish_reason
        self.reasoning[position] = outcome.reasoning
        self.tool_calls[position] = outcome.tool_calls
        if self.values is not None:
            self.values[position] = outcome.value

    @property
    def latency(self) -> np.ndarray:
        """Seconds per row (NaN: not sent in this run), a view of the column."""
        return np.frombuffer(self._latency, dtype=np.float64)

    @property
    def held(self) -> np.ndarray:
        """Seconds of each row's latency its retries were held for the pace or a spent
        budget (0: none), a view of the column."""
        return np.frombuffer(self._held, dtype=np.float64)

    def mark_unanswered(self, error: str) -> None:
        """Give every row without an outcome yet (an interrupted run) ``error``."""
        for position in np.flatnonzero(np.frombuffer(self._recorded, np.int8) == 0).tolist():
            self.error[position] = error

    def answer_at(self, position: int) -> CachedAnswer:
        """The answer recorded for a row, as the cache would keep it."""
        completion = self._completion_tokens[position]
        prompt = self._prompt_tokens[position]
        return CachedAnswer(
            self.response[position] or "",
            prompt if prompt >= 0 else None,
            completion if completion >= 0 else None,
            self.finish_reason[position],
            self.reasoning[position],
            self.tool_calls[position],
        )

    def repeat_of(self, earlier: int, position: int) -> RowOutcome:
        """The outcome of a row asking exactly what the row at ``earlier`` asked, answered
        already in this run: its answer, and what the reader made of it (a label's
        confidence comes from logprobs that are not kept, so it is carried over, not read
        again), and the attempts that request took."""
        outcome = known_outcome(position, self.answer_at(earlier), shared=True)
        # The attempts of the request that answered it, as for a row sharing one in flight.
        outcome = replace(outcome, attempts=self._attempts[earlier])
        value = self.values[earlier] if self.values is not None else None
        if value is None or outcome.kind is not OutcomeKind.OK:
            return outcome
        return replace(outcome, value=value)

    def plain(self) -> dict[str, Any]:
        """The result columns by name, in order, for a frame of another kind (``polars_frame``):
        text as lists (None: missing), numbers as numpy arrays (latency NaN and token counts
        -1 where unknown), ``cached`` and ``shared`` as bools."""
        return {
            "response": self.response,
            "error": self.error,
            "latency": self.latency,
            "cached": np.frombuffer(self._cached, dtype=np.int8).astype(bool),
            "shared": np.frombuffer(self._shared, dtype=np.int8).astype(bool),
            "attempts": np.frombuffer(self._attempts, dtype=np.int64),
            "prompt_tokens": np.frombuffer(self._prompt_tokens, dtype=np.int64),
            "completion_tokens": np.frombuffer(self._completion_tokens, dtype=np.int64),
            "finish_reason": self.finish_reason,
            "reasoning": self.reasoning,
            "tool_calls": self.tool_calls,
        }

    def to_frame(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, str]:
        """A new frame: ``frame``'s columns and index plus the result columns, and the name
        the ``response`` column got (a column of the input is never replaced: see
        ``columns.free_name``)."""
        results = {name: _pandas_column(name, values) for name, values in self.plain().items()}
        out: pd.DataFrame = frame.copy(deep=False)
        response = free_name("response", out.columns)
        for name, values in results.items():
            out[free_name(name, out.columns)] = values
        return out, response


def _pandas_column(name: str, values: Any) -> Any:
    """One of ``plain()``'s columns as pandas keeps it: text as strings, token counts as
    nullable integers (-1: unknown), numbers copied out of the run's buffers."""
    if isinstance(values, list):
        return pd.array(values, dtype=_STR_DTYPE)
    if name in _TOKEN_COUNTS:
        return pd.arrays.IntegerArray(values.copy(), values < 0)
    return values.copy()


_TOKEN_COUNTS = frozenset({"prompt_tokens", "completion_tokens"})
