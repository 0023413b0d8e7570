"""Simulated models of known quality: ``SimModel``, the shipped ``SIM_MODELS``, JSON specs.

A simulated model answers sentiment labelling (and the sentiment, product, stars and aspect
fields of an extraction) on the sample reviews as a model of known quality would: right with
a per-row probability, wrong in its own pattern, with a confidence that is calibrated or
over-confident, and sensitive to the prompt in a few documented ways (``simulate``). For
other texts the truth is the server's rule-based label. ``docs/server.md`` has the table.

How a row's chance of being right is built (``logit`` is the log-odds):

    logit = base + discrimination * z_row - hard_penalty * (hard row, not defined by the
            instructions) * (1 - instruction_gain) ... + example gains

``z_row`` is a standard normal draw fixed by the text (half shared by every model, half the
model's own), so some rows are hard and a model's confidence says which; ``base`` is solved
(``simulate``) so that the mean chance over 10,000 sample rows is ``accuracy``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from holysheep_nb.errors import ConfigError

__all__ = ["DEFAULT_CONFUSION", "SIM_MODELS", "SimModel"]

#: For each true label, how a model's wrong answers are shared among the other labels.
DEFAULT_CONFUSION: Mapping[str, Mapping[str, float]] = {
    "positive": {"neutral": 0.8, "negative": 0.2},
    "negative": {"neutral": 0.7, "positive": 0.3},
    "neutral": {"positive": 0.6, "negative": 0.4},
}


@dataclass(frozen=True)
class SimModel:
    """One simulated model (units: probabilities in [0, 1], logits in log-odds, prices in
    dollars per 1,000 tokens).

    ``accuracy``: mean chance of the right sentiment on the sample, asked plainly (the three
    labels, no definition of the hard cases, no examples). ``discrimination``: spread of the
    per-row log-odds; larger makes confidence more informative (higher AUROC).
    ``hard_penalty``: log-odds lost on mixed and sarcastic reviews; instructions that define
    the case win back ``instruction_gain`` of it. ``overconfidence``: log-odds added to the
    confidence it reports (0: well calibrated). ``confusion``: where wrong answers go.
    ``example_gain`` / ``similar_example_gain``: log-odds gained with few-shot examples, the
    latter times the cosine similarity of the closest example to the row.
    ``off_set_rate``: when the label set lacks the true label, the chance of answering it
    anyway (off the set) rather than the nearest label in the set. ``prompt_noise``: the sd
    of the log-odds nudge the prompt's exact wording gives each row, so that rewording the
    instructions changes the answers on rows the model was unsure of.
    ``field_error_rate``: chance that an extracted product / stars / aspect is wrong
    (``field_error_rates`` per field name overrides it). ``input_per_1k`` /
    ``output_per_1k``: its price. ``latency_factor``: the server's latency draw is
    multiplied by it.
    """

    name: str
    accuracy: float
    discrimination: float = 1.0
    hard_penalty: float = 2.5
    overconfidence: float = 0.0
    confusion: Mapping[str, Mapping[str, float]] = field(default_factory=lambda: DEFAULT_CONFUSION)
    instruction_gain: float = 1.0
    example_gain: float = 0.3
    similar_example_gain: float = 1.5
    off_set_rate: float = 0.2
    prompt_noise: float = 0.4
    field_error_rate: float = 0.05
    field_error_rates: Mapping[str, float] = field(default_factory=dict)
    input_per_1k: float = 0.0
    output_per_1k: float = 0.0
    latency_factor: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"a simulated model needs a name, got {self.name!r}")
        for name in ("accuracy", "instruction_gain", "off_set_rate", "field_error_rate"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ConfigError(f"{self.name}: {name} must be in [0, 1], got {value!r}")
        if not 0.0 < self.accuracy < 1.0:
            raise ConfigError(f"{self.name}: accuracy must be strictly between 0 and 1")
        for name in ("discrimination", "hard_penalty", "example_gain", "similar_example_gain",
                     "prompt_noise", "input_per_1k", "output_per_1k",
                     "latency_factor"):  # fmt: skip
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not value >= 0.0:
                raise ConfigError(f"{self.name}: {name} must be a number >= 0, got {value!r}")
        if not isinstance(self.overconfidence, (int, float)) or not math.isfinite(
            self.overconfidence
        ):
            raise ConfigError(f"{self.name}: overconfidence must be a number (log-odds)")
        for rate in self.field_error_rates.values():
            if not 0.0 <= rate <= 1.0:
                raise ConfigError(f"{self.name}: field_error_rates must be in [0, 1]")
        for weights in self.confusion.values():
            if any(not w >= 0 for w in weights.values()):
                raise ConfigError(f"{self.name}: confusion weights must be >= 0")

    @property
    def calibration(self) -> str:
        """``well calibrated``, or how over- (under-) confident it is in log-odds."""
        if self.overconfidence == 0:
            return "well calibrated"
        word = "over-confident" if self.overconfidence > 0 else "under-confident"
        return f"{word} ({self.overconfidence:+g} log-odds)"

    def field_error(self, name: str) -> float:
        """The error rate of one extracted field (by its lower-cased name)."""
        return self.field_error_rates.get(name, self.field_error_rate)

    def to_json(self) -> dict[str, Any]:
        """The spec as JSON-ready data (``from_json`` reads it back)."""
        data = asdict(self)
        data["confusion"] = {k: dict(v) for k, v in self.confusion.items()}
        data["field_error_rates"] = dict(self.field_error_rates)
        return data

    @classmethod
    def from_json(cls, data: object) -> SimModel:
        """A model from a JSON object of its fields (``name`` and ``accuracy`` required).

        Raises ``ConfigError`` for an unknown field or a bad value.
        """
        if not isinstance(data, dict):
            raise ConfigError(f"a simulated model spec is a JSON object, got {data!r}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown simulated model field(s) {', '.join(unknown)}; known: "
                + ", ".join(sorted(known))
            )
        if "name" not in data or "accuracy" not in data:
            raise ConfigError("a simulated model spec needs at least name and accuracy")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ConfigError(f"bad simulated model spec: {exc}") from None


SIM_MODELS: tuple[SimModel, ...] = (
    SimModel(
        name="sim-small",
        accuracy=0.80,
        discrimination=0.5,
        hard_penalty=3.0,
        overconfidence=1.5,
        instruction_gain=0.8,
        example_gain=0.3,
        similar_example_gain=1.0,
        off_set_rate=0.3,
        prompt_noise=0.5,
        field_error_rate=0.10,
        input_per_1k=0.00015,
        output_per_1k=0.0006,
        latency_factor=1.0,
    ),
    SimModel(
        name="sim-large",
        accuracy=0.94,
        discrimination=1.3,
        hard_penalty=2.5,
        overconfidence=0.0,
        instruction_gain=1.0,
        example_gain=0.2,
        similar_example_gain=0.8,
        off_set_rate=0.1,
        prompt_noise=0.3,
        field_error_rate=0.02,
        input_per_1k=0.0015,
        output_per_1k=0.006,
        latency_factor=3.0,
    ),
)
"""The models every server simulates unless ``ServerConfig(sim_models=...)`` says otherwise:
``sim-small`` (about 0.80, over-confident, cheap, fast) and ``sim-large`` (about 0.94, well
calibrated, 10x the price, 3x the latency)."""
