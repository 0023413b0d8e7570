"""The checks every option shares: a real number (never a bool, never NaN or infinite).

``True`` is an ``int`` to Python, so ``max_retries=True`` would otherwise pass as 1; NaN
compares false with everything, so ``timeout=float("nan")`` would pass a ``> 0`` test. Each
option module calls these instead of writing the test again; the ``require_*`` forms raise
``ConfigError`` with the one message format the options share.
"""

from __future__ import annotations

import math
from typing import TypeGuard

from holysheep_nb.errors import ConfigError


def is_whole(value: object) -> TypeGuard[int]:
    """True for an ``int`` that is not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_finite_number(value: object) -> TypeGuard[int | float]:
    """True for an ``int`` or ``float`` that is neither a ``bool`` nor NaN nor infinite."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def require_positive(name: str, value: object, example: str) -> None:
    """Raise ``ConfigError`` unless ``value`` is a finite number above 0."""
    if not is_finite_number(value) or value <= 0:
        raise ConfigError(f"{name} must be a positive number, got {value!r}: pass e.g. {example}")


def require_whole_at_least(name: str, value: object, minimum: int, example: str) -> None:
    """Raise ``ConfigError`` unless ``value`` is a whole number of at least ``minimum``."""
    if not is_whole(value) or value < minimum:
        raise ConfigError(
            f"{name} must be a whole number >= {minimum}, got {value!r}: pass e.g. {example}"
        )
