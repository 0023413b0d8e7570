"""How a request body reaches the provider: the proxy to use, the payload form, and the
one-line text of a connection error. Resolved once per run, off the per-request path."""

from __future__ import annotations

import io
import urllib.request
from urllib.parse import unquote, urlsplit

import aiohttp

from holysheep_nb.endpoint import is_loopback

#: aiohttp's own threshold (``TOO_LARGE_BYTES_BODY``) above which a bytes body blocks and warns.
_LARGE_BODY = 1 << 20


def describe_exception(exc: BaseException) -> str:
    """``ClassName: message`` in one line, for connection errors."""
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def payload(body: bytes) -> bytes | io.BytesIO:
    """The body as aiohttp should send it: bytes, or a stream once it is over 1 MiB.

    aiohttp writes a large bytes body in one blocking go (and warns); a stream goes in chunks.
    A fresh stream per attempt, since sending consumes it.
    """
    return body if len(body) <= _LARGE_BODY else io.BytesIO(body)


def proxy_for(url: str) -> str | None:
    """The proxy the environment asks for this URL, resolved once per run.

    Equivalent to aiohttp's ``trust_env`` but without its per-request lookup (which costs
    about 3x the client CPU per request). Loopback URLs never go through a proxy.
    """
    if is_loopback(url):
        return None
    parts = urlsplit(url)
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return urllib.request.getproxies().get(parts.scheme)


def proxy_credentials(proxy: str | None) -> tuple[str | None, aiohttp.BasicAuth | None]:
    """A proxy URL without its user and password, and those as ``Proxy-Authorization``.

    aiohttp quotes the proxy's URL in its errors (``ClientHttpProxyError``, connection
    errors), and a row's error would show ``http://user:password@proxy``; given apart, the
    credentials reach the proxy only (as ``trust_env`` would give them).
    """
    if proxy is None:
        return None, None
    parts = urlsplit(proxy)
    if parts.username is None:
        return proxy, None
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    auth = aiohttp.BasicAuth(unquote(parts.username), unquote(parts.password or ""))
    return parts._replace(netloc=netloc).geturl(), auth
