"""Draw ``docs/compare.png``, the README's picture: ``compare()``'s plot of a real comparison.

The comparison is the one of ``notebooks/evaluate_and_compare.ipynb``: 300 random rows of the
2,000 sample reviews, labelled by the embedded server's simulated models (``sim-small``,
``sim-large``), each with and without instructions that define the hard cases, at
temperature 0, with the cost projected to the 2,000 rows. Run it from the repository root
after a change to the plot::

    python docs/make_compare_png.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import holysheep_nb  # noqa: F401 - registers df.holysheep
from holysheep_nb import Prices
from holysheep_nb.sample import load_reviews
from holysheep_nb.server import LocalServer, ServerConfig

OUT = Path(__file__).resolve().parent / "compare.png"
LABELS = ["positive", "negative", "neutral"]
DEFINED = (
    "Sarcasm counts as negative. A mixed review follows its overall verdict "
    "('on balance, a keeper' is positive)."
)
SMALL = {"model": "sim-small", "prices": Prices(0.00015, 0.0006)}
LARGE = {"model": "sim-large", "prices": Prices(0.0015, 0.006)}
VARIANTS = {
    "small": SMALL,
    "small+defined": {**SMALL, "instructions": DEFINED},
    "large": LARGE,
    "large+defined": {**LARGE, "instructions": DEFINED},
}


def main() -> int:
    """Compare the variants, print the comparison, save its plot."""
    df = load_reviews(2000)
    with LocalServer(ServerConfig()) as server, tempfile.TemporaryDirectory() as folder:
        cmp = df.sample(300, random_state=0).holysheep.compare(
            "text",
            labels=LABELS,
            variants=VARIANTS,
            gold="sentiment",
            project_to=df,
            temperature=0,
            base_url=server.base_url,
            cache=str(Path(folder) / "answers.sqlite"),
            progress=False,
        )
    print(cmp)
    figure = cmp.plot()
    figure.tight_layout()
    figure.savefig(OUT, dpi=72)
    print(f"\nwrote {OUT} ({OUT.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
