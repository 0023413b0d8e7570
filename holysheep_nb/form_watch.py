"""Telling a server that ignores ``response_format`` from a model that got one answer wrong.

Some servers accept a ``json_schema`` ``response_format`` and ignore it: Anthropic's OpenAI
SDK compatibility layer documents it as ignored, and some gateways and older local servers
do the same. The model then sees only the system message, which in the structured form
names the top-level fields and nothing more, so a nested schema's answers never fit.

``FormWatch`` holds one run's evidence. Until an answer to the structured form has fitted
the schema, an answer that does not fit is sent again in the schema-in-the-system-message
form (which describes the whole schema), at one attempt's cost, so that its row is answered
in the form that can work and the cache keeps that answer, not the one that failed. Once
``SWITCH_AFTER`` such answers come back in a row, the run switches to that form for the
rest of the run (the engine's fallback, with a notice). Once one answer to the structured
form has fitted, the server honours the schema: an answer that does not fit is the model's
own, and the row's ``invalid`` error, as it would come back the same.
"""

from __future__ import annotations

from dataclasses import dataclass

from holysheep_nb.outcome import NO_TEXT, OutcomeKind, RowOutcome

#: Answers to the structured form that did not fit, in a row, after which the run switches.
SWITCH_AFTER = 3


@dataclass(slots=True)
class FormWatch:
    """One run's evidence about whether the server heeds ``response_format``."""

    switch_after: int = SWITCH_AFTER
    misses: int = 0  # answers to the structured form that did not fit, in a row
    heeded: bool = False  # an answer to the structured form fitted the schema

    def resend(self, outcome: RowOutcome) -> bool:
        """After an answer to the structured form: True to send its row again in the
        schema-in-the-system-message form. A tool call in place of the answer (``NO_TEXT``)
        is no evidence either way: it says nothing of whether ``response_format`` is heeded."""
        kind = outcome.kind
        if outcome.detail == NO_TEXT:
            return False
        if kind is OutcomeKind.OK:
            self.heeded = True
            self.misses = 0
            return False
        if kind is not OutcomeKind.INVALID or self.heeded:
            return False
        self.misses += 1
        return True

    @property
    def switch(self) -> bool:
        """True once enough answers in a row say the server ignores the schema."""
        return not self.heeded and self.misses >= self.switch_after
