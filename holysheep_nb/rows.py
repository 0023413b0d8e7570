"""One row's way through a run's attempts: its state, and the outcomes it can end with.

``RowState`` is what the engine keeps of a row between attempts; ``answered``, ``failed``
and ``not_sent`` build its one ``RowOutcome`` (see ``outcome.py``) from what came back.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

from holysheep_nb.admission import Ticket
from holysheep_nb.answers import Answer, answer_kind
from holysheep_nb.attempt import Attempt
from holysheep_nb.chat import ChatRequest
from holysheep_nb.errors import redact
from holysheep_nb.outcome import AnswerReader, OutcomeKind, RowOutcome, RunStop, read_text


@dataclass(slots=True)
class RowState:
    """One row on its way through attempts."""

    row_id: Hashable
    request: ChatRequest
    ticket: Ticket
    started: float | None = None  # clock time its first attempt went
    heard: float = 0.0  # clock time its last attempt's answer (or failure) came back
    attempts: int = 0
    free_resends: int = 0
    budget_spent: bool = False  # the last answer's headers said the budget is spent
    held: float = 0.0  # seconds its retries waited for the pace or a spent budget
    rate_limited: int = 0  # rate-limit 429s it got, which spent no attempt (patience)
    limited_for: float = 0.0  # seconds it was told to wait by those 429s
    crowded: bool = False  # its last 429 was a refusal for concurrency (adaptive)
    structured: bool = False  # the last send carried response_format
    in_words: bool = False  # sent again with the schema in the system message (form_watch)

    def latency(self, now: float) -> float | None:
        """Seconds since the row's first attempt went (None: it never went)."""
        return None if self.started is None else now - self.started


def answered(
    row_id: Hashable,
    answer: Answer,
    reader: AnswerReader | None,
    latency: float | None,
    attempts: int,
    held: float = 0.0,
) -> RowOutcome:
    """The outcome of a row whose answer came back: an answer, or why it is unusable
    (``reader`` reads the text into the row's value, or rejects it). Online, ``latency`` is
    the seconds since the row's first attempt went, ``held`` those spent held for the pace or
    a spent budget; a batch line has neither (and is read by the batch job)."""
    if answer.text and not answer.refusal:  # the usual answer (``answer_kind``'s OK)
        kind, detail = OutcomeKind.OK, ""
    else:
        kind, detail = answer_kind(answer)
    outcome = RowOutcome(
        row_id,
        kind,
        response=answer.text,
        detail=detail,
        latency=latency,
        attempts=attempts,
        prompt_tokens=answer.prompt_tokens,
        completion_tokens=answer.completion_tokens,
        finish_reason=answer.finish_reason,
    )
    # What most answers leave at its default is set only when there is one: an argument
    # passed by name costs a row as much as building the rest of the outcome.
    if held:
        outcome.held = held
    if answer.reasoning is not None:
        outcome.reasoning = answer.reasoning
    if answer.tool_calls is not None:
        outcome.tool_calls = answer.tool_calls
    if answer.logprobs is not None:
        outcome.logprobs = answer.logprobs
    if kind is OutcomeKind.OK and reader is not None:
        outcome.kind, outcome.detail, outcome.value, outcome.fields = read_text(
            reader, answer.text, answer.finish_reason, answer.logprobs
        )
    return outcome


def failed(row: RowState, attempt: Attempt, key: str | None, now: float) -> RowOutcome:
    """The outcome of a row whose last attempt failed (``key`` blanked out of the detail)."""
    return RowOutcome(
        row.row_id,
        attempt.judgement.kind,
        status=attempt.status,
        detail=redact(attempt.detail, key),
        latency=row.latency(now),
        attempts=row.attempts,
        held=row.held,
    )


def not_sent(row: RowState, stop: RunStop | None, now: float) -> RowOutcome:
    """The outcome of a row the run stopped before it (or its next attempt) could go."""
    return RowOutcome(
        row.row_id,
        OutcomeKind.NOT_SENT,
        detail=stop.cause if stop is not None else "",
        latency=row.latency(now),
        attempts=row.attempts,
        held=row.held,
    )
