"""What an interrupted run leaves behind: its answered rows, and a one-line notice.

The stop button (or Ctrl+C) ends a cell before ``out = df.holysheep.label(...)`` assigns
anything. The run still keeps what it got: every answer is in the cache (running the cell
again sends only the rest), and the frame of the rows answered so far is kept here for
``holysheep_nb.last_result()``, so it can be looked at without sending anything again.

Only an interrupted run is kept (a run that finishes hands its frame back, and keeping it
here as well would hold a large frame alive after the user dropped it). Starting a new run
forgets the kept one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

#: The ``error`` of a row whose answer had not come when the run was interrupted.
NOT_ANSWERED = "interrupted: no answer yet"

_kept: list[tuple[pd.DataFrame, int, int]] = []  # (frame, rows answered, rows)


def last_result() -> pd.DataFrame | None:
    """The result frame of the most recent run if it was interrupted, else None.

    It has every input row, in order: the rows answered before the interrupt as a finished
    run would have them, the others with ``error`` ``"interrupted: no answer yet"``. Its
    ``holysheep.report()`` counts the answered rows and says the run was interrupted. Running
    the interrupted cell again resumes from the cache (only the rest is sent).
    """
    return _kept[0][0] if _kept else None


def forget() -> None:
    """Drop the kept frame: a new run starts."""
    _kept.clear()


def keep(frame: pd.DataFrame, answered: int) -> None:
    """Keep the frame of an interrupted run (``answered`` of its rows have their outcome)."""
    _kept[:] = [(frame, answered, len(frame))]


def notice() -> str | None:
    """The one line an interrupted cell shows after ``KeyboardInterrupt:``, or None when no
    interrupted run was kept."""
    if not _kept:
        return None
    _, answered, rows = _kept[0]
    return (
        f"interrupted with {answered:,} of {rows:,} rows answered: "
        "holysheep_nb.last_result() has them. Run the cell again to go on from there "
        "(answers so far are in the cache, nothing is paid twice)."
    )


def short(exc: KeyboardInterrupt) -> KeyboardInterrupt:
    """``exc`` shown by IPython as its one line, without the frames of the event loop.

    IPython calls an exception's ``_render_traceback_()``, when it has one, instead of
    formatting its frames (``InteractiveShell.showtraceback``); elsewhere the message reads
    the same.
    """
    line = f"KeyboardInterrupt: {exc}" if str(exc) else "KeyboardInterrupt"
    setattr(exc, "_render_traceback_", lambda: [line])  # noqa: B010 (an instance attribute)
    return exc
