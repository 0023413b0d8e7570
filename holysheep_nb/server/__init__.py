"""A local OpenAI-compatible chat-completions server for tests, notebooks, the demo and benchmarks.

It answers deterministically with a small rule-based labeller, with settable latency, injected
faults (by rate or by a ``{{fault:KIND*N}}`` prompt marker) and provider-style rpm / tpm
limits, so a full labelling run works with no key and no internet. ``docs/server.md``
describes its routes and behaviour.

Three ways to run it, one service behind them all:
    ``await start_server(config)``  on the current event loop (async tests)
    ``LocalServer(config)``         in a background thread with its own loop (notebooks)
    ``ServerProcess(config)``       in a subprocess via ``cli`` (benchmarks: no shared GIL)

This module is the public surface only; import from here. Each module owns one idea:
    ``config``   ``ServerConfig`` and ``Latency``
    ``faults``   ``Faults``, fault markers and OpenAI-style error responses
    ``limits``   sliding rpm / tpm windows and ``x-ratelimit-*`` headers
    ``answers``  the deterministic answers, ``estimate_tokens``, ``prompt_digest``
    ``app``      the aiohttp app: handlers, counters, limit checks
    ``local``    ``start_server``, ``RunningServer``, ``LocalServer``
    ``cli``      ``parse_cli``, ``config_args`` and ``cli`` (``holysheep-nb serve``)
    ``process``  ``ServerProcess``
"""

from __future__ import annotations

from holysheep_nb.server.answers import estimate_tokens, prompt_digest
from holysheep_nb.server.cli import cli, config_args, parse_cli
from holysheep_nb.server.config import Latency, ServerConfig
from holysheep_nb.server.faults import FAULT_KINDS, Faults, parse_marker
from holysheep_nb.server.local import LocalServer, RunningServer, start_server
from holysheep_nb.server.process import ServerProcess

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
    "parse_marker",
    "prompt_digest",
    "start_server",
]
