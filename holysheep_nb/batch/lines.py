"""The batch input file: one JSONL line per distinct request, split by the provider's limits.

A line is what OpenAI's Batch API reference asks for: ``{"custom_id", "method": "POST",
"url": "/v1/chat/completions", "body"}``, the body being the very request the online path
would send. The ``custom_id`` is the request's cache fingerprint, so identical rows make one
line, and the answer that comes back is stored under the key the online path looks up.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from holysheep_nb.errors import ConfigError

CHAT_ENDPOINT = "/v1/chat/completions"
#: Body fields a batch request cannot carry: a batch answers whole, never as a stream.
_UNBATCHED = ("stream", "stream_options")


@dataclass(frozen=True)
class BatchLimits:
    """What one batch may hold: requests and bytes of its input file.

    The defaults are OpenAI's documented limits (50,000 requests and 200 MB a file); a
    provider with smaller ones (Azure's per-file limits, a gateway's) takes smaller values.
    """

    max_requests: int = 50_000
    max_bytes: int = 200 * 1024 * 1024

    def __post_init__(self) -> None:
        for name in ("max_requests", "max_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"BatchLimits.{name} must be a whole number >= 1, got {value!r}")


def request_line(custom_id: str, model: str, messages: Any, params: Mapping[str, Any]) -> bytes:
    """One input line (with its newline) for the request ``model`` + ``messages`` + ``params``."""
    body: dict[str, Any] = {"model": model, "messages": list(messages)}
    body.update((k, v) for k, v in params.items() if k not in _UNBATCHED)
    line = {"custom_id": custom_id, "method": "POST", "url": CHAT_ENDPOINT, "body": body}
    return json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def split(lines: Iterable[bytes], limits: BatchLimits) -> list[bytes]:
    """The lines as input files, in order, each within ``limits``.

    Raises ``ConfigError`` for a single line over the byte limit (no batch can take it).
    """
    files: list[bytes] = []
    part: list[bytes] = []
    size = 0
    for line in lines:
        if len(line) > limits.max_bytes:
            raise ConfigError(
                f"one request is {len(line):,} bytes, over the batch file limit of "
                f"{limits.max_bytes:,} bytes: send it without batch=True"
            )
        if part and (len(part) >= limits.max_requests or size + len(line) > limits.max_bytes):
            files.append(b"".join(part))
            part, size = [], 0
        part.append(line)
        size += len(line)
    if part:
        files.append(b"".join(part))
    return files


def request_set(custom_ids: Iterable[str]) -> str:
    """The name of a set of requests: the sha256 of their sorted ids, whatever their order.

    The same cell run again (after a kernel restart) asks for the same set, and finds the
    batches it submitted by this name instead of paying for them again.
    """
    digest = hashlib.sha256()
    for custom_id in sorted(custom_ids):
        digest.update(custom_id.encode())
        digest.update(b"\n")
    return digest.hexdigest()
