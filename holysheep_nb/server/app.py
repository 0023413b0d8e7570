"""The running service behind the local server: its state and the chat handlers.

``Service`` owns the state of one server (config, seeded RNG, counters, prompt attempts, the
rpm / tpm windows) and answers ``POST /v1/chat/completions`` and Azure's
``POST /openai/deployments/{deployment}/chat/completions``. It decides *when* to answer or
fail; whether a request is acceptable comes from ``checks``, what to answer from ``answers``
and ``completion`` (``stream`` for server-sent events), how to fail from ``faults`` and
``limits``. The other routes are ``routes``'s; how to start it is ``local``'s business.

Length: ``Service`` is one request's path from arrival to answer (limits, faults, the
answer, the stream, the hang), which reads in order in one class.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
from dataclasses import replace
from random import Random
from typing import Any, NoReturn, cast

from aiohttp import web

from holysheep_nb.server.answers import estimate_tokens, last_user_text, message_text
from holysheep_nb.server.batches import BatchDesk
from holysheep_nb.server.calibration import base, is_calibrated
from holysheep_nb.server.checks import check_request
from holysheep_nb.server.completion import (
    SHAPING_FIELDS,
    completion_body,
    plain_body,
    plan_choices,
)
from holysheep_nb.server.config import ServerConfig
from holysheep_nb.server.faults import (
    FAULT_KINDS,
    SHAPE_FAULTS,
    fault_response,
    parse_marker,
)
from holysheep_nb.server.images import request_prompt_tokens
from holysheep_nb.server.limits import Limits
from holysheep_nb.server.logprobs import token_pieces
from holysheep_nb.server.providers import PERSONALITIES, route_not_found, too_many_in_flight
from holysheep_nb.server.replies import error_response, json_response
from holysheep_nb.server.schema_answers import SchemaError
from holysheep_nb.server.simulate import answers_for
from holysheep_nb.server.stream import sse_events, write_stream

__all__ = ["Service"]

_STREAMED = frozenset(("sse", "stream-error"))  # faults that stream whatever was asked


class Service:
    """The state behind one running server: config, RNG, counters and limit windows.

    Everything here is touched only from the server's event loop; other threads go
    through ``LocalServer``, which hops onto that loop.
    """

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.in_flight = 0
        self._ids = itertools.count(1)
        self._request_ids = itertools.count(1)
        self._id_prefix = os.urandom(8).hex()
        self._sleepers: set[asyncio.Future[None]] = set()
        self._closing = False
        #: The files and batches APIs (``batches``), sharing this service's rules and faults.
        self.batches = BatchDesk(self)
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
        self.embeddings = 0
        self.attempts: dict[str, int] = {}
        self.draws: dict[str, int] = {}
        self._stale: set[asyncio.BaseTransport] = set()
        self.batches.reset()
        self._build_limits()

    def _build_limits(self) -> None:
        config = self.config
        self.limits = Limits(config.rpm, config.tpm, config.limit_window)

    def update(self, **changes: Any) -> ServerConfig:
        """Swap in a copy of the config with ``changes`` (validated before anything changes)."""
        old, new = self.config, replace(self.config, **changes)
        self.config = new
        if new.seed != old.seed:
            self.rng = Random(new.seed)
        if (new.rpm, new.tpm, new.limit_window) != (old.rpm, old.tpm, old.limit_window):
            self._build_limits()
        return new

    def next_draw(self, prompt_key: str) -> int:
        """How many requests with this prompt came before, at a temperature above 0: each
        gets fresh draws of a simulated model (``simulate``)."""
        count = self.draws.get(prompt_key, 0)
        self.draws[prompt_key] = count + 1
        return count

    def stats(self) -> dict[str, Any]:
        """A JSON-ready snapshot of the counters."""
        snapshot: dict[str, Any] = {
            "requests": self.requests,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
            "faults": dict(self.faults),
            "rate_limited": self.rate_limited,
            "embeddings": self.embeddings,
            "batches": self.batches.stats(),
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

    def _not_here(self, request: web.Request) -> web.Response:
        """The 404 for a chat route of another personality (Azure has no /v1 chat route)."""
        response = route_not_found(self.config.provider, request)
        response.headers["x-request-id"] = self.request_id()
        return response

    def request_id(self) -> str:
        """A new ``x-request-id``: unique to this server and cheap (a counter)."""
        return f"req_{self._id_prefix}{next(self._request_ids):016x}"

    async def chat(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/chat/completions`` (every personality but Azure's) and
        ``POST /openai/deployments/{deployment}/chat/completions`` (Azure's only): count the
        request, then answer or fail it."""
        if self._stale and request.transport in self._stale:
            # A "stale" fault left this keep-alive connection for dead: close it unanswered.
            self._stale.discard(request.transport)
            _drop(request)
        deployment = request.match_info.get("deployment")
        if (deployment is None) == (self.config.provider == "azure"):
            return self._not_here(request)
        self.requests += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        config = self.config
        if config.record_times:
            self.times.append(time.monotonic())
        request_id = self.request_id()
        try:
            response = await self._answer(request, config, deployment, request_id)
        except SchemaError as exc:
            response = error_response(
                400,
                f"Invalid schema: {exc}",
                provider=config.provider,
                code="invalid_schema",
            )
        except Exception as exc:  # a bug here must still answer JSON, as a provider's 500 does
            response = error_response(
                500,
                f"The server had an error: {exc!r}",
                provider=config.provider,
                type_="server_error",
            )
        finally:
            self.in_flight -= 1
        if not response.prepared:
            response.headers["x-request-id"] = request_id
        self.by_status[response.status] = self.by_status.get(response.status, 0) + 1
        return response

    async def _answer(
        self,
        request: web.Request,
        config: ServerConfig,
        deployment: str | None,
        request_id: str,
    ) -> web.StreamResponse:
        provider = config.provider
        if deployment is not None and "api-version" not in request.query:
            return error_response(
                400,
                "Missing required query parameter: api-version",
                provider=provider,
                code="BadRequest",
            )
        try:
            body = json.loads(await request.read())
        except web.HTTPRequestEntityTooLarge as exc:
            return error_response(413, exc.text or "Request too large.", provider=provider)
        except ValueError:
            return error_response(
                400, "We could not parse the JSON body of your request.", provider=provider
            )
        refused = check_request(config, body, request.headers, deployment)
        if refused is not None:
            return refused
        if config.max_in_flight is not None and self.in_flight > config.max_in_flight:
            self.rate_limited += 1
            return too_many_in_flight(provider)
        model = deployment or body["model"]
        messages = body["messages"]
        raw = last_user_text(messages)
        marker, times = parse_marker(raw)[1:]
        if marker is not None and marker not in FAULT_KINDS:
            return error_response(
                400,
                f"unknown fault marker {marker!r}; known: {', '.join(FAULT_KINDS)}",
                provider=provider,
            )
        texts = [message_text(m) for m in messages]
        simulated = config.sim_model(model)
        if simulated is not None and not is_calibrated(simulated, config.seed):
            # Once per process and model: half a second of arithmetic, off the event loop.
            await asyncio.get_running_loop().run_in_executor(None, base, simulated, config.seed)
        answers = answers_for(
            config, _as_heeded(body, provider), model, messages, texts, raw, self.next_draw
        )
        prompt_tokens = request_prompt_tokens(messages)  # images by the tile rule, as estimated
        headers = self.limits.admit(
            prompt_tokens + sum(max(1, estimate_tokens(a.content)) for a in answers),
            model,
            provider,
        )
        if isinstance(headers, web.Response):
            self.rate_limited += 1
            return headers
        fault = self._marker_fault(raw, marker, times) if marker else config.faults.draw(self.rng)
        factor = simulated.latency_factor if simulated is not None else 1.0
        await self._sleep(config.latency.sample(self.rng) * factor)
        if fault is not None:
            self.faults[fault] = self.faults.get(fault, 0) + 1
            if fault == "hang":
                # Silent for hang_seconds, then a (very late) normal answer; dropped at shutdown.
                await self._sleep(config.hang_seconds)
            if fault == "drop" or self._closing:
                _drop(request)
            if fault != "hang" and fault not in SHAPE_FAULTS:
                return fault_response(
                    fault,
                    provider=provider,
                    retry_after=config.retry_after,
                    authorization=request.headers.get("Authorization"),
                    model=model,
                    text=parse_marker(raw)[0],
                )
        completion_id = f"chatcmpl-{next(self._ids):024x}"
        if (
            fault is None
            and provider == "openai"
            and not config.always_stream
            and SHAPING_FIELDS.isdisjoint(body)
        ):
            answer = answers[0]
            completion = plain_body(
                answer.content,
                completion_id=completion_id,
                created=int(time.time()),
                model=model,
                prompt_tokens=prompt_tokens,
                tokens=max(1, len(token_pieces(answer.content, answer.label))),
            )
            return json_response(200, completion, headers)
        replies = plan_choices(config, body, answers, fault, texts, raw)
        top = (body.get("top_logprobs") or 0) if body.get("logprobs") is True else None
        completion = completion_body(
            config,
            replies,
            completion_id=completion_id,
            created=int(time.time()),
            model=model,
            choices=len(answers),
            prompt_tokens=prompt_tokens,
            top_logprobs=top,
        )
        if fault == "stale" and request.transport is not None:
            self._stale.add(request.transport)
        if body.get("stream") is True or config.always_stream or fault in _STREAMED:
            options = body.get("stream_options")
            events = sse_events(
                replies,
                completion,
                provider=provider,
                include_usage=isinstance(options, dict) and options.get("include_usage") is True,
                top_logprobs=top,
                broken=fault == "stream-error",
            )
            return await write_stream(request, events, {**headers, "x-request-id": request_id})
        response = json_response(200, completion, headers)
        if fault == "json-done":
            # The stream's terminator after a whole JSON answer, as some servers send it.
            response.body = cast(bytes, response.body) + b"\n\ndata: [DONE]\n\n"
        return response

    def _marker_fault(self, raw: str, kind: str, times: int | None) -> str | None:
        attempt = self.attempts.get(raw, 0) + 1
        self.attempts[raw] = attempt
        return kind if times is None or attempt <= times else None


def _as_heeded(body: dict[str, Any], provider: str) -> dict[str, Any]:
    """The request as the personality heeds it: without ``response_format`` where it is
    accepted and ignored (``providers.Personality.response_format``)."""
    if "response_format" in body and PERSONALITIES[provider].response_format == "ignored":
        return {key: value for key, value in body.items() if key != "response_format"}
    return body


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _drop(request: web.Request) -> NoReturn:
    """Close the connection without a response: the client sees ServerDisconnectedError."""
    if request.transport is not None:
        request.transport.close()
    # aiohttp takes a handler's CancelledError for a vanished client: it writes and logs nothing.
    raise asyncio.CancelledError
