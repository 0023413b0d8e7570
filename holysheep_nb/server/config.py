"""The local server's options: ``ServerConfig`` and its answer-delay policy ``Latency``.

Small frozen dataclasses validated in ``__post_init__``; public through ``holysheep_nb.server``.
The fault policy they hold, ``Faults``, lives in ``faults``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from random import Random
from typing import Literal

from holysheep_nb.errors import ConfigError
from holysheep_nb.server.faults import Faults
from holysheep_nb.server.models import SIM_MODELS, SimModel
from holysheep_nb.server.providers import PROVIDERS

__all__ = ["Latency", "ServerConfig"]

# LOW-HIGH, where a "-" right after an exponent's "e" (1e-05) is not the separator.
_UNIFORM = re.compile(r"(.*?[^eE])-(.+)")


@dataclass(frozen=True)
class Latency:
    """Delay before each answer. ``kind`` fixed: ``seconds``; uniform: ``seconds``..``spread``;
    lognormal: median ``seconds``, sigma ``spread``. Build it with the class methods."""

    kind: Literal["fixed", "uniform", "lognormal"] = "fixed"
    seconds: float = 0.0
    spread: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("fixed", "uniform", "lognormal"):
            raise ConfigError(
                f"latency kind must be fixed, uniform or lognormal, not {self.kind!r}"
            )
        if not self.seconds >= 0.0 or not self.spread >= 0.0:
            raise ConfigError(f"latency values must be >= 0 seconds, got {self}")
        if self.kind == "uniform" and self.spread < self.seconds:
            raise ConfigError(f"uniform latency needs low <= high, got {self}")
        if self.kind == "lognormal" and self.seconds == 0.0:
            raise ConfigError("lognormal latency needs a median > 0 seconds")

    @classmethod
    def fixed(cls, seconds: float) -> Latency:
        """Every answer waits exactly ``seconds``."""
        return cls("fixed", seconds)

    @classmethod
    def uniform(cls, low: float, high: float) -> Latency:
        """Each answer waits a uniformly drawn ``low``..``high`` seconds."""
        return cls("uniform", low, high)

    @classmethod
    def lognormal(cls, median: float, sigma: float) -> Latency:
        """Each answer waits a lognormal draw: a long tail, like a real provider."""
        return cls("lognormal", median, sigma)

    @classmethod
    def parse(cls, spec: str) -> Latency:
        """Read the CLI form: ``0.1`` fixed, ``0.01-0.05`` uniform, ``lognormal:0.1:1.0``."""
        try:
            if spec.startswith("lognormal:"):
                _, median, sigma = spec.split(":")
                return cls.lognormal(float(median), float(sigma))
            uniform = _UNIFORM.fullmatch(spec)
            if uniform:
                return cls.uniform(float(uniform[1]), float(uniform[2]))
            return cls.fixed(float(spec))
        except ConfigError:
            raise
        except ValueError:
            raise ConfigError(
                f"bad latency {spec!r}; use 0.1, 0.01-0.05 or lognormal:0.1:1.0"
            ) from None

    def __str__(self) -> str:
        if self.kind == "fixed":
            return repr(self.seconds)
        if self.kind == "uniform":
            return f"{self.seconds!r}-{self.spread!r}"
        return f"lognormal:{self.seconds!r}:{self.spread!r}"

    def sample(self, rng: Random) -> float:
        """Draw one delay in seconds."""
        if self.kind == "fixed":
            return self.seconds
        if self.kind == "uniform":
            return rng.uniform(self.seconds, self.spread)
        return rng.lognormvariate(math.log(self.seconds), self.spread)


@dataclass(frozen=True)
class ServerConfig:
    """Every option of the local server; swap it at runtime with ``update(**changes)``.

    ``provider``: the personality whose quirks the server imitates (``providers.PROVIDERS``).
    ``models``: the only model ids (Azure: deployments) accepted, or None to accept any.
    ``always_stream``: answer every chat request as a server-sent event stream, asked or not.
    ``batches``: serve ``/v1/files`` and ``/v1/batches`` (False: 404, a provider without).
    A batch is done once retrieved ``batch_polls`` times and ``batch_seconds`` after its
    creation, and expires unfinished ``batch_expiry`` seconds after it; an input file over
    ``batch_max_requests`` lines or ``batch_max_bytes`` bytes fails the batch (OpenAI's limits
    by default). See ``batches``. ``batch_token_limit``: the input tokens of one model's
    batches still in progress at once (OpenAI's enqueued-token limit), None for none.
    ``max_in_flight``: requests answered at once; one more is a 429 without headers (a
    provider's concurrency cap), None for none.
    by default). See ``batches``.
    ``sim_models``: the simulated models (``models.SimModel``) answered by name; any other
    model gets the rule-based answers, but for an unlisted ``sim-`` name: 404, as for a
    model that does not exist (a typo must not pass for the model of known quality).
    ``SIM_MODELS`` (``sim-small``, ``sim-large``) by default.
    """

    latency: Latency = Latency()
    faults: Faults = field(default_factory=Faults)
    seed: int = 0
    echo: bool = False
    digest: bool = False
    off_label_rate: float = 0.0
    api_key: str | None = field(default=None, repr=False)
    #: Azure personality: also accept ``Authorization: Bearer <this>`` (a Microsoft Entra ID
    #: token, as the openai client sends ``azure_ad_token``); None: only the api-key header.
    azure_ad_token: str | None = field(default=None, repr=False)
    rpm: float | None = None
    tpm: float | None = None
    limit_window: float = 60.0
    retry_after: float = 1.0
    hang_seconds: float = 300.0
    record_times: bool = False
    provider: str = "openai"
    models: tuple[str, ...] | None = None
    always_stream: bool = False
    batches: bool = True
    batch_polls: int = 0
    batch_seconds: float = 0.0
    batch_expiry: float = 24 * 3600.0
    batch_max_requests: int = 50_000
    batch_max_bytes: int = 200 * 1024 * 1024
    batch_token_limit: int | None = None
    max_in_flight: int | None = None
    sim_models: tuple[SimModel, ...] = SIM_MODELS

    def __post_init__(self) -> None:
        if self.provider not in PROVIDERS:
            raise ConfigError(f"unknown provider {self.provider!r}; known: {', '.join(PROVIDERS)}")
        if self.models is not None:
            models: object = self.models
            if isinstance(models, str) or not all(isinstance(m, str) and m for m in self.models):
                raise ConfigError(f"models must be model ids (strings), got {self.models!r}")
            object.__setattr__(self, "models", tuple(self.models))
        if not isinstance(self.latency, Latency):
            raise ConfigError(
                f"latency must be a Latency, e.g. Latency.fixed(0.1); got {self.latency!r}"
            )
        if not isinstance(self.faults, Faults):
            raise ConfigError(
                f"faults must be a Faults, e.g. Faults({{'429': 0.1}}); got {self.faults!r}"
            )
        if not 0.0 <= self.off_label_rate <= 1.0:
            raise ConfigError(f"off_label_rate must be in [0, 1], got {self.off_label_rate!r}")
        for name in ("rpm", "tpm"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"{name} must be > 0 or None (no limit), got {value!r}")
        if not self.limit_window > 0:
            raise ConfigError(f"limit_window must be > 0 seconds, got {self.limit_window!r}")
        if not self.retry_after >= 0:
            raise ConfigError(f"retry_after must be >= 0 seconds, got {self.retry_after!r}")
        if not self.hang_seconds >= 0:
            raise ConfigError(f"hang_seconds must be >= 0, got {self.hang_seconds!r}")
        for name in ("batch_polls", "batch_seconds", "batch_expiry"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        for name in ("batch_max_requests", "batch_max_bytes"):
            if not getattr(self, name) >= 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("batch_token_limit", "max_in_flight"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int) and value >= 1):
                raise ConfigError(f"{name} must be an integer >= 1 or None, got {value!r}")
        sims: object = self.sim_models
        if not isinstance(sims, (tuple, list)) or not all(isinstance(m, SimModel) for m in sims):
            raise ConfigError(f"sim_models must be SimModel specs, got {sims!r}")
        names = [m.name for m in sims]
        if len(set(names)) != len(names):
            raise ConfigError(f"sim_models names must be unique, got {names}")
        object.__setattr__(self, "sim_models", tuple(sims))

    def sim_model(self, name: str) -> SimModel | None:
        """The simulated model called ``name``, or None (rule-based answers)."""
        for model in self.sim_models:
            if model.name == name:
                return model
        return None
