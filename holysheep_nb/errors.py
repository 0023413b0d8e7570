"""The one exception hierarchy of holysheep_nb.

    HolySheepError
    └── ConfigError (also ValueError)      bad option or input, raised before anything is sent
        └── MissingAPIKeyError             no key (or the placeholder) for a remote base URL

A failure of one row is never an exception: it becomes that row's ``error`` text, and a
401/403 ends the run with an error on every row not yet answered.
``asyncio.CancelledError`` and ``KeyboardInterrupt`` are never caught and always propagate.
"""

from __future__ import annotations


class HolySheepError(Exception):
    """Base class of every error holysheep_nb raises on purpose."""


class ConfigError(HolySheepError, ValueError):
    """An option or the input is unusable; raised before any request is sent."""


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
