"""Votes: ``votes=k`` asks for k samples of each row's label and keeps the majority.

The k samples come from one request with ``n=k`` (OpenAI's chat-completions parameter: the
prompt is paid once, each choice's completion tokens are paid), read back from every
choice (``answers.samples_answer``). A provider that ignores ``n`` answers one choice to
every row: the call then sends k - 1 more requests a row, each run with its own ``seed``
(the given one plus 1, 2, ...; also a distinct cache key), and ``combine_runs`` votes over
the k answers (the prompt paid k times). Self-consistency (Wang et al., 2023, "Self-Consistency
Improves Chain of Thought Reasoning in Language Models") takes the most frequent answer.

Columns: the label set's (the majority label), ``votes`` (the share of the samples that
gave it, in [0, 1]), ``tie`` (True when another label had as many votes: the label kept is
the one sampled first), and ``confidence`` = the vote share when the call has no logprobs.
Sampling needs a temperature above 0: ``temperature=0`` with votes is a ``ConfigError``.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from holysheep_nb.answers import SAMPLES_KEY
from holysheep_nb.columns import free_name
from holysheep_nb.errors import ConfigError
from holysheep_nb.formats import AnswerFormat
from holysheep_nb.logprobs import TokenLogprobs
from holysheep_nb.outcome import AnswerRejected, OutcomeKind


class Vote(NamedTuple):
    """One row's vote: the majority value, its share, whether it tied, the samples, and the
    inner reading of the first sample (its logprobs confidence, when asked)."""

    value: Any
    share: float
    tie: bool
    samples: int
    first: Any


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


@dataclass
class VotedFormat:
    """An answer format (a label set) read by majority over the samples of each answer."""

    inner: Any  # LabelSet or ConfidentLabels
    votes: int
    samples: int = field(default=0, init=False)  # samples read, for the report
    most: int = field(default=0, init=False)  # most samples a row had

    @property
    def ignored_n(self) -> bool:
        """True when the provider answered one choice to every row (it ignores ``n``)."""
        return self.most == 1

    @property
    def scored(self) -> bool:
        """True when the inner format has a logprobs ``confidence`` of its own."""
        from holysheep_nb.labels import ConfidentLabels

        return isinstance(self.inner, ConfidentLabels)

    def request_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        return dict(self.inner.request_options(options))

    def unstructured_system(self, system: str | None) -> str | None:
        return self.inner.unstructured_system(system)  # type: ignore[no-any-return]

    def answer_tokens(self) -> int:
        return int(self.inner.answer_tokens()) * self.votes

    def read(self, answer: str, logprobs: TokenLogprobs | None = None) -> Vote:
        """The majority of the samples the answer holds (one when the provider sent one
        choice). Raises ``AnswerRejected`` when no sample fits the label set."""
        texts = _samples(answer)
        readings: list[Any] = []
        problems: list[str] = []
        for number, text in enumerate(texts):
            if text is None:
                continue
            try:
                readings.append(self.inner.read(text, logprobs if number == 0 else None))
            except AnswerRejected as rejected:
                problems.append(rejected.detail)
        if not readings:
            raise AnswerRejected(OutcomeKind.OFF_LABEL, "; ".join(problems) or "no sample")
        labels = [_plain(reading) for reading in readings]
        counts = Counter(_key(label) for label in labels)
        top = max(counts.values())
        winner = next(label for label in labels if counts[_key(label)] == top)
        tie = sum(1 for n in counts.values() if n == top) > 1
        return Vote(winner, top / len(texts), tie, len(texts), readings[0])

    def add_columns(self, out: pd.DataFrame, values: list[Any], *, before: str) -> pd.DataFrame:
        """The inner columns of the majority labels, then ``votes`` and ``tie``; with no
        logprobs, ``confidence`` is the vote share."""
        self.samples = sum(value.samples for value in values if value is not None)
        self.most = max((value.samples for value in values if value is not None), default=0)
        firsts = [None if value is None else _with_label(value) for value in values]
        result = self.inner.add_columns(out, firsts, before=before)
        shares = np.array([math.nan if v is None else v.share for v in values])
        if not self.scored:  # no logprobs: the vote share is the confidence
            name = free_name("confidence", result.columns)
            result.insert(list(result.columns).index(before), name, shares)
        name = free_name("votes", result.columns)
        result.insert(list(result.columns).index(before), name, shares)
        ties = pd.array([None if v is None else v.tie for v in values], dtype="boolean")
        result.insert(list(result.columns).index(before), free_name("tie", result.columns), ties)
        return result  # type: ignore[no-any-return]

    def counts(self, values: list[Any]) -> Counter[str] | None:
        firsts = [None if value is None else _with_label(value) for value in values]
        return self.inner.counts(firsts)  # type: ignore[no-any-return]


def _samples(answer: str) -> list[str | None]:
    if answer.startswith('{"' + SAMPLES_KEY):
        try:
            parsed = json.loads(answer)
        except json.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict) and isinstance(parsed.get(SAMPLES_KEY), list):
            return [t if isinstance(t, str) else None for t in parsed[SAMPLES_KEY]]
    return [answer]


def _plain(reading: Any) -> Any:
    """The label(s) of an inner reading (a ``ScoredLabel`` carries them in ``label``)."""
    return getattr(reading, "label", reading)


def _with_label(vote: Vote) -> Any:
    """The first sample's reading with the majority label in place of its own (a
    ``ScoredLabel`` keeps its confidence only when the first sample is the majority)."""
    first = vote.first
    if hasattr(first, "_replace") and hasattr(first, "label"):
        same = _key(first.label) == _key(vote.value)
        return first._replace(label=vote.value, confidence=first.confidence if same else math.nan)
    return vote.value


def voted(answer_format: AnswerFormat | None, votes: int) -> VotedFormat:
    """``answer_format`` read by majority over ``votes`` samples; only ``label()`` votes."""
    from holysheep_nb.labels import ConfidentLabels, LabelSet

    if not isinstance(answer_format, (LabelSet, ConfidentLabels)):
        raise ConfigError(
            "votes= keeps the majority label: it goes with label(), not complete() or extract()"
        )
    return VotedFormat(answer_format, votes)


def combine_runs(
    frames: list[pd.DataFrame], answer_format: VotedFormat, inputs: list[Any]
) -> pd.DataFrame:
    """One frame from ``k`` runs of one sample each (a provider that ignores ``n``): each
    row's samples are its ``response`` in every run, read by majority as one answer of
    ``k`` choices; the first run's other columns are kept, its error cleared where the vote
    found a label."""
    first = frames[0]
    before = "response"
    stop = list(first.columns).index(before)
    voted_columns = [c for c in list(first.columns)[:stop] if c not in inputs]
    values: list[Any] = []
    responses = [frame[before].tolist() for frame in frames]
    for samples in zip(*responses, strict=True):
        texts = [s if isinstance(s, str) else None for s in samples]
        if not any(texts):
            values.append(None)
            continue
        try:
            values.append(answer_format.read(json.dumps({SAMPLES_KEY: texts})))
        except AnswerRejected:
            values.append(None)
    base = first.drop(columns=voted_columns)
    out = answer_format.add_columns(base, values, before=before)
    if "error" in out.columns:
        found = np.array([value is not None for value in values])
        out.loc[found, "error"] = None
    return out
