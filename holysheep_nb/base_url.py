"""A base URL as the user pastes it, made the one the API is served under; which hosts are
Azure's, and which are this machine.

``Endpoint`` (``holysheep_nb.endpoint``) is built on these; the rules are in
``docs/contract.md``, "Endpoints and keys".
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from holysheep_nb.errors import ConfigError

DEFAULT_BASE_URL = "https://api.holysheep.ai/v1"
CHAT_PATH = "/chat/completions"
_AZURE_SUFFIXES = (".openai.azure.com", ".cognitiveservices.azure.com", ".services.ai.azure.com")
_HOST_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")


def normalise_base_url(base_url: str) -> str:
    """Return ``base_url`` without a trailing slash or query, with ``/v1`` added when it has
    no path, and without a pasted ``/chat/completions`` at the end.

    ``http://localhost:8000``, ``http://localhost:8000/v1/`` and
    ``http://localhost:8000/v1/chat/completions`` all become ``http://localhost:8000/v1``:
    OpenAI-compatible servers (vLLM, Ollama, HolySheep) serve the API under ``/v1``, and a
    bare host or the full endpoint URL copied from a provider's page are the commonest slips.
    The query (Azure's ``api-version``) is read by ``Endpoint``, see ``base_query``.
    """
    if not isinstance(base_url, str) or not base_url.strip():
        raise ConfigError(f"base_url must be an http(s) URL, got {base_url!r}")
    try:
        parts = urlsplit(base_url.strip())
    except ValueError as exc:  # e.g. an unclosed IPv6 bracket
        raise ConfigError(f"base_url {base_url!r} is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"base_url must be an http(s) URL such as {DEFAULT_BASE_URL!r}, got {base_url!r}"
        )
    if not _valid_host(parts.hostname):
        raise ConfigError(f"base_url {base_url!r} has an invalid host name {parts.hostname!r}")
    try:
        parts.port  # noqa: B018 - reading it validates the port number
    except ValueError as exc:
        raise ConfigError(f"base_url {base_url!r} has an invalid port: {exc}") from None
    path = parts.path.rstrip("/")
    path = path.removesuffix(CHAT_PATH) if path.endswith(CHAT_PATH) else path
    if not path and not is_azure_host(parts.hostname):
        path = "/v1"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def base_query(base_url: str) -> dict[str, str]:
    """The query parameters written into ``base_url`` (Azure's ``?api-version=...``)."""
    return dict(parse_qsl(urlsplit(base_url.strip()).query))


def is_azure_host(host: str | None) -> bool:
    """True for Azure OpenAI resource hosts (``<resource>.openai.azure.com`` and kin)."""
    return bool(host) and str(host).lower().endswith(_AZURE_SUFFIXES)


def _valid_host(host: str) -> bool:
    """An IP address, or a DNS name of non-empty labels (international names via IDNA)."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:  # an empty or over-long label, a space, ...
        return False
    labels = ascii_host.removesuffix(".").split(".")
    return all(_HOST_LABEL.fullmatch(label) for label in labels)


def is_loopback(base_url: str) -> bool:
    """True when ``base_url`` points at this machine (localhost, 127.x, ::1)."""
    host = urlsplit(base_url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
