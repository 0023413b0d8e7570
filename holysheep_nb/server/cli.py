"""The local server's command line (``python -m holysheep_nb serve``).

``parse_cli`` reads options into a ``ServerConfig``; ``config_args`` is its inverse, used by
``ServerProcess`` (``process``) to start the same server in a subprocess. ``cli`` serves
until SIGINT / SIGTERM. Public through ``holysheep_nb.server``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys

from holysheep_nb.cli_parser import Parser
from holysheep_nb.errors import ConfigError
from holysheep_nb.server.config import Latency, ServerConfig
from holysheep_nb.server.faults import FAULT_HELP, FAULT_KINDS, Faults
from holysheep_nb.server.local import start_server
from holysheep_nb.server.models import SIM_MODELS, SimModel
from holysheep_nb.server.providers import PERSONALITIES, PROVIDERS

__all__ = ["cli", "config_args", "parse_cli"]


#: The api_version printed for Azure clients (any value is accepted by the local server).
AZURE_API_VERSION = "2024-10-21"


def azure_hint(base_url: str, config: ServerConfig) -> str:
    """What an Azure client passes to reach the azure personality: the resource endpoint
    (not the ``/v1`` URL), an ``api_version`` and a deployment (Azure's model)."""
    endpoint = base_url.removesuffix("/v1")
    deployment = config.models[0] if config.models else "any-deployment"
    return (
        "Azure OpenAI personality: clients take the resource endpoint, not the URL above:\n"
        f"  azure_endpoint / base_url = {endpoint}\n"
        f"  api_version               = {AZURE_API_VERSION}\n"
        f"  deployment / model        = {deployment}\n"
        f"  df.holysheep.label(..., base_url={endpoint!r}, api_version={AZURE_API_VERSION!r}, "
        f"model={deployment!r})\n"
        f"  AzureOpenAI(azure_endpoint={endpoint!r}, api_version={AZURE_API_VERSION!r}, "
        "api_key=...)"
    )


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
        ("--azure-ad-token", config.azure_ad_token),
        ("--provider", config.provider),
        ("--batch-polls", config.batch_polls),
        ("--batch-seconds", config.batch_seconds),
        ("--batch-expiry", config.batch_expiry),
        ("--batch-max-requests", config.batch_max_requests),
        ("--batch-max-bytes", config.batch_max_bytes),
        ("--batch-token-limit", config.batch_token_limit),
        ("--max-in-flight", config.max_in_flight),
    ):
        if value is not None:
            args += [flag, str(value)]
    for model in config.models or ():
        args += ["--model", model]
    if config.sim_models != SIM_MODELS:
        for sim in config.sim_models:
            args += ["--sim-model", json.dumps(sim.to_json())]
        if not config.sim_models:
            args.append("--no-sim-models")
    for flag, on in (
        ("--echo", config.echo),
        ("--digest", config.digest),
        ("--record-times", config.record_times),
        ("--always-stream", config.always_stream),
        ("--no-batches", not config.batches),
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


def _sim_model_arg(spec: str) -> SimModel:
    try:
        if spec.lstrip().startswith("{"):
            return SimModel.from_json(json.loads(spec))
        with open(spec, encoding="utf-8") as file:
            return SimModel.from_json(json.load(file))
    except (ConfigError, ValueError, OSError) as exc:
        raise argparse.ArgumentTypeError(f"bad --sim-model {spec[:60]!r}: {exc}") from None


def _parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="python -m holysheep_nb serve",
        description="Run the local OpenAI-compatible chat-completions server (tests, demos).",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
    add("--fault-rate", type=_fault_arg, action="append", default=[], metavar="KIND=P",
        help="inject KIND with probability P (repeatable); KINDs below")  # fmt: skip
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
    add("--azure-ad-token", metavar="TOKEN",
        help="azure: also accept 'Authorization: Bearer TOKEN' (Microsoft Entra ID)")  # fmt: skip
    add("--echo", action="store_true", help="answer with the prompt itself")
    add("--digest", action="store_true", help="append [sha:XXXXXXXX] of the prompt to every answer")
    add("--seed", type=int, default=0, help="seed of the latency and fault draws")
    add("--record-times", action="store_true", help="record request arrival times in /_stats")
    add("--provider", choices=PROVIDERS, default="openai",
        help="the provider personality to imitate (below; default openai)")  # fmt: skip
    add("--model", action="append", dest="models", metavar="ID",
        help="accept only this model (Azure: deployment), repeatable; default: any")  # fmt: skip
    add("--always-stream", action="store_true",
        help="answer as a server-sent event stream even when stream was not asked")  # fmt: skip
    add("--sim-model", type=_sim_model_arg, action="append", dest="sim_models", metavar="SPEC",
        help="a simulated model as JSON ({\"name\": ..., \"accuracy\": ...}, other fields "
             "as in SimModel) or a JSON file; repeatable; replaces the default ones")  # fmt: skip
    add("--no-sim-models", action="store_true",
        help="simulate no model: every model gets the rule-based answers")  # fmt: skip
    add("--no-batches", action="store_true",
        help="no /v1/files or /v1/batches (404), like a provider without a Batch API")  # fmt: skip
    add("--batch-polls", type=int, default=0,
        help="retrieves before a batch is done (default 0: at the first)")  # fmt: skip
    add("--batch-seconds", type=float, default=0.0,
        help="seconds after its creation before a batch is done (default 0)")  # fmt: skip
    add("--batch-expiry", type=float, default=24 * 3600.0,
        help="seconds after which an unfinished batch expires (default 86400)")  # fmt: skip
    add("--batch-max-requests", type=int, default=50_000,
        help="requests one batch may hold (default 50000, OpenAI's limit)")  # fmt: skip
    add("--batch-max-bytes", type=int, default=200 * 1024 * 1024,
        help="bytes one batch input file may hold (default 200 MB, OpenAI's limit)")  # fmt: skip
    add("--batch-token-limit", type=int,
        help="input tokens of one model's batches in progress at once; a batch beyond it "
        "fails with token_limit_exceeded (default: no limit)")  # fmt: skip
    add("--max-in-flight", type=int,
        help="requests answered at once; beyond, a 429 with no headers (default none)")  # fmt: skip
    return parser


def _epilog() -> str:
    width = max(map(len, FAULT_KINDS))
    faults = "\n".join(f"  {kind:<{width}}  {FAULT_HELP[kind]}" for kind in FAULT_KINDS)
    width = max(map(len, PROVIDERS))
    providers = "\n".join(f"  {name:<{width}}  {PERSONALITIES[name].summary}" for name in PROVIDERS)
    return (
        f"fault kinds (--fault-rate KIND=P, or a prompt marker):\n{faults}\n\n"
        "prompt markers, anywhere in the last user message (removed before answering):\n"
        "  {{fault:KIND}}    every request with this prompt gets fault KIND\n"
        "  {{fault:KIND*N}}  the first N requests with this prompt get it, then it answers\n\n"
        f"providers (--provider NAME):\n{providers}\n\n"
        f"simulated models (--sim-model SPEC; docs/server.md):\n{_sim_summary()}\n\n"
        "batch routes: /v1/files and /v1/batches (off with --no-batches)\n"
        "embeddings: POST /v1/embeddings (hashed bag of words)\n"
        "control routes: GET /_stats, POST /_reset, POST /_config (JSON of ServerConfig fields)"
    )


def _sim_summary() -> str:
    return "\n".join(
        f"  {m.name}  accuracy {m.accuracy:g}, {m.calibration}, ${m.input_per_1k:g} / "
        f"${m.output_per_1k:g} per 1K tokens in / out, latency x{m.latency_factor:g}"
        for m in SIM_MODELS
    )


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
            azure_ad_token=args.azure_ad_token,
            rpm=args.rpm,
            tpm=args.tpm,
            limit_window=args.limit_window,
            retry_after=args.retry_after,
            hang_seconds=args.hang_seconds,
            record_times=args.record_times,
            provider=args.provider,
            models=tuple(args.models) if args.models else None,
            always_stream=args.always_stream,
            batches=not args.no_batches,
            batch_polls=args.batch_polls,
            batch_seconds=args.batch_seconds,
            batch_expiry=args.batch_expiry,
            batch_max_requests=args.batch_max_requests,
            batch_max_bytes=args.batch_max_bytes,
            batch_token_limit=args.batch_token_limit,
            max_in_flight=args.max_in_flight,
            sim_models=()
            if args.no_sim_models
            else tuple(args.sim_models)
            if args.sim_models
            else SIM_MODELS,
        )
    except ConfigError as exc:
        parser.error(str(exc))
    return config, args.host, args.port


def cli(argv: list[str]) -> int:
    """``python -m holysheep_nb serve``: print ``serving on URL`` as the first stdout line,
    then serve until SIGINT/SIGTERM. Returns the exit code (1 if the address cannot be bound)."""
    config, host, port = parse_cli(argv)
    # Windows has no loop signal handlers: there Ctrl+C arrives as KeyboardInterrupt.
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(_serve(config, host, port))
    return 0


async def _serve(config: ServerConfig, host: str, port: int) -> int:
    try:
        server = await start_server(config, host, port)
    except OSError as exc:
        print(
            f"python -m holysheep_nb serve: cannot listen on {host}:{port}: {exc}", file=sys.stderr
        )
        return 1
    print(f"serving on {server.base_url}", flush=True)
    if config.provider == "azure":
        print(azure_hint(server.base_url, config), flush=True)
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
