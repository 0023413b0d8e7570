"""The one rule for naming result columns: never replace a column of the input.

A result frame is the input's columns plus the run's own (``response``, ``error``, ...,
``label``, extracted fields). When the input already has a column of that name (gold labels
in ``label``, or ``complete()`` run again on an earlier result), the run's column takes the
first free name of ``name_2``, ``name_3``, ... and the input's column is kept as it was.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable


def free_name(wanted: str, taken: Collection[Hashable]) -> str:
    """``wanted``, or ``wanted_2``, ``wanted_3``, ... the first that is not in ``taken``."""
    if wanted not in taken:
        return wanted
    suffix = 2
    while f"{wanted}_{suffix}" in taken:
        suffix += 1
    return f"{wanted}_{suffix}"
