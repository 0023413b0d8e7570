"""Shared pieces of the accessor, reliability, security and bad-input tests.

Everything here talks only to 127.0.0.1, to servers the calling test started, and every wait
is bounded.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web

_T = TypeVar("_T")

#: A key fragment this long found anywhere counts as a leak: a truncated key is still a key.
FRAGMENT = 16


def key_fragments(key: str, width: int = FRAGMENT) -> list[str]:
    """Every ``width``-character window of ``key`` (the whole key when it is shorter)."""
    if len(key) <= width:
        return [key]
    return [key[start : start + width] for start in range(len(key) - width + 1)]


def assert_no_key(haystack: str | bytes, key: str, where: str) -> None:
    """Fail if ``key`` or any ``FRAGMENT``-character piece of it occurs in ``haystack``."""
    if isinstance(haystack, bytes):
        leaked = [part for part in key_fragments(key) if part.encode() in haystack]
    else:
        leaked = [part for part in key_fragments(key) if part in haystack]
    if leaked:
        text = haystack.decode(errors="replace") if isinstance(haystack, bytes) else haystack
        first = text.find(leaked[0])
        context = text[max(0, first - 80) : first + 40]
        raise AssertionError(
            f"the API key leaked into {where}: {len(leaked)} of {len(key_fragments(key))} "
            f"{FRAGMENT}-character pieces of it are there, e.g. ...{context!r}..."
        )


async def bounded(awaitable: Awaitable[_T], seconds: float, what: str) -> _T:
    """Await with a deadline, so a hang fails the test instead of stalling the suite."""
    try:
        return await asyncio.wait_for(awaitable, seconds)
    except asyncio.TimeoutError:
        pytest.fail(f"{what} did not finish within {seconds} s")


@contextmanager
def refused_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound (so nobody else takes it), not listening."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]
    finally:
        sock.close()


def chat_completion(content: str) -> dict[str, Any]:
    """A minimal OpenAI-style chat completion answering ``content``."""
    return {
        "id": "chatcmpl-proxy",
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


@dataclass
class ProxySeen:
    """One request as the forward proxy received it."""

    method: str
    target: str  # the request-target as sent: absolute URI, or host:port for CONNECT
    host: str
    authorization: str | None
    headers: dict[str, str] = field(default_factory=dict)  # every header, as received


@dataclass
class ForwardProxy:
    """A tiny forward proxy on 127.0.0.1 that answers chat completions itself.

    It never connects anywhere: an absolute-URI ``POST`` (how a client talks to a proxy for an
    ``http://`` target) gets an answer ``via proxy: <prompt>``; a ``CONNECT`` (for ``https://``)
    is refused with 403, which is enough to see that the client came to the proxy.
    """

    url: str
    seen: list[ProxySeen] = field(default_factory=list)


@asynccontextmanager
async def forward_proxy() -> AsyncIterator[ForwardProxy]:
    proxy: ForwardProxy | None = None

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        assert proxy is not None
        proxy.seen.append(
            ProxySeen(
                request.method,
                request.raw_path,
                request.host,
                request.headers.get("Authorization"),
                dict(request.headers),
            )
        )
        if request.method == "CONNECT":
            return web.Response(status=403, text="this proxy opens no tunnels")
        body = json.loads(await request.read())
        prompt = body["messages"][-1]["content"]
        return web.json_response(chat_completion(f"via proxy: {prompt}"))

    runner = web.ServerRunner(web.Server(handle), access_log=None)
    await runner.setup()
    try:
        sock = socket.create_server(("127.0.0.1", 0))
        await web.SockSite(runner, sock).start()
        proxy = ForwardProxy(f"http://127.0.0.1:{sock.getsockname()[1]}")
        yield proxy
    finally:
        await runner.cleanup()


@asynccontextmanager
async def serve_app(app: web.Application) -> AsyncIterator[str]:
    """Serve ``app`` on 127.0.0.1 for the block; yields its ``http://127.0.0.1:PORT``."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        sock = socket.create_server(("127.0.0.1", 0))
        await web.SockSite(runner, sock).start()
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        await runner.cleanup()


@dataclass(frozen=True)
class TLSFiles:
    """A throw-away CA and a server certificate for 127.0.0.1 signed by it."""

    ca: Path
    cert: Path
    key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def make_tls_files(folder: Path) -> TLSFiles:
    """Make a CA and a ``127.0.0.1`` server certificate with the openssl command line.

    (The ``cryptography`` package is not among the dev dependencies.) A real CA plus a leaf
    with ``subjectAltName=IP:127.0.0.1`` verifies under every Python's default checks,
    including 3.13's strict X.509 mode, where a bare self-signed leaf would not.
    """
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=holysheep test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=folder)  # fmt: skip
    _openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=127.0.0.1", cwd=folder)  # fmt: skip
    (folder / "server.ext").write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1\n"
        "authorityKeyIdentifier=keyid,issuer\n"
        "subjectKeyIdentifier=hash\n"
    )
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.pem", "-days", "2",
             "-extfile", "server.ext", cwd=folder)  # fmt: skip
    return TLSFiles(folder / "ca.pem", folder / "server.pem", folder / "server.key")


def client_tasks() -> list[str]:
    """Names of the engine's and the job's tasks still alive on this loop."""
    names = [t.get_coro().__qualname__ for t in asyncio.all_tasks()]  # type: ignore[union-attr]
    return [name for name in names if name.startswith(("_Run.", "CompletionJob."))]
