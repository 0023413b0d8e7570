"""What the local server answers: a deterministic, rule-based labeller.

Sentiment word lists and cues, the label set a request asks for (a ``json_schema`` enum, a
``labels:`` line, or positive / negative / neutral), the off-label answers, echo mode, the
``[sha:...]`` digest suffix and the rough token count used for ``usage`` and the tpm limit.
A ``json_schema`` response format is answered with a whole value of the schema
(``schema_answers``) whose string enums get these labels.
Pure functions of the request and the config: no I/O, no state.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from holysheep_nb.server.config import ServerConfig
from holysheep_nb.server.faults import parse_marker
from holysheep_nb.server.images import UNREAD, describe_image
from holysheep_nb.server.schema_answers import prompted_schema, value_for

__all__ = [
    "LABELS_LINE",
    "MULTI_ASK",
    "SENTIMENTS",
    "choose_labels",
    "compose",
    "estimate_tokens",
    "label_set",
    "last_user_text",
    "message_text",
    "off_label",
    "prompt_digest",
    "response_schema",
    "rule_sentiment",
    "schema_answer",
]


def estimate_tokens(text: str) -> int:
    """Rough token count, ``ceil(len(text) / 4)``: the server's ``usage`` and client estimates."""
    return -(-len(text) // 4)


def prompt_digest(text: str) -> str:
    """First 8 hex digits of the SHA-256 of ``text`` (UTF-8): the ``[sha:...]`` answer suffix."""
    return hashlib.sha256(text.encode()).hexdigest()[:8]


_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
LABELS_LINE = re.compile(
    r"^[ \t]*(?:allowed[ \t]+)?labels[ \t]*:(.*)$", re.IGNORECASE | re.MULTILINE
)
_LABEL_SPLIT = re.compile(r",|;|\||\bor\b")
MULTI_ASK = re.compile(r"\bthat appl(?:y|ies)\b|\bseveral labels\b", re.IGNORECASE)
_POSITIVE = frozenset({
    "excellent", "great", "fantastic", "superb", "amazing", "perfect", "perfectly", "impressive",
    "solid", "reliable", "love", "loved", "lovely", "happy", "recommend", "recommended", "best",
    "worth", "value", "good", "nice", "awesome", "comfortable", "sturdy", "fast", "quick",
    "brilliant", "pleased", "favourite", "favorite", "wonderful", "delighted",
})  # fmt: skip
_NEGATIVE = frozenset({
    "awful", "terrible", "flimsy", "poor", "useless", "horrible", "disappointing", "disappointed",
    "faulty", "broke", "broken", "stopped", "refund", "returned", "waste", "unhelpful", "avoid",
    "bad", "worst", "hate", "hated", "defective", "leaked", "cracked", "junk", "annoying",
    "rubbish", "problem", "problems", "died",
})  # fmt: skip
_NEGATORS = frozenset({
    "not", "no", "never", "don't", "doesn't", "didn't", "isn't", "wasn't", "wouldn't", "won't",
    "hardly",
})  # fmt: skip
_POSITIVE_CUES = ("ดีมาก", "良い", "最高", "👍", "😍", "❤")
_NEGATIVE_CUES = ("แย่", "ไม่แนะนำ", "期待外れ", "壊れ", "👎", "😡")
SENTIMENTS = ("positive", "negative", "neutral")


def rule_sentiment(text: str) -> str:
    """The rule-based sentiment of ``text``: word lists with negation, and a few cues."""
    words = _WORD.findall(text.lower())
    score = 0
    for i, word in enumerate(words):
        polarity = (word in _POSITIVE) - (word in _NEGATIVE)
        if polarity and _NEGATORS.intersection(words[max(0, i - 2) : i]):
            polarity = -polarity
        score += polarity
    if not text.isascii():
        score += sum(cue in text for cue in _POSITIVE_CUES)
        score -= sum(cue in text for cue in _NEGATIVE_CUES)
    return SENTIMENTS[0] if score > 0 else SENTIMENTS[1] if score < 0 else SENTIMENTS[2]


def _stable_index(text: str, size: int, salt: str = "") -> int:
    return int.from_bytes(hashlib.sha256(f"{salt}{text}".encode()).digest()[:8], "big") % size


def _stem(word: str) -> str:
    """Crude English stem so that "billed", "bills" and "billing" all meet at "bill"."""
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def choose_labels(text: str, labels: list[str], multi: bool = False) -> list[str]:
    """Plausible labels: the sentiment if the set has one, else keyword overlap, else a hash.

    One label, or with ``multi`` every label whose words the text mentions (best first). No
    hash for a text holding an image whose colour was not read (``images.UNREAD``): the
    answer is ``unsure`` (off the set unless the set has it), not a colour never seen.
    """
    by_lower = {label.lower(): label for label in labels}
    if by_lower.keys() & set(SENTIMENTS):
        found = by_lower.get(rule_sentiment(text))
        if found is not None:
            return [found]
    stems = {_stem(word) for word in _WORD.findall(text.lower())}
    scores = {
        label: len(stems.intersection(_stem(word) for word in _WORD.findall(label.lower())))
        for label in labels
    }
    ranked = sorted((label for label in labels if scores[label]), key=lambda x: -scores[x])
    if not ranked:
        if UNREAD in text:
            return [by_lower.get("unsure", "unsure")]
        return [labels[_stable_index(text, len(labels))]]
    return ranked if multi else ranked[:1]


def message_text(message: Mapping[str, Any]) -> str:
    """The text of one chat message: a string ``content`` or its text parts joined, an
    image part as words about the image (``images.describe_image``)."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(_part_text(part) for part in content if isinstance(part, dict))
    return ""


def _part_text(part: Mapping[str, Any]) -> str:
    if part.get("type") == "image_url":
        return f" {describe_image(part)} "
    return str(part.get("text", ""))


def last_user_text(messages: list[Mapping[str, Any]]) -> str:
    """The last user message's text (the prompt), or the last message's if no user spoke."""
    for message in reversed(messages):
        if message.get("role") == "user":
            return message_text(message)
    return message_text(messages[-1])


def label_set(body: Mapping[str, Any], texts: list[str]) -> tuple[str | None, list[str]]:
    """(JSON key, or None for a bare answer; allowed labels) that the request asks for."""
    response_format = body.get("response_format")
    key = None
    if isinstance(response_format, dict) and response_format.get("type") in (
        "json_schema",
        "json_object",
    ):
        key = "label"
    for content in texts:
        match = LABELS_LINE.search(content)
        if match:
            labels = [p.strip(" \t.'\"`") for p in _LABEL_SPLIT.split(match.group(1))]
            if any(labels):
                return key, [label for label in labels if label]
    return key, list(SENTIMENTS)


def response_schema(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The JSON schema of a ``json_schema`` response format, or None."""
    response_format = body.get("response_format")
    if not isinstance(response_format, dict) or response_format.get("type") != "json_schema":
        return None
    spec = response_format.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    return schema if isinstance(schema, dict) else None


def schema_answer(
    config: ServerConfig, schema: Mapping[str, Any], texts: list[str], raw: str
) -> Any:
    """A value of ``schema`` answering the prompt ``raw``: labels for its string enums."""
    text = LABELS_LINE.sub("", parse_marker(raw)[0])
    multi_ask = any(MULTI_ASK.search(content) for content in texts)

    def pick(labels: list[str], multi: bool) -> list[str]:
        chosen = choose_labels(text, labels, multi or multi_ask)
        if off_label(config, raw):
            return ["unsure" if "unsure" not in labels else "other"]
        return chosen if multi else chosen[:1]

    return value_for(schema, text, pick)


def off_label(config: ServerConfig, raw: str) -> bool:
    """Whether this prompt gets an off-label answer (``off_label_rate``, drawn from ``seed``)."""
    return bool(config.off_label_rate) and _stable_index(raw, 10**6, f"{config.seed}:") < (
        config.off_label_rate * 10**6
    )


def compose(config: ServerConfig, body: Mapping[str, Any], texts: list[str], raw: str) -> str:
    """The assistant's answer for one request (``raw`` is the last user message as sent).

    Echo mode answers the prompt itself; a ``json_schema`` response format, or a schema the
    messages ask for in words (``schema_answers.prompted_schema``), gets JSON that validates
    against the schema (``schema_answers``); otherwise a label: bare, or as ``{"label": ...}``
    for a ``json_object`` format.
    """
    text = parse_marker(raw)[0]
    schema = None if config.echo else response_schema(body) or prompted_schema(texts)
    if config.echo:
        answer = text
    elif schema is not None:
        answer = json.dumps(schema_answer(config, schema, texts, raw), ensure_ascii=False)
    else:
        key, labels = label_set(body, texts)
        multi = key == "labels" or any(MULTI_ASK.search(content) for content in texts)
        chosen = choose_labels(LABELS_LINE.sub("", text), labels, multi)
        if off_label(config, raw):
            chosen = ["unsure" if "unsure" not in labels else "other"]
        if key is None:
            answer = ", ".join(chosen)
        else:
            value: object = chosen if multi else chosen[0]
            answer = json.dumps({key: value}, ensure_ascii=False)
    if config.digest:
        answer = f"{answer} [sha:{prompt_digest(raw)}]"
    return answer
