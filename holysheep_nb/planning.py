"""Row planning, shared by the online run and the batch: what each row of a call needs.

``RowPlanner.walk`` goes through the rows ``chunk_size`` at a time (memory stays flat on a
million rows) and says, for every row in order, one of:

- ``Known``: its outcome is known without asking: no prompt (a missing value, a template
  error), or an answer of an earlier run in the cache;
- ``Ask``: a request to send. ``leader`` is None for the first row asking it; a row asking
  exactly what an earlier ``Ask`` of this run asks (a repeat) names that row as its leader.

One rule finds repeats, online and in a batch: within a run the model, the system message
and the parameters are the run's, so two rows ask the same exactly when their prompts are
the same (with ``images=``, their text and their images' bytes: ``ImageParts.identity``).
Leaders are kept by the prompt's hash (about 70 bytes a distinct row, not the
prompt), and each match is confirmed against the leader's prompt. A cache hit is never a
leader: its repeats are cache hits too. Fingerprints (the cache key, and a batch line's
``custom_id``) are computed only when asked for. What a sender does with a repeat is its
own: the online run shares the leader's outcome or sends it again, a batch asks once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from holysheep_nb.cache import Fingerprinter, ResponseCache
from holysheep_nb.chat import Messages as Messages
from holysheep_nb.job_options import JobOptions
from holysheep_nb.outcome import OutcomeKind, RowOutcome
from holysheep_nb.prompts import MISSING_PROMPT, Prompt, PromptSource
from holysheep_nb.stored import known_outcome

if TYPE_CHECKING:
    from holysheep_nb.images import ImageParts


@dataclass(frozen=True, slots=True)
class Known:
    """A row whose outcome is known before anything is sent."""

    position: int
    outcome: RowOutcome


@dataclass(slots=True)
class Ask:
    """A row to ask: its prompt (with its images' digest when it has images: what a
    repeat must match), messages, fingerprint (None unless asked for), the earlier row of
    the run that asks exactly the same (None: it is the first) and its images, if any."""

    position: int
    text: str
    messages: Messages
    key: str | None
    leader: int | None = None
    images: ImageParts | None = None


class RowPlanner:
    """Walks one call's rows (see the module docstring).

    ``cache`` is looked up chunk by chunk (None: no cache); ``fingerprint`` asks for every
    ``Ask``'s key even without a cache (a batch line needs it as its ``custom_id``).
    """

    def __init__(
        self,
        source: PromptSource,
        options: JobOptions,
        cache: ResponseCache | None,
        *,
        fingerprint: bool = False,
    ) -> None:
        self.source = source
        self.options = options
        self.cache = cache
        endpoint = options.endpoint
        self.key_of = (
            Fingerprinter(base_url=endpoint.base_url, model=endpoint.model, params=options.params)
            if fingerprint or cache is not None
            else None
        )
        #: The first row asking each distinct prompt, by the prompt's hash.
        self.leaders: dict[int, int] = {}

    def walk(self) -> Iterator[Known | Ask]:
        """Every row in order, one chunk prepared at a time."""
        rows = len(self.source)
        chunk_size = self.options.chunk_size
        for start in range(0, rows, chunk_size):
            yield from self._chunk(start, min(rows, start + chunk_size))

    def forget(self, ask: Ask) -> None:
        """``ask`` leads its prompt no more: the next row asking it is asked anew (the online
        run, when the leader's outcome was not worth keeping)."""
        if self.leaders.get(hash(ask.text)) == ask.position:
            del self.leaders[hash(ask.text)]

    def _chunk(self, start: int, stop: int) -> Iterator[Known | Ask]:
        asks: list[Ask] = []
        texts: dict[int, str] = {}  # this chunk's prompts, to confirm a match at no cost
        for position, prompt in enumerate(self.source.chunk(start, stop), start):
            if prompt.text is None:
                yield Known(position, _unsendable(position, prompt))
                continue
            text = prompt.text
            messages = self.options.messages(text)
            if prompt.images is not None:
                messages = prompt.images.attach(messages)
                text = prompt.images.identity(text)
            texts[position] = text
            asks.append(Ask(position, text, messages, None, None, prompt.images))
        hits = {}
        if self.key_of is not None:
            for ask in asks:
                ask.key = self.key_of(ask.messages)
            if self.cache is not None and asks:
                hits = self.cache.get_many([ask.key for ask in asks if ask.key is not None])
        leaders = self.leaders
        for ask in asks:
            prompt_hash = hash(ask.text)
            leader = leaders.get(prompt_hash)
            if leader is not None and self._prompt_at(leader, texts) == ask.text:
                ask.leader = leader
                yield ask
                continue
            if hits:
                hit = hits.get(ask.key) if ask.key is not None else None
                if hit is not None:
                    yield Known(ask.position, known_outcome(ask.position, hit, cached=True))
                    continue
            leaders[prompt_hash] = ask.position
            yield ask

    def _prompt_at(self, position: int, texts: dict[int, str]) -> str | None:
        """The prompt of one earlier row: from this chunk, or built again."""
        text = texts.get(position)
        if text is not None:
            return text
        prompt = next(self.source.chunk(position, position + 1))
        return None if prompt.text is None else _identity(prompt)


def _identity(prompt: Prompt) -> str:
    """What a repeat of this row must ask: its text, and its images when it has some."""
    assert prompt.text is not None
    return prompt.text if prompt.images is None else prompt.images.identity(prompt.text)


def _unsendable(position: int, prompt: Prompt) -> RowOutcome:
    """The outcome of a row with nothing to send: its image's problem, or no prompt."""
    reason = prompt.error or MISSING_PROMPT
    if prompt.image_problem is not None:
        return RowOutcome(
            position, OutcomeKind.BAD_IMAGE, detail=reason, group=prompt.image_problem
        )
    return RowOutcome(position, OutcomeKind.MISSING_PROMPT, detail=reason)
