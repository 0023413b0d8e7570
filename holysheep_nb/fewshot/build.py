"""From a call's few-shot options to its ``ExampleTurns``: read the pool, check each answer
against the call's format, and order the pool for every row (``similar``: by the
provider's embeddings or the local TF-IDF, for every distinct prompt, before the run)."""

from __future__ import annotations

from collections.abc import Sequence

from holysheep_nb.cache import ResponseCache
from holysheep_nb.endpoint import Endpoint
from holysheep_nb.fewshot import vectors
from holysheep_nb.fewshot.options import Shots
from holysheep_nb.fewshot.pool import Example, read_pool
from holysheep_nb.fewshot.turns import ExampleTurns, answer_text, balanced_order, nearest_orders
from holysheep_nb.formats import AnswerFormat
from holysheep_nb.prompts import PromptSource

#: Default examples a row for ``select="similar"``.
SIMILAR_K = 4
#: Pool positions kept per prompt beyond k, for examples left out as the row's own.
SPARE = 16


def _pool(shots: Shots, answer_format: AnswerFormat | None) -> tuple[list[Example], list[str]]:
    pool = list(read_pool(shots.examples, tuple(shots.example_columns)))  # type: ignore[arg-type]
    return pool, [answer_text(example, answer_format) for example in pool]


def _k(shots: Shots, pool: Sequence[Example]) -> int:
    if shots.k is not None:
        return min(shots.k, len(pool))
    if shots.select == "similar":
        return min(SIMILAR_K, len(pool))
    if shots.select == "balanced":
        return len({example.key for example in pool})
    return len(pool)


def distinct_prompts(source: PromptSource) -> list[str]:
    """Every distinct prompt of the call, in first-seen order."""
    seen: dict[str, None] = {}
    for prompt in source.chunk(0, len(source)):
        if prompt.text is not None:
            seen.setdefault(prompt.text)
    return list(seen)


def local_turns(
    shots: Shots, answer_format: AnswerFormat | None, source: PromptSource
) -> ExampleTurns:
    """The turns with nothing sent: ``similar`` by the local TF-IDF (the dry-run estimate
    counts the same number of example tokens a row as the run)."""
    pool, answers = _pool(shots, answer_format)
    k = _k(shots, pool)
    if shots.select == "similar":
        prompts = distinct_prompts(source)
        pool_vectors, row_vectors = vectors.tfidf_vectors([e.text for e in pool], prompts)
        return _similar(pool, answers, k, prompts, pool_vectors, row_vectors, source)
    within = source.template is not None
    if shots.select == "balanced":
        order = balanced_order(pool)
        return ExampleTurns(pool, answers, k, order=order, balanced=True, within=within)
    return ExampleTurns(pool, answers, k, within=within)


async def turns_for(
    shots: Shots,
    answer_format: AnswerFormat | None,
    source: PromptSource,
    endpoint: Endpoint,
    cache: ResponseCache | None,
    *,
    timeout: float,
) -> ExampleTurns:
    """The call's turns; ``similar`` with ``embedding_model`` asks the provider (cached),
    and falls back to the local TF-IDF with a ``HolySheepWarning`` when it has none."""
    if shots.select != "similar" or shots.embedding_model is None:
        return local_turns(shots, answer_format, source)
    prompts = distinct_prompts(source)
    if not prompts:  # nothing to ask (a Dask meta frame): nothing to embed
        return local_turns(shots, answer_format, source)
    pool, answers = _pool(shots, answer_format)
    texts = [e.text for e in pool]
    try:
        matrix = await vectors.embed(
            endpoint, shots.embedding_model, texts + prompts, cache, timeout=timeout
        )
    except vectors.NoEmbeddings as exc:
        vectors.fallback_warning(str(exc))
        return local_turns(shots, answer_format, source)
    k = _k(shots, pool)
    return _similar(pool, answers, k, prompts, matrix[: len(pool)], matrix[len(pool) :], source)


def _similar(
    pool: list[Example],
    answers: list[str],
    k: int,
    prompts: list[str],
    pool_vectors: object,
    row_vectors: object,
    source: PromptSource,
) -> ExampleTurns:
    width = min(len(pool), k + SPARE)
    nearest: dict[str, Sequence[int]] = {}
    if prompts:
        orders = nearest_orders(pool_vectors, row_vectors, width)
        nearest = {prompt: order.tolist() for prompt, order in zip(prompts, orders, strict=True)}
    within = source.template is not None
    return ExampleTurns(pool, answers, k, nearest=nearest, within=within)
