"""Few-shot examples as chat turns: which examples a row gets, and its messages.

Each example goes in as a user turn (its text) and an assistant turn (its answer, in the
form the call asks for: ``{"label": "..."}`` with structured output, the bare label without,
the fields as JSON for ``extract()``), between the system message and the row: the usual
few-shot form for chat models (OpenAI's prompt-engineering guide, "few-shot learning").

A row is never its own example: an example whose text is the row's prompt (or, when the
prompts come from a template, appears within it: the template around the same text) is
left out and the next one taken (for ``balanced``, the next with the same answer). The
examples a row gets depend only on its prompt, so two rows with the same prompt still ask
exactly the same (one request, one cache key; the key covers the examples).
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from holysheep_nb.errors import ConfigError
from holysheep_nb.fewshot.pool import Example
from holysheep_nb.formats import AnswerFormat

Messages = tuple[dict[str, str], ...]
#: Rows scored against the pool at a time for ``similar`` (memory: rows x pool floats).
SCORE_CHUNK = 1024


def leaks(example: Example, prompt: str, *, within: bool = False) -> bool:
    """True when ``example`` is the row itself: its text is the prompt (``within``: is
    within the prompt, for prompts made from a template)."""
    return example.text in prompt if within else example.text == prompt.strip()


class ExampleTurns:
    """The examples of a call and how each row gets its own ``k``.

    ``order`` is the pool order a row walks for ``fixed`` and ``balanced`` (the same for
    every row); ``nearest`` maps a prompt to its pool order for ``similar``.
    """

    def __init__(
        self,
        pool: Sequence[Example],
        answers: Sequence[str],
        k: int,
        *,
        order: Sequence[int] | None = None,
        nearest: dict[str, Sequence[int]] | None = None,
        balanced: bool = False,
        within: bool = False,
    ) -> None:
        self.pool = tuple(pool)
        self.answers = tuple(answers)
        self.k = k
        self.order = tuple(order) if order is not None else tuple(range(len(pool)))
        self.nearest = nearest
        self.within = within
        #: ``balanced``: the answer each of the k places holds, so a left-out example is
        #: replaced by the next one with the same answer.
        self.places = [self.pool[i].key for i in self.order[:k]] if balanced else None

    def chosen(self, prompt: str) -> list[int]:
        """The pool positions of the row's examples in the order they are sent: the pool's
        order for ``fixed`` and ``balanced``, the nearest last (next to the row) for
        ``similar``."""
        order: Iterable[int] = self.order
        if self.nearest is not None:
            order = self.nearest.get(prompt, ())
        allowed = (i for i in order if not leaks(self.pool[i], prompt, within=self.within))
        if self.places is None:
            picked = list(itertools.islice(allowed, self.k))
            return picked[::-1] if self.nearest is not None else picked
        # balanced: fill each place with the first allowed example of its answer (or, when
        # that answer has none left, any), reading the order only as far as needed.
        wanted = Counter(self.places)
        chosen: list[int] = []
        spare: list[int] = []
        for index in allowed:
            key = self.pool[index].key
            if wanted[key] > 0:
                wanted[key] -= 1
                chosen.append(index)
            else:
                spare.append(index)
            if len(chosen) == len(self.places):
                break
        missing = len(self.places) - len(chosen)
        return chosen + spare[:missing]

    def messages(self, prompt: str, system: str | None) -> Messages:
        """The row's messages: system, the examples' turns, then the row."""
        head: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []
        for index in self.chosen(prompt):
            head.append({"role": "user", "content": self.pool[index].text})
            head.append({"role": "assistant", "content": self.answers[index]})
        head.append({"role": "user", "content": prompt})
        return tuple(head)


def balanced_order(pool: Sequence[Example]) -> list[int]:
    """The pool taken one answer at a time in turn (first seen first): the first k of it
    hold every answer when k is at least the number of answers."""
    groups: dict[str, list[int]] = {}
    for index, example in enumerate(pool):
        groups.setdefault(example.key, []).append(index)
    order: list[int] = []
    queues = list(groups.values())
    while any(queues):
        for queue in queues:
            if queue:
                order.append(queue.pop(0))
    return order


def nearest_orders(pool_vectors: Any, row_vectors: Any, width: int) -> np.ndarray:
    """For each row, the ``width`` most similar pool positions, most similar first (ties in
    pool order). Vectors are unit-length rows (dense or sparse), so dot = cosine."""
    out = np.empty((row_vectors.shape[0], width), dtype=np.int32)
    for start in range(0, row_vectors.shape[0], SCORE_CHUNK):
        scores = row_vectors[start : start + SCORE_CHUNK] @ pool_vectors.T
        scores = scores.toarray() if hasattr(scores, "toarray") else np.asarray(scores)
        out[start : start + SCORE_CHUNK] = np.argsort(-scores, axis=1, kind="stable")[:, :width]
    return out


def answer_text(example: Example, answer_format: AnswerFormat | None) -> str:
    """The assistant turn of ``example``: its answer as the call asks the model to write
    it; raises ``ConfigError`` for an answer the call could not accept."""
    from holysheep_nb.extract import ExtractFormat
    from holysheep_nb.labels import ConfidentLabels, LabelSet

    answer = example.answer
    fmt = answer_format.labels if isinstance(answer_format, ConfidentLabels) else answer_format
    if isinstance(fmt, LabelSet):
        text = ", ".join(answer) if isinstance(answer, list) else str(answer)
        try:
            read = fmt.read(text)
        except Exception:
            raise ConfigError(
                f"example {_short(example.text)} has the answer {answer!r}, which is not in "
                f"the label set {list(fmt.labels)}"
            ) from None
        if fmt.structured:
            return json.dumps({"labels": read} if fmt.multi else {"label": read})
        return ", ".join(read) if isinstance(read, list) else str(read)
    if isinstance(fmt, ExtractFormat):
        text = answer if isinstance(answer, str) else json.dumps(answer, ensure_ascii=False)
        try:
            fmt.read(text)
        except Exception as exc:
            raise ConfigError(
                f"example {_short(example.text)}: its answer does not fit the schema ({exc})"
            ) from None
        return text
    return answer if isinstance(answer, str) else json.dumps(answer, ensure_ascii=False)


def _short(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:37] + "...")
