"""Answers kept and answers found again: what of a row's outcome the cache keeps, and the
outcome of a row answered without sending it (from the cache, or by an identical request).

The online path (``job``) and the batch path (``batch``) both use these, so a cached
answer reads the same whichever path stored it.
"""

from __future__ import annotations

from holysheep_nb.answers import Answer, answer_kind
from holysheep_nb.cache import CachedAnswer
from holysheep_nb.logprobs import tokens_from_json, tokens_to_json
from holysheep_nb.outcome import OutcomeKind, RowOutcome


def worth_keeping(outcome: RowOutcome) -> bool:
    """True when the row's answer is worth keeping: a success, or an answer with text that
    its reader rejected (off the label set, not fitting the schema, cut short), which was
    paid for and would come back the same. An empty cut answer, a refusal or a filtered
    answer is an error, asked again on the next run."""
    return outcome.kind is OutcomeKind.OK or bool(outcome.response)


def to_cached(outcome: RowOutcome) -> CachedAnswer:
    """What the cache keeps of an answered row."""
    return CachedAnswer(
        outcome.response or "",
        outcome.prompt_tokens,
        outcome.completion_tokens,
        outcome.finish_reason,
        outcome.reasoning,
        outcome.tool_calls,
        tokens_to_json(outcome.logprobs),
    )


def known_outcome(
    position: int, answer: CachedAnswer, *, cached: bool = False, shared: bool = False
) -> RowOutcome:
    """The outcome of a row answered without sending it: from the cache, or by an identical
    request earlier in the run. Nothing sent, so no latency, no cost.

    The stored answer goes through the same reading as a fresh one (``answer_kind``), so a
    cached truncated or refused answer is that again, not a success.
    """
    response = None if answer.tool_calls and not answer.response else answer.response
    kind, detail = answer_kind(
        Answer(
            response,
            finish_reason=answer.finish_reason,
            tool_calls=answer.tool_calls,
        )
    )
    return RowOutcome(
        position,
        kind,
        response=response,
        detail=detail,
        prompt_tokens=answer.prompt_tokens,
        completion_tokens=answer.completion_tokens,
        cached=cached,
        shared=shared,
        finish_reason=answer.finish_reason,
        reasoning=answer.reasoning,
        tool_calls=answer.tool_calls,
        logprobs=tokens_from_json(answer.logprobs),
    )
