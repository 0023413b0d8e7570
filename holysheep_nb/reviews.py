"""The sample reviews' templates, their generator, and the truth of any text they produce.

A pure module (standard library only) shared by ``sample`` (which builds the pandas frame)
and the local server (whose simulated models must know the truth of a sample text without
importing the client). ``generate(n, seed)`` gives the reviews with their gold labels;
``truth_of(text)`` recognises a text the generator can write and gives the same gold back,
by matching it against the templates, so the truth travels with the text itself.

Gold, as a careful human would label the text:

- ``sentiment``: the tone of the template; sarcastic reviews are negative; mixed reviews
  end with a verdict sentence ("On balance, a keeper.") that decides them.
- ``stars``: 1-5, derived from the words: positive 5 with a superlative ("excellent",
  "amazing", ...) else 4; negative 1 when it broke, died, went back or is called awful
  (and the like) else 2; neutral 3; mixed 4 / 3 / 2 by verdict; sarcastic 1.
- ``product``: the product reviewed (title case). A text that does not name it still has
  it: ``product_named`` says whether a reader could tell.
- ``aspect``: the first aspect of the product the text names, or None.
- ``kind``: ``plain``, ``mixed``, ``sarcastic`` or ``unicode``: the hard cases a prompt
  can define ("sarcasm counts as negative") are ``mixed`` and ``sarcastic``.

Length: most of it is the templates themselves; writing and recognising them are one idea.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from random import Random

__all__ = [
    "HARD_KINDS",
    "KIND_SHARES",
    "PRODUCTS",
    "SENTIMENTS",
    "Review",
    "aspects_of",
    "generate",
    "truth_of",
]

SENTIMENTS = ("positive", "negative", "neutral")
HARD_KINDS = ("mixed", "sarcastic")
#: The share of each hard kind among generated reviews (the rest are plain or Unicode).
KIND_SHARES = {"mixed": 0.04, "sarcastic": 0.02}

_PRODUCTS: dict[str, tuple[str, ...]] = {
    "Wireless Earbuds": ("sound", "battery life", "fit", "noise cancelling", "charging case"),
    "Espresso Machine": ("coffee", "milk frother", "build quality", "water tank", "pressure"),
    "Running Shoes": ("cushioning", "grip", "fit", "sole", "laces"),
    "Robot Vacuum": ("suction", "battery life", "app", "mapping", "brushes"),
    "Yoga Mat": ("grip", "thickness", "material", "size", "carry strap"),
    "Smartwatch": ("battery life", "screen", "heart rate sensor", "strap", "app"),
    "Office Chair": ("lumbar support", "armrests", "assembly", "cushion", "wheels"),
    "Electric Kettle": ("boil time", "lid", "handle", "temperature control", "filter"),
    "Travel Backpack": ("zippers", "straps", "pockets", "fabric", "laptop sleeve"),
    "Air Fryer": ("basket", "timer", "cleanup", "crispiness", "capacity"),
    "Mechanical Keyboard": ("switches", "keycaps", "backlight", "software", "cable"),
    "Desk Lamp": ("brightness", "colour temperature", "base", "switch", "arm"),
    "Blender": ("motor", "jar", "blades", "lid", "speed settings"),
    "Phone Case": ("grip", "buttons", "fit", "drop protection", "finish"),
    "Portable Charger": ("capacity", "charging speed", "cable", "size", "indicator lights"),
}
PRODUCTS = tuple(_PRODUCTS)
_PLURAL = frozenset({
    "laces", "brushes", "armrests", "wheels", "zippers", "straps", "pockets", "switches",
    "keycaps", "blades", "speed settings", "buttons", "indicator lights",
})  # fmt: skip

_GOOD = ("excellent", "great", "fantastic", "superb", "amazing", "perfect", "impressive", "solid")
_SUPERLATIVE = frozenset({"excellent", "fantastic", "superb", "amazing", "perfect"})
_BAD = ("awful", "terrible", "flimsy", "poor", "useless", "horrible", "disappointing", "faulty")
_SOON = ("two days", "a week", "a month", "three uses", "the first wash")

_POSITIVE = (
    "The {aspect} {is} {good}.",
    "Really happy with the {aspect}, it is {good}.",
    "I love this {product}; the {aspect} {is} {good}.",
    "Best {product} I have owned, the {aspect} {is} {good}.",
    "The {aspect} turned out {good} and setup took two minutes.",
)
_POSITIVE_CLOSE = (
    "Would buy again.",
    "Highly recommend it.",
    "Worth every penny.",
    "Great value for the price.",
    "Delivery was fast too.",
)
_NEGATIVE = (
    "The {aspect} {is} {bad}.",
    "Very disappointed with the {aspect}.",
    "The {product} stopped working after {soon}.",
    "Returned this {product} because the {aspect} {was} {bad}.",
    "The {product} broke after {soon}.",
)
_NEGATIVE_CLOSE = (
    "Would not recommend.",
    "Waste of money.",
    "Asked for a refund.",
    "Customer support was unhelpful.",
    "Avoid this one.",
)
_NEUTRAL = (
    "The {aspect} {is} okay, nothing special.",
    "It does the job.",
    "Average {product}; the {aspect} {is} fine for the price.",
    "The {aspect} {is} as described.",
    "Decent {product}, although the {aspect} could be better.",
)
_NEUTRAL_CLOSE = ("It arrived on time.", "Time will tell.", "Does what it says.", "")
# Mixed reviews pull both ways; the verdict sentence decides them (and the rating).
_MIXED = (
    "The {aspect} {is} {good} but the {other} {is2} {bad}.",
    "The {aspect} {is} {bad}, though the {other} {is2} {good}.",
)
_VERDICTS = {
    "positive": ("On balance, a keeper.", "Overall I am keeping it."),
    "negative": ("On balance, it is going back.", "Overall it is not a keeper."),
    "neutral": ("On balance, neither here nor there.", "Overall it is just okay."),
}
_SARCASTIC = ("Great, the {product} broke after {soon}.", "Just perfect: it died after {soon}.")
_UNICODE = {
    "positive": (
        "สินค้าดีมาก ส่งไวมาก 👍",
        "とても良い商品です。また買いたいです。",
        "Love it 😍 the {aspect} {is} great!",
    ),
    "negative": (
        "คุณภาพแย่มาก ไม่แนะนำ 👎",
        "期待外れでした。すぐに壊れました。",
        "The {product} broke in a week 😡",
    ),
    "neutral": (
        "ก็โอเค ใช้ได้ตามราคา",
        "まあまあです。普通の商品。",
        "It's fine 🤷 the {aspect} {is} average.",
    ),
}
_TONES = {
    "positive": (_POSITIVE, _POSITIVE_CLOSE),
    "negative": (_NEGATIVE, _NEGATIVE_CLOSE),
    "neutral": (_NEUTRAL, _NEUTRAL_CLOSE),
}
_ONE_STAR = re.compile(
    r"\b(?:broke|stopped|died|returned|refund|waste|awful|terrible|horrible|useless)\b|壊れ|แย่มาก"
)
_VERDICT_STARS = {"positive": 4, "neutral": 3, "negative": 2}
_RATING_VERDICT = {4: "positive", 3: "neutral", 2: "negative"}


def aspects_of(product: str) -> tuple[str, ...]:
    """The aspects reviews of ``product`` (title case, as in ``PRODUCTS``) talk about."""
    return _PRODUCTS.get(product, ())


@dataclass(frozen=True, slots=True)
class Review:
    """One sample review and its gold (see the module docstring)."""

    text: str
    sentiment: str
    stars: int
    product: str
    aspect: str | None
    kind: str
    product_named: bool


def _stars(sentiment: str, kind: str, text: str) -> int:
    if kind == "sarcastic":
        return 1
    if kind == "mixed":
        return _VERDICT_STARS[sentiment]
    if sentiment == "neutral":
        return 3
    if sentiment == "positive":
        words = set(re.findall(r"[a-z]+", text.lower()))
        return 5 if words & _SUPERLATIVE or not text.isascii() else 4
    return 1 if _ONE_STAR.search(text.lower()) else 2


def generate(n: int, seed: int = 0) -> list[Review]:
    """``n`` reviews; the same ``(n, seed)`` gives the same list and a longer list starts
    with the shorter one. Mixed verdicts come from a second generator, so the plain rows
    are those the sample has always had."""
    rng = Random(seed)
    verdicts = Random(f"verdict:{seed}")
    out: list[Review] = []
    for _ in range(n):
        product = rng.choice(PRODUCTS)
        aspect, other = rng.sample(_PRODUCTS[product], 2)
        fields = {
            "product": product.lower(),
            "aspect": aspect,
            "other": other,
            "is": "are" if aspect in _PLURAL else "is",
            "is2": "are" if other in _PLURAL else "is",
            "was": "were" if aspect in _PLURAL else "was",
            "good": rng.choice(_GOOD),
            "bad": rng.choice(_BAD),
            "soon": rng.choice(_SOON),
        }
        draw = rng.random()
        if draw < KIND_SHARES["mixed"]:
            kind, text = "mixed", rng.choice(_MIXED)
            sentiment = _RATING_VERDICT[rng.choice((2, 3, 3, 4))]
            text = f"{text} {verdicts.choice(_VERDICTS[sentiment])}"
        elif draw < KIND_SHARES["mixed"] + KIND_SHARES["sarcastic"]:
            kind, text, sentiment = "sarcastic", rng.choice(_SARCASTIC), "negative"
            rng.choice((1, 2))  # the rating draw the sample has always made
        else:
            sentiment = rng.choices(SENTIMENTS, (0.55, 0.25, 0.20))[0]
            rng.choice((4, 5, 5)), rng.choice((1, 2))  # the sample's old rating draws
            if rng.random() < 0.015:
                kind, text = "unicode", rng.choice(_UNICODE[sentiment])
            else:
                kind = "plain"
                opener, closer = _TONES[sentiment]
                text = rng.choice(opener)
                if rng.random() < 0.6:
                    text = f"{text} {rng.choice(closer)}".rstrip()
        named = "{product}" in text
        mentions_aspect = "{aspect}" in text
        text = text.format(**fields)
        out.append(
            Review(
                text=text,
                sentiment=sentiment,
                stars=_stars(sentiment, kind, text),
                product=product,
                aspect=aspect if mentions_aspect else None,
                kind=kind,
                product_named=named,
            )
        )
    return out


# --- recognising a text -------------------------------------------------------------------

_FIELD = re.compile(r"\{(\w+)\}")


def _alternation(words: tuple[str, ...] | list[str]) -> str:
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


@lru_cache(maxsize=1)
def _patterns() -> tuple[tuple[re.Pattern[str], str, str], ...]:
    """(regex, kind, sentiment or "" for mixed: its verdict decides) for every template."""
    aspects = sorted({a for group in _PRODUCTS.values() for a in group})
    parts = {
        "product": f"(?P<product>{_alternation([p.lower() for p in PRODUCTS])})",
        "aspect": f"(?P<aspect>{_alternation(aspects)})",
        "other": f"(?:{_alternation(aspects)})",
        "is": "(?:is|are)",
        "is2": "(?:is|are)",
        "was": "(?:was|were)",
        "good": f"(?:{_alternation(_GOOD)})",
        "bad": f"(?:{_alternation(_BAD)})",
        "soon": f"(?:{_alternation(_SOON)})",
    }

    def compile_(template: str, tail: str) -> re.Pattern[str]:
        pieces = _FIELD.split(template)
        body = "".join(
            parts[piece] if i % 2 else re.escape(piece) for i, piece in enumerate(pieces)
        )
        return re.compile(body + tail)

    out: list[tuple[re.Pattern[str], str, str]] = []
    verdicts = {s: _alternation(v) for s, v in _VERDICTS.items()}
    for template in _MIXED:
        tail = "".join(f"(?P<v_{s}> (?:{alt}))?" for s, alt in verdicts.items())
        out.append((compile_(template, tail), "mixed", ""))
    for template in _SARCASTIC:
        out.append((compile_(template, ""), "sarcastic", "negative"))
    for sentiment, (openers, closers) in _TONES.items():
        tail = f"(?: (?:{_alternation([c for c in closers if c])}))?"
        for template in openers:
            out.append((compile_(template, tail), "plain", sentiment))
        for template in _UNICODE[sentiment]:
            out.append((compile_(template, ""), "unicode", sentiment))
    return tuple(out)


@lru_cache(maxsize=65536)
def truth_of(text: str) -> Review | None:
    """The gold of ``text`` if the generator can write it (the whole text, or one of its
    lines, surrounding spaces ignored), else None. ``product`` is the product the text
    names, or failing that the first product that has its aspect ("" when neither)."""
    candidates = [text.strip()]
    if "\n" in text:
        candidates += [line.strip() for line in text.splitlines() if line.strip()]
    for candidate in candidates:
        for pattern, kind, sentiment in _patterns():
            match = pattern.fullmatch(candidate)
            if match is None:
                continue
            groups = match.groupdict()
            if kind == "mixed":
                verdict = next((s for s in SENTIMENTS if groups.get(f"v_{s}")), None)
                if verdict is None:
                    continue
                sentiment = verdict
            aspect = groups.get("aspect")
            named = groups.get("product")
            product = next((p for p in PRODUCTS if p.lower() == named), None) if named else None
            if product is None and aspect is not None:
                product = next(p for p in PRODUCTS if aspect in _PRODUCTS[p])
            return Review(
                text=candidate,
                sentiment=sentiment,
                stars=_stars(sentiment, kind, candidate),
                product=product or "",
                aspect=aspect,
                kind=kind,
                product_named=named is not None,
            )
    return None
