"""The local server's command line (``holysheep-nb serve``) and ``ServerProcess``, which runs it.

``parse_cli`` reads options into a ``ServerConfig``; ``config_args`` is its inverse, used by
``ServerProcess`` to start the same server in a subprocess (benchmarks: no shared GIL) and to
control it over HTTP. Public through ``holysheep_nb.server``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.request
from dataclasses import replace
from types import TracebackType
from typing import IO, Any

from holysheep_nb._server_config import Latency, ServerConfig
from holysheep_nb._server_faults import FAULT_KINDS, Faults
from holysheep_nb._server_local import start_server
from holysheep_nb.errors import ConfigError

__all__ = ["ServerProcess", "cli", "config_args", "parse_cli"]

# The child imports ``cli`` through the public module, as any user of ``python -c`` would.
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
