"""The argument parser of every command: argparse's, and a misspelt flag gets the closest one.

``python -m holysheep_nb label data.csv --max-concurent 8`` says "unrecognized arguments:
--max-concurent 8; did you mean --max-concurrent?" (argparse itself suggests only from
Python 3.14 on, and only for choices and subcommands).
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
        super().error(message)

    def _closest(self, flag: str) -> str | None:
        known = [option for action in self._actions for option in action.option_strings]
        close = difflib.get_close_matches(flag, known, n=1, cutoff=0.75)
        return close[0] if close else None
