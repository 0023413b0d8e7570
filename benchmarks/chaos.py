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
import signal
import sys
from pathlib import Path

from aiohttp import web

from holysheep_nb.server import ServerProcess


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


class CappedServer(ServerProcess):
    """The capped provider in a subprocess: ``with CappedServer(cap=8, latency=0.05) as s:``.

    ``ServerProcess`` does the rest (start and wait with a timeout, ``stats``, ``reset``,
    stop); only the command differs.
    """

    def __init__(self, cap: int, latency: float) -> None:
        super().__init__()
        self.cap = cap
        self.latency = latency

    def command(self) -> list[str]:
        """``python chaos.py --cap N --latency S``."""
        script = str(Path(__file__).resolve())
        return [sys.executable, script, "--cap", str(self.cap), "--latency", repr(self.latency)]


def main(argv: list[str] | None = None) -> None:
    """``python chaos.py --cap N --latency S``: serve until SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cap", type=int, required=True, help="requests accepted in flight")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per answer")
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.cap, args.latency))


if __name__ == "__main__":
    main()
