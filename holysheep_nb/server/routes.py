"""The aiohttp application around a ``Service``: every route, and JSON for every other path.

``build_app`` registers the chat routes (the service's), the files and batches routes
(``batches``), ``POST /v1/embeddings`` (``embeddings``), ``GET /v1/models`` and
``/v1/models/{id}``, the ``/_stats``, ``/_reset`` and ``/_config`` control routes, a JSON 405
(with ``Allow``) for a known path asked with the wrong method, and a JSON 404 for any other
path, each in the shape of the server's personality and with an ``x-request-id``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from holysheep_nb.server.config import Latency
from holysheep_nb.server.embeddings import BadEmbeddingsRequest, embeddings_body
from holysheep_nb.server.faults import Faults
from holysheep_nb.server.models import SimModel
from holysheep_nb.server.providers import model_not_found, route_not_found, unauthorized
from holysheep_nb.server.replies import error_response, json_response

if TYPE_CHECKING:
    from holysheep_nb.server.app import Service

__all__ = ["MODELS", "build_app"]

MODELS = ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "deepseek-v3", "claude-sonnet-4")
"""The model ids ``GET /v1/models`` lists (after the simulated ones) when no model list is
configured."""


def build_app(service: Service) -> web.Application:
    """The aiohttp application serving ``service``."""
    routes = _Routes(service)
    app = web.Application(client_max_size=16 * 1024 * 1024)
    table = (
        ("POST", "/v1/chat/completions", service.chat),
        ("POST", "/openai/deployments/{deployment}/chat/completions", service.chat),
        ("POST", "/v1/embeddings", routes.embeddings),
        ("GET", "/v1/models", routes.models),
        ("GET", "/v1/models/{model}", routes.model),
        ("GET", "/_stats", routes.stats),
        ("POST", "/_reset", routes.reset),
        ("POST", "/_config", routes.config),
        *service.batches.routes(),
    )
    # A path's methods, then its 405, one path after another: aiohttp keeps them on one
    # resource only when they are added in a row (the 405's Allow lists that resource's).
    for path in dict.fromkeys(path for _, path, _ in table):
        for method, _, handler in (entry for entry in table if entry[1] == path):
            app.router.add_route(method, path, handler)
        app.router.add_route("*", path, routes.wrong_method)
    app.router.add_route("*", "/{tail:.*}", routes.unknown)
    return app


class _Routes:
    """The handlers of every route but the chat ones, each answering with a request id."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def _stamp(self, response: web.Response) -> web.Response:
        response.headers["x-request-id"] = self.service.request_id()
        return response

    def _offered(self) -> tuple[str, ...]:
        config = self.service.config
        if config.models is not None:
            return config.models
        return tuple(dict.fromkeys((*(m.name for m in config.sim_models), *MODELS)))

    def _object(self, name: str) -> dict[str, Any]:
        return _model_object(name, self.service.config.sim_model(name))

    async def models(self, request: web.Request) -> web.Response:
        """``GET /v1/models``: the configured model ids, or the simulated models and a few
        familiar ones."""
        data = [self._object(m) for m in self._offered()]
        return self._stamp(json_response(200, {"object": "list", "data": data}))

    async def model(self, request: web.Request) -> web.Response:
        """``GET /v1/models/{id}``: one model object, or the provider's model-not-found error."""
        name = request.match_info["model"]
        if name in self._offered():
            return self._stamp(json_response(200, self._object(name)))
        return self._stamp(model_not_found(self.service.config.provider, name))

    async def embeddings(self, request: web.Request) -> web.Response:
        """``POST /v1/embeddings``: hashed bag-of-words vectors (``embeddings``); any model
        name, the server's key when one is configured."""
        config = self.service.config
        if config.api_key is not None:
            sent = request.headers.get("Authorization")
            if sent != f"Bearer {config.api_key}":
                return self._stamp(unauthorized(config.provider, sent))
        try:
            body = json.loads(await request.read())
        except ValueError:
            body = None
        self.service.embeddings += 1
        try:
            answer = embeddings_body(body)
        except BadEmbeddingsRequest as exc:
            bad = error_response(400, str(exc), provider=config.provider, param=exc.param)
            return self._stamp(bad)
        return self._stamp(json_response(200, answer))

    async def unknown(self, request: web.Request) -> web.Response:
        """Any other path: 404 with a JSON error."""
        return self._stamp(route_not_found(self.service.config.provider, request))

    async def wrong_method(self, request: web.Request) -> web.Response:
        """A known path with the wrong method: 405 with a JSON error and ``Allow``."""
        resource = request.match_info.route.resource
        allowed = sorted({r.method for r in resource or () if r.method != "*"})
        message = f"Invalid method for URL ({request.method} {request.path})"
        response = error_response(
            405,
            message,
            provider=self.service.config.provider,
            headers={"Allow": ", ".join(allowed)},
        )
        return self._stamp(response)

    async def stats(self, request: web.Request) -> web.Response:
        """``GET /_stats``: the counters as JSON."""
        return self._stamp(json_response(200, self.service.stats()))

    async def reset(self, request: web.Request) -> web.Response:
        """``POST /_reset``: zero the counters."""
        self.service.reset()
        return self._stamp(json_response(200, {"ok": True}))

    async def config(self, request: web.Request) -> web.Response:
        """``POST /_config``: apply JSON changes (latency as CLI text, faults as a mapping,
        models as a list)."""
        try:
            changes = json.loads(await request.read())
            self.service.update(**_changes_from_json(changes))
        except (ValueError, TypeError) as exc:
            return self._stamp(error_response(400, f"bad config change: {exc}"))
        return self._stamp(json_response(200, {"ok": True}))


def _model_object(name: str, simulated: SimModel | None) -> dict[str, Any]:
    """OpenAI's model object; a simulated model adds OpenRouter's ``pricing`` (dollars per
    token, as strings) and what it simulates."""
    out: dict[str, Any] = {
        "id": name,
        "object": "model",
        "created": 0,
        "owned_by": "holysheep-local",
    }
    if simulated is not None:
        out["pricing"] = {
            "prompt": f"{simulated.input_per_1k / 1000:.10f}",
            "completion": f"{simulated.output_per_1k / 1000:.10f}",
        }
        out["simulated"] = {"accuracy": simulated.accuracy, "calibration": simulated.calibration}
    return out


def _changes_from_json(changes: object) -> dict[str, Any]:
    if not isinstance(changes, dict):
        raise TypeError("send a JSON object of ServerConfig fields")
    out = dict(changes)
    if isinstance(out.get("latency"), str):
        out["latency"] = Latency.parse(out["latency"])
    if isinstance(out.get("faults"), dict):
        out["faults"] = Faults(out["faults"])
    if isinstance(out.get("models"), list):
        out["models"] = tuple(out["models"])
    if isinstance(out.get("sim_models"), list):
        out["sim_models"] = tuple(SimModel.from_json(m) for m in out["sim_models"])
    return out
