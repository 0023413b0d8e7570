"""Token log-probabilities of an answer, and the probability of a span of its text.

A chat completion asked with ``logprobs=True`` carries ``choices[0].logprobs.content``: one
entry per generated token, ``{"token": "...", "logprob": -0.01, "top_logprobs": [...]}``,
whose tokens concatenate to the answer text. ``parse_logprobs`` keeps the tokens and their
log-probabilities; ``span_probability`` turns them into the probability the model gave to
one piece of its answer (a label), as OpenAI's cookbook "Using logprobs" does for
classification: the linear probability of a token is ``exp(logprob)``, and a piece spelled
over several tokens has the product of theirs.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

from holysheep_nb.validation import is_finite_number


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """One generated token and its natural-log probability (<= 0)."""

    token: str
    logprob: float


#: The tokens of one answer, in order.
TokenLogprobs = tuple[TokenLogprob, ...]


def parse_logprobs(logprobs: object) -> TokenLogprobs | None:
    """The tokens of ``choices[0].logprobs`` (OpenAI's shape), or None when there are none.

    None also when an entry is not a token with a finite log-probability <= 0: a half-read
    list would give a wrong probability, no list gives NaN.
    """
    if not isinstance(logprobs, dict):
        return None
    content = logprobs.get("content")
    if not isinstance(content, list) or not content:
        return None
    tokens: list[TokenLogprob] = []
    for entry in content:
        if not isinstance(entry, dict):
            return None
        token, logprob = entry.get("token"), entry.get("logprob")
        if not isinstance(token, str) or not is_finite_number(logprob) or logprob > 0:
            return None
        tokens.append(TokenLogprob(token, float(logprob)))
    return tuple(tokens)


def tokens_to_json(tokens: TokenLogprobs | None) -> str | None:
    """``tokens`` as the cache keeps them: ``[["token", logprob], ...]`` in ASCII JSON (a
    byte-level token may hold a lone surrogate, which SQLite's UTF-8 text cannot); None for
    none."""
    if not tokens:
        return None
    return json.dumps([[token.token, token.logprob] for token in tokens])


def tokens_from_json(text: str | None) -> TokenLogprobs | None:
    """The tokens ``tokens_to_json`` wrote, or None (none kept, or not that shape)."""
    if not text:
        return None
    try:
        pairs = json.loads(text)
    except ValueError:
        return None
    if not isinstance(pairs, list):
        return None
    content = [
        {"token": pair[0], "logprob": pair[1]}
        for pair in pairs
        if isinstance(pair, list) and len(pair) == 2
    ]
    return parse_logprobs({"content": content}) if len(content) == len(pairs) else None


def span_probability(tokens: TokenLogprobs | None, pieces: list[str]) -> float:
    """The probability the model gave to the last spelling of each of ``pieces`` in its answer.

    Each piece is looked up (case-insensitively, its last occurrence: after any reasoning
    and JSON keys) in the concatenated tokens; the result is the product of ``exp(logprob)``
    over every token that overlaps a piece. A token that also holds a quote or a space counts
    whole. NaN when there are no tokens or a piece is not spelled out in them.
    """
    if not tokens or not pieces:
        return math.nan
    text = "".join(token.token for token in tokens)
    ends: list[int] = []
    offset = 0
    for token in tokens:
        offset += len(token.token)
        ends.append(offset)
    chosen: set[int] = set()
    for piece in pieces:
        matches = list(re.finditer(re.escape(piece), text, re.IGNORECASE)) if piece else []
        if not matches:
            return math.nan
        start, end = matches[-1].span()
        for index, token_end in enumerate(ends):
            token_start = token_end - len(tokens[index].token)
            if token_start < end and token_end > start:
                chosen.add(index)
    return math.exp(sum(tokens[index].logprob for index in chosen))
