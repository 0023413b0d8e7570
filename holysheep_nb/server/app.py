"""The running service behind the local server: the aiohttp app and its request handlers.

``Service`` owns the state of one server (config, seeded RNG, counters, prompt attempts, the
rpm / tpm windows) and the routes: ``POST /v1/chat/completions``, ``GET /v1/models`` and the
``/_stats``, ``/_reset``, ``/_config`` control routes. It decides *when* to answer or fail;
what to answer comes from ``answers``, how to fail from ``faults`` and
``limits``. How to start it is ``local``'s business.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from dataclasses import replace
from random import Random
from typing import Any, NoReturn

from aiohttp import web

from holysheep_nb.server.answers import compose, estimate_tokens, last_user_text, message_text
from holysheep_nb.server.config import Latency, ServerConfig
from holysheep_nb.server.faults import (
    FAULT_KINDS,
    Faults,
    error_response,
    fault_response,
    json_response,
    parse_marker,
    unauthorized,
)
from holysheep_nb.server.limits import SlidingWindow, ceil_ms, limit_headers

__all__ = ["Service"]

_MODELS = ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "deepseek-v3", "claude-sonnet-4")


class Service:
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
        raw = last_user_text(messages)
        marker, times = parse_marker(raw)[1:]
        if marker is not None and marker not in FAULT_KINDS:
            return error_response(
                400, f"unknown fault marker {marker!r}; known: {', '.join(FAULT_KINDS)}"
            )
        texts = [message_text(m) for m in messages]
        answer = compose(config, body, texts, raw)
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
