"""The baselines a data scientist would write by hand, for the product to be measured against.

``raw_aiohttp``: one ``ClientSession``, an ``asyncio.Semaphore``, ``gather`` over every row,
the same request body as the product (model, system and user messages, compact UTF-8 JSON),
and the answer text read from ``choices[0].message.content``. No retries, no rate limits, no
progress bar, no DataFrame: the least work that sends every row and keeps its answer.

``retrying_aiohttp``: ``raw_aiohttp`` that also retries each 429 on its own row, after the
answer's ``Retry-After``, and nothing else: no run-wide pause, no change of concurrency. It is
what the 429 cases measure the product against.

``openai_sdk``: the same with the official ``AsyncOpenAI`` client, where it is installed.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
from collections.abc import Sequence
from dataclasses import dataclass
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


@dataclass
class Retried:
    """The answers of ``retrying_aiohttp`` in row order, and the 429s it was sent."""

    answers: list[str]
    rate_limited: int


async def _retrying_aiohttp(
    base_url: str, texts: Sequence[str], concurrency: int, hold_slot: bool
) -> Retried:
    url = f"{base_url}/chat/completions"
    semaphore = asyncio.Semaphore(concurrency)
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    limited = 0

    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def send(body: bytes) -> str | float:
            """The answer text, or the seconds a 429 asks to wait."""
            nonlocal limited
            async with session.post(url, data=body) as response:
                raw = await response.read()
                if response.status == 429:
                    limited += 1
                    return float(response.headers.get("Retry-After", "1"))
                response.raise_for_status()
            content: str = json.loads(raw)["choices"][0]["message"]["content"]
            return content

        async def held(prompt: str) -> str:
            body = request_body(prompt)
            async with semaphore:
                for _ in range(MAX_ATTEMPTS):
                    answer = await send(body)
                    if isinstance(answer, str):
                        return answer
                    await asyncio.sleep(answer)
            raise RuntimeError(f"429 {MAX_ATTEMPTS} times in a row")

        async def released(prompt: str) -> str:
            body = request_body(prompt)
            for _ in range(MAX_ATTEMPTS):
                async with semaphore:
                    answer = await send(body)
                if isinstance(answer, str):
                    return answer
                await asyncio.sleep(answer)
            raise RuntimeError(f"429 {MAX_ATTEMPTS} times in a row")

        one = held if hold_slot else released
        answers = await asyncio.gather(*(one(prompt) for prompt in texts))
    return Retried(list(answers), limited)


#: Attempts per row before the retrying baseline gives up (a bound, never reached at 5%).
MAX_ATTEMPTS = 20


def retrying_aiohttp(
    base_url: str, texts: Sequence[str], concurrency: int, *, hold_slot: bool = True
) -> Retried:
    """Answer every prompt with plain aiohttp, retrying a 429 on its own row after Retry-After.

    With ``hold_slot`` (the default) a row keeps its semaphore slot while it waits, as any
    ``async with semaphore: await client.create(...)`` does when the SDK retries inside the
    call (``AsyncOpenAI`` does, and the product's workers do too). Without it the slot is
    given back during the wait: a hand-written loop that keeps every slot busy.
    """
    return asyncio.run(_retrying_aiohttp(base_url, texts, concurrency, hold_slot))


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
