"""What a run asks the model to answer in, and how it reads each answer back.

``complete()`` takes answers as text. ``label()`` asks for one of a set of labels
(``LabelSet``); ``extract()`` asks for fields of a schema. Each such format builds the
request options (system prompt, ``response_format``), reads every answer as it arrives
(raising ``AnswerRejected`` for one that does not fit), adds its columns to the result
frame, and may count its values for the report.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any, Protocol

import pandas as pd

from holysheep_nb.logprobs import TokenLogprobs


class AnswerFormat(Protocol):
    """The contract between a format (label set, schema) and the run that uses it."""

    def request_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """The caller's options with this format's system prompt and response format added."""
        ...

    def unstructured_system(self, system: str | None) -> str | None:
        """The system message to send instead once the server has refused
        ``response_format`` (the format described in words), or None to keep the usual one."""
        ...

    def read(self, answer: str, logprobs: TokenLogprobs | None = None) -> Any:
        """The row's value from the answer text (and its token log-probabilities, when the
        server sent them), or raise ``AnswerRejected``."""
        ...

    def add_columns(self, out: pd.DataFrame, values: list[Any], *, before: str) -> pd.DataFrame:
        """The result frame with this format's columns, filled from the rows' values and
        inserted before the column ``before`` (the run's response column). Names follow
        ``columns.free_name``: an input column is never replaced."""
        ...

    def answer_tokens(self) -> int:
        """A rough count of the tokens one answer takes (for the dry-run estimate)."""
        ...

    def counts(self, values: list[Any]) -> Counter[str] | None:
        """Rows per value for the report's breakdown (labels), or None for no breakdown."""
        ...
