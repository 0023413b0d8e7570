"""Text vectors for ``select="similar"``: the provider's ``/v1/embeddings``, cached like the
answers, or a local TF-IDF (scikit-learn, the ``examples`` extra) when no
``embedding_model`` is given or the provider has no embeddings route.

Both give unit-length rows, so the dot product is the cosine similarity. The embeddings
request is OpenAI's (``POST {base_url}/embeddings`` with ``model`` and a list ``input``;
https://platform.openai.com/docs/api-reference/embeddings); the key goes only to the API
host, as for the chat requests.
"""

from __future__ import annotations

import importlib
import json
import warnings
from collections.abc import Sequence
from typing import Any

import aiohttp
import numpy as np

from holysheep_nb.cache import CachedAnswer, Fingerprinter, ResponseCache
from holysheep_nb.endpoint import Endpoint, ssl_option
from holysheep_nb.errors import HolySheepError, HolySheepWarning

#: Texts per embeddings request (OpenAI takes up to 2,048 inputs a request).
EMBEDDING_BATCH = 256
EMBEDDINGS_PATH = "/embeddings"


def tfidf_vectors(pool: Sequence[str], rows: Sequence[str]) -> tuple[Any, Any]:
    """Unit-length TF-IDF rows for the pool and the rows, fitted on both (sparse)."""
    try:
        text = importlib.import_module("sklearn.feature_extraction.text")
    except ImportError:  # pragma: no cover - the extra is missing
        raise HolySheepError(
            "select='similar' without embedding_model= uses a local TF-IDF from scikit-learn: "
            "pip install 'holysheep_nb[examples]', or pass embedding_model=..."
        ) from None
    vectorizer = text.TfidfVectorizer(sublinear_tf=True)
    vectorizer.fit([*pool, *rows])
    return vectorizer.transform(pool), vectorizer.transform(rows)


class NoEmbeddings(HolySheepError):
    """The provider has no embeddings route (404/405): the TF-IDF stands in."""


async def embed(
    endpoint: Endpoint,
    model: str,
    texts: Sequence[str],
    cache: ResponseCache | None,
    *,
    timeout: float,
) -> np.ndarray:
    """One unit-length row per text from ``/v1/embeddings`` (``texts`` distinct), reading
    and writing the cache; ``timeout`` seconds a request (the run's). Raises
    ``NoEmbeddings`` when the provider has no such route and ``HolySheepError`` for any
    other failure (the run has not started)."""
    key_of = Fingerprinter(
        base_url=endpoint.base_url, model=model, params={"holysheep": "embeddings"}
    )
    keys = [key_of(({"role": "input", "content": text},)) for text in texts]
    found = cache.get_many(keys) if cache is not None else {}
    vectors: dict[int, list[float]] = {
        i: json.loads(found[key].response) for i, key in enumerate(keys) if key in found
    }
    todo = [i for i in range(len(texts)) if i not in vectors]
    if todo:
        url = f"{endpoint.base_url}{EMBEDDINGS_PATH}"
        async with aiohttp.ClientSession(
            headers=endpoint.session_headers(),
            timeout=aiohttp.ClientTimeout(total=timeout),
            connector=aiohttp.TCPConnector(ssl=ssl_option(endpoint.verify)),
        ) as session:
            for start in range(0, len(todo), EMBEDDING_BATCH):
                part = todo[start : start + EMBEDDING_BATCH]
                got = await _ask(session, url, endpoint, model, [texts[i] for i in part])
                for i, vector in zip(part, got, strict=True):
                    vectors[i] = vector
                    if cache is not None:
                        cache.put(keys[i], CachedAnswer(json.dumps(vector)))
        if cache is not None:
            cache.flush()
    matrix = np.asarray([vectors[i] for i in range(len(texts))], dtype=float)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0, 1.0, norms)


async def _ask(
    session: aiohttp.ClientSession, url: str, endpoint: Endpoint, model: str, inputs: list[str]
) -> list[list[float]]:
    body = {"model": model, "input": inputs, "encoding_format": "float"}
    try:
        async with session.post(
            url, json=body, headers=endpoint.request_headers(), params=dict(endpoint.query)
        ) as response:
            if response.status in (404, 405):
                raise NoEmbeddings(f"HTTP {response.status}")
            text = await response.text()
            if response.status >= 400:
                raise HolySheepError(
                    f"the embeddings request for select='similar' failed: HTTP "
                    f"{response.status} from {endpoint.base_url}: {text[:200]}"
                )
    except aiohttp.ClientError as exc:
        raise HolySheepError(
            f"the embeddings request for select='similar' failed: {type(exc).__name__}: {exc}"
        ) from None
    try:
        data = sorted(json.loads(text)["data"], key=lambda item: item["index"])
        vectors = [list(map(float, item["embedding"])) for item in data]
    except (ValueError, KeyError, TypeError) as exc:
        raise HolySheepError(f"the embeddings answer is not OpenAI's shape: {exc}") from None
    if len(vectors) != len(inputs):
        raise HolySheepError(
            f"the embeddings answer has {len(vectors)} vectors for {len(inputs)} inputs"
        )
    return vectors


def fallback_warning(reason: str) -> None:
    """Say that the TF-IDF stands in for the provider's embeddings."""
    warnings.warn(
        f"the provider has no /v1/embeddings ({reason}): select='similar' uses a local TF-IDF",
        HolySheepWarning,
        stacklevel=3,
    )
