"""Deterministic sample data for the demo, notebooks and benchmarks: product reviews.

Generated from templates in code (no data file, no download), so ``load_reviews(n, seed)``
is the same frame on every machine. A handful of reviews are in Thai or Japanese or carry
emoji, to show that Unicode round-trips. The local server's sentiment labeller agrees with
the rating for most rows; mixed and sarcastic reviews make the rest look like a real run.
"""

from __future__ import annotations

from random import Random

import pandas as pd

from holysheep_nb.errors import ConfigError

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
_NAMES = tuple(_PRODUCTS)
_PLURAL = frozenset({
    "laces", "brushes", "armrests", "wheels", "zippers", "straps", "pockets", "switches",
    "keycaps", "blades", "speed settings", "buttons", "indicator lights",
})  # fmt: skip

_GOOD = ("excellent", "great", "fantastic", "superb", "amazing", "perfect", "impressive", "solid")
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
# Mixed and sarcastic reviews pull both ways, so a labeller may disagree with the rating.
_MIXED = (
    "The {aspect} {is} {good} but the {other} {is2} {bad}.",
    "The {aspect} {is} {bad}, though the {other} {is2} {good}.",
)
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


def load_reviews(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    """``n`` product reviews with columns ``id``, ``product``, ``text``, ``rating`` (1-5).

    The same ``(n, seed)`` always gives the same frame; ratings follow the review's tone.
    """
    if not isinstance(n, int) or n < 0:
        raise ConfigError(f"n must be a whole number of rows >= 0, got {n!r}")
    rng = Random(seed)
    products: list[str] = []
    texts: list[str] = []
    ratings: list[int] = []
    for _ in range(n):
        product = rng.choice(_NAMES)
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
        if draw < 0.04:
            text, rating = rng.choice(_MIXED), rng.choice((2, 3, 3, 4))
        elif draw < 0.06:
            text, rating = rng.choice(_SARCASTIC), rng.choice((1, 2))
        else:
            tone = rng.choices(("positive", "negative", "neutral"), (0.55, 0.25, 0.20))[0]
            rating = {"positive": rng.choice((4, 5, 5)), "negative": rng.choice((1, 2)),
                      "neutral": 3}[tone]  # fmt: skip
            if rng.random() < 0.015:
                text = rng.choice(_UNICODE[tone])
            else:
                opener, closer = _TONES[tone]
                text = rng.choice(opener)
                if rng.random() < 0.6:
                    text = f"{text} {rng.choice(closer)}".rstrip()
        text = text.format(**fields)
        products.append(product)
        texts.append(text)
        ratings.append(rating)
    # Annotated: pandas-stubs types this constructor as Any when mypy targets Python 3.10.
    frame: pd.DataFrame = pd.DataFrame(
        {
            "id": pd.Series(range(1, n + 1), dtype="int64"),
            "product": pd.Series(products, dtype="str"),
            "text": pd.Series(texts, dtype="str"),
            "rating": pd.Series(ratings, dtype="int64"),
        }
    )
    return frame
