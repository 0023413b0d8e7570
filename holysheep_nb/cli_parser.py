"""The argument parser of every command: argparse's, and a misspelt flag gets the closest one.

``python -m holysheep_nb label data.csv --max-concurent 8`` says "unrecognized arguments:
--max-concurent 8; did you mean --max-concurrent?" (argparse itself suggests only from
Python 3.14 on, and only for choices and subcommands). A slip of a chat-completions
parameter, which goes in ``--param`` (``--temprature 0``), gets ``--param temperature=...``.
An error is the one line and a pointer to ``--help``: the usage of a command with every
option is some twenty lines, and the hint came after it.
"""

from __future__ import annotations

import argparse
import difflib
import re
from typing import NoReturn

_UNRECOGNIZED = re.compile(r"unrecognized arguments: (.*)")


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose error for an unknown flag names the closest flag."""

    def error(self, message: str) -> NoReturn:
        found = _UNRECOGNIZED.match(message)
        if found is not None:
            flags = [word.split("=", 1)[0] for word in found[1].split() if word.startswith("--")]
            hints = [hint for hint in map(self._closest, flags) if hint is not None]
            if hints:
                message = f"{message}; did you mean {' or '.join(hints)}?"
        self.exit(2, f"{self.prog}: error: {message}\n(see {self.prog} --help)\n")

    def _closest(self, flag: str) -> str | None:
        known = [option for action in self._actions for option in action.option_strings]
        candidates = [(close, _ratio(flag, close)) for close in _close(flag, known)]
        if "--param" in known:  # a chat-completions parameter goes in --param name=value
            name = flag.lstrip("-").replace("-", "_")
            candidates += [
                (f"--param {close}=...", _ratio(name, close)) for close in _close(name, _params())
            ]
        return max(candidates, key=lambda pair: pair[1])[0] if candidates else None


def _close(word: str, names: list[str]) -> list[str]:
    return difflib.get_close_matches(word, names, n=1, cutoff=0.75)


def _ratio(one: str, other: str) -> float:
    return difflib.SequenceMatcher(None, one, other).ratio()


def _params() -> list[str]:
    """The chat-completions parameters ``--param`` takes by name."""
    from dataclasses import fields

    from holysheep_nb.request_params import EXTRAS, RequestParams

    return [item.name for item in fields(RequestParams) if item.name not in EXTRAS]
