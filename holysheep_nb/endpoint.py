"""Where requests go: the server's base URL, the model, the API key and TLS verification.

``Endpoint`` is validated on creation, so a bad URL or key fails with a message naming the
value and the fix before anything is sent. How hard to push that endpoint (concurrency,
retries, rate limits) lives in ``holysheep_nb.policies``.

Length: most of it is ``Endpoint``'s checks, one per field, each with its message and fix
(the URL, the key and where it may go, Azure's deployment and API version, headers, TLS).
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

from holysheep_nb.base_url import CHAT_PATH, base_query, is_azure_host
from holysheep_nb.base_url import DEFAULT_BASE_URL as DEFAULT_BASE_URL
from holysheep_nb.base_url import is_loopback as is_loopback
from holysheep_nb.base_url import normalise_base_url as normalise_base_url
from holysheep_nb.errors import ConfigError, MissingAPIKeyError
from holysheep_nb.option import ENV, NO_FLAG, Flag, default_of, option, options_of

DEFAULT_MODEL = "gpt-4o"
PLACEHOLDER_KEY = "YOUR_HOLYSHEEP_API_KEY"
ENV_API_KEY = "HOLYSHEEP_API_KEY"
ENV_BASE_URL = "HOLYSHEEP_BASE_URL"
ENV_MODEL = "HOLYSHEEP_MODEL"


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


def key_from_env(name: str) -> str:
    """The API key held by the environment variable ``name`` (``--api-key-env``); a
    ``ValueError`` when it is not set."""
    key = os.environ.get(name)
    if not key:
        raise ValueError(f"{name}: that variable is not set")
    return key


@dataclass(frozen=True)
class Endpoint:
    """An OpenAI-compatible chat-completions server, the model, and the key (never shown).

    A loopback ``base_url`` (the embedded server, a local vLLM or Ollama) may run without a
    key; then no Authorization header is sent. ``verify`` is True (system CAs), False (no
    certificate check) or the path of a CA bundle to trust. ``headers`` are sent with every
    request (OpenRouter's ``HTTP-Referer`` and ``X-Title``, a gateway's own header).

    Azure OpenAI (a ``*.openai.azure.com`` host, or ``api_version`` given): the key goes in
    the ``api-key`` header, every request carries ``?api-version=``, and a bare resource URL
    becomes the deployment URL ``/openai/deployments/<model>`` (the deployment name is what
    Azure calls the model). Azure's REST reference documents both. Microsoft Entra ID
    sign-in instead of a key: ``azure_ad_token`` (a token) or ``azure_ad_token_provider`` (a
    callable returning one, called for every request so a long run gets fresh tokens, e.g.
    ``azure.identity.get_bearer_token_provider``), sent as ``Authorization: Bearer``, as the
    openai client's ``AzureOpenAI`` takes them; either wins over ``api_key``.

    The key and the headers go with each request to the API host only: through a proxy
    never as the session's defaults (aiohttp copies those into the CONNECT request), and
    never to another host on a redirect (redirects are not followed).
    """

    base_url: str = option(
        DEFAULT_BASE_URL,
        'any OpenAI-compatible server (docs/contract.md, "Endpoints and keys")',
        env=ENV_BASE_URL,
        flags=(Flag(metavar="URL"),),
    )
    model: str = option(
        DEFAULT_MODEL,
        "the model (Azure: the deployment)",
        env=ENV_MODEL,
        flags=(Flag(("--model", "-m"), metavar="NAME"),),
    )
    api_key: str | None = option(
        None,
        "the API key; not needed on a loopback address",
        env=ENV_API_KEY,
        flags=(
            Flag(
                ("--api-key-env",),
                parse=key_from_env,
                metavar="NAME",
                help=f"read the API key from environment variable NAME instead of {ENV_API_KEY}",
            ),
        ),
        repr=False,
        compare=False,
    )
    verify: bool | str = option(
        True,
        "TLS: True, False, or a CA bundle path",
        flags=(
            Flag(
                ("--ca-bundle",),
                parse=str,
                metavar="PEM",
                help="trust the CA certificates in this file or folder",
            ),
            Flag(
                ("--no-verify",),
                const=False,
                help="do not check the server's TLS certificate (a self-signed test server)",
            ),
        ),
    )
    api_version: str | None = option(None, "Azure's api-version", flags=(Flag(metavar="DATE"),))
    headers: Mapping[str, str] = option(
        doc="extra headers for every request (extra_headers means the same)",
        default_factory=dict,
        flags=NO_FLAG,
        repr=False,
        compare=False,
    )
    azure_ad_token: str | None = option(
        None,
        "Azure: a Microsoft Entra ID token, sent as Authorization: Bearer",
        flags=NO_FLAG,
        repr=False,
        compare=False,
    )
    azure_ad_token_provider: Callable[[], str] | None = option(
        None,
        "Azure: a function returning an Entra ID token, asked for every request",
        flags=NO_FLAG,
        repr=False,
        compare=False,
    )
    query: Mapping[str, str] = field(default_factory=dict)
    #: False for an endpoint nothing is sent to (the dry-run estimate): no key needed.
    key_required: bool = field(default=True, repr=False, compare=False)

    def __post_init__(self) -> None:
        base_url = normalise_base_url(self.base_url)
        query = {**base_query(self.base_url), **dict(self.query)}
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError(f"model must be a non-empty string, got {self.model!r}")
        api_version = self.api_version or query.get("api-version")
        if api_version is not None and (not isinstance(api_version, str) or not api_version):
            raise ConfigError(
                f"api_version must be a string such as '2024-10-21', got {api_version!r}"
            )
        parts = urlsplit(base_url)
        bare = not urlsplit(self.base_url.strip()).path.strip("/")
        if bare and (api_version is not None or is_azure_host(parts.hostname)):
            # An Azure resource URL: the deployment (Azure's name for the model) is in the path.
            base_url = f"{parts.scheme}://{parts.netloc}/openai/deployments/{self.model}"
        if "/openai/deployments/" in base_url and api_version is None:
            raise ConfigError(
                f"an Azure deployment URL ({base_url}) needs api_version=... (for example "
                "api_version='2024-10-21'), as the Azure OpenAI REST reference lists"
            )
        if api_version is not None:
            query["api-version"] = api_version
        object.__setattr__(self, "base_url", base_url)
        object.__setattr__(self, "api_version", api_version)
        object.__setattr__(self, "query", query)
        object.__setattr__(self, "headers", _checked_headers(self.headers))
        _check_verify(self.verify)
        key = self.api_key.strip() if isinstance(self.api_key, str) else self.api_key
        if key is not None and not isinstance(key, str):
            raise ConfigError(f"api_key must be a string, got {type(key).__name__}")
        placeholder = key == PLACEHOLDER_KEY
        if placeholder or key == "":
            key = None
        if key is not None:
            _check_key(key)
        object.__setattr__(self, "api_key", key)
        entra = self._check_entra()
        if key is None and not entra and self.key_required and not is_loopback(self.base_url):
            raise MissingAPIKeyError(
                f"no API key for {self.base_url}: set the {ENV_API_KEY} environment variable "
                "(or pass api_key=...) to your key"
                + (f"; {PLACEHOLDER_KEY!r} is only a placeholder" if placeholder else "")
            )

    def _check_entra(self) -> bool:
        """Check the Microsoft Entra ID options; True when one is given."""
        token, provider = self.azure_ad_token, self.azure_ad_token_provider
        if token is None and provider is None:
            return False
        if token is not None and provider is not None:
            raise ConfigError("pass azure_ad_token or azure_ad_token_provider, not both")
        if provider is not None and not callable(provider):
            raise ConfigError(
                "azure_ad_token_provider must be a function returning a token, e.g. "
                "azure.identity.get_bearer_token_provider(credential, scope)"
            )
        if token is not None:
            if not isinstance(token, str) or not token.strip():
                raise ConfigError("azure_ad_token must be a non-empty string")
            _check_key(token.strip())
            object.__setattr__(self, "azure_ad_token", token.strip())
        if not self.azure:
            raise ConfigError(
                "azure_ad_token and azure_ad_token_provider are for Azure OpenAI: pass the "
                "resource endpoint as base_url with api_version=... (e.g. '2024-10-21')"
            )
        return True

    @classmethod
    def resolve(
        cls,
        *,
        base_url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        verify: bool | str | None = None,
        api_version: str | None = None,
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, str] | None = None,
        environ: Mapping[str, str] | None = None,
        key_required: bool = True,
        azure_ad_token: str | None = None,
        azure_ad_token_provider: Callable[[], str] | None = None,
    ) -> Endpoint:
        """Build from arguments, then ``HOLYSHEEP_*`` environment variables, then the fields'
        defaults (None: not given).

        Raises ``MissingAPIKeyError`` when no key is found for a host that is not this
        machine, unless ``key_required`` is False (nothing will be sent)."""
        env = os.environ if environ is None else environ
        given = {
            "base_url": base_url,
            "model": model,
            "api_key": api_key,
            "verify": verify,
            "api_version": api_version,
            "headers": headers,
            "azure_ad_token": azure_ad_token,
            "azure_ad_token_provider": azure_ad_token_provider,
        }
        values: dict[str, Any] = {}
        for item in options_of(cls):
            value = given.get(item.name)
            if value is None and item.metadata[ENV] is not None:
                value = env.get(item.metadata[ENV])
            # An empty base URL or model in the environment means "not set"; an empty key
            # is kept, to be refused as no key.
            if value is None or (value == "" and item.name != "api_key"):
                value = default_of(item)
            values[item.name] = value
        return cls(**values, query=query or {}, key_required=key_required)

    @property
    def azure(self) -> bool:
        """True when this is an Azure OpenAI endpoint (the key goes in ``api-key``)."""
        return self.api_version is not None or is_azure_host(urlsplit(self.base_url).hostname)

    @property
    def chat_url(self) -> str:
        """The full chat-completions URL, with its query (``api-version``) if any."""
        url = f"{self.base_url}{CHAT_PATH}"
        return f"{url}?{urlencode(self.query)}" if self.query else url

    @property
    def models_url(self) -> str | None:
        """``GET`` here lists the server's models (OpenAI's "List models"); None for Azure
        OpenAI, whose models are the resource's deployments."""
        return None if self.azure else f"{self.base_url}/models"

    def session_headers(self) -> dict[str, str]:
        """Headers that may be session defaults: nothing secret in them."""
        return {"Content-Type": "application/json", "Accept": "application/json"}

    @property
    def fresh_headers(self) -> bool:
        """True when ``request_headers()`` must be asked again for every request (a token
        provider hands out tokens that expire)."""
        return self.azure_ad_token_provider is not None

    def request_headers(self) -> dict[str, str]:
        """Headers for each request to the API host: the caller's headers, then the key
        (``Authorization: Bearer``, or ``api-key`` for Azure) when one is set; a Microsoft
        Entra ID token goes as ``Authorization: Bearer`` (the provider is called here)."""
        headers = dict(self.headers)
        token = self.azure_ad_token
        if self.azure_ad_token_provider is not None:
            token = self.azure_ad_token_provider()
            if not isinstance(token, str) or not token:
                raise ConfigError("azure_ad_token_provider returned no token (a non-empty str)")
        if token:
            headers["Authorization"] = f"Bearer {token}"
        elif self.api_key:
            if self.azure:
                headers["api-key"] = self.api_key
            else:
                headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def __repr__(self) -> str:
        key = "<set>" if self.api_key else None
        return f"Endpoint(base_url={self.base_url!r}, model={self.model!r}, api_key={key})"


def _checked_headers(headers: object) -> dict[str, str]:
    """Extra headers: a mapping of strings that can go in an HTTP header as written."""
    if not isinstance(headers, Mapping):
        raise ConfigError(
            f"headers must be a dict of header name to value, got {type(headers).__name__}: "
            "pass e.g. headers={'HTTP-Referer': 'https://example.org'}"
        )
    checked: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise ConfigError(f"header names and values must be strings, got {name!r}")
        if any(char in f"{name}{value}" for char in "\r\n") or not name.strip():
            raise ConfigError(f"header {name!r} has a line break or an empty name")
        checked[name] = value
    return checked
