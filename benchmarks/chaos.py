"""A provider that caps requests in flight, for the benchmarks: ``CappedServer``.

Some providers limit how many requests an account has in flight, not how many it sends per
minute, and answer 429 beyond that with no ``Retry-After`` and no ``x-ratelimit-*`` headers.
The embedded server has no such cap, so this small aiohttp app plays that provider: it answers
chat completions after a fixed latency with the last user message (an echo, so every row can
be checked), and answers 429 at once, with a bare OpenAI-style error body, to any request that
arrives while ``cap`` are already in flight.

``CappedServer`` runs it in a subprocess (``python chaos.py --cap N --latency S``), as
``holysheep_nb.server.ServerProcess`` runs the embedded server, so that server and client do
not share a GIL. ``GET /_stats`` and ``POST /_reset`` read and zero its counters.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web


class Capped:
    """The state of one capped provider: the cap, the latency and the counters."""

    def __init__(self, cap: int, latency: float) -> None:
        self.cap = cap
        self.latency = latency
        self.in_flight = 0
        self.reset()

    def reset(self) -> None:
        """Zero the counters (requests in flight stay counted)."""
        self.requests = 0
        self.refused = 0
        self.max_in_flight = self.in_flight

    async def chat(self, request: web.Request) -> web.Response:
        """``POST /v1/chat/completions``: 429 beyond the cap, else the echo after the latency."""
        body = await request.json()
        self.requests += 1
        if self.in_flight >= self.cap:
            self.refused += 1
            error = {"message": "Too many concurrent requests.", "type": "requests"}
            return web.json_response({"error": error}, status=429)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.latency)
        finally:
            self.in_flight -= 1
        text = body["messages"][-1]["content"]
        return web.json_response(
            {
                "id": f"chatcmpl-{self.requests}",
                "object": "chat.completion",
                "model": body.get("model", ""),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
            }
        )

    async def stats(self, request: web.Request) -> web.Response:
        """``GET /_stats``: the counters."""
        return web.json_response(
            {
                "requests": self.requests,
                "refused": self.refused,
                "max_in_flight": self.max_in_flight,
            }
        )

    async def reset_route(self, request: web.Request) -> web.Response:
        """``POST /_reset``: zero the counters."""
        self.reset()
        return web.json_response({"ok": True})

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_get("/_stats", self.stats)
        app.router.add_post("/_reset", self.reset_route)
        return app


async def _serve(cap: int, latency: float) -> None:
    runner = web.AppRunner(Capped(cap, latency).app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"serving on http://127.0.0.1:{port}/v1", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


class CappedServer:
    """The capped provider in a subprocess: ``with CappedServer(cap=8, latency=0.05) as s:``."""

    def __init__(self, cap: int, latency: float) -> None:
        self.cap = cap
        self.latency = latency
        self._proc: subprocess.Popen[str] | None = None
        self.base_url = ""
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def __enter__(self) -> CappedServer:
        args = [sys.executable, str(Path(__file__).resolve()), "--cap", str(self.cap)]
        self._proc = subprocess.Popen(
            [*args, "--latency", repr(self.latency)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()  # the child prints it first, or dies (EOF)
        if not line.startswith("serving on "):
            self.close()
            raise RuntimeError(f"capped server did not start: {line!r}")
        self.base_url = line.removeprefix("serving on ").strip()
        return self

    def _control(self, method: str, route: str) -> dict[str, Any]:
        url = self.base_url.removesuffix("/v1") + route
        data = b"{}" if method == "POST" else None
        request = urllib.request.Request(url, data=data, method=method)
        with self._opener.open(request, timeout=10) as response:
            result: dict[str, Any] = json.loads(response.read())
        return result

    def stats(self) -> dict[str, Any]:
        """Requests, those refused with 429, and the most in flight at once."""
        return self._control("GET", "/_stats")

    def reset(self) -> None:
        """Zero the counters."""
        self._control("POST", "/_reset")

    def close(self) -> None:
        """Stop the process (SIGTERM, then kill after 5 s)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def main(argv: list[str] | None = None) -> None:
    """``python chaos.py --cap N --latency S``: serve until SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cap", type=int, required=True, help="requests accepted in flight")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per answer")
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.cap, args.latency))


if __name__ == "__main__":
    main()
