"""Reviewing labels by hand: the panel (``out.holysheep.review()``), the gold store it writes
at every answer, and ``gold()``, which reads that store back. See docs/review.md.

ipywidgets and anywidget (the ``notebook`` extra) load only when a panel opens.
"""

from holysheep_nb.review.reading import gold
from holysheep_nb.review.start import review
from holysheep_nb.review.store import GoldStore, default_gold_path, task_name

__all__ = ["GoldStore", "default_gold_path", "gold", "review", "task_name"]
