"""The dry run: what a labelling run will send, take and cost, before anything is sent.

The counts and input tokens come from ``CompletionJob.plan`` (the real prompts against the
real cache). Time is the slowest of three bounds: the concurrency (whole rounds of
``max_concurrent`` requests, each round one latency), the requests-per-minute limit and the
tokens-per-minute limit (each after its initial burst, plus the last request's latency).
Latency is an assumption the caller can tighten with a small real run first. The time
assumes no 429s: a provider that refuses requests (a spent budget, a cap on requests in
flight it does not announce) makes the run slower, and the run report says by how much.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from holysheep_nb._render import Sections, render_html, render_text
from holysheep_nb.errors import ConfigError
from holysheep_nb.policies import EngineSettings
from holysheep_nb.prices import Prices
from holysheep_nb.validation import is_finite_number

if TYPE_CHECKING:
    from holysheep_nb.job import RunPlan

T = TypeVar("T", int, float)

#: Seconds per request assumed when the caller gives none: a short chat completion.
DEFAULT_LATENCY = 1.0
#: Seconds a batch may take: the Batch API's completion window.
BATCH_WINDOW = 24 * 3600.0


@dataclass(frozen=True, kw_only=True)
class Estimate:
    """Rows to send, tokens, time and cost of a run that has not happened."""

    rows: int
    to_send: int
    cached: int
    missing: int
    deduplicated: int  # rows asking exactly what another row asks: sent once for all of them
    input_tokens: int
    output_tokens: int | None  # None: unknown (no max_tokens, output_tokens or label set)
    seconds: float
    limited_by: str  # "concurrency", "requests_per_minute" or "tokens_per_minute"
    latency: float  # the per-request latency assumed
    cost: float | None  # USD; input only when output_tokens is None
    batch: bool = False  # through the provider's Batch API: batch price, up to 24 h
    images: int = 0  # images in the rows to send, their tokens in input_tokens
    unsized_images: int = 0  # of those, by URL: size unknown, counted at 85 tokens each
    #: Rows never sent because of an image, by problem: (``"image file not found"``, rows).
    bad_images: tuple[tuple[str, int], ...] = ()

    @classmethod
    def of(
        cls,
        plan: RunPlan,
        settings: EngineSettings,
        *,
        latency: float = DEFAULT_LATENCY,
        output_tokens_per_row: int | None = None,
        prices: Prices | None = None,
        batch: bool = False,
    ) -> Estimate:
        """Combine a plan with the run's policies into an estimate.

        ``batch``: the run goes through the provider's Batch API, so the cost is at the
        batch price (``Prices.batch_discount``) and the time is its completion window, 24 h
        at most; nothing about concurrency or rate limits applies.
        """
        if not is_finite_number(latency) or latency <= 0:
            raise ConfigError(
                f"latency must be a positive number of seconds, got {latency!r}: pass e.g. "
                "latency=out.latency.median() from a small run such as df.head(50)"
            )
        output = None if output_tokens_per_row is None else output_tokens_per_row * plan.to_send
        limited_by, seconds = _time(
            plan.to_send, plan.input_tokens + (output or 0), settings, latency
        )
        if batch:
            limited_by, seconds = "batch", BATCH_WINDOW
            prices = prices.for_batch() if prices is not None else None
        cost = None
        if prices is not None:
            cost = plan.input_tokens * prices.input_per_1k + (output or 0) * prices.output_per_1k
            cost /= 1000
        return cls(
            rows=plan.rows,
            to_send=plan.to_send,
            cached=plan.cached,
            missing=plan.missing,
            deduplicated=plan.deduplicated,
            input_tokens=plan.input_tokens,
            output_tokens=output,
            seconds=seconds,
            limited_by=limited_by,
            latency=float(latency),
            cost=cost,
            batch=batch,
            images=plan.images,
            unsized_images=plan.unsized_images,
            bad_images=plan.bad_images,
        )

    @classmethod
    def combine(cls, parts: Sequence[Estimate], settings: EngineSettings) -> Estimate:
        """One estimate for a run made of ``parts``, each estimated where its rows are (a
        Dask collection's partitions), under one set of limits for the whole run.

        Rows, tokens, images and cost add up; the time is that of all the rows to send under
        ``settings`` (the cluster's ``max_concurrent`` and rate limits hold for the whole run)
        at the parts' assumed latency. Repeats are counted within each part, as each part's
        run finds them. Raises ``ConfigError`` for no parts.
        """
        if not parts:
            raise ConfigError("Estimate.combine() needs at least one estimate")
        first = parts[0]
        to_send = sum(part.to_send for part in parts)
        input_tokens = sum(part.input_tokens for part in parts)
        output = _total([part.output_tokens for part in parts])
        limited_by, seconds = _time(to_send, input_tokens + (output or 0), settings, first.latency)
        bad_images: Counter[str] = Counter()
        for part in parts:
            bad_images.update(dict(part.bad_images))
        return cls(
            rows=sum(part.rows for part in parts),
            to_send=to_send,
            cached=sum(part.cached for part in parts),
            missing=sum(part.missing for part in parts),
            deduplicated=sum(part.deduplicated for part in parts),
            input_tokens=input_tokens,
            output_tokens=output,
            seconds=seconds,
            limited_by=limited_by,
            latency=first.latency,
            cost=_total([part.cost for part in parts]),
            images=sum(part.images for part in parts),
            unsized_images=sum(part.unsized_images for part in parts),
            bad_images=tuple(bad_images.most_common()),
        )

    def __str__(self) -> str:
        """The estimate as aligned text."""
        return render_text(*self._sections())

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """IPython's plain-text display."""
        printer.text(str(self))

    def _repr_html_(self) -> str:
        """The estimate as an HTML table in Jupyter."""
        return render_html(*self._sections(), css_class="holysheep-estimate")

    def to_dict(self) -> dict[str, Any]:
        """The estimate as a plain dict (``bad_images`` as ``{problem: rows}``)."""
        out = {name: getattr(self, name) for name in self.__dataclass_fields__}
        out["bad_images"] = dict(self.bad_images)
        return out

    def _sections(self) -> tuple[str, Sections]:
        title = f"holysheep_nb estimate (nothing sent): {self.to_send:,} of {self.rows:,} rows"
        output = "unknown" if self.output_tokens is None else f"{self.output_tokens:,}"
        rows = [
            ("rows to send", f"{self.to_send:,}", ""),
            ("cached", f"{self.cached:,}", "(answered from the cache, free)"),
            ("no prompt", f"{self.missing:,}", "(missing value: never sent)"),
            ("tokens in/out", f"{self.input_tokens:,} / {output}", "(estimated, 4 chars a token)"),
            ("time", _duration(self.seconds), f"(bound: {self.limited_by.replace('_', ' ')}, "
             f"{self.latency:g} s a request assumed, no 429s)"),
        ]  # fmt: skip
        if self.deduplicated:
            repeats = (
                "repeats",
                f"{self.deduplicated:,}",
                "(same request as another row: asked once)",
            )
            rows.insert(3, repeats)
        if self.images:
            rows.insert(-1, ("images", f"{self.images:,}", _images_note(self.unsized_images)))
        if self.bad_images:
            # Found before paying: the same rows fail the run with the file named.
            count = sum(n for _, n in self.bad_images)
            why = ", ".join(f"{problem}: {n:,}" for problem, n in self.bad_images)
            rows.insert(3, ("bad image", f"{count:,}", f"({why}; never sent)"))
        if self.batch:
            rows[-1] = ("time", "up to 24 h", "(the Batch API's completion window; often sooner)")
        if self.cost is not None:
            note = (
                "(input only: pass output_tokens=... or max_tokens=...)"
                if (self.output_tokens is None)
                else ""
            )
            if self.batch:
                note = f"{note} (batch price)".strip()
            rows.append(("cost", f"${self.cost:,.4f}", note))
        return title, [("", rows)]


def _images_note(unsized: int) -> str:
    note = "(OpenAI's tile rule, in tokens in"
    if unsized:
        note += f"; {unsized:,} by URL of unknown size counted at 85 tokens each"
    return note + ")"


def _time(to_send: int, tokens: int, settings: EngineSettings, latency: float) -> tuple[str, float]:
    """``(the bound that limits the run, its seconds)`` for ``to_send`` requests of
    ``tokens`` in all (in and out): whole rounds of ``max_concurrent`` requests, each one
    latency long; under a rate limit, the last send's time plus its own latency."""
    limits = settings.limits
    last = latency if to_send else 0.0
    bounds = {"concurrency": math.ceil(to_send / settings.max_concurrent) * latency}
    if limits.requests_per_minute is not None:
        bounds["requests_per_minute"] = last + _after_burst(
            to_send, limits.request_capacity, limits.requests_per_minute
        )
    if limits.tokens_per_minute is not None:
        bounds["tokens_per_minute"] = last + _after_burst(
            tokens, limits.token_capacity, limits.tokens_per_minute
        )
    limited_by = max(bounds, key=bounds.__getitem__)
    return limited_by, bounds[limited_by]


def _total(values: Sequence[T | None]) -> T | None:
    """The sum of ``values``, or None when they are unknown (None)."""
    known = [value for value in values if value is not None]
    return None if not known else sum(known[1:], known[0])


def _after_burst(amount: float, capacity: float | None, per_minute: float) -> float:
    """Seconds to pass ``amount`` through a bucket that starts full at ``capacity``."""
    return max(0.0, amount - (capacity or 0.0)) * 60.0 / per_minute


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {rest:02d} s"
