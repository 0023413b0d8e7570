"""The quality tools: judging result frames (labels, extracted fields, agreement,
calibration, the whole frame from a gold sample) and the statistics of comparing variants.

A layer over result frames, never threaded through the engine; its libraries
(scikit-learn, SciPy, krippendorff) come with the ``eval`` extra and load on first use.
See docs/evaluate.md.
"""

from holysheep_nb.quality.evaluate import evaluate

__all__ = ["evaluate"]
