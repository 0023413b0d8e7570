"""Messages written for Python callers, reworded for the command line.

The library's errors and warnings advise in Python (``logprobs=True``, ``cache=False``,
``extra_body={'top_k': 40}``); a command prints them through ``for_cli`` so that the advice
is a flag the user can type (``--param logprobs=true``, ``--no-cache``,
``--param 'extra_body={"top_k": 40}'``). The phrases are the library's own, word for word: a
test holds each to the message that carries it.
"""

from __future__ import annotations

import re

#: Python phrase -> command-line phrase.
PHRASES = (
    ("label with logprobs=True", "label with --param logprobs=true"),
    ("(or pass confidence='column')", "(or name the column with --confidence COLUMN)"),
    ("pass cache=False to ask again", "label again with --no-cache to ask again"),
)

# ``extra_body={'top_k': 40}`` (a value shown only when it is a number, else ``...``).
_EXTRA_BODY = re.compile(r"extra_body=\{'([^']*)': ([^{}]*)\}")


def for_cli(message: str) -> str:
    """``message`` with its Python advice put as command-line flags."""
    for python, cli in PHRASES:
        message = message.replace(python, cli)
    return _EXTRA_BODY.sub(_extra_body_flag, message)


def _extra_body_flag(match: re.Match[str]) -> str:
    name, value = match.groups()
    shown = "VALUE" if value == "..." else value
    return f"--param 'extra_body={{\"{name}\": {shown}}}'"
