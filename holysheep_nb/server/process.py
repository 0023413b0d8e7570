"""``ServerProcess``: the local server in a subprocess, started through ``cli``.

For benchmarks, where client and server must not share a GIL. It starts the ``serve`` command
with the options ``config_args`` derives from a ``ServerConfig`` and controls the running
server over HTTP (``/_stats``, ``/_reset``, ``/_config``). Public through
``holysheep_nb.server``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import urllib.request
from dataclasses import replace
from types import TracebackType
from typing import IO, Any

from holysheep_nb.server.cli import config_args
from holysheep_nb.server.config import ServerConfig

__all__ = ["ServerProcess"]

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

    def start(self, timeout: float = 120.0) -> ServerProcess:
        """Spawn the process and wait for its ``serving on URL`` line; returns self.

        ``timeout`` only guards against a process that never starts: a fresh interpreter
        importing the server takes about a second, but took over 20 s on a busy machine.
        """
        if self._proc is not None:
            raise RuntimeError("ServerProcess already started")
        package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        # Not a `with` block: it lives as long as the process (read on a failed start).
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
        self._proc = subprocess.Popen(
            self.command(),
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

    def command(self) -> list[str]:
        """The child's command line: a server that prints ``serving on URL`` first and
        serves ``/_stats`` and ``/_reset`` (a benchmark's own server may override it)."""
        args = [sys.executable, "-c", _BOOTSTRAP, "--host", self._host, "--port", str(self._port)]
        return [*args, *config_args(self._config)]

    def _stderr_tail(self) -> str:
        assert self._stderr is not None
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace").strip()[-2000:] or "no output"

    @property
    def pid(self) -> int:
        """The server process's id (to read its CPU time, as the benchmarks do)."""
        if self._proc is None:
            raise RuntimeError("ServerProcess is not running")
        return self._proc.pid

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
