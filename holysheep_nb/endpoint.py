"""Where requests go: the server's base URL, the model, the API key and TLS verification.

``Endpoint`` is validated on creation, so a bad URL or key fails with a message naming the
value and the fix before anything is sent. How hard to push that endpoint (concurrency,
retries, rate limits) lives in ``holysheep_nb.policies``.
"""

from __future__ import annotations

import ipaddress
import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from holysheep_nb.errors import ConfigError, MissingAPIKeyError

DEFAULT_BASE_URL = "https://api.holysheep.ai/v1"
DEFAULT_MODEL = "gpt-4o"
PLACEHOLDER_KEY = "YOUR_HOLYSHEEP_API_KEY"
ENV_API_KEY = "HOLYSHEEP_API_KEY"
ENV_BASE_URL = "HOLYSHEEP_BASE_URL"
ENV_MODEL = "HOLYSHEEP_MODEL"

_HOST_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")


def normalise_base_url(base_url: str) -> str:
    """Return ``base_url`` without a trailing slash, with ``/v1`` added when it has no path.

    ``http://localhost:8000`` and ``http://localhost:8000/v1/`` both become
    ``http://localhost:8000/v1``: OpenAI-compatible servers (vLLM, Ollama, HolySheep) serve the
    API under ``/v1``, and a bare host is the commonest slip.
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
    path = parts.path.rstrip("/") or "/v1"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


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


def _check_verify(verify: object) -> None:
    """``verify`` must be a bool or a CA bundle (file or folder) that ``ssl`` can load."""
    if isinstance(verify, bool):
        return
    if not isinstance(verify, str):
        raise ConfigError(
            f"verify must be True, False or a CA bundle path, got {type(verify).__name__}"
        )
    try:
        ssl_option(verify)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"verify={verify!r} is not a usable CA bundle ({exc}): pass the path of a PEM "
            "file of CA certificates, True (system CAs) or False (no check)"
        ) from None


def ssl_option(verify: bool | str) -> bool | ssl.SSLContext:
    """aiohttp's ``ssl=`` for ``verify``: default checks, none, or a CA bundle's context."""
    if isinstance(verify, bool):
        return verify
    folder = os.path.isdir(verify)
    return ssl.create_default_context(
        cafile=None if folder else verify, capath=verify if folder else None
    )


def _check_key(key: str) -> None:
    """A key that cannot go in an HTTP header is a copy-paste slip; say so without showing it."""
    if any(not (" " < char <= "~") for char in key):
        raise ConfigError(
            "api_key contains a space, line break or non-ASCII character, so it cannot be "
            f"sent in a header; copy the key again (it is not shown here) or set {ENV_API_KEY}"
        )


def is_loopback(base_url: str) -> bool:
    """True when ``base_url`` points at this machine (localhost, 127.x, ::1)."""
    host = urlsplit(base_url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Endpoint:
    """An OpenAI-compatible chat-completions server, the model, and the key (never shown).

    A loopback ``base_url`` (the embedded server, a local vLLM or Ollama) may run without a
    key; then no Authorization header is sent. ``verify`` is True (system CAs), False (no
    certificate check) or the path of a CA bundle to trust.
    """

    base_url: str = DEFAULT_BASE_URL
    model: str = DEFAULT_MODEL
    api_key: str | None = field(default=None, repr=False, compare=False)
    verify: bool | str = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "base_url", normalise_base_url(self.base_url))
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError(f"model must be a non-empty string, got {self.model!r}")
        _check_verify(self.verify)
        key = self.api_key.strip() if isinstance(self.api_key, str) else self.api_key
        if key is not None and not isinstance(key, str):
            raise ConfigError(f"api_key must be a string, got {type(key).__name__}")
        if key == PLACEHOLDER_KEY or key == "":
            key = None
        if key is not None:
            _check_key(key)
        object.__setattr__(self, "api_key", key)
        if key is None and not is_loopback(self.base_url):
            raise MissingAPIKeyError(
                f"no API key for {self.base_url}: set the {ENV_API_KEY} environment variable "
                f"(or pass api_key=...) to your key; {PLACEHOLDER_KEY!r} is only a placeholder"
            )

    @classmethod
    def resolve(
        cls,
        *,
        base_url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        verify: bool | str = True,
        environ: Mapping[str, str] | None = None,
    ) -> Endpoint:
        """Build from arguments, then ``HOLYSHEEP_*`` environment variables, then defaults."""
        env = os.environ if environ is None else environ
        return cls(
            base_url=base_url or env.get(ENV_BASE_URL) or DEFAULT_BASE_URL,
            model=model or env.get(ENV_MODEL) or DEFAULT_MODEL,
            api_key=api_key if api_key is not None else env.get(ENV_API_KEY),
            verify=verify,
        )

    @property
    def chat_url(self) -> str:
        """The full chat-completions URL."""
        return f"{self.base_url}/chat/completions"

    def headers(self) -> dict[str, str]:
        """Request headers, with the Authorization header only when a key is set."""
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def __repr__(self) -> str:
        key = "<set>" if self.api_key else None
        return f"Endpoint(base_url={self.base_url!r}, model={self.model!r}, api_key={key})"
