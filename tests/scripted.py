"""A scripted chat-completions endpoint for aioresponses: each prompt gets its own script.

Deciding the response by the prompt in the body (not by arrival order) keeps concurrent
tests deterministic: whichever worker sends a row, that row gets its scripted answers.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aioresponses import CallbackResult, aioresponses

from tests.fakes import FakeClock

URL = "http://127.0.0.1:9/v1/chat/completions"
BASE_URL = "http://127.0.0.1:9/v1"


@dataclass
class Reply:
    """One scripted attempt: a status with a body and headers, or an exception to raise."""

    status: int = 200
    body: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    raises: BaseException | None = None
    advance: float = 0.0  # virtual seconds the attempt takes


def ok_body(text: str, prompt_tokens: int = 7, completion_tokens: int = 3) -> str:
    return json.dumps(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
    )


def error_body(message: str) -> str:
    return json.dumps({"error": {"message": message, "type": "invalid_request_error"}})


class ScriptedServer:
    """Answers ``answer:<prompt>`` unless the prompt has a script of replies to go through."""

    def __init__(self, clock: FakeClock | None = None, shuffle_seed: int | None = None) -> None:
        self.scripts: dict[str, list[Reply]] = defaultdict(list)
        self.clock = clock
        self.rng = random.Random(shuffle_seed) if shuffle_seed is not None else None
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.send_times: list[float] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.max_tasks = 0
        self.replied: list[tuple[str, int, int]] = []  # (prompt, status, sends so far)

    def script(self, prompt: str, *replies: Reply) -> None:
        self.scripts[prompt].extend(replies)

    def count(self, prompt: str) -> int:
        return sum(1 for body in self.bodies if body["messages"][-1]["content"] == prompt)

    async def handle(self, url: Any, **kwargs: Any) -> CallbackResult:
        body = json.loads(kwargs["data"])
        self.bodies.append(body)
        self.headers.append(dict(kwargs.get("headers") or {}))
        if self.clock is not None:
            self.send_times.append(self.clock.now())
        self.max_tasks = max(self.max_tasks, len(asyncio.all_tasks()))
        prompt = body["messages"][-1]["content"]
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.rng is not None:
                for _ in range(self.rng.randrange(6)):
                    await asyncio.sleep(0)
            script = self.scripts.get(prompt)
            reply = script.pop(0) if script else Reply(body=ok_body(f"answer:{prompt}"))
            if self.clock is not None and reply.advance:
                self.clock.advance(reply.advance)
            self.replied.append((prompt, reply.status, len(self.bodies)))
            if reply.raises is not None:
                raise reply.raises
            return CallbackResult(
                status=reply.status,
                body=reply.body if reply.body is not None else ok_body(f"answer:{prompt}"),
                headers=reply.headers,
                content_type=reply.headers.get("Content-Type", "application/json"),
            )
        finally:
            self.in_flight -= 1


@contextmanager
def scripted(
    clock: FakeClock | None = None, shuffle_seed: int | None = None
) -> Iterator[ScriptedServer]:
    """Route every POST to the scripted server for the duration of the block."""
    server = ScriptedServer(clock, shuffle_seed)
    with aioresponses() as mocked:
        mocked.post(URL, callback=server.handle, repeat=True)
        yield server
