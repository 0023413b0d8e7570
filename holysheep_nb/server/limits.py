"""Provider-style rate limits for the local server: sliding rpm / tpm windows and their headers.

``SlidingWindow`` counts requests or tokens over the last ``window`` seconds like a real
provider; ``limit_headers`` renders the ``x-ratelimit-*`` headers OpenAI sends and
``window_name`` names the window in messages. ``Limits`` charges a server's windows and
turns a full one into a 429.
"""

from __future__ import annotations

import math
import time
from collections import deque

from aiohttp import web

from holysheep_nb.server.faults import decimal_string
from holysheep_nb.server.providers import rate_limited

__all__ = ["Limits", "SlidingWindow", "ceil_ms", "limit_headers", "window_name"]


class SlidingWindow:
    """A provider-style limit: at most ``capacity`` units in any ``window`` seconds.

    Used once for requests (one unit each) and once for tokens. Entries older than the
    window are dropped as time passes, so memory stays bounded by the capacity.
    """

    def __init__(self, per_minute: float, window: float) -> None:
        self.per_minute = per_minute
        self.window = window
        # The epsilon keeps 700 rpm over 0.6 s at 7 requests despite float rounding (6.999...).
        self.capacity = max(1.0, math.floor(per_minute * window / 60.0 + 1e-9))
        self._entries: deque[tuple[float, float]] = deque()
        self._used = 0.0

    def _expire(self, now: float) -> None:
        while self._entries and self._entries[0][0] <= now - self.window:
            self._used -= self._entries.popleft()[1]

    def wait_for(self, now: float, units: float) -> float:
        """Seconds until ``units`` more fit in the window (0.0: they fit now)."""
        self._expire(now)
        if self._used + units <= self.capacity:
            return 0.0
        if units > self.capacity:
            return self.window
        freed = self.capacity - self._used
        for stamp, used in self._entries:
            freed += used
            if freed >= units:
                return stamp + self.window - now
        return self.window

    def record(self, now: float, units: float) -> None:
        """Charge ``units`` at time ``now`` (after ``wait_for`` said they fit)."""
        self._entries.append((now, units))
        self._used += units

    def remaining(self, now: float) -> float:
        """Units still free in the current window."""
        self._expire(now)
        return max(0.0, self.capacity - self._used)

    def reset_after(self, now: float) -> float:
        """Seconds until the oldest entry leaves the window (0.0 when empty)."""
        self._expire(now)
        return self._entries[0][0] + self.window - now if self._entries else 0.0


class Limits:
    """The rpm and tpm windows of one server (either may be absent: no limit)."""

    def __init__(self, rpm: float | None, tpm: float | None, window: float) -> None:
        self.rpm = SlidingWindow(rpm, window) if rpm else None
        self.tpm = SlidingWindow(tpm, window) if tpm else None

    def admit(self, tokens: int, model: str, provider: str) -> dict[str, str] | web.Response:
        """Charge the rpm / tpm windows and return their headers, or the 429 when they are full."""
        headers: dict[str, str] = {}
        if self.rpm is None and self.tpm is None:
            return headers
        now = time.monotonic()
        checks = [
            (w, name, units)
            for w, name, units in ((self.rpm, "requests", 1), (self.tpm, "tokens", tokens))
            if w
        ]
        for window, name, units in checks:
            wait = window.wait_for(now, units)
            if wait > 0:
                headers.update(limit_headers(name, window, now))
                headers["retry-after"] = ceil_ms(max(wait, 0.001))
                used = window.capacity - window.remaining(now)
                message = (
                    f"Rate limit reached for {model} on {name} per "
                    f"{window_name(window.window)}: Limit {window.capacity:g}, Used {used:g}, "
                    f"Requested {units}. Please try again in {headers['retry-after']}s."
                )
                return rate_limited(provider, message, wait, headers, name)
        for window, name, units in checks:
            window.record(now, units)
            headers.update(limit_headers(name, window, now))
        return headers


def limit_headers(name: str, limit: SlidingWindow, now: float) -> dict[str, str]:
    """The ``x-ratelimit-*-<name>`` headers OpenAI sends with every response.

    They describe the window the server really enforces: ``limit`` is what the window holds
    (``--rpm 30 --limit-window 10`` holds 5), ``remaining`` what is left of it and ``reset``
    when its oldest entry leaves, so a client pacing by them never meets a 429.
    """
    return {
        f"x-ratelimit-limit-{name}": decimal_string(limit.capacity),
        f"x-ratelimit-remaining-{name}": decimal_string(math.floor(limit.remaining(now))),
        f"x-ratelimit-reset-{name}": f"{ceil_ms(limit.reset_after(now))}s",
    }


def ceil_ms(seconds: float) -> str:
    """Seconds rounded up to the millisecond, as a short decimal string like ``"0.085"``."""
    return decimal_string(max(0, math.ceil(round(seconds * 1000.0, 6))) / 1000.0)


def window_name(window: float) -> str:
    """How a 429 message names the window: ``"min"`` for 60 s, else e.g. ``"10s"``."""
    return "min" if window == 60.0 else f"{decimal_string(window)}s"
