"""``POST /v1/embeddings``: deterministic hashed bag-of-words vectors in OpenAI's shape.

Each word (lower-cased, crudely stemmed) adds +1 or -1 to one of ``dimensions`` coordinates
chosen by a hash (the "hashing trick"), and the vector is scaled to length 1, so the cosine
of two texts grows with the words they share and texts with no word in common are near 0.
The request and answer follow OpenAI's embeddings reference: ``input`` a string, a list of
strings, a list of token ids or a list of such lists; ``encoding_format`` ``float`` (the
default) or ``base64`` (little-endian float32, which openai-python asks for and decodes);
``dimensions``; ``usage`` with ``prompt_tokens`` and ``total_tokens``. The simulated models
use the same vectors to tell how similar a few-shot example is to the row (``simulate``).
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import struct
from functools import lru_cache
from typing import Any

from holysheep_nb.errors import HolySheepError

__all__ = ["DIMENSIONS", "BadEmbeddingsRequest", "bag_vector", "cosine", "embeddings_body"]

DIMENSIONS = 256
_WORD = re.compile(r"\w+")
_MAX_DIMENSIONS = 4096


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


@lru_cache(maxsize=16384)
def bag_vector(text: str, dimensions: int = DIMENSIONS) -> tuple[float, ...]:
    """The unit-length hashed bag-of-words vector of ``text`` (all zeros without a word)."""
    vector = [0.0] * dimensions
    for word in _WORD.findall(text.lower()):
        digest = hashlib.blake2b(_stem(word).encode(), digest_size=8).digest()
        number = int.from_bytes(digest, "big")
        vector[number % dimensions] += 1.0 if number >> 63 else -1.0
    norm = math.sqrt(sum(x * x for x in vector))
    return tuple(x / norm for x in vector) if norm else tuple(vector)


def cosine(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """The cosine similarity of two unit (or zero) vectors."""
    return sum(x * y for x, y in zip(a, b, strict=True))


def _inputs(value: object) -> list[str] | str:
    """The texts of ``input``, or the reason it is unusable."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        return "'input' must be a non-empty string or array"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return [" ".join(f"t{v}" for v in value)]
    texts: list[str] = []
    for item in value:
        if isinstance(item, str):
            if not item:
                return "'input' cannot contain an empty string"
            texts.append(item)
        elif isinstance(item, list) and item and all(isinstance(v, int) for v in item):
            texts.append(" ".join(f"t{v}" for v in item))
        else:
            return "'input' must be a string, an array of strings or of token arrays"
    return texts


class BadEmbeddingsRequest(HolySheepError, ValueError):
    """The request is unusable: the message says why, ``param`` names the field (a 400)."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


def embeddings_body(body: object) -> dict[str, Any]:
    """The ``list`` object answering an embeddings request body (parsed JSON).

    Raises ``BadEmbeddingsRequest`` for a body OpenAI would refuse with a 400.
    """
    if not isinstance(body, dict):
        raise BadEmbeddingsRequest("The request body must be a JSON object.", "body")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise BadEmbeddingsRequest("you must provide a model parameter", "model")
    texts = _inputs(body.get("input"))
    if isinstance(texts, str):
        raise BadEmbeddingsRequest(texts, "input")
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise BadEmbeddingsRequest(
            "'encoding_format' must be 'float' or 'base64'", "encoding_format"
        )
    dimensions = body.get("dimensions", DIMENSIONS)
    if (
        not isinstance(dimensions, int)
        or isinstance(dimensions, bool)
        or not 1 <= dimensions <= _MAX_DIMENSIONS
    ):
        raise BadEmbeddingsRequest(
            f"'dimensions' must be an integer 1..{_MAX_DIMENSIONS}", "dimensions"
        )
    data = []
    tokens = 0
    for index, text in enumerate(texts):
        vector = bag_vector(text, dimensions)
        tokens += -(-len(text) // 4)
        embedding: list[float] | str = (
            base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
            if encoding == "base64"
            else list(vector)
        )
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return {"object": "list", "data": data, "model": body["model"], "usage": usage}
