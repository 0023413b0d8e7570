"""The one exception hierarchy of holysheep_nb.

    HolySheepError
    ├── ConfigError (also ValueError)      bad option or input, raised before anything is sent
    │   └── MissingAPIKeyError             no key (or the placeholder) for a remote base URL
    └── LoopError (also RuntimeError)      a sync call inside a running loop it cannot re-enter

    HolySheepWarning (a UserWarning)       told once, while the run goes on or as it stops

A failure of one row is never an exception: it becomes that row's ``error`` text. A failure
that concerns the whole run (a refused key, no credits, a quota spent, a model that does not
exist, a server that cannot be reached) stops it: answered rows keep their answers, the rest
say ``not sent: <cause>``, and a ``HolySheepWarning`` says what happened and what to do.
``asyncio.CancelledError`` and ``KeyboardInterrupt`` are never caught and always propagate.
"""

from __future__ import annotations


class HolySheepError(Exception):
    """Base class of every error holysheep_nb raises on purpose."""


class ConfigError(HolySheepError, ValueError):
    """An option or the input is unusable; raised before any request is sent."""


class LoopError(HolySheepError, RuntimeError):
    """A synchronous call (``complete()``) inside a running event loop that cannot be made
    re-entrant (uvloop); the message says to ``await`` the async form instead."""


class HolySheepWarning(UserWarning):
    """Something the user should know about a run that still returned its frame: the run
    stopped early, or fell back to asking without structured output."""


class MissingAPIKeyError(ConfigError):
    """No API key is set for a base URL that needs one."""


def redact(text: str, secret: str | None) -> str:
    """Return ``text`` with every occurrence of ``secret`` replaced by ``***``.

    Providers sometimes echo the key back ("Incorrect API key provided: sk-..."); every
    error line passes through here so that it never reaches a cell or a log.
    """
    if not secret:
        return text
    return text.replace(secret, "***")
