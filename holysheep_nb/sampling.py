"""The ``votes`` option, declared as one option group (``job_options.OPTION_GROUPS``); what
it does is in ``holysheep_nb.votes``. Kept apart so that ``job_options`` loads no pandas."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from holysheep_nb.errors import ConfigError
from holysheep_nb.option import option


@dataclass(frozen=True)
class Votes:
    """How many samples each row's label is the majority of."""

    votes: int | None = option(
        None, "samples per row, the majority label kept (n=k in one request; needs temperature > 0)"
    )

    @classmethod
    def take(cls, options: dict[str, Any]) -> int | None:
        """``votes`` taken out of ``options``, checked against the temperature."""
        votes = options.pop("votes", None)
        if votes is None:
            return None
        if isinstance(votes, bool) or not isinstance(votes, int) or votes < 2:
            raise ConfigError(
                f"votes must be a whole number of samples of at least 2, got {votes!r}"
            )
        temperature = options.get("temperature")
        if temperature is not None and temperature <= 0:
            raise ConfigError(
                f"votes={votes} samples the model, and temperature={temperature} gives the same "
                "answer every time: leave temperature out (1 by default) or set it above 0"
            )
        if options.get("stream"):
            raise ConfigError(
                f"votes={votes} reads every choice of a whole answer: leave stream out (a "
                "streamed answer is read as one choice)"
            )
        return votes
