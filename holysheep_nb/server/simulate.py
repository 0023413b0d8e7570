"""How a simulated model (``models.SimModel``) answers one request: the label, its
confidence, the labels it hesitated between, and the extracted fields.

``answers_for`` is the server's one entry point for every chat answer: a request for a model
that is not simulated (or in echo mode, or asking for several labels, or a label set with no
sentiment in it) gets the rule-based answer of ``answers.compose``, ``n`` times. Otherwise:

- The truth is the sample's gold when the text is a sample review (``reviews.truth_of``),
  else the rule-based sentiment.
- A row's chance of being right, ``p``, follows ``models`` (difficulty, hard cases) and the
  prompt: a system / developer message or the prompt that defines a hard case ("sarcasm
  counts as negative"; "mixed ... verdict" or "on balance") wins back ``instruction_gain``
  of its penalty on those rows; user/assistant turns before the row (few-shot examples)
  add ``example_gain`` plus ``similar_example_gain`` times the cosine of the closest one.
- The answer is right when a uniform draw ``u`` is below ``p``; otherwise another label,
  in the model's confusion pattern. At temperature 0 ``u`` is fixed by (seed, model, text),
  and the prompt's wording nudges the log-odds by a normal draw of sd ``prompt_noise``, so a
  rewording changes the answers on the rows the model was unsure of. At a higher
  temperature (the default is 1, as OpenAI's) each request and each of its ``n`` choices
  draws anew, counted per prompt by the server.
- The reported confidence is ``sigmoid(logit(p) + overconfidence)``; the alternatives
  share the rest, the true label most when the answer is wrong.

Length: one idea, a simulated model's answer from the prompt's features to the label, its
probabilities and the extracted fields; the numbers behind ``p`` are ``calibration``'s.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

from holysheep_nb.reviews import PRODUCTS, SENTIMENTS, Review, aspects_of, truth_of
from holysheep_nb.server.answers import (
    LABELS_LINE,
    MULTI_ASK,
    choose_labels,
    compose,
    label_set,
    message_text,
    off_label,
    prompt_digest,
    response_schema,
    rule_sentiment,
)
from holysheep_nb.server.calibration import base, difficulty, logit, sigmoid, uniform
from holysheep_nb.server.config import ServerConfig
from holysheep_nb.server.embeddings import bag_vector, cosine
from holysheep_nb.server.faults import parse_marker
from holysheep_nb.server.models import SimModel
from holysheep_nb.server.schema_answers import prompted_schema, value_for

__all__ = ["Answer", "Draw", "answers_for", "draw_label", "simulate_label"]

_DEFINES = {
    "sarcastic": re.compile(r"sarcas|\birony\b|\bironic", re.IGNORECASE),
    "mixed": re.compile(r"\bmixed\b|\bon balance\b|\bverdict\b", re.IGNORECASE),
}
_NORMAL = NormalDist()
_HESITATION = 0.7  # of what the chosen label leaves, the share of the truth when wrong


@dataclass(frozen=True, slots=True)
class Answer:
    """One choice's content; for a simulated label, the label as spelled in the content
    and every label's probability (the chosen one first)."""

    content: str
    label: str | None = None
    scores: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True, slots=True)
class Draw:
    """One simulated label: the answer, whether it is right, the chance ``p`` it had of
    being right, and the probabilities reported (the answer's first)."""

    label: str
    correct: bool
    chance: float
    scores: tuple[tuple[str, float], ...]


@dataclass(frozen=True, slots=True)
class _Prompt:
    """What the simulation reads in a request besides the row: the hard cases its
    instructions define, its few-shot examples' texts, and a key for its wording."""

    defined: frozenset[str]
    examples: tuple[str, ...]
    key: str


def _read_prompt(messages: list[Mapping[str, Any]]) -> _Prompt:
    """The prompt's features; its key is the messages' roles and texts (the wording: the
    other request fields shape the answer's form, not what the model thinks)."""
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
    instructions = [
        message_text(m)
        for i, m in enumerate(messages)
        if m.get("role") in ("system", "developer") or i == last_user
    ]
    defined = frozenset(
        kind for kind, pattern in _DEFINES.items() if any(pattern.search(t) for t in instructions)
    )
    examples = tuple(
        message_text(m)
        for i, m in enumerate(messages[:last_user])
        if m.get("role") == "user"
        and i + 1 < len(messages)
        and messages[i + 1].get("role") == "assistant"
    )
    wording = [[str(m.get("role")), message_text(m)] for m in messages]
    key = prompt_digest(json.dumps(wording, ensure_ascii=False))
    return _Prompt(defined, examples, key)


def _chance(model: SimModel, seed: int, text: str, kind: str, prompt: _Prompt) -> float:
    odds = base(model, seed) + model.discrimination * difficulty(model.name, seed, text)
    odds += model.prompt_noise * _NORMAL.inv_cdf(uniform(seed, model.name, text, prompt.key))
    if kind in _DEFINES:
        kept = 1.0 - model.instruction_gain if kind in prompt.defined else 1.0
        odds -= model.hard_penalty * kept
    if prompt.examples:
        row = bag_vector(text)
        closest = max(cosine(row, bag_vector(example)) for example in prompt.examples)
        odds += model.example_gain + model.similar_example_gain * max(0.0, closest)
    return sigmoid(odds)


def draw_label(
    model: SimModel,
    seed: int,
    text: str,
    truth: str,
    kind: str,
    labels: list[str],
    prompt: _Prompt,
    draw: str | None,
) -> Draw:
    """The label ``model`` answers for ``text`` among ``labels`` (spelled as in the set).

    ``truth`` is a sentiment; ``kind`` the review's kind; ``draw`` None at temperature 0,
    else a fresh draw's id. An off-set answer (the truth, when the set lacks it) is spelled
    as the sentiment itself.
    """
    salt: tuple[object, ...] = (seed, model.name, text)
    by_lower = {label.lower(): label for label in labels}
    confusion = model.confusion
    target = truth
    if truth not in by_lower:
        if uniform(*salt, prompt.key, draw, "off-set") < model.off_set_rate:
            chance = _chance(model, seed, text, kind, prompt)
            confidence = sigmoid(logit(chance) + model.overconfidence)
            return Draw(truth, True, chance, ((truth, confidence),))
        weights = confusion.get(truth, {})
        target = max(
            (lower for lower in by_lower if lower in SENTIMENTS),
            key=lambda lower: (weights.get(lower, 0.0), -SENTIMENTS.index(lower)),
        )
    chance = _chance(model, seed, text, kind, prompt)
    u = uniform(*salt, "", "u") if draw is None else uniform(*salt, prompt.key, draw, "u")
    others = [lower for lower in by_lower if lower != target]
    weights = {lower: confusion.get(target, {}).get(lower, 0.05) for lower in others}
    correct = u < chance or not others
    if correct:
        chosen = target
    else:
        total = sum(weights.values())
        pointer = uniform(*salt, prompt.key, draw, "wrong") * total
        chosen = others[-1]
        for lower in others:
            pointer -= weights[lower]
            if pointer <= 0:
                chosen = lower
                break
    confidence = sigmoid(logit(chance) + model.overconfidence)
    rest = 1.0 - confidence
    shares: dict[str, float] = {}
    alternatives = [lower for lower in by_lower if lower != chosen]
    if not correct:
        shares[target] = _HESITATION * rest
        rest -= shares[target]
        alternatives.remove(target)
    total = sum(weights.get(lower, 0.05) for lower in alternatives) or 1.0
    for lower in alternatives:
        shares[lower] = rest * weights.get(lower, 0.05) / total
    ranked = sorted(shares.items(), key=lambda item: -item[1])
    scores = (
        (by_lower[chosen], confidence),
        *((by_lower[lower], min(share, 0.95 * confidence)) for lower, share in ranked if share),
    )
    return Draw(by_lower[chosen], correct, chance, scores)


def _known_fields(
    model: SimModel, seed: int, review: Review, prompt: _Prompt, draw: str | None
) -> dict[str, Any]:
    """The product, stars and aspect the model extracts, each wrong at its field's rate."""
    salt = (seed, model.name, review.text, prompt.key if draw is not None else "", draw)
    true: dict[str, Any] = {"product": review.product or None, "stars": review.stars}
    true["rating"] = review.stars
    true["aspect"] = review.aspect
    out: dict[str, Any] = {}
    for name, value in true.items():
        if uniform(*salt, "field", name) >= model.field_error(name):
            out[name] = value
            continue
        pointer = uniform(*salt, "wrong field", name)
        if name in ("stars", "rating"):
            out[name] = value - 1 if value == 5 or (value > 1 and pointer < 0.5) else value + 1
        elif name == "product":
            others = [p for p in PRODUCTS if p != value]
            out[name] = others[int(pointer * len(others))]
        else:
            pool = [a for a in aspects_of(review.product) if a != value]
            out[name] = pool[int(pointer * len(pool))] if pool else None
    return out


def _picker(
    config: ServerConfig,
    model: SimModel,
    text: str,
    truth: str,
    kind: str,
    prompt: _Prompt,
    raw: str,
    draw: str | None,
    multi_ask: bool,
    picked: list[Draw],
) -> Callable[[list[str], bool], list[str]]:
    """The label picker of one choice: simulated for a single sentiment label (each draw
    appended to ``picked``), rule-based for anything else."""

    def pick(options: list[str], multi: bool) -> list[str]:
        if multi or multi_ask or not {o.lower() for o in options} & set(SENTIMENTS):
            return choose_labels(text, options, multi or multi_ask)
        if off_label(config, raw):
            return ["unsure" if "unsure" not in options else "other"]
        result = draw_label(model, config.seed, text, truth, kind, options, prompt, draw)
        picked.append(result)
        return [result.label]

    return pick


def answers_for(
    config: ServerConfig,
    body: Mapping[str, Any],
    model_name: str,
    messages: list[Mapping[str, Any]],
    texts: list[str],
    raw: str,
    draws: Callable[[str], int],
) -> list[Answer]:
    """The ``n`` choices' answers to one chat request for ``model_name`` (the body's model,
    or Azure's deployment) (module docstring); ``raw`` is the last user message as sent;
    ``draws(prompt_key)`` numbers the requests with that prompt at a temperature above 0."""
    choices = body.get("n") or 1
    model = config.sim_model(model_name)
    if model is None or config.echo:
        return [Answer(compose(config, body, texts, raw))] * choices
    text = LABELS_LINE.sub("", parse_marker(raw)[0]).strip()
    review = truth_of(text)
    truth = review.sentiment if review is not None else rule_sentiment(text)
    kind = review.kind if review is not None else "plain"
    schema = response_schema(body) or prompted_schema(texts)
    multi_ask = any(MULTI_ASK.search(content) for content in texts)
    key, labels = label_set(body, texts)
    if schema is None and (
        key == "labels" or multi_ask or not {label.lower() for label in labels} & set(SENTIMENTS)
    ):
        return [Answer(compose(config, body, texts, raw))] * choices
    prompt = _read_prompt(messages)
    temperature = body.get("temperature", 1.0)
    first = None if temperature == 0 else draws(prompt.key)
    out: list[Answer] = []
    for index in range(1 if first is None else choices):
        draw = None if first is None else f"{first}:{index}"
        picked: list[Draw] = []
        pick = _picker(config, model, text, truth, kind, prompt, raw, draw, multi_ask, picked)
        if schema is not None:
            known = _known_fields(model, config.seed, review, prompt, draw) if review else None
            content = json.dumps(value_for(schema, text, pick, known), ensure_ascii=False)
        else:
            label = pick(labels, False)[0]
            content = label if key is None else json.dumps({key: label}, ensure_ascii=False)
        answer = Answer(content, picked[-1].label, picked[-1].scores) if picked else Answer(content)
        if config.digest:
            answer = Answer(
                f"{answer.content} [sha:{prompt_digest(raw)}]", answer.label, answer.scores
            )
        out.append(answer)
    return out if len(out) == choices else out * choices


def simulate_label(
    model: SimModel,
    text: str,
    *,
    labels: tuple[str, ...] | list[str] = SENTIMENTS,
    system: str | None = None,
    examples: tuple[tuple[str, str], ...] | list[tuple[str, str]] = (),
    draw: str | None = None,
    seed: int = 0,
) -> Draw:
    """What ``model`` answers for ``text`` asked as a chat request with this ``system``
    message and few-shot ``examples`` ((text, answer) turns before the row), without a
    server: the same draw the server makes for a bare answer at temperature 0 (``draw``
    None) or for the draw with that id."""
    messages: list[Mapping[str, Any]] = []
    if system:
        messages.append({"role": "system", "content": system})
    for example, answer in examples:
        messages += [{"role": "user", "content": example}, {"role": "assistant", "content": answer}]
    messages.append({"role": "user", "content": text})
    review = truth_of(text)
    truth = review.sentiment if review is not None else rule_sentiment(text)
    kind = review.kind if review is not None else "plain"
    prompt = _read_prompt(messages)
    return draw_label(model, seed, text, truth, kind, list(labels), prompt, draw)
