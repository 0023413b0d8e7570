"""Labelling with a fixed label set: the prompt, the JSON schema, and reading the answer back.

``LabelSet`` turns ``labels=[...]`` into a system prompt and a ``response_format`` JSON
schema with an enum (for servers that support structured output; the prompt alone works
everywhere else), then reads each raw answer onto the set as it arrives. Matching forgives
what models do (case, spaces, quotes, a trailing full stop, ``**bold**``, a JSON wrapper, a
code fence); an answer that still matches no label is the row's failure from the moment it
is recorded, never a guessed label. ``ConfidentLabels`` wraps a label set to add the
probability the model gave its label, from the answer's token log-probabilities.

Length: asking (prompt, schema), reading (forgiving matching) and confidence are one label
set's three faces.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from holysheep_nb.columns import free_name
from holysheep_nb.errors import ConfigError
from holysheep_nb.logprobs import TokenLogprobs, span_probability
from holysheep_nb.outcome import AnswerRejected, OutcomeKind

#: Straight and typographic quotes, backticks, and the asterisks of **bold**.
_QUOTES = "\"'`\u201c\u201d\u2018\u2019\u00ab\u00bb*"
_FENCE = re.compile(r"^```[a-zA-Z]*\s*(.*?)\s*```$", re.DOTALL)
_PREFIX = re.compile(r"^(?:labels?|answer|category)\s*:\s*", re.IGNORECASE)
_SEPARATORS = re.compile(r"[,;\n]+")
_SPACING = re.compile(r"[\s_-]+")
_MAX_SHOWN = 80
#: The label set a message shows for an example.
LABELS_EXAMPLE = ["positive", "negative", "neutral"]


def _key(text: str) -> str:
    """The form two spellings of a label must share to match: case, quotes, spacing forgiven."""
    text = _PREFIX.sub("", text.strip().strip(_QUOTES).strip())
    return _SPACING.sub(" ", text.strip().strip(_QUOTES).rstrip(".!").strip()).casefold()


@dataclass(frozen=True)
class LabelSet:
    """The labels a run may answer with, and how to ask for them.

    ``multi`` lets a row carry several labels; ``instructions`` tell the model what the labels
    mean; ``structured`` adds a ``response_format`` JSON schema with an enum (turn it off for
    a server that rejects ``response_format``).
    """

    labels: Sequence[str]  # kept as a tuple
    multi: bool = False
    instructions: str | None = None
    structured: bool = True
    #: Each label by its matching form (``_key``), built once: ``read`` runs once per row.
    _lookup: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        labels = self.labels
        if isinstance(labels, (str, bytes)) or not isinstance(
            labels, (Sequence, pd.Index, pd.Series, np.ndarray)
        ):
            split = labels.split(",") if isinstance(labels, str) and "," in labels else None
            example = [part.strip() for part in split] if split else LABELS_EXAMPLE
            raise ConfigError(
                f"labels must be a list of strings (in the order the categories should have), "
                f"got {labels!r}: pass e.g. labels={example!r}"
            )
        labels = tuple(labels)
        if not labels:
            raise ConfigError("labels is empty: pass at least one, e.g. labels=['spam', 'ham']")
        for label in labels:
            if not isinstance(label, str) or not _key(label):
                raise ConfigError(f"every label must be a non-blank string, got {label!r}")
            if "\n" in label or (self.multi and _SEPARATORS.search(label)):
                what = "a comma, semicolon or line break" if self.multi else "a line break"
                raise ConfigError(
                    f"a label cannot contain {what} (they separate labels in an answer), "
                    f"got {label!r}"
                )
        lookup: dict[str, str] = {}
        for label in labels:
            key = _key(label)
            other = lookup.get(key)
            if other is None:
                lookup[key] = label
                continue
            if other == label:
                raise ConfigError(f"label {label!r} is given twice: keep one")
            raise ConfigError(
                f"labels {other!r} and {label!r} only differ in case, spacing or quotes, so "
                "an answer could not tell them apart: keep one"
            )
        if self.instructions is not None and not isinstance(self.instructions, str):
            raise ConfigError(
                f"instructions must be a string, got {type(self.instructions).__name__}"
            )
        if not isinstance(self.multi, bool) or not isinstance(self.structured, bool):
            raise ConfigError("multi and structured must be True or False")
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "_lookup", lookup)

    # --- asking ---------------------------------------------------------------------------

    def system_prompt(self, system: str | None = None) -> str:
        """The system message: the caller's own ``system`` first, then how to answer."""
        ask = (
            "Answer with every label from the list below that applies, separated by commas, "
            "and nothing else."
            if self.multi
            else "Answer with exactly one label from the list below and nothing else."
        )
        if self.structured:
            field = '{"labels": [...]}' if self.multi else '{"label": "..."}'
            ask += f" Reply in JSON as {field}."
        parts = [system.strip()] if system and system.strip() else []
        parts.append("You are labelling data.")
        if self.instructions and self.instructions.strip():
            parts.append(self.instructions.strip())
        parts.append(ask)
        parts.append("Labels: " + ", ".join(self.labels))
        return "\n".join(parts)

    def response_format(self) -> dict[str, Any]:
        """An OpenAI ``response_format`` whose JSON schema only admits labels of the set."""
        enum = {"type": "string", "enum": list(self.labels)}
        name, value = (
            ("labels", {"type": "array", "items": enum}) if self.multi else ("label", enum)
        )
        return {
            "type": "json_schema",
            "json_schema": {
                "name": "labels" if self.multi else "label",
                "strict": True,
                "schema": {
                    "type": "object",
                    "properties": {name: value},
                    "required": [name],
                    "additionalProperties": False,
                },
            },
        }

    def request_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """The ``complete()`` options for a labelling run: system prompt and response format."""
        merged = dict(options)
        merged["system"] = self.system_prompt(merged.get("system"))
        if self.structured and "response_format" not in merged:
            merged["response_format"] = self.response_format()
        return merged

    def unstructured_system(self, system: str | None) -> str | None:
        """None: the usual system message already says how to answer in words (and in
        JSON), and ``read`` takes plain and JSON answers alike."""
        return None

    def answer_tokens(self) -> int:
        """A rough count of the tokens an answer takes (for the dry-run estimate)."""
        longest = max(len(label) for label in self.labels)
        chars = sum(len(label) + 2 for label in self.labels) if self.multi else longest
        return (chars + (16 if self.structured else 0) + 3) // 4 + 1

    # --- reading --------------------------------------------------------------------------

    def read(self, answer: str, logprobs: TokenLogprobs | None = None) -> str | list[str]:
        """The label (a list of labels with ``multi``) an answer names (``logprobs`` unused).

        Raises ``AnswerRejected`` (``OFF_LABEL``) when the answer names no label of the set,
        something outside it, or more than one label where one was asked for.
        """
        items = _answer_items(answer, self.multi)
        by_key = self._lookup
        found: list[str] = []
        off: list[str] = []
        for item in items:
            label = by_key.get(_key(item))
            if label is None:
                off.append(item)
            elif label not in found:
                found.append(label)
        if off or not found:
            shown = ", ".join(_shown(item) for item in off) if off else _shown(answer)
            raise AnswerRejected(OutcomeKind.OFF_LABEL, shown)
        if self.multi:
            return sorted(found, key=self.labels.index)
        if len(found) > 1:
            raise AnswerRejected(OutcomeKind.OFF_LABEL, f"{_shown(answer)} (more than one label)")
        return found[0]

    def add_columns(self, out: pd.DataFrame, values: list[Any], *, before: str) -> pd.DataFrame:
        """Insert the label column (the rows' read ``values``) before the column ``before``.

        The column is ``label``, or ``predicted_label`` when the input already has a
        ``label`` column (gold labels must survive a labelling run).
        """
        column: Any = (
            pd.Series(values, index=out.index, dtype=object)
            if self.multi
            else pd.Categorical(values, categories=list(self.labels))
        )
        name = "label" if "label" not in out.columns else free_name("predicted_label", out.columns)
        result: pd.DataFrame = out.copy(deep=False)
        result.insert(list(out.columns).index(before), name, column)
        return result

    def counts(self, values: list[Any]) -> Counter[str] | None:
        """Rows per label over the rows' read ``values`` (a multi-label row counts for each)."""
        counts: Counter[str] = Counter()
        for value in values:
            if isinstance(value, list):
                counts.update(value)
            elif value is not None:
                counts[value] += 1
        return counts


class ScoredLabel(NamedTuple):
    """A row's label(s) and the probability the model gave them (NaN when unknown)."""

    label: str | list[str]
    confidence: float


@dataclass(frozen=True)
class ConfidentLabels:
    """A label set whose rows also get a ``confidence`` column (ask with ``logprobs=True``).

    ``confidence`` is the probability the model gave to the label it chose, from the answer's
    token log-probabilities: the label's last case-insensitive spelling in the answer is
    found among the tokens, and the probability is the product of ``exp(logprob)`` over the
    tokens that spell it (one token: simply its probability), as OpenAI's cookbook "Using
    logprobs" does for classification. With ``multi=True`` it is the product over every
    chosen label: the probability of the whole answer, not of each label.

    Limits: it is the model's own probability of the tokens it wrote, not a calibrated
    accuracy; a token shared with a quote or a space counts whole; it is NaN when the server
    sends no logprobs (or a row came from a cache written before it kept them), and when the
    label is not spelled out in the tokens (an answer the label set had to forgive,
    such as ``battery_life`` for ``battery life``).
    """

    labels: LabelSet

    def request_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """The label set's request options (the caller asks for ``logprobs`` themselves)."""
        return self.labels.request_options(options)

    def unstructured_system(self, system: str | None) -> str | None:
        """As the label set's."""
        return self.labels.unstructured_system(system)

    def answer_tokens(self) -> int:
        """As the label set's."""
        return self.labels.answer_tokens()

    def read(self, answer: str, logprobs: TokenLogprobs | None = None) -> ScoredLabel:
        """The label(s) of the answer with their probability; raises as ``LabelSet.read``."""
        label = self.labels.read(answer)
        pieces = label if isinstance(label, list) else [label]
        return ScoredLabel(label, span_probability(logprobs, pieces))

    def add_columns(self, out: pd.DataFrame, values: list[Any], *, before: str) -> pd.DataFrame:
        """The label set's column, then ``confidence`` (float, NaN when unknown), both before
        the column ``before``; ``confidence_2``, ... when the frame has a ``confidence``."""
        labels = [_label_of(value) for value in values]
        result = self.labels.add_columns(out, labels, before=before)
        confidence = [math.nan if value is None else value.confidence for value in values]
        name = free_name("confidence", result.columns)
        result.insert(list(result.columns).index(before), name, np.array(confidence))
        return result

    def counts(self, values: list[Any]) -> Counter[str] | None:
        """Rows per label, as the label set counts them."""
        return self.labels.counts([_label_of(value) for value in values])


def _label_of(value: ScoredLabel | None) -> str | list[str] | None:
    return None if value is None else value.label


def _answer_items(answer: str, multi: bool) -> list[str]:
    """The label(s) an answer names: from JSON when it is JSON, else from the plain text."""
    text = answer.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1)
    if text[:1] in '{["':
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError:
            parsed = None
        if parsed is not None:
            return _json_items(parsed)
    return [part for part in _SEPARATORS.split(text) if part.strip()] if multi else [text]


def _json_items(value: object) -> list[str]:
    if isinstance(value, dict):
        for key in ("labels", "label", "category", "answer"):
            if key in value:
                return _json_items(value[key])
        return _json_items(next(iter(value.values()))) if len(value) == 1 else [json.dumps(value)]
    if isinstance(value, list):
        return [item if isinstance(item, str) else json.dumps(item) for item in value]
    return [value if isinstance(value, str) else json.dumps(value)]


def _shown(text: str) -> str:
    """An answer as quoted in an error: repr, cut short."""
    text = text.strip()
    return repr(text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 1] + "…")
