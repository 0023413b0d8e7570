"""One typed outcome per row, and the one tally of a run's outcomes.

Every row of a run ends as exactly one ``RowOutcome``, built where the fact is known: the
engine for rows it sent, the job for rows answered from the cache or never sendable, and
the answer reader (a label set, later a schema) for answers that came back but do not fit.
``RunStats.record`` is the only place a row is counted, so the progress bar, the engine's
stats and the report cannot disagree. The error text of a row is written in one place,
``RowOutcome.error``; the report groups failures by ``RowOutcome.cause`` (kind and HTTP
status), never by reading error strings back.

The kinds, and the contract behind them, are listed in ``docs/contract.md`` ("Failure
kinds").

Length: the outcome, its error text and the tally that counts it are one contract; split,
a new kind could be worded in one place and forgotten in the count.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, NamedTuple

from holysheep_nb.errors import HolySheepError
from holysheep_nb.logprobs import TokenLogprobs

if TYPE_CHECKING:
    from holysheep_nb.adaptive import ConcurrencyWindow


class OutcomeKind(enum.Enum):
    """What became of one row. The value is the stable name used in dicts and logs."""

    OK = "ok"
    #: A status that a retry cannot change (400, 404, 422, 501, ...): the row's own error.
    HTTP = "http"
    #: A retryable status (429, 5xx, ...) on every attempt.
    SERVER = "server"
    #: Every attempt timed out.
    TIMEOUT = "timeout"
    #: Connection refused, reset or dropped on every attempt.
    CONNECTION = "connection"
    #: A 2xx answer that is not a chat completion (HTML, bad JSON, no choices).
    MALFORMED = "malformed"
    #: The provider refused the key (401, 403) for this row.
    AUTH = "auth"
    #: The run stopped (for the reason in ``detail``) before this row was sent.
    NOT_SENT = "not_sent"
    #: The row has no prompt to send (missing value, template value, invalid text).
    MISSING_PROMPT = "missing_prompt"
    #: The row's image cannot be sent (file not found, not an image, over a limit): never
    #: sent; ``detail`` names the file, ``group`` the kind of problem.
    BAD_IMAGE = "bad_image"
    #: The answer names no label of the set (or several where one was asked for).
    OFF_LABEL = "off_label"
    #: The answer does not fit the requested schema (``detail`` names the field and why).
    INVALID = "invalid"
    #: The model declined (``message.refusal``): answered once, never retried.
    REFUSED = "refused"
    #: The provider's content filter withheld the answer (``finish_reason: content_filter``).
    FILTERED = "filtered"
    #: The answer was cut at the token limit (``finish_reason: length``) and is empty, or a
    #: label or schema was asked for and a cut answer cannot be trusted to hold it.
    TRUNCATED = "truncated"


@dataclass(slots=True)
class RowOutcome:
    """The final outcome of one row.

    A value: nothing changes it once built (``dataclasses.replace`` makes a changed copy). It
    is not a frozen dataclass only because one is built per row on the hot path, where a
    frozen one costs twice as much to build.

    ``response`` is the answer text when one came back (also for an answer the reader
    rejected: it was paid for and stays inspectable); ``value`` is what the reader made of
    it (a label, a list of labels), ``None`` without a reader. ``latency`` runs from the
    first attempt to the outcome, retries and backoff included, and is ``None`` for a row
    never sent in this run (cached, missing prompt, not sent). ``status`` is the HTTP status
    behind a failure, when there was one; ``detail`` is the provider's message, our reason,
    or the rejected answer, already cleared of the API key. ``fields`` names the schema
    fields an ``INVALID`` answer got wrong (dotted paths), for the report's per-field counts;
    ``logprobs`` are the answer's tokens when the server sent them (kept by the cache too).
    """

    row_id: Hashable
    kind: OutcomeKind
    response: str | None = None
    value: Any = None
    status: int | None = None
    detail: str = ""
    attempts: int = 0
    latency: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached: bool = False
    shared: bool = False
    finish_reason: str | None = None
    reasoning: str | None = None
    tool_calls: str | None = None
    fields: tuple[str, ...] = ()
    logprobs: TokenLogprobs | None = None
    held: float = 0.0  # seconds of ``latency`` a retry waited for the pace or a spent budget
    group: str = ""  # a BAD_IMAGE row's cause without its file ("image file not found")

    @property
    def error(self) -> str | None:
        """The row's ``error`` cell: one short readable line, or None when it succeeded."""
        kind = self.kind
        if kind is OutcomeKind.OK:
            return None
        tries = f"after {self.attempts} attempt{'s' if self.attempts != 1 else ''}"
        if kind is OutcomeKind.HTTP:
            return f"HTTP {self.status}: {self.detail}"
        if kind is OutcomeKind.SERVER:
            return f"HTTP {self.status} {tries}: {self.detail}"
        if kind is OutcomeKind.TIMEOUT:
            return f"timeout {tries}"
        if kind is OutcomeKind.CONNECTION:
            return f"connection error {tries}: {self.detail}"
        if kind is OutcomeKind.MALFORMED:
            return f"malformed response {tries}: {self.detail}"
        if kind is OutcomeKind.AUTH:
            return f"authentication failed (HTTP {self.status}): {self.detail}"
        if kind is OutcomeKind.NOT_SENT:
            return f"not sent: {self.detail}"
        if kind in _PREFIXES:
            return f"{_PREFIXES[kind]}: {self.detail}" if self.detail else _PREFIXES[kind]
        return self.detail  # MISSING_PROMPT, BAD_IMAGE: the reason is the whole message

    @property
    def cause(self) -> str | None:
        """The group this row's failure counts under in the report, or None when it succeeded.

        Built from the kind and the status, plus our own short reason for rows that were
        never sent; never from the provider's free text.
        """
        kind = self.kind
        if kind is OutcomeKind.OK:
            return None
        if kind in (OutcomeKind.HTTP, OutcomeKind.SERVER):
            return f"HTTP {self.status}"
        if kind is OutcomeKind.AUTH:
            return f"authentication failed (HTTP {self.status})"
        if kind is OutcomeKind.NOT_SENT:
            return f"not sent: {self.detail}"
        if kind is OutcomeKind.MISSING_PROMPT:
            return self.detail
        if kind is OutcomeKind.BAD_IMAGE:
            return self.group or self.detail  # one group for 300 missing files, not 300
        if self.detail == NO_TEXT:
            return TOOL_CALL_CAUSE  # not an answer off the label set or the schema
        return _CAUSES[kind]

    @property
    def sent(self) -> bool:
        """True when this run sent the row itself (it has a latency)."""
        return self.latency is not None

    @property
    def paid(self) -> bool:
        """True when this row's own request was paid for in this run (its tokens count)."""
        return not (self.cached or self.shared)


def cause_of_error(error: str) -> str:
    """The report's group of a failed row read back from its ``error`` cell: what
    ``RowOutcome.cause`` said of it, for a frame whose outcomes are gone (``escalate()``
    counting the failures of a merged frame). A text of no known form (a bad image's message,
    whose group is not in it) is its own group."""
    if error.startswith(("HTTP ", "authentication failed (HTTP ")):
        return error.split(": ", 1)[0].split(" after ", 1)[0]
    if error.startswith("not sent: "):
        return error
    for cause in ("timeout", "connection error", "malformed response"):
        if error.startswith(f"{cause} after "):
            return cause
    for prefix in _PREFIXES.values():
        if error == f"{prefix}: {NO_TEXT}":
            return TOOL_CALL_CAUSE
        if error == prefix or error.startswith(f"{prefix}: "):
            return prefix
    return error


#: The error text of answers that came back but cannot be used: prefix, then ``detail``.
_PREFIXES = {
    OutcomeKind.OFF_LABEL: "not in label set",
    OutcomeKind.INVALID: "answer does not fit the schema",
    OutcomeKind.REFUSED: "refused by the model",
    OutcomeKind.FILTERED: "withheld by the content filter",
    OutcomeKind.TRUNCATED: "truncated at the token limit",
}
_CAUSES = {
    **_PREFIXES,
    OutcomeKind.TIMEOUT: "timeout",
    OutcomeKind.CONNECTION: "connection error",
    OutcomeKind.MALFORMED: "malformed response",
}


#: Errors kept as examples of a grouped cause (``RunStats.examples``).
EXAMPLES = 2
_NEVER_SENT = (OutcomeKind.NOT_SENT, OutcomeKind.MISSING_PROMPT, OutcomeKind.BAD_IMAGE)


@dataclass(frozen=True, slots=True)
class RunStop:
    """Why a run stopped before every row was sent, and what the user can do about it.

    ``cause`` is short (``authentication failed (HTTP 401)``): every row not sent says
    ``not sent: <cause>``. ``advice`` is one sentence for the warning and the report.
    ``missing_model`` marks a stop for a model the server does not know: the engine asks the
    server's model list before it says so, and names the closest in the advice
    (``model_list``).
    """

    cause: str
    advice: str
    missing_model: bool = False

    def __str__(self) -> str:
        # A cause may end with the provider's own sentence: no "it.: check ..." seam.
        cause = self.cause.rstrip(".")
        return f"{cause}: {self.advice}" if self.advice else cause


class AnswerRejected(HolySheepError):
    """Raised by an answer reader for an answer that came back but does not fit the ask.

    ``fields`` names the schema fields at fault, when the answer is JSON of the wrong shape.
    """

    def __init__(self, kind: OutcomeKind, detail: str, fields: tuple[str, ...] = ()) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.fields = fields


#: The ``detail`` of a truncated answer: what to do about it.
TRUNCATED_HINT = "raise max_tokens (or max_completion_tokens) and run again"

#: Turns an answer's text (and its token log-probabilities, when the server sent them) into
#: the row's value, or raises ``AnswerRejected``.
AnswerReader = Callable[[str, TokenLogprobs | None], Any]


class Reading(NamedTuple):
    """What a reader made of an answer's text: the kind, and the value or why not."""

    kind: OutcomeKind
    detail: str = ""
    value: Any = None
    fields: tuple[str, ...] = ()


#: Why an answer without text (a tool call; see ``answers.answer_kind``) has no value.
NO_TEXT = "the answer has no text to read, only a tool call (see tool_calls)"
#: The report's group for those rows, apart from the answers that were off the label set or
#: the schema: the fix differs (no tools offered, or a model that answers in text).
TOOL_CALL_CAUSE = "a tool call instead of an answer"


def read_text(
    reader: AnswerReader,
    text: str | None,
    finish_reason: str | None,
    logprobs: TokenLogprobs | None,
) -> Reading:
    """Read one answer's text with ``reader``.

    An answer cut at the token limit is never read: a label or a schema cannot be trusted
    from half an answer, so it is ``TRUNCATED`` (the text stays in ``response``). An answer
    with no text (``None``: the model called a tool instead) has nothing to read: it is
    rejected as the reader rejects an empty answer (``OFF_LABEL`` for a label set,
    ``INVALID`` for a schema), with ``NO_TEXT`` as the detail.
    """
    if finish_reason == "length":
        return Reading(OutcomeKind.TRUNCATED, TRUNCATED_HINT)
    try:
        value = reader("" if text is None else text, logprobs)
    except AnswerRejected as rejected:
        if text is None:
            return Reading(rejected.kind, NO_TEXT)
        return Reading(rejected.kind, rejected.detail, fields=rejected.fields)
    return Reading(OutcomeKind.OK, value=value)


def read_answer(outcome: RowOutcome, reader: AnswerReader | None) -> RowOutcome:
    """``outcome`` with its answer read (``read_text``): the value filled in, or the
    rejection as the kind. The engine reads fresh answers as it builds their outcome; this
    is for outcomes known before (answers from the cache). An outcome that already has its
    value (a repeat of a row read earlier in the run) is kept as it is."""
    if reader is None or outcome.kind is not OutcomeKind.OK:
        return outcome
    if outcome.value is not None:
        return outcome
    kind, detail, value, fields = read_text(
        reader, outcome.response, outcome.finish_reason, outcome.logprobs
    )
    return replace(outcome, kind=kind, detail=detail, value=value, fields=fields)


@dataclass(slots=True)
class RunStats:
    """The one tally of a run: rows by outcome, and the requests behind them.

    Rows are counted only by ``record``. Request counters (``requests_sent``, ``retries``,
    ``resent``, ``rate_limited``, ``in_flight``) are kept by the engine as requests go and
    come back; ``rate_limited`` counts every 429 answer, retried or not.
    """

    started: float = 0.0
    finished: float | None = None
    requests_sent: int = 0
    retries: int = 0
    resent: int = 0  # requests sent again without spending an attempt (never read by the server)
    rate_limited: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    succeeded: int = 0
    failed: int = 0
    cached: int = 0
    not_sent: int = 0  # failed rows that this run never sent
    deduplicated: int = 0  # rows answered by another row's identical request
    truncated: int = 0  # rows whose answer was cut at the token limit
    prompt_tokens: int = 0  # of answers received in this run (cached answers cost nothing)
    completion_tokens: int = 0
    failures: Counter[str] = field(default_factory=Counter)  # cause -> rows
    failed_fields: Counter[str] = field(default_factory=Counter)  # schema field -> rows
    #: A grouped cause's first rows' errors (a bad image's: they name the files), two at most.
    examples: dict[str, list[str]] = field(default_factory=dict)
    stop: RunStop | None = None  # why the run stopped early, if it did
    #: What the run learned of the provider's concurrency (set by the engine).
    concurrency: ConcurrencyWindow | None = None
    paused: int = 0  # times every new send was held (a spent budget)
    paused_seconds: float = 0.0  # how long, in all (overlapping holds counted once)
    held_until: float | None = None  # clock time the latest hold ends (the bar shows it)
    hold_reason: str = ""

    @property
    def done(self) -> int:
        """Rows with their final outcome."""
        return self.succeeded + self.failed

    def record(self, outcome: RowOutcome) -> None:
        """Count one row's final outcome."""
        if outcome.kind is OutcomeKind.OK:
            self.succeeded += 1
        else:
            self.failed += 1
            cause = outcome.cause or ""
            self.failures[cause] += 1
            if outcome.group:
                shown = self.examples.setdefault(cause, [])
                if len(shown) < EXAMPLES:
                    shown.append(outcome.error or "")
            self.failed_fields.update(outcome.fields)
            if outcome.kind in _NEVER_SENT or (not outcome.sent and outcome.paid):
                self.not_sent += 1
        if outcome.finish_reason == "length":
            self.truncated += 1
        if outcome.cached:
            self.cached += 1
        elif outcome.shared:
            self.deduplicated += 1
        else:
            self.prompt_tokens += outcome.prompt_tokens or 0
            self.completion_tokens += outcome.completion_tokens or 0
