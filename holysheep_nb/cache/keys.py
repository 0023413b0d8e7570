"""Cache keys: a request's fingerprint, the sha256 of its canonical JSON.

A key covers everything that shapes the answer (base URL, model, messages, parameters) and
never the API key, so answers stay valid when the key rotates and no key reaches the file.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

FINGERPRINT_VERSION = 1
"""Part of every key: bump it when the request encoding changes, so old answers stop matching."""


def _jsonable(value: object) -> dict[str, Any]:
    # Messages and params may be any Mapping (e.g. a MappingProxyType); the C encoder only
    # knows dicts, and converting in this hook costs nothing for the common plain dict.
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"cannot fingerprint a value of type {type(value).__name__}: {value!r}")


# One encoder for every key: json.dumps(...) with options builds a new encoder per call.
_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_jsonable
)


def canonical(value: Any) -> Any:
    """``value`` with every whole float written as an int, in dicts and lists too.

    ``temperature=0`` and ``temperature=0.0`` ask the same of the model: one key, paid once.
    """
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {key: canonical(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [canonical(item) for item in value]
    return value


def _utf8(text: str) -> bytes:
    # surrogatepass: a prompt may hold a lone surrogate (bad source data); it still needs a key.
    return text.encode("utf-8", "surrogatepass")


class Fingerprinter:
    """Computes :func:`fingerprint` for many rows that share base URL, model and params.

    The constant parts are encoded and hashed once, so each row costs one JSON encoding of its
    messages and one hash (about a third of the cost of :func:`fingerprint`).
    """

    __slots__ = ("_head", "_tail")

    def __init__(self, *, base_url: str, model: str, params: Mapping[str, Any]) -> None:
        # The canonical document is {"base_url","messages","model","params","v"} with sorted
        # keys, so "messages" sits between a fixed head and a fixed tail.
        head = f'{{"base_url":{_ENCODER.encode(base_url.rstrip("/"))},"messages":'
        tail = (
            f',"model":{_ENCODER.encode(model)},"params":{_ENCODER.encode(canonical(params))}'
            f',"v":{FINGERPRINT_VERSION}}}'
        )
        self._head = hashlib.sha256(_utf8(head))
        self._tail = _utf8(tail)

    def __call__(self, messages: Sequence[Mapping[str, Any]]) -> str:
        """Return the cache key of a request with these messages."""
        digest = self._head.copy()
        digest.update(_utf8(_ENCODER.encode(list(messages))))
        digest.update(self._tail)
        return digest.hexdigest()


def fingerprint(
    *,
    base_url: str,
    model: str,
    messages: Sequence[Mapping[str, Any]],
    params: Mapping[str, Any],
) -> str:
    """Return the cache key of one request: a sha256 hex digest of its canonical JSON.

    The canonical JSON (sorted keys, no whitespace, UTF-8) is of ``{"v": 1, "base_url": ...,
    "model": ..., "messages": ..., "params": ...}`` with the base URL's trailing ``/``
    stripped, so it is independent of dict key order. It covers everything that shapes the
    answer and never the API key: the caller does not pass it, so the key never reaches the
    cache file and answers stay valid when the key rotates.
    """
    return Fingerprinter(base_url=base_url, model=model, params=params)(messages)
