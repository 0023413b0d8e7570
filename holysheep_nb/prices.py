"""What the provider charges, to put a cost on the estimate and the report.

A value of its own (not part of the report) so the options and the estimate can name it
without loading pandas.
"""

from __future__ import annotations

from dataclasses import dataclass

from holysheep_nb.errors import ConfigError
from holysheep_nb.validation import is_finite_number


@dataclass(frozen=True)
class Prices:
    """What the provider charges, in USD per 1,000 tokens, to put a cost on the report."""

    input_per_1k: float
    output_per_1k: float

    def __post_init__(self) -> None:
        for name in ("input_per_1k", "output_per_1k"):
            value = getattr(self, name)
            if not is_finite_number(value) or value < 0:
                raise ConfigError(
                    f"Prices.{name} must be a number >= 0 (USD per 1,000 tokens), got {value!r}:"
                    " pass e.g. Prices(input_per_1k=0.002, output_per_1k=0.008)"
                )
