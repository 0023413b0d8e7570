"""How hard to push an endpoint: concurrency, timeout, retries and client-side rate limits.

Every policy is a small frozen dataclass validated on creation, so a bad option fails with a
message naming the value and the fix before anything is sent. The accessor's keyword options
are these fields (declared with ``option``: their defaults are written here only), and each
policy object is itself an option: ``retry=RetryPolicy(...)``, ``limits=RateLimits(...)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from holysheep_nb.errors import ConfigError
from holysheep_nb.option import Flag, example, option
from holysheep_nb.validation import require_positive, require_whole_at_least

#: Seconds of a rate limit's worth added to the default burst (see ``RateLimits``).
LATENESS_ALLOWANCE = 0.02


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, capped; a server hint replaces the backoff.

    Up to ``max_retries + 1`` attempts. The n-th retry waits a uniform random time in
    ``[0, min(max_wait, initial_wait * 2**(n-1))]``; a ``Retry-After`` hint is obeyed instead,
    up to ``max_retry_after`` seconds.
    """

    max_retries: int = option(5, "retries after the first attempt, for timeouts, 429s and 5xx")
    initial_wait: float = option(0.5, "seconds: the first retry's longest backoff, doubling")
    max_wait: float = option(30.0, "seconds: the longest backoff between two attempts")
    max_retry_after: float = option(
        120.0, "seconds: the longest Retry-After the run waits; beyond it the run stops"
    )

    def __post_init__(self) -> None:
        require_whole_at_least(
            "max_retries", self.max_retries, 0, example(RetryPolicy, "max_retries")
        )
        for name in ("initial_wait", "max_wait", "max_retry_after"):
            require_positive(name, getattr(self, name), example(RetryPolicy, name))
        if self.max_wait < self.initial_wait:
            raise ConfigError(
                f"max_wait ({self.max_wait}) must be >= initial_wait ({self.initial_wait})"
            )

    @property
    def max_attempts(self) -> int:
        """Attempts in all, the first one included."""
        return self.max_retries + 1


@dataclass(frozen=True)
class RateLimits:
    """Client-side limits: requests and tokens per minute, each with a burst allowance.

    Over any window of T seconds the sends stay below ``rate * T + burst``. The burst defaults
    to one unit plus ``LATENESS_ALLOWANCE`` seconds' worth of the rate: close to pure pacing,
    because providers count over sliding windows and a client that starts with a second's
    worth of burst is over their limit in its first window however well it paces after; the
    allowance lets a send that the event loop woke a little late be made up by the next one
    instead of being lost (at 20 requests/s, 1 ms of lateness per send would cost 2%).
    """

    requests_per_minute: float | None = option(
        None, "client-side budget of requests a minute", flags=(Flag(("--rpm",), metavar="N"),)
    )
    tokens_per_minute: float | None = option(
        None, "client-side budget of tokens a minute", flags=(Flag(("--tpm",), metavar="N"),)
    )
    request_burst: float | None = option(
        None, "requests sent at once above the pace (none: one plus 20 ms of the rate)"
    )
    token_burst: float | None = option(
        None, "tokens sent at once above the pace (none: one plus 20 ms of the rate)"
    )

    def __post_init__(self) -> None:
        for name in ("requests_per_minute", "tokens_per_minute", "request_burst", "token_burst"):
            value = getattr(self, name)
            if value is not None:
                require_positive(name, value, f"{name}=600 (or None for no limit)")

    @property
    def request_capacity(self) -> float | None:
        """The request bucket's size, or None when requests are not limited."""
        return _capacity(self.requests_per_minute, self.request_burst)

    @property
    def token_capacity(self) -> float | None:
        """The token bucket's size, or None when tokens are not limited."""
        return _capacity(self.tokens_per_minute, self.token_burst)


def _capacity(per_minute: float | None, burst: float | None) -> float | None:
    if per_minute is None:
        return None
    return burst if burst is not None else 1.0 + per_minute / 60.0 * LATENESS_ALLOWANCE


@dataclass(frozen=True)
class EngineSettings:
    """How one run behaves: concurrency bound, per-attempt timeout, retries and rate limits."""

    max_concurrent: int = option(
        16, 'requests in flight at most; the run may use fewer (docs/contract.md, "Rate limits")'
    )
    timeout: float = option(60.0, "seconds per attempt", flags=(Flag(metavar="SECONDS"),))
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    limits: RateLimits = field(default_factory=RateLimits)

    def __post_init__(self) -> None:
        for name, kind in (("retry", RetryPolicy), ("limits", RateLimits)):
            if not isinstance(getattr(self, name), kind):
                value = getattr(self, name)
                raise ConfigError(
                    f"{name} must be a {kind.__name__}, got {type(value).__name__}: pass e.g. "
                    f"{name}={kind.__name__}()"
                )
        require_whole_at_least(
            "max_concurrent", self.max_concurrent, 1, example(EngineSettings, "max_concurrent")
        )
        require_positive(
            "timeout", self.timeout, f"{example(EngineSettings, 'timeout')} (seconds per attempt)"
        )
