"""The quality tools: judging result frames (labels, extracted fields, agreement,
calibration, the whole frame from a gold sample), comparing variants run on a sample
(``compare``: the runs; ``comparison`` and ``compare_stats``: the statistics).

A layer over result frames, never threaded through the engine; its libraries
(scikit-learn, SciPy, krippendorff) come with the ``eval`` extra and load on first use.
See docs/evaluate.md.
"""

from holysheep_nb.quality.evaluate import evaluate

__all__ = ["evaluate"]
