"""A local OpenAI-compatible chat-completions server for tests, notebooks, the demo and benchmarks.

It answers with simulated models of known quality on the sample reviews (``sim-small``,
``sim-large``: accuracy, calibration, price, prompt effects) and deterministically with a
small rule-based labeller for any other model, speaks the whole
chat-completions contract (streaming, ``n``, logprobs, tools, token limits, JSON-schema
answers), imitates real providers (``ServerConfig(provider=...)``: openai, azure,
openrouter, deepseek, ollama, vllm, gemini, anthropic, gateway), and has settable latency,
injected faults (by rate or by a ``{{fault:KIND*N}}`` prompt marker), provider-style rpm /
tpm limits and a cap on requests in flight, so a full labelling run works with no key and
no internet. ``docs/server.md`` describes its routes, personalities, faults and markers.

Three ways to run it, one service behind them all:
    ``await start_server(config)``  on the current event loop (async tests)
    ``LocalServer(config)``         in a background thread with its own loop (notebooks)
    ``ServerProcess(config)``       in a subprocess via ``cli`` (benchmarks: no shared GIL)

This module is the public surface only; import from here. Each module owns one idea:
    ``config``          ``ServerConfig`` and ``Latency``
    ``providers``       the provider personalities and their own error bodies
    ``replies``         JSON responses and error bodies in each personality's shape
    ``faults``          ``Faults``, fault markers and the injected error responses
    ``limits``          sliding rpm / tpm windows and ``x-ratelimit-*`` headers
    ``checks``          whether a chat request is acceptable (body, key, model, options)
    ``answers``         the rule-based answers, ``estimate_tokens``, ``prompt_digest``
    ``models``          ``SimModel`` and the shipped ``SIM_MODELS``
    ``simulate``        a simulated model's answer: label, confidence, extracted fields
    ``calibration``     seeded draws, row difficulty, each model's solved ``base``
    ``embeddings``      ``/v1/embeddings``: hashed bag-of-words vectors
    ``schema_answers``  a JSON value valid against any schema, for json_schema and tools
    ``completion``      the chat.completion body: choices, tools, reasoning, logprobs, usage
    ``stream``          the same answer as server-sent event chunks
    ``app``             ``Service``: the state and the chat handlers
    ``routes``          the aiohttp app: models, embeddings, control routes, JSON 404 / 405
    ``local``           ``start_server``, ``RunningServer``, ``LocalServer``
    ``cli``             ``parse_cli``, ``config_args``, ``cli`` (the ``serve`` command)
    ``process``         ``ServerProcess``
"""

from __future__ import annotations

from holysheep_nb.server.answers import estimate_tokens, prompt_digest
from holysheep_nb.server.cli import cli, config_args, parse_cli
from holysheep_nb.server.config import Latency, ServerConfig
from holysheep_nb.server.faults import FAULT_KINDS, Faults, parse_marker
from holysheep_nb.server.local import LocalServer, RunningServer, start_server
from holysheep_nb.server.models import SIM_MODELS, SimModel
from holysheep_nb.server.process import ServerProcess

__all__ = [
    "FAULT_KINDS",
    "SIM_MODELS",
    "Faults",
    "Latency",
    "LocalServer",
    "RunningServer",
    "ServerConfig",
    "ServerProcess",
    "SimModel",
    "cli",
    "config_args",
    "estimate_tokens",
    "parse_cli",
    "parse_marker",
    "prompt_digest",
    "start_server",
]
