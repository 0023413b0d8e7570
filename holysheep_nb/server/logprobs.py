"""Deterministic, plausible ``logprobs`` for an answer: the shape of openai-python's
``ChatCompletionTokenLogprob`` (``token``, ``bytes``, ``logprob``, ``top_logprobs``).

Tokens are the server's four-character pieces (``token_pieces``), so the entries line up with
``usage`` and with the stream's chunks. A simulated model's label is one token of its own
(as common words are for real tokenizers), and its entry carries the simulated confidence,
with the labels the model hesitated between as ``top_logprobs`` (``label_entries``).
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

__all__ = ["label_entries", "logprobs", "token_pieces"]

_SURE = 0.0  # the logprob of a token around the label (JSON punctuation, the key)


def token_pieces(text: str, label: str | None = None) -> list[str]:
    """``text`` cut into the server's tokens (four characters each); with ``label``, its
    last occurrence in ``text`` is one token and the text either side is cut as usual."""
    if label:
        at = text.rfind(label)
        if at >= 0:
            end = at + len(label)
            return [*token_pieces(text[:at]), label, *token_pieces(text[end:])]
    return [text[i : i + 4] for i in range(0, len(text), 4)]


def label_entries(
    text: str, label: str, scores: tuple[tuple[str, float], ...], top: int
) -> list[dict[str, Any]]:
    """``logprobs.content`` for a simulated answer: the label's token has the log of its
    probability (``scores[0]``) and the other labels as alternatives, best first; every
    other token is certain (logprob 0) with unlikely spellings as alternatives."""
    entries = []
    for token in token_pieces(text, label):
        if token == label:
            ranked = [(label, scores[0][1]), *sorted(scores[1:], key=lambda s: -s[1])]
            pairs = [(t, round(math.log(max(p, 1e-300)), 6)) for t, p in ranked]
            logprob = pairs[0][1]
        else:
            pairs = [(token, _SURE)]
            logprob = _SURE
        fill = (t for t in _alternatives(token) if t not in {p[0] for p in pairs})
        while len(pairs) < top:
            pairs.append((next(fill), round(-12.0 - len(pairs), 6)))
        entries.append(
            {
                "token": token,
                "bytes": list(token.encode()),
                "logprob": logprob,
                "top_logprobs": [
                    {"token": t, "bytes": list(t.encode()), "logprob": lp} for t, lp in pairs[:top]
                ],
            }
        )
    return entries


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
