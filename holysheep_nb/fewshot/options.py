"""The few-shot options of a call: ``examples``, ``k``, ``select``, ``example_columns``,
``embedding_model``. Declared here as one option group (``job_options.OPTION_GROUPS``), so an
unknown name still errors and the docs table and ``RunOptions`` follow. They shape the
messages (see ``fewshot.turns``), never the request body.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal

from holysheep_nb.errors import ConfigError
from holysheep_nb.option import NO_FLAG, option

Select = Literal["fixed", "balanced", "similar"]
SELECTS: tuple[str, ...] = ("fixed", "balanced", "similar")


@dataclass(frozen=True)
class Shots:
    """How a call picks its few-shot examples (``docs/examples.md``)."""

    examples: Any = option(
        None,
        "few-shot examples: (text, answer) pairs, or a frame with text and label columns",
        flags=NO_FLAG,
    )
    k: int | None = option(
        None,
        "examples per row (default: all for fixed, 4 for similar, one a label for balanced)",
        flags=NO_FLAG,
    )
    select: Select = option(
        "fixed",
        "which examples: fixed (the first k), balanced (every label), similar (k nearest)",
        flags=NO_FLAG,
    )
    example_columns: tuple[str, str] = option(
        ("text", "label"), "the examples frame's text and answer columns", flags=NO_FLAG
    )
    embedding_model: str | None = option(
        None,
        "select='similar': the provider's /v1/embeddings model; None: a local TF-IDF",
        flags=NO_FLAG,
    )

    def __post_init__(self) -> None:
        if self.select not in SELECTS:
            raise ConfigError(
                f"select must be one of {', '.join(map(repr, SELECTS))}, got {self.select!r}"
            )
        k = self.k
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise ConfigError(f"k must be a whole number of examples of at least 1, got {k!r}")
        columns = self.example_columns
        if (
            not isinstance(columns, (tuple, list))
            or len(columns) != 2
            or not all(isinstance(name, str) for name in columns)
        ):
            raise ConfigError(
                "example_columns must be two column names (text, answer), e.g. "
                f"example_columns=('my_text', 'my_gold'), got {columns!r}"
            )
        model = self.embedding_model
        if model is not None and (not isinstance(model, str) or not model.strip()):
            raise ConfigError(f"embedding_model must be a model name or None, got {model!r}")
        if self.examples is None and self._given_without_examples():
            raise ConfigError(
                "k, select, example_columns and embedding_model choose among examples=: pass "
                "examples=[(text, answer), ...] or a frame"
            )

    def _given_without_examples(self) -> bool:
        return any(
            getattr(self, item.name) != item.default
            for item in fields(self)
            if item.name != "examples"
        )

    @classmethod
    def take(cls, options: dict[str, Any]) -> Shots:
        """The few-shot options taken out of a call's ``options`` (the rest stays)."""
        return cls(
            **{item.name: options.pop(item.name) for item in fields(cls) if item.name in options}
        )

    @property
    def wanted(self) -> bool:
        """True when the call has examples."""
        return self.examples is not None
