"""How evaluation results read: figures with their intervals, as text and as HTML.

A result shows a summary (``_render``'s key/value table: the same look as the run report)
and its tables (pandas' own text and HTML). The confusion matrix is an HTML heat map: each
cell shaded by its share of the gold row, so recall reads along the diagonal. ``Shown`` gives
every result the same three ways to show itself; ``metric_frame`` and ``new_axes`` are the
figure table and the plot start the results share.
"""

from __future__ import annotations

import html
import math
from typing import TYPE_CHECKING, Any, ClassVar

import pandas as pd

from holysheep_nb._render import Sections, render_html, render_text
from holysheep_nb.quality.intervals import Interval

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: A result's title, summary sections and titled tables, as ``text`` and ``page`` take them.
Shape = tuple[str, Sections, list[tuple[str, pd.DataFrame]]]


class Shown:
    """Text, IPython pretty and Jupyter HTML of a result, all drawn from its ``_sections``.

    A subclass defines ``_sections`` and may set ``_css_class`` (the HTML summary's class).
    """

    _css_class: ClassVar[str] = "holysheep-evaluation"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # IPython's pretty printer walks the class's MRO and, in each class, takes
        # ``_repr_pretty_`` or else a ``__repr__`` of that class's own: the ``__repr__`` a
        # dataclass subclass is given would win over the one inherited from here, and a
        # cell would show the dataclass fields instead of the text.
        super().__init_subclass__(**kwargs)
        cls._repr_pretty_ = Shown._repr_pretty_  # type: ignore[method-assign]

    def _sections(self) -> Shape:
        raise NotImplementedError

    def __str__(self) -> str:
        return text(*self._sections())

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))

    def _repr_html_(self) -> str:
        return page(*self._sections(), css_class=self._css_class)


def metric_frame(lines: dict[str, tuple[float, float, float]]) -> pd.DataFrame:
    """Figures as a frame: columns ``value``, ``low``, ``high``, one line per ``metric``."""
    frame: pd.DataFrame = pd.DataFrame.from_dict(
        lines, orient="index", columns=["value", "low", "high"]
    )
    frame.index.name = "metric"
    return frame


def new_axes(ax: Axes | None, size: tuple[float, float]) -> tuple[Figure | None, Axes]:
    """``(None, ax)`` when given axes, else a new closed Figure of ``size`` inches and its
    axes (closed so Jupyter shows it once, as the returned value). ``ImportError`` naming the
    ``plot`` extra without matplotlib."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("plots need matplotlib: pip install 'holysheep_nb[plot]'") from exc
    if ax is not None:
        return None, ax
    figure, axes = plt.subplots(figsize=size)
    plt.close(figure)
    return figure, axes


def figure(value: float, interval: Interval, percent: bool = True) -> tuple[str, str]:
    """``(value, "(low to high)")`` as shown in a summary row."""
    if math.isnan(value):
        return "n/a", ""
    low, high = interval

    def shown(x: float) -> str:
        return f"{x:.1%}" if percent else f"{x:.3f}"

    note = "" if math.isnan(low) else f"({shown(low)} to {shown(high)})"
    return shown(value), note


def text(title: str, sections: Sections, tables: list[tuple[str, pd.DataFrame]]) -> str:
    """The summary, then each titled table, as plain text for a terminal."""
    parts = [render_text(title, sections)]
    parts.extend(f"\n{name}\n{table.to_string(float_format=_float)}" for name, table in tables)
    return "\n".join(parts)


def page(
    title: str, sections: Sections, tables: list[tuple[str, pd.DataFrame]], css_class: str
) -> str:
    """The summary, then each titled table, as HTML for Jupyter (confusion as a heat map)."""
    parts = [render_html(title, sections, css_class)]
    for name, table in tables:
        parts.append(f"<p><b>{html.escape(name)}</b></p>")
        parts.append(
            heat_map(table) if name.startswith("confusion") else table.to_html(float_format=_float)
        )
    return "\n".join(parts)


def heat_map(confusion: pd.DataFrame) -> str:
    """The confusion matrix as an HTML table, each cell shaded by its share of its row."""
    esc = html.escape
    head = "".join(f"<th>{esc(str(c))}</th>" for c in confusion.columns)
    lines = [
        '<table class="holysheep-confusion">',
        f"<tr><th>{esc(str(confusion.index.name))} \\ {esc(str(confusion.columns.name))}</th>"
        f"{head}</tr>",
    ]
    for gold, row in confusion.iterrows():
        total = row.sum()
        cells = []
        for count in row:
            alpha = count / total if total else 0.0
            cells.append(
                f'<td style="text-align:right;background:rgba(31,119,180,{alpha:.2f})">'
                f"{int(count):,}</td>"
            )
        lines.append(f"<tr><th>{esc(str(gold))}</th>{''.join(cells)}</tr>")
    lines.append("</table>")
    return "\n".join(lines)


def _float(value: float) -> str:
    return f"{value:.3f}"
