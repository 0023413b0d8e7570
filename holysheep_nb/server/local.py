"""Running the local server in this process: on the current event loop or in a thread.

``start_server`` / ``RunningServer`` serve on the running loop (async tests);
``LocalServer`` gives the server a background thread and loop of its own (notebooks, sync
tests) and hops onto that loop for every call. Public through ``holysheep_nb.server``.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from aiohttp import web

from holysheep_nb.server.app import Service
from holysheep_nb.server.config import ServerConfig
from holysheep_nb.server.routes import build_app

__all__ = ["LocalServer", "RunningServer", "start_server"]

_T = TypeVar("_T")


class RunningServer:
    """A server on the current event loop; ``async with await start_server() as srv: ...``."""

    def __init__(self, service: Service, runner: web.AppRunner, base_url: str) -> None:
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
    config: ServerConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    ssl_context: ssl.SSLContext | None = None,
) -> RunningServer:
    """Start the server on the running event loop; ``port=0`` picks a free port.

    With ``ssl_context`` it serves HTTPS, to test certificate checks and ``verify``.
    """
    service = Service(config or ServerConfig())
    # handler_cancellation: a client that gives up (timeout) ends its handler, so in_flight
    # stays true; shutdown_timeout is only a backstop, wake_all() ends sleeps first.
    runner = web.AppRunner(
        build_app(service), access_log=None, handler_cancellation=True, shutdown_timeout=1.0
    )
    await runner.setup()
    try:
        sock = socket.create_server((host, port), backlog=1024)
        await web.SockSite(runner, sock, ssl_context=ssl_context).start()
    except BaseException:
        await runner.cleanup()
        raise
    bound_port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    scheme = "https" if ssl_context is not None else "http"
    return RunningServer(service, runner, f"{scheme}://{shown}:{bound_port}/v1")


class LocalServer:
    """The server in a background thread with its own loop: ``with LocalServer() as srv:``.

    For notebooks and sync tests. Every method may be called from any thread.
    """

    def __init__(
        self,
        config: ServerConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._config = config or ServerConfig()
        self._host, self._port = host, port
        self._ssl_context = ssl_context
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
            server = loop.run_until_complete(
                start_server(self._config, self._host, self._port, self._ssl_context)
            )
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
