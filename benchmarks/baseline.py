"""The baselines a data scientist would write by hand, for the product to be measured against.

``raw_aiohttp``: one ``ClientSession``, an ``asyncio.Semaphore``, ``gather`` over every row,
the same request body as the product (model, system and user messages, compact UTF-8 JSON),
and the answer text read from ``choices[0].message.content``. No retries, no rate limits, no
progress bar, no DataFrame: the least work that sends every row and keeps its answer.

``openai_sdk``: the same with the official ``AsyncOpenAI`` client, where it is installed.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
from collections.abc import Sequence
from typing import Any

import aiohttp
from harness import MODEL, SYSTEM


def request_body(prompt: str) -> bytes:
    """The JSON body the product sends for ``prompt`` (see ``holysheep_nb.chat``)."""
    payload = {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": prompt},
        ],
    }
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


async def _raw_aiohttp(base_url: str, texts: Sequence[str], concurrency: int) -> list[str]:
    url = f"{base_url}/chat/completions"
    semaphore = asyncio.Semaphore(concurrency)
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    connector = aiohttp.TCPConnector(limit=concurrency)

    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def one(prompt: str) -> str:
            body = request_body(prompt)
            async with semaphore, session.post(url, data=body) as response:
                raw = await response.read()
            content: str = json.loads(raw)["choices"][0]["message"]["content"]
            return content

        return await asyncio.gather(*(one(prompt) for prompt in texts))


def raw_aiohttp(base_url: str, texts: Sequence[str], concurrency: int) -> list[str]:
    """Answer every prompt with plain aiohttp; return the answers in row order."""
    return asyncio.run(_raw_aiohttp(base_url, texts, concurrency))


def openai_available() -> bool:
    """Whether the ``openai`` package is installed (it is not a dependency)."""
    return importlib.util.find_spec("openai") is not None


def preload_openai() -> None:
    """Import ``openai`` now, so that its (long) import is not timed as part of a run."""
    importlib.import_module("openai")


async def _openai_sdk(base_url: str, texts: Sequence[str], concurrency: int) -> list[str]:
    from openai import AsyncOpenAI  # optional: imported only when installed

    semaphore = asyncio.Semaphore(concurrency)
    messages: list[Any] = [{"role": "system", "content": SYSTEM}]
    client = AsyncOpenAI(base_url=base_url, api_key="local", max_retries=0)
    try:

        async def one(prompt: str) -> str:
            async with semaphore:
                answer = await client.chat.completions.create(
                    model=MODEL, messages=[*messages, {"role": "user", "content": prompt}]
                )
            return answer.choices[0].message.content or ""

        return await asyncio.gather(*(one(prompt) for prompt in texts))
    finally:
        await client.close()


def openai_sdk(base_url: str, texts: Sequence[str], concurrency: int) -> list[str]:
    """Answer every prompt with ``AsyncOpenAI`` and a semaphore; answers in row order."""
    return asyncio.run(_openai_sdk(base_url, texts, concurrency))
