"""The contract's floor: the least client that does what ``complete()`` must do for each row.

Raw aiohttp (``baseline.raw_aiohttp``) keeps only the answers. ``complete()`` also owes each
row, by its contract (``docs/contract.md``): the prompt read from a DataFrame column, a
place in the window of requests in flight, a deadline, the time it was sent and answered
(its latency), the answer's ``finish_reason`` and token usage, one typed outcome, the run's
tally, and the result columns of a new DataFrame. ``contract_floor`` does exactly that, in
one flat loop and nothing more: no retries (a row that fails stops the run), no rate
limits, no cache, no repeats, no progress bar. It is no product (it could not recover from
a single 429); it shows how little CPU those duties cost, so that the product's distance
from raw aiohttp can be split into the duties (the floor's distance) and how the product
is built (its distance from the floor).

Like the product it does without aiohttp's per-request timer (one deadline queue for the
run) and its cookie jar (an API needs none).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
import pandas as pd
from harness import MODEL, PROMPT_COLUMN, SYSTEM

#: Seconds a request may take (the product's default timeout).
TIMEOUT = 60.0


@dataclass(slots=True)
class _Outcome:
    """One row's typed outcome, as the product builds one per row."""

    row_id: int
    response: str | None
    latency: float
    prompt_tokens: int | None
    completion_tokens: int | None
    finish_reason: str | None


@dataclass
class _Tally:
    succeeded: int = 0
    sent: int = 0
    tokens_in: int = 0
    tokens_out: int = 0


async def _contract_floor(
    base_url: str, frame: pd.DataFrame, concurrency: int, per_row: Callable[[], object] | None
) -> pd.DataFrame:
    url = f"{base_url}/chat/completions"
    texts = frame[PROMPT_COLUMN].tolist()
    rows = len(texts)
    response: list[str | None] = [None] * rows
    latency = [math.nan] * rows
    prompt_tokens: list[int | None] = [None] * rows
    completion_tokens: list[int | None] = [None] * rows
    finish_reason: list[str | None] = [None] * rows
    tally = _Tally()
    in_flight = 0
    deadlines: deque[tuple[float, int]] = deque()
    system = json.dumps({"role": "system", "content": SYSTEM}, ensure_ascii=False)
    head = f'{{"model":{json.dumps(MODEL)},"messages":[{system},{{"role":"user","content":'
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "Authorization": "Bearer sk-floor",
    }
    pending = iter(enumerate(texts))
    now = time.monotonic
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency),
        headers=headers,
        timeout=aiohttp.ClientTimeout(total=None),
        cookie_jar=aiohttp.DummyCookieJar(),
    ) as session:

        async def work() -> None:
            nonlocal in_flight
            for position, prompt in pending:
                if in_flight >= concurrency:
                    raise RuntimeError("the window is full")
                in_flight += 1
                body = f"{head}{json.dumps(prompt, ensure_ascii=False)}}}]}}".encode()
                sent = now()
                deadlines.append((sent + TIMEOUT, position))
                tally.sent += 1
                async with session.post(url, data=body) as answer:
                    raw = await answer.read()
                    status = answer.status
                in_flight -= 1
                while deadlines and response[deadlines[0][1]] is not None:
                    deadlines.popleft()
                if status != 200:
                    raise RuntimeError(f"HTTP {status}")
                if per_row is not None:
                    per_row()
                data = json.loads(raw)
                choice = data["choices"][0]
                usage = data.get("usage") or {}
                outcome = _Outcome(
                    position,
                    choice["message"]["content"],
                    now() - sent,
                    usage.get("prompt_tokens"),
                    usage.get("completion_tokens"),
                    choice.get("finish_reason"),
                )
                tally.succeeded += 1
                tally.tokens_in += outcome.prompt_tokens or 0
                tally.tokens_out += outcome.completion_tokens or 0
                response[position] = outcome.response
                latency[position] = outcome.latency
                prompt_tokens[position] = outcome.prompt_tokens
                completion_tokens[position] = outcome.completion_tokens
                finish_reason[position] = outcome.finish_reason

        await asyncio.gather(*(work() for _ in range(concurrency)))
    columns = pd.DataFrame(
        {
            "response": pd.array(response, dtype="string"),
            "error": pd.array([None] * rows, dtype="string"),
            "latency": latency,
            "prompt_tokens": pd.array(prompt_tokens, dtype="Int64"),
            "completion_tokens": pd.array(completion_tokens, dtype="Int64"),
            "finish_reason": pd.array(finish_reason, dtype="string"),
        },
        index=frame.index,
    )
    return pd.concat([frame, columns], axis=1)


def contract_floor(
    base_url: str,
    frame: pd.DataFrame,
    concurrency: int,
    per_row: Callable[[], object] | None = None,
) -> pd.DataFrame:
    """``frame`` with the result columns, every row answered by the server at ``base_url``
    through ``concurrency`` requests at a time; raises on the first row that fails.
    ``per_row`` is called once per answer (``coupling.py`` adds a known cost with it)."""
    return asyncio.run(_contract_floor(base_url, frame, concurrency, per_row))
