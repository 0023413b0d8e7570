"""Deterministic, plausible ``logprobs`` for an answer: the shape of openai-python's
``ChatCompletionTokenLogprob`` (``token``, ``bytes``, ``logprob``, ``top_logprobs``).

Tokens are the server's four-character pieces (``token_pieces``), so the entries line up with
``usage`` and with the stream's chunks.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

__all__ = ["logprobs", "token_pieces"]


def token_pieces(text: str) -> list[str]:
    """``text`` cut into the server's tokens (four characters each)."""
    return [text[i : i + 4] for i in range(0, len(text), 4)]


def logprobs(text: str, top: int) -> list[dict[str, Any]]:
    """Deterministic ``logprobs.content`` entries for ``text``, ``top`` alternatives each.

    The chosen token is the most likely one (probability 0.55..0.99); the alternatives share
    what is left, halving each time, so the probabilities at a position sum to less than 1.
    """
    entries = []
    for position, token in enumerate(token_pieces(text)):
        digest = hashlib.sha256(f"{position}\x00{token}".encode()).digest()
        chance = 0.55 + 0.44 * (digest[0] * 256 + digest[1]) / 65535.0
        logprob = round(math.log(chance), 6)
        alternatives = [{"token": token, "bytes": list(token.encode()), "logprob": logprob}]
        rest = 1.0 - chance
        for other in _alternatives(token)[: max(0, top - 1)]:
            rest /= 2.0
            alternatives.append(
                {"token": other, "bytes": list(other.encode()), "logprob": round(math.log(rest), 6)}
            )
        entries.append(
            {
                "token": token,
                "bytes": list(token.encode()),
                "logprob": logprob,
                "top_logprobs": alternatives[:top],
            }
        )
    return entries


def _alternatives(token: str) -> list[str]:
    candidates = [
        token.upper(), token.capitalize(), f" {token.strip()}", token.lower(), f"{token}s",
        token.strip() + ".", f"_{token}", token[::-1],
    ]  # fmt: skip
    out = list(dict.fromkeys(c for c in candidates if c != token))
    out += [f"{token}{i}" for i in range(20 - len(out))]
    return out
