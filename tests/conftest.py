"""Shared fixtures, and the aioresponses shim for aiohttp >= 3.14."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from types import SimpleNamespace
from typing import Any

import aioresponses.core
import pytest
from aiohttp import ClientResponse

from holysheep_nb import adaptive, holds
from holysheep_nb.server import RunningServer, ServerConfig, start_server
from tests.fakes import FakeClock


def _needs_stream_writer_shim() -> bool:
    parameter = inspect.signature(ClientResponse.__init__).parameters.get("stream_writer")
    return parameter is not None and parameter.default is inspect.Parameter.empty


if _needs_stream_writer_shim():
    # aioresponses 0.7.9 builds ClientResponse without the keyword-only `stream_writer`
    # that aiohttp 3.14 made required (aioresponses #289, fix in PR #288, unreleased).
    # Pinning aiohttp below 3.14 would give up a security fix, so default the argument.
    # The response reads only `output_size` (bytes sent) from it: nothing is sent here.
    class _NothingSent:
        output_size = 0

    class _ShimClientResponse(ClientResponse):
        def __init__(self, *args: Any, stream_writer: Any = None, **kwargs: Any) -> None:
            super().__init__(*args, stream_writer=stream_writer or _NothingSent(), **kwargs)

    aioresponses.core.ClientResponse = _ShimClientResponse  # type: ignore[misc]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def limits_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The embedded server's rpm / tpm windows (``holysheep_nb.server.limits``) read this
    fake clock: a window neither slides nor frees unless the test advances it, so what is
    admitted does not depend on how fast the requests went (a server in this process or in
    one of its threads; not one in another process)."""
    import holysheep_nb.server.limits as limits

    fake = FakeClock()
    monkeypatch.setattr(limits, "time", SimpleNamespace(monotonic=fake.now))
    return fake


@pytest.fixture(autouse=True)
def _isolated_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """No test sees the developer's key, base URL, model or cache directory."""
    for name in ("HOLYSHEEP_API_KEY", "HOLYSHEEP_BASE_URL", "HOLYSHEEP_MODEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOLYSHEEP_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("TQDM_DISABLE", "1")
    # Nor a budget window or a width an earlier test's runs learned (kept per process).
    monkeypatch.setattr(holds, "_WINDOWS", {})
    monkeypatch.setattr(adaptive, "_LEARNED", {})


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Any]]:
    """``await serve(**config)`` starts a local server in the test's loop; all are closed after."""
    servers: list[RunningServer] = []

    async def start(**config: Any) -> RunningServer:
        server = await start_server(ServerConfig(**config))
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()
