"""A local OpenAI-compatible chat-completions server for tests, notebooks, the demo and benchmarks.

It answers deterministically with a small rule-based labeller, with settable latency, injected
faults (``_server_faults``: by rate or by a ``{{fault:KIND*N}}`` prompt marker) and
provider-style rpm / tpm limits, so a full labelling run works with no key and no internet.

Three ways to run it, one service behind them all:
    ``await start_server(config)``  on the current event loop (async tests)
    ``LocalServer(config)``         in a background thread with its own loop (notebooks)
    ``ServerProcess(config)``       in a subprocess via ``cli`` (benchmarks: no shared GIL)

This module is the public surface only; import from here. The work is done in private
modules, each owning one idea:
    ``_server_config``  ``ServerConfig`` and ``Latency``
    ``_server_faults``  ``Faults``, fault markers and OpenAI-style error responses
    ``_server_limits``  sliding rpm / tpm windows and ``x-ratelimit-*`` headers
    ``_server_labels``  the deterministic answers, ``estimate_tokens``, ``prompt_digest``
    ``_server_app``     the aiohttp app: handlers, counters, limit checks
    ``_server_local``   ``start_server``, ``RunningServer``, ``LocalServer``
    ``_server_cli``     ``parse_cli``, ``config_args``, ``cli`` and ``ServerProcess``
"""

from __future__ import annotations

from holysheep_nb._server_cli import ServerProcess, cli, config_args, parse_cli
from holysheep_nb._server_config import Latency, ServerConfig
from holysheep_nb._server_faults import FAULT_KINDS, Faults, parse_marker
from holysheep_nb._server_labels import estimate_tokens, prompt_digest
from holysheep_nb._server_local import LocalServer, RunningServer, start_server

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
