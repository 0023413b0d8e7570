"""The review panel: a widget that draws a ``ReviewSession`` and passes it the keys pressed.

An anywidget (an ipywidgets ``DOMWidget`` whose view is the small ES module ``panel.js``):
the view is one focusable element that catches the keys itself, so they reach Python in
JupyterLab 4, Notebook 7 and VS Code alike, with no JupyterLab extension to build or enable.
Python keeps every rule (``session``); the view only draws ``view`` and sends
``{"press": key}`` or ``{"choose": label}``.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from holysheep_nb.review.session import Item, ReviewSession

_HERE = Path(__file__).parent
HELP = "keys: 1-9 choose a label · Enter accept the model's label · Backspace back · s skip"


class ReviewPanel(anywidget.AnyWidget):
    """One row at a time; ``session`` holds the answers, ``frame`` the gold column."""

    _esm = _HERE / "panel.js"
    _css = _HERE / "panel.css"
    labels = traitlets.List(traitlets.Unicode()).tag(sync=True)
    view = traitlets.Dict().tag(sync=True)

    def __init__(self, session: ReviewSession) -> None:
        super().__init__(labels=list(session.labels), view=describe(session))
        self.session = session
        # ipykernel may deliver the view's messages on another thread: one at a time.
        self._lock = threading.Lock()
        self.on_msg(self._received)

    @property
    def frame(self) -> Any:
        """The frame under review, whose gold column fills as you answer."""
        return self.session.frame

    @property
    def column(self) -> Any:
        """The name of the gold column."""
        return self.session.columns.gold

    def press(self, key: str) -> bool:
        """Act on ``key`` as if it had been pressed in the panel (see ``ReviewSession.press``)."""
        acted = self.session.press(key)
        self.view = describe(self.session)
        return acted

    def _received(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if not isinstance(content, dict):
            return
        with self._lock:
            if isinstance(content.get("press"), str):
                self.press(content["press"])
            elif content.get("choose") in self.session.labels and self.session.current():
                self.session.answer(content["choose"])
                self.view = describe(self.session)

    def __repr__(self) -> str:
        session = self.session
        return f"<review: {session.done} of {session.total} done, task {session.task!r}>"


def describe(session: ReviewSession) -> dict[str, Any]:
    """What the view draws, as JSON-able values."""
    view: dict[str, Any] = {"status": status(session), "help": HELP}
    item = session.current()
    if item is None:
        skipped = session.total - session.done
        view["finished"] = "Every row seen." + (
            f" {skipped} skipped: Backspace to go back to them." if skipped else ""
        )
        return view
    view.update(
        fields=[list(field) for field in item.fields],
        predicted=item.predicted,
        model=_model_line(item),
        other=_other_line(session, item),
        given=_given_line(session, item),
        raw=_raw(item),
    )
    return view


def status(session: ReviewSession) -> str:
    """``"row 3 of 50 · 2 done · you agree with the model on 1 of 2 (50%)"``."""
    shown = min(session.cursor + 1, session.total)
    parts = [f"row {shown} of {session.total}", f"{session.done} done"]
    same, compared = session.agreement
    if compared:
        parts.append(
            f"you agree with the model on {same} of {compared} ({100 * same / compared:.0f}%)"
        )
    return " · ".join(parts)


def _model_line(item: Item) -> str:
    if item.predicted is None:
        return f"model: no label ({item.error})" if item.error else "model: no label"
    if item.confidence is None:
        return f"model: {item.predicted}"
    return f"model: {item.predicted} (confidence {item.confidence:.2f})"


def _other_line(session: ReviewSession, item: Item) -> str | None:
    against = session.columns.against
    if against is None:
        return None
    return f"{against}: {item.other if item.other is not None else 'no label'}"


def _given_line(session: ReviewSession, item: Item) -> str | None:
    given = session.answer_of(item.key)
    return None if given is None else f"your label: {given}"


def _raw(item: Item) -> str | None:
    parts = [
        f"{name}:\n{value}"
        for name, value in (
            ("answer", item.response),
            ("reasoning", item.reasoning),
            ("error", item.error),
        )
        if value
    ]
    return "\n\n".join(parts) or None
