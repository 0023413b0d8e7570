"""A local OpenAI-compatible chat-completions server for tests, notebooks, the demo and benchmarks.

It answers deterministically with a small rule-based labeller, with settable latency, injected
faults (``_server_faults``: by rate or by a ``{{fault:KIND*N}}`` prompt marker) and
provider-style rpm / tpm limits, so a full labelling run works with no key and no internet.

Three ways to run it, one service behind them all:
    ``await start_server(config)``  on the current event loop (async tests)
    ``LocalServer(config)``         in a background thread with its own loop (notebooks)
    ``ServerProcess(config)``       in a subprocess via ``cli`` (benchmarks: no shared GIL)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import itertools
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from random import Random
from types import TracebackType
from typing import IO, Any, Literal, NoReturn, TypeVar

from aiohttp import web

from holysheep_nb._server_faults import (
    FAULT_KINDS,
    Faults,
    SlidingWindow,
    ceil_ms,
    error_response,
    fault_response,
    json_response,
    limit_headers,
    parse_marker,
    unauthorized,
)
from holysheep_nb.errors import ConfigError

__all__ = [
    "FAULT_KINDS",
    "Faults",
    "Latency",
    "LocalServer",
    "RunningServer",
    "ServerConfig",
    "ServerProcess",
    "cli",
    "config_args",
    "estimate_tokens",
    "parse_cli",
    "prompt_digest",
    "start_server",
]

# LOW-HIGH, where a "-" right after an exponent's "e" (1e-05) is not the separator.
_UNIFORM = re.compile(r"(.*?[^eE])-(.+)")
_MODELS = ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "deepseek-v3", "claude-sonnet-4")
_T = TypeVar("_T")


def estimate_tokens(text: str) -> int:
    """Rough token count, ``ceil(len(text) / 4)``: the server's ``usage`` and client estimates."""
    return -(-len(text) // 4)


def prompt_digest(text: str) -> str:
    """First 8 hex digits of the SHA-256 of ``text`` (UTF-8): the ``[sha:...]`` answer suffix."""
    return hashlib.sha256(text.encode()).hexdigest()[:8]


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
    """Every option of the local server; swap it at runtime with ``update(**changes)``."""

    latency: Latency = Latency()
    faults: Faults = field(default_factory=Faults)
    seed: int = 0
    echo: bool = False
    digest: bool = False
    off_label_rate: float = 0.0
    api_key: str | None = field(default=None, repr=False)
    rpm: float | None = None
    tpm: float | None = None
    limit_window: float = 60.0
    retry_after: float = 1.0
    hang_seconds: float = 300.0
    record_times: bool = False

    def __post_init__(self) -> None:
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


# --- the labeller -------------------------------------------------------------------------

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
_LABELS_LINE = re.compile(
    r"^[ \t]*(?:allowed[ \t]+)?labels[ \t]*:(.*)$", re.IGNORECASE | re.MULTILINE
)
_LABEL_SPLIT = re.compile(r",|;|\||\bor\b")
_POSITIVE = frozenset({
    "excellent", "great", "fantastic", "superb", "amazing", "perfect", "perfectly", "impressive",
    "solid", "reliable", "love", "loved", "lovely", "happy", "recommend", "recommended", "best",
    "worth", "value", "good", "nice", "awesome", "comfortable", "sturdy", "fast", "quick",
    "brilliant", "pleased", "favourite", "favorite", "wonderful", "delighted",
})  # fmt: skip
_NEGATIVE = frozenset({
    "awful", "terrible", "flimsy", "poor", "useless", "horrible", "disappointing", "disappointed",
    "faulty", "broke", "broken", "stopped", "refund", "returned", "waste", "unhelpful", "avoid",
    "bad", "worst", "hate", "hated", "defective", "leaked", "cracked", "junk", "annoying",
    "rubbish", "problem", "problems", "died",
})  # fmt: skip
_NEGATORS = frozenset({
    "not", "no", "never", "don't", "doesn't", "didn't", "isn't", "wasn't", "wouldn't", "won't",
    "hardly",
})  # fmt: skip
_POSITIVE_CUES = ("ดีมาก", "良い", "最高", "👍", "😍", "❤")
_NEGATIVE_CUES = ("แย่", "ไม่แนะนำ", "期待外れ", "壊れ", "👎", "😡")
_SENTIMENTS = ("positive", "negative", "neutral")


def _sentiment(text: str) -> str:
    words = _WORD.findall(text.lower())
    score = 0
    for i, word in enumerate(words):
        polarity = (word in _POSITIVE) - (word in _NEGATIVE)
        if polarity and _NEGATORS.intersection(words[max(0, i - 2) : i]):
            polarity = -polarity
        score += polarity
    if not text.isascii():
        score += sum(cue in text for cue in _POSITIVE_CUES)
        score -= sum(cue in text for cue in _NEGATIVE_CUES)
    return _SENTIMENTS[0] if score > 0 else _SENTIMENTS[1] if score < 0 else _SENTIMENTS[2]


def _stable_index(text: str, size: int, salt: str = "") -> int:
    return int.from_bytes(hashlib.sha256(f"{salt}{text}".encode()).digest()[:8], "big") % size


def _stem(word: str) -> str:
    """Crude English stem so that "billed", "bills" and "billing" all meet at "bill"."""
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def _choose_label(text: str, labels: list[str]) -> str:
    """A plausible label: the sentiment if the set has one, else keyword overlap, else a hash."""
    by_lower = {label.lower(): label for label in labels}
    if by_lower.keys() & set(_SENTIMENTS):
        found = by_lower.get(_sentiment(text))
        if found is not None:
            return found
    stems = {_stem(word) for word in _WORD.findall(text.lower())}
    best, best_score = None, 0
    for label in labels:
        score = len(stems.intersection(_stem(word) for word in _WORD.findall(label.lower())))
        if score > best_score:
            best, best_score = label, score
    return best if best is not None else labels[_stable_index(text, len(labels))]


def _find_enum(schema: object, key: str = "label") -> tuple[str, list[str]] | None:
    """The first ``enum`` of strings in a JSON schema, with the property name that holds it."""
    if isinstance(schema, dict):
        values = schema.get("enum")
        if isinstance(values, list) and values and all(isinstance(v, str) for v in values):
            return key, values
        properties = schema.get("properties")
        if isinstance(properties, dict):
            for name, sub in properties.items():
                found = _find_enum(sub, name)
                if found:
                    return found
        for name, sub in schema.items():
            if name != "properties" and isinstance(sub, (dict, list)):
                found = _find_enum(sub, key)
                if found:
                    return found
    elif isinstance(schema, list):
        for item in schema:
            found = _find_enum(item, key)
            if found:
                return found
    return None


def _content(message: Mapping[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def _last_user_text(messages: list[Mapping[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return _content(message)
    return _content(messages[-1])


def _label_set(body: Mapping[str, Any], texts: list[str]) -> tuple[str | None, list[str]]:
    """(JSON key, or None for a bare answer; allowed labels) that the request asks for."""
    response_format = body.get("response_format")
    key = None
    if isinstance(response_format, dict) and response_format.get("type") in (
        "json_schema",
        "json_object",
    ):
        key = "label"
        enum = _find_enum(response_format.get("json_schema"))
        if enum is not None:
            return enum
    for content in texts:
        match = _LABELS_LINE.search(content)
        if match:
            labels = [p.strip(" \t.'\"`") for p in _LABEL_SPLIT.split(match.group(1))]
            if any(labels):
                return key, [label for label in labels if label]
    return key, list(_SENTIMENTS)


def _compose(config: ServerConfig, body: Mapping[str, Any], texts: list[str], raw: str) -> str:
    """The assistant's answer for one request (``raw`` is the last user message as sent)."""
    text = parse_marker(raw)[0]
    if config.echo:
        answer = text
    else:
        key, labels = _label_set(body, texts)
        label = _choose_label(_LABELS_LINE.sub("", text), labels)
        if config.off_label_rate and _stable_index(raw, 10**6, f"{config.seed}:") < (
            config.off_label_rate * 10**6
        ):
            label = "unsure" if "unsure" not in labels else "other"
        answer = label if key is None else json.dumps({key: label}, ensure_ascii=False)
    if config.digest:
        answer = f"{answer} [sha:{prompt_digest(raw)}]"
    return answer


# --- the service ----------------------------------------------------------------------------


class _Service:
    """The state behind one running server: config, RNG, counters and limit windows.

    Everything here is touched only from the server's event loop; other threads go
    through ``LocalServer``, which hops onto that loop.
    """

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.in_flight = 0
        self._ids = itertools.count(1)
        self._sleepers: set[asyncio.Future[None]] = set()
        self._closing = False
        self.reset()

    def reset(self) -> None:
        """Zero the counters, forget prompt attempts and limit history, reseed the RNG."""
        self.rng = Random(self.config.seed)
        self.requests = 0
        self.max_in_flight = self.in_flight
        self.by_status: dict[int, int] = {}
        self.faults: dict[str, int] = {}
        self.rate_limited = 0
        self.times: list[float] = []
        self.attempts: dict[str, int] = {}
        self._build_limits()

    def _build_limits(self) -> None:
        config = self.config
        self.rpm = SlidingWindow(config.rpm, config.limit_window) if config.rpm else None
        self.tpm = SlidingWindow(config.tpm, config.limit_window) if config.tpm else None

    def update(self, **changes: Any) -> ServerConfig:
        """Swap in a copy of the config with ``changes`` (validated before anything changes)."""
        old, new = self.config, replace(self.config, **changes)
        self.config = new
        if new.seed != old.seed:
            self.rng = Random(new.seed)
        if (new.rpm, new.tpm, new.limit_window) != (old.rpm, old.tpm, old.limit_window):
            self._build_limits()
        return new

    def stats(self) -> dict[str, Any]:
        """A JSON-ready snapshot of the counters."""
        snapshot: dict[str, Any] = {
            "requests": self.requests,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
            "faults": dict(self.faults),
            "rate_limited": self.rate_limited,
        }
        if self.config.record_times:
            snapshot["times"] = list(self.times)
        return snapshot

    def wake_all(self) -> None:
        """End every latency or hang sleep now: the server is shutting down."""
        self._closing = True
        for sleeper in self._sleepers:
            if not sleeper.done():
                sleeper.set_result(None)

    async def _sleep(self, seconds: float) -> None:
        # A plain future + call_later instead of asyncio.sleep so that wake_all() can end a
        # 300 s hang at shutdown instead of waiting for aiohttp's shutdown timeout.
        if seconds <= 0 or self._closing:
            return
        loop = asyncio.get_running_loop()
        sleeper = loop.create_future()
        handle = loop.call_later(seconds, _resolve, sleeper)
        self._sleepers.add(sleeper)
        try:
            await sleeper
        finally:
            handle.cancel()
            self._sleepers.discard(sleeper)

    def app(self) -> web.Application:
        """The aiohttp application serving the OpenAI routes and the ``/_`` control routes."""
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/_stats", self.stats_route)
        app.router.add_post("/_reset", self.reset_route)
        app.router.add_post("/_config", self.config_route)
        return app

    async def models(self, request: web.Request) -> web.Response:
        """``GET /v1/models``: the model ids this server pretends to offer."""
        data = [
            {"id": m, "object": "model", "created": 0, "owned_by": "holysheep-local"}
            for m in _MODELS
        ]
        return json_response(200, {"object": "list", "data": data})

    async def stats_route(self, request: web.Request) -> web.Response:
        """``GET /_stats``: the counters as JSON."""
        return json_response(200, self.stats())

    async def reset_route(self, request: web.Request) -> web.Response:
        """``POST /_reset``: zero the counters."""
        self.reset()
        return json_response(200, {"ok": True})

    async def config_route(self, request: web.Request) -> web.Response:
        """``POST /_config``: apply JSON changes (latency as CLI text, faults as a mapping)."""
        try:
            changes = json.loads(await request.read())
            self.update(**_changes_from_json(changes))
        except (ValueError, TypeError) as exc:
            return error_response(400, f"bad config change: {exc}")
        return json_response(200, {"ok": True})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/chat/completions``: count the request, then answer or fail it."""
        self.requests += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        config = self.config
        if config.record_times:
            self.times.append(time.monotonic())
        try:
            response = await self._answer(request, config)
        finally:
            self.in_flight -= 1
        self.by_status[response.status] = self.by_status.get(response.status, 0) + 1
        return response

    async def _answer(self, request: web.Request, config: ServerConfig) -> web.StreamResponse:
        try:
            body = json.loads(await request.read())
        except ValueError:
            return error_response(400, "We could not parse the JSON body of your request.")
        messages = body.get("messages") if isinstance(body, dict) else None
        if (
            not isinstance(messages, list)
            or not messages
            or not all(isinstance(m, dict) for m in messages)
        ):
            return error_response(400, "'messages' must be a non-empty array of message objects.")
        authorization = request.headers.get("Authorization")
        if config.api_key is not None and authorization != f"Bearer {config.api_key}":
            return unauthorized(authorization)
        model = str(body.get("model") or _MODELS[0])
        raw = _last_user_text(messages)
        marker, times = parse_marker(raw)[1:]
        if marker is not None and marker not in FAULT_KINDS:
            return error_response(
                400, f"unknown fault marker {marker!r}; known: {', '.join(FAULT_KINDS)}"
            )
        texts = [_content(m) for m in messages]
        answer = _compose(config, body, texts, raw)
        prompt_tokens = sum(estimate_tokens(t) + 4 for t in texts)
        completion_tokens = max(1, estimate_tokens(answer))
        headers = self._admit(prompt_tokens + completion_tokens, model)
        if isinstance(headers, web.Response):
            return headers
        fault = self._marker_fault(raw, marker, times) if marker else config.faults.draw(self.rng)
        await self._sleep(config.latency.sample(self.rng))
        if fault is not None:
            self.faults[fault] = self.faults.get(fault, 0) + 1
            if fault == "hang":
                # Silent for hang_seconds, then a (very late) normal answer; dropped at shutdown.
                await self._sleep(config.hang_seconds)
            if fault == "drop" or self._closing:
                _drop(request)
            if fault != "hang":
                return fault_response(
                    fault, retry_after=config.retry_after, authorization=authorization, model=model
                )
        completion = {
            "id": f"chatcmpl-{next(self._ids):024x}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": answer},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
        return json_response(200, completion, headers)

    def _marker_fault(self, raw: str, kind: str, times: int | None) -> str | None:
        attempt = self.attempts.get(raw, 0) + 1
        self.attempts[raw] = attempt
        return kind if times is None or attempt <= times else None

    def _admit(self, tokens: int, model: str) -> dict[str, str] | web.Response:
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
                self.rate_limited += 1
                headers.update(limit_headers(name, window, now))
                headers["retry-after"] = ceil_ms(max(wait, 0.001))
                used = window.capacity - window.remaining(now)
                message = (
                    f"Rate limit reached for {model} on {name} per min: "
                    f"Limit {window.per_minute:g}, Used {used:g}, Requested {units}. "
                    f"Please try again in {headers['retry-after']}s."
                )
                return error_response(
                    429, message, type_=name, code="rate_limit_exceeded", headers=headers
                )
        for window, name, units in checks:
            window.record(now, units)
            headers.update(limit_headers(name, window, now))
        return headers


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _drop(request: web.Request) -> NoReturn:
    """Close the connection without a response: the client sees ServerDisconnectedError."""
    if request.transport is not None:
        request.transport.close()
    # aiohttp takes a handler's CancelledError for a vanished client: it writes and logs nothing.
    raise asyncio.CancelledError


def _changes_from_json(changes: object) -> dict[str, Any]:
    if not isinstance(changes, dict):
        raise TypeError("send a JSON object of ServerConfig fields")
    out = dict(changes)
    if isinstance(out.get("latency"), str):
        out["latency"] = Latency.parse(out["latency"])
    if isinstance(out.get("faults"), dict):
        out["faults"] = Faults(out["faults"])
    return out


# --- ways to run it -------------------------------------------------------------------------


class RunningServer:
    """A server on the current event loop; ``async with await start_server() as srv: ...``."""

    def __init__(self, service: _Service, runner: web.AppRunner, base_url: str) -> None:
        self._service = service
        self._runner = runner
        self.base_url = base_url

    @property
    def config(self) -> ServerConfig:
        """The configuration currently in force."""
        return self._service.config

    def stats(self) -> dict[str, Any]:
        """The counters, as ``GET /_stats`` returns them."""
        return self._service.stats()

    def reset(self) -> None:
        """Zero the counters, prompt attempts and limit windows, as ``POST /_reset`` does."""
        self._service.reset()

    def update(self, **changes: Any) -> ServerConfig:
        """Change options from now on (e.g. turn faults on); returns the new config."""
        return self._service.update(**changes)

    async def close(self) -> None:
        """Stop serving; sleeping and hanging requests are woken and dropped at once."""
        self._service.wake_all()
        await self._runner.cleanup()

    async def __aenter__(self) -> RunningServer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


async def start_server(
    config: ServerConfig | None = None, host: str = "127.0.0.1", port: int = 0
) -> RunningServer:
    """Start the server on the running event loop; ``port=0`` picks a free port."""
    service = _Service(config or ServerConfig())
    # handler_cancellation: a client that gives up (timeout) ends its handler, so in_flight
    # stays true; shutdown_timeout is only a backstop, wake_all() ends sleeps first.
    runner = web.AppRunner(
        service.app(), access_log=None, handler_cancellation=True, shutdown_timeout=1.0
    )
    await runner.setup()
    try:
        sock = socket.create_server((host, port), backlog=1024)
        await web.SockSite(runner, sock).start()
    except BaseException:
        await runner.cleanup()
        raise
    bound_port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    return RunningServer(service, runner, f"http://{shown}:{bound_port}/v1")


class LocalServer:
    """The server in a background thread with its own loop: ``with LocalServer() as srv:``.

    For notebooks and sync tests. Every method may be called from any thread.
    """

    def __init__(
        self, config: ServerConfig | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self._config = config or ServerConfig()
        self._host, self._port = host, port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: RunningServer | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self, timeout: float = 10.0) -> LocalServer:
        """Start the thread and wait until the server listens; returns self."""
        if self._thread is not None:
            raise RuntimeError("LocalServer already started")
        self._thread = threading.Thread(
            target=self._run, name="holysheep-local-server", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"local server did not start within {timeout} s")
        if self._error is not None:
            self._thread.join()
            raise self._error
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            server = loop.run_until_complete(start_server(self._config, self._host, self._port))
        except BaseException as exc:  # re-raised by start() on the caller's thread
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._server, self._loop = server, loop
        self._ready.set()
        loop.run_forever()
        loop.run_until_complete(server.close())
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    def _call(self, fn: Callable[[RunningServer], _T]) -> _T:
        """Run ``fn(server)`` on the server's loop, so state is only touched from that thread."""
        server, loop = self._server, self._loop
        if server is None or loop is None:
            raise RuntimeError("LocalServer is not running; use it in a `with` block or start() it")

        async def call() -> _T:
            return fn(server)

        return asyncio.run_coroutine_threadsafe(call(), loop).result(timeout=10)

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL, e.g. ``http://127.0.0.1:54321/v1``."""
        if self._server is None:
            raise RuntimeError("LocalServer is not running; use it in a `with` block or start() it")
        return self._server.base_url

    @property
    def config(self) -> ServerConfig:
        """The configuration currently in force."""
        return self._server.config if self._server is not None else self._config

    def stats(self) -> dict[str, Any]:
        """The counters, as ``GET /_stats`` returns them."""
        return self._call(RunningServer.stats)

    def reset(self) -> None:
        """Zero the counters, prompt attempts and limit windows."""
        self._call(RunningServer.reset)

    def update(self, **changes: Any) -> ServerConfig:
        """Change options from now on, e.g. ``srv.update(faults=Faults({"429": 0.1}))``."""
        return self._call(lambda server: server.update(**changes))

    def close(self) -> None:
        """Stop the server and its thread; hanging requests are dropped, not waited for."""
        if self._thread is None:
            return
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._thread = None
        self._server = self._loop = None

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


_BOOTSTRAP = "import sys; from holysheep_nb.server import cli; sys.exit(cli(sys.argv[1:]))"


class ServerProcess:
    """The server in a subprocess (``cli``), same interface as ``LocalServer``.

    For benchmarks: client and server do not share a GIL. Control goes over HTTP.
    """

    def __init__(
        self, config: ServerConfig | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self._config = config or ServerConfig()
        self._host, self._port = host, port
        self._proc: subprocess.Popen[str] | None = None
        self._stderr: IO[bytes] | None = None
        self._base_url: str | None = None
        # Control requests go straight to the local server, whatever the proxy variables say.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def start(self, timeout: float = 20.0) -> ServerProcess:
        """Spawn the process and wait for its ``serving on URL`` line; returns self."""
        if self._proc is not None:
            raise RuntimeError("ServerProcess already started")
        package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        args = [sys.executable, "-c", _BOOTSTRAP, "--host", self._host, "--port", str(self._port)]
        # Not a `with` block: it lives as long as the process (read on a failed start).
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
        self._proc = subprocess.Popen(
            [*args, *config_args(self._config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env=env,
        )
        assert self._proc.stdout is not None
        line = _read_line(self._proc.stdout, timeout)
        if not line.startswith("serving on "):
            self._proc.kill()
            self._proc.wait()
            detail = line.strip() or self._stderr_tail()
            self.close()
            raise RuntimeError(f"server process did not start: {detail}")
        self._base_url = line.removeprefix("serving on ").strip()
        return self

    def _stderr_tail(self) -> str:
        assert self._stderr is not None
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace").strip()[-2000:] or "no output"

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL, e.g. ``http://127.0.0.1:54321/v1``."""
        if self._base_url is None:
            raise RuntimeError(
                "ServerProcess is not running; use it as a context manager or call start()"
            )
        return self._base_url

    def _control(self, method: str, route: str, payload: object = None) -> dict[str, Any]:
        url = self.base_url.removesuffix("/v1") + route
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(url, data=data, method=method)
        with self._opener.open(request, timeout=10) as response:
            result: dict[str, Any] = json.loads(response.read())
        return result

    def stats(self) -> dict[str, Any]:
        """The counters, from ``GET /_stats``."""
        return self._control("GET", "/_stats")

    def reset(self) -> None:
        """Zero the counters, prompt attempts and limit windows (``POST /_reset``)."""
        self._control("POST", "/_reset", {})

    @property
    def config(self) -> ServerConfig:
        """The configuration currently in force."""
        return self._config

    def update(self, **changes: Any) -> ServerConfig:
        """Change options from now on, as ``LocalServer.update`` (``POST /_config``)."""
        config = replace(self._config, **changes)  # validates here, before anything is sent
        sent = dict(changes)
        if "latency" in sent:
            sent["latency"] = str(config.latency)
        if "faults" in sent:
            sent["faults"] = dict(config.faults.rates)
        self._control("POST", "/_config", sent)
        self._config = config
        return config

    def close(self) -> None:
        """Stop the process (SIGTERM, then kill if it does not exit within 5 s)."""
        proc, self._proc, self._base_url = self._proc, None, None
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _read_line(stream: IO[str], timeout: float) -> str:
    """First line of ``stream``, or "" after ``timeout`` (a thread: pipes cannot time out)."""
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return lines[0] if lines else ""


def config_args(config: ServerConfig) -> list[str]:
    """The ``serve`` options that reproduce ``config`` (used by ``ServerProcess``)."""
    args = ["--latency", str(config.latency), "--seed", str(config.seed)]
    for kind, rate in config.faults.rates.items():
        args += ["--fault-rate", f"{kind}={rate!r}"]
    for flag, value in (
        ("--retry-after", config.retry_after),
        ("--hang-seconds", config.hang_seconds),
        ("--off-label-rate", config.off_label_rate),
        ("--limit-window", config.limit_window),
        ("--rpm", config.rpm),
        ("--tpm", config.tpm),
        ("--api-key", config.api_key),
    ):
        if value is not None:
            args += [flag, str(value)]
    for flag, on in (
        ("--echo", config.echo),
        ("--digest", config.digest),
        ("--record-times", config.record_times),
    ):
        if on:
            args.append(flag)
    return args


def _latency_arg(spec: str) -> Latency:
    try:
        return Latency.parse(spec)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _fault_arg(spec: str) -> tuple[str, float]:
    kind, sep, rate = spec.partition("=")
    try:
        if not sep:
            raise ValueError
        return kind, float(rate)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected KIND=PROBABILITY like 429=0.05, got {spec!r}"
        ) from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="holysheep-nb serve",
        description="Run the local OpenAI-compatible chat-completions server (tests, demos).",
    )
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    add("--port", type=int, default=8765, help="port (default 8765; 0 = any free port)")
    add(
        "--latency",
        type=_latency_arg,
        default=Latency(),
        help="0.1, 0.01-0.05 or lognormal:0.1:1.0",
    )
    kinds = ", ".join(FAULT_KINDS)
    add("--fault-rate", type=_fault_arg, action="append", default=[], metavar="KIND=P",
        help=f"inject KIND with probability P (repeatable); kinds: {kinds}")  # fmt: skip
    add("--retry-after", type=float, default=1.0, help="Retry-After seconds of injected 429s")
    add("--hang-seconds", type=float, default=300.0, help="how long a 'hang' fault stays silent")
    add(
        "--off-label-rate",
        type=float,
        default=0.0,
        help="probability of an answer outside the label set",
    )
    add("--rpm", type=float, help="requests per minute before 429")
    add("--tpm", type=float, help="tokens per minute before 429")
    add(
        "--limit-window",
        type=float,
        default=60.0,
        help="sliding window of the rpm/tpm limits, seconds",
    )
    add("--api-key", help="accept only this key (default: any)")
    add("--echo", action="store_true", help="answer with the prompt itself")
    add("--digest", action="store_true", help="append [sha:XXXXXXXX] of the prompt to every answer")
    add("--seed", type=int, default=0, help="seed of the latency and fault draws")
    add("--record-times", action="store_true", help="record request arrival times in /_stats")
    return parser


def parse_cli(argv: list[str]) -> tuple[ServerConfig, str, int]:
    """Read ``serve`` options into (config, host, port); the inverse of ``config_args``.

    Bad options exit with a usage message (status 2), as argparse does.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        config = ServerConfig(
            latency=args.latency,
            faults=Faults(dict(args.fault_rate)),
            seed=args.seed,
            echo=args.echo,
            digest=args.digest,
            off_label_rate=args.off_label_rate,
            api_key=args.api_key,
            rpm=args.rpm,
            tpm=args.tpm,
            limit_window=args.limit_window,
            retry_after=args.retry_after,
            hang_seconds=args.hang_seconds,
            record_times=args.record_times,
        )
    except ConfigError as exc:
        parser.error(str(exc))
    return config, args.host, args.port


def cli(argv: list[str]) -> int:
    """``holysheep-nb serve``: print ``serving on URL`` as the first stdout line, then serve
    until SIGINT/SIGTERM. Returns the exit code (1 if the address cannot be bound)."""
    config, host, port = parse_cli(argv)
    # Windows has no loop signal handlers: there Ctrl+C arrives as KeyboardInterrupt.
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(_serve(config, host, port))
    return 0


async def _serve(config: ServerConfig, host: str, port: int) -> int:
    try:
        server = await start_server(config, host, port)
    except OSError as exc:
        print(f"holysheep-nb serve: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 1
    print(f"serving on {server.base_url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except NotImplementedError:  # Windows: see cli()
            break
    try:
        await stop.wait()
    finally:
        await server.close()
    return 0
