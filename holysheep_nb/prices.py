"""What the provider charges, to put a cost on the estimate and the report.

A value of its own (not part of the report) so the options and the estimate can name it
without loading pandas.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from holysheep_nb.errors import ConfigError
from holysheep_nb.validation import is_finite_number


@dataclass(frozen=True)
class Prices:
    """What the provider charges, in USD per 1,000 tokens, to put a cost on the report.

    ``batch_discount`` is the share of these prices the provider's Batch API charges
    (OpenAI documents half: 0.5); ``batch=True`` runs and estimates are priced with it.
    """

    input_per_1k: float
    output_per_1k: float
    batch_discount: float = 0.5

    def __post_init__(self) -> None:
        if not is_finite_number(self.batch_discount) or not 0 < self.batch_discount <= 1:
            raise ConfigError(
                f"Prices.batch_discount must be a share in (0, 1] of the online price, got "
                f"{self.batch_discount!r}: pass e.g. batch_discount=0.5 for half price"
            )
        for name in ("input_per_1k", "output_per_1k"):
            value = getattr(self, name)
            if not is_finite_number(value) or value < 0:
                raise ConfigError(
                    f"Prices.{name} must be a number >= 0 (USD per 1,000 tokens), got {value!r}:"
                    " pass e.g. Prices(input_per_1k=0.002, output_per_1k=0.008)"
                )

    @classmethod
    def of(cls, value: object) -> Prices | None:
        """The ``prices=`` option as ``Prices``: a ``Prices``, an ``(input, output)`` pair of
        USD per 1,000 tokens, or None (no cost); a ``ConfigError`` for anything else."""
        if value is None or isinstance(value, Prices):
            return value
        if isinstance(value, (tuple, list)) and len(value) == 2:
            return cls(*value)
        raise ConfigError(
            f"prices must be Prices(input_per_1k=..., output_per_1k=...) or a pair of USD per "
            f"1,000 tokens such as (0.15, 0.6), got {value!r}"
        )

    @classmethod
    def parse(cls, text: str) -> Prices:
        """``--prices IN,OUT``: two numbers, USD per 1,000 input and output tokens; a
        ``ValueError`` saying how to write them otherwise."""
        try:
            first, second = (float(part) for part in text.split(","))
            return cls(first, second)
        except (ValueError, ConfigError):
            raise ValueError(
                f"{text!r}: give two numbers, input and output USD per 1,000 tokens, e.g. 0.15,0.6"
            ) from None

    def for_batch(self) -> Prices:
        """These prices as the Batch API charges them (times ``batch_discount``)."""
        return replace(
            self,
            input_per_1k=self.input_per_1k * self.batch_discount,
            output_per_1k=self.output_per_1k * self.batch_discount,
            batch_discount=1.0,
        )
