"""The one exception hierarchy of holysheep_nb: every error and warning it raises on purpose.

    HolySheepError
    ├── ConfigError (also ValueError)      bad option or input, raised before anything is sent
    │   └── MissingAPIKeyError             no key (or the placeholder) for a remote base URL
    ├── FileFormatError                    a table file that cannot be read or written as asked
    ├── LoopError (also RuntimeError)      a sync call inside a running loop it cannot re-enter
    ├── RunStoppedError                    compare(): a variant's run stopped as a whole
    └── BatchError                         a Batch API files or batches call failed
        └── BatchUnavailableError          no Batch API at this base URL (nothing charged)

    HolySheepWarning (a UserWarning)       told once, while the run goes on or as it stops
    └── CacheWarning                       the cache file could not be used as is

Signals that never leave the package (a rejected answer, a malformed body, an unusable cache file)
are HolySheepErrors too, defined where they are raised and caught: ``outcome.AnswerRejected``,
``answers.MalformedAnswer``, ``cache.db.UnusableCacheError``; and so is the local test
server's ``server.schema_answers.SchemaError`` (also a ValueError).

A failure of one row is never an exception: it becomes that row's ``error`` text. A failure
that concerns the whole run (a refused key, no credits, a quota spent, a model that does not
exist, a server that cannot be reached) stops it: answered rows keep their answers, the rest
say ``not sent: <cause>``, and a ``HolySheepWarning`` says what happened and what to do
(``compare()`` then raises ``RunStoppedError`` instead of going on to the next variant).
``asyncio.CancelledError`` and ``KeyboardInterrupt`` are never caught and always propagate.
The engine's warnings go through ``warn``, which names the user's line that made the call.
"""

from __future__ import annotations

import sys
import warnings
from types import FrameType


class HolySheepError(Exception):
    """Base class of every error holysheep_nb raises on purpose."""


class ConfigError(HolySheepError, ValueError):
    """An option or the input is unusable; raised before any request is sent."""


class LoopError(HolySheepError, RuntimeError):
    """A synchronous call (``complete()``) inside a running event loop that cannot be made
    re-entrant (uvloop); the message says to ``await`` the async form instead."""


class RunStoppedError(HolySheepError):
    """A run stopped as a whole (a refused key, an unknown model) where going on would
    mislead: ``compare()`` raises it rather than count a stopped variant's rows as wrong."""


class HolySheepWarning(UserWarning):
    """Something the user should know about a run that still returned its frame: the run
    stopped early, or fell back to asking without structured output."""


class MissingAPIKeyError(ConfigError):
    """No API key is set for a base URL that needs one."""


class FileFormatError(HolySheepError):
    """A table file that cannot be read or written as asked; the message says why and how."""


class BatchError(HolySheepError):
    """A files or batches call failed; the message names the call, the status and the
    provider's message (never the key). ``status`` is the HTTP status, or None when no
    answer came back."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class BatchUnavailableError(BatchError):
    """The provider has no Batch API: a 404 on ``/files`` or ``/batches``. Raised before
    any batch exists, so nothing was charged."""


class CacheWarning(HolySheepWarning):
    """The cache file could not be used as is; the run goes on (filterable category)."""


#: Shortest key treated as a secret. Local servers document placeholder keys ("ollama",
#: "EMPTY", "lm-studio", "sk-no-key-required"); blanking those would garble ordinary words in
#: error lines. Every hosted provider's keys are longer (OpenAI, Azure, Groq, Mistral: 32+).
MIN_SECRET_LENGTH = 20


def is_secret(key: str | None) -> bool:
    """True when ``key`` is long enough to be a real secret (see ``MIN_SECRET_LENGTH``)."""
    return key is not None and len(key) >= MIN_SECRET_LENGTH


def redact(text: str, secret: str | None) -> str:
    """Return ``text`` with every occurrence of ``secret`` replaced by ``***``.

    Providers sometimes echo the key back ("Incorrect API key provided: sk-..."); every
    line the package itself prints (error cells, warnings, exceptions) passes through here
    so that a key never reaches a cell or a log. Answers are the user's data and never pass
    through here. A placeholder key shorter than ``MIN_SECRET_LENGTH`` is left as it is.
    """
    if not is_secret(secret):
        return text
    assert secret is not None
    return text.replace(secret, "***")


#: Modules whose frames a warning is never attributed to: ours, and the event loop's
#: machinery between a synchronous call and the engine's tasks.
_MACHINERY = ("holysheep_nb", "asyncio", "nest_asyncio", "nest_asyncio2")


def warn(message: str, category: type[Warning] = HolySheepWarning) -> None:
    """Warn at the user's line: the first frame outside this package and the event loop's
    machinery (as pandas attributes its warnings), so that a notebook shows the cell's line,
    not the engine's. A run that is awaited has no user frame below its tasks: the warning
    is then the caller's own line."""
    frame: FrameType | None = sys._getframe(1)
    level = 2  # the caller of warn()
    while frame is not None and frame.f_globals.get("__name__", "").split(".")[0] in _MACHINERY:
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level if frame is not None else 2)
