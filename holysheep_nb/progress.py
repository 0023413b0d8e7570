"""One progress bar per run: a widget in Jupyter, text elsewhere, nothing when disabled.

The run's periodic tick offers the bar the run's tally; the bar is redrawn only when the
tally changed, at most every ``MIN_INTERVAL`` seconds (tqdm's own pace), so a log or a CI
output gets no line for a second in which nothing happened (a cool-down after a 429). A
live display (a terminal, a widget) is also redrawn every ``IDLE_INTERVAL`` seconds while
idle, so that its clock does not look frozen.

In a Jupyter kernel the bar is one output that is updated in place, and its last update is
the final state, so a saved notebook shows one bar per run with the final counts: with
ipywidgets (the ``notebook`` extra) the widget is live while the run goes, and when it ends
its output is replaced by the final bar as text and HTML and the widget is closed. A
finished bar needs no script: ``jupyter nbconvert --to html`` renders a widget output with
saved widget state as the widget alone (its script comes from the network, so offline it
is blank), and a notebook saved without widget state showed the text the widget had when
first displayed (``0/500``). Without ipywidgets the text bar is shown the same way rather
than streamed to stderr, where every redraw would become a line of the saved notebook.

Length: the run's bar and the Dask run's shared bar draw the same tally the same way in
the same three places (terminal, widget, saved notebook); they are kept beside each other.
"""

from __future__ import annotations

import dataclasses
import html
import sys
import time
from collections.abc import Callable, Mapping
from typing import IO, Any, Protocol

from tqdm import std

from holysheep_nb.outcome import RunStats

#: Least seconds between two redraws: tqdm's default ``mininterval``.
MIN_INTERVAL = 0.1
#: Seconds between redraws of an idle bar on a live display (never in a log).
IDLE_INTERVAL = 1.0
#: A tick may come this much early (the event loop's clock resolution, float sums).
_EARLY = 0.005
#: Width of the text bar in a notebook, which has no terminal to measure.
NOTEBOOK_COLUMNS = 100
#: Least seconds a hold must have left to be shown. A shorter one is the pace at work (told
#: the rate and paced under it, the provider's window is nearly full at every send, and its
#: headers say "spent" until a slot frees milliseconds later); shown, it would only flicker.
SHOWN_HOLD = 1.0


def _in_kernel() -> bool:
    """True inside a Jupyter kernel (not a terminal IPython, not a script)."""
    if "ipykernel" not in sys.modules:
        return False
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def _widget_tqdm() -> type[std.tqdm] | None:
    """tqdm's widget bar when ipywidgets is installed, else None (silently, unlike tqdm.auto)."""
    try:
        import ipywidgets  # noqa: F401 - only checking that it is there
        from tqdm.notebook import tqdm as notebook_tqdm
    except ImportError:
        return None
    return notebook_tqdm  # type: ignore[no-any-return]


def _display(obj: Any, **options: Any) -> Any:
    """Show ``obj`` as a new notebook output; returns the handle that updates it in place."""
    from IPython.display import display

    return display(obj, display_id=True, **options)  # type: ignore[no-untyped-call]


class DisplayedText:
    """A file for tqdm's text bar in a notebook: one output, replaced by each redraw.

    tqdm writes ``"\\r" + bar`` for every redraw; the latest bar becomes the content of a
    single display (``update_display_data``), so the notebook keeps one line, the last one.
    """

    encoding = "utf-8"  # tells tqdm it may draw the bar with block characters

    def __init__(self) -> None:
        self._handle: Any = None
        self._line = ""

    def write(self, text: str) -> int:
        """Show the last bar in ``text``; line breaks and padding alone change nothing."""
        line = text.rsplit("\r", 1)[-1].strip()
        if line and line != self._line:
            self._line = line
            bundle = {"text/plain": line}
            if self._handle is None:
                self._handle = _display(bundle, raw=True)
            else:
                self._handle.update(bundle, raw=True)
        return len(text)

    def flush(self) -> None:
        """Nothing is buffered."""


class RunProgress:
    """Shows the run's tally: rows done, with ok / failed / retried / cached in the postfix,
    and ``held=<seconds left>, <why>`` while a spent budget holds every new send for at least
    ``SHOWN_HOLD`` seconds more (never ``held=0s``, never on the final line: a finished run
    holds nothing).

    It counts nothing itself: every figure is read from the run's ``RunStats``, the one
    tally the report is built from too. ``total`` is None while unknown (then the bar shows
    rows done and no percentage); ``extra`` entries of ``refresh`` and ``close`` follow the
    counts in the postfix. ``file`` (a terminal by default: stderr) is for the text bar
    outside Jupyter; ``now`` is the clock that paces redraws.
    """

    def __init__(
        self,
        total: int | None,
        *,
        enabled: bool = True,
        description: str = "holysheep",
        file: IO[str] | None = None,
        now: Callable[[], float] = time.monotonic,
    ):
        options: dict[str, Any] = {"total": total, "desc": description, "unit": "row"}
        if not enabled:
            # Only when asked: passing disable at all would override TQDM_DISABLE=1.
            options["disable"] = True
        # Pacing is done here (``refresh``): every redraw asked of tqdm happens.
        options.update(smoothing=0.1, mininterval=0, miniters=1)
        in_kernel = file is None and _in_kernel()
        widget = _widget_tqdm() if in_kernel else None
        self._handle: Any = None
        live = True
        if widget is not None:
            self._bar = widget(display=False, **options)
            if not self._bar.disable:
                self._handle = _display(self._bar.container)
        elif in_kernel:
            self._bar = std.tqdm(file=DisplayedText(), ncols=NOTEBOOK_COLUMNS, **options)
        else:
            stream = sys.stderr if file is None else file
            live = _is_terminal(stream)
            self._bar = std.tqdm(file=stream, dynamic_ncols=True, **options)
        self._idle_interval = IDLE_INTERVAL if live else None
        self._now = now
        self._drawn_at = now()
        self._drawn: tuple[object, ...] = ()

    def refresh(self, stats: RunStats, extra: Mapping[str, object] | None = None) -> None:
        """Redraw when the tally changed (or a live bar has been idle); from the run's tick."""
        if self._bar.disable:
            return
        now = self._now()
        waited = now - self._drawn_at + _EARLY
        if _tally(stats, now, extra) == self._drawn:
            if self._idle_interval is None or waited < self._idle_interval:
                return
        elif waited < MIN_INTERVAL:
            return
        self._draw(stats, extra)
        self._drawn_at = now

    def draw(self, stats: RunStats, extra: Mapping[str, object] | None = None) -> None:
        """Redraw now, whatever the pace (a shared bar as one of its runs ends)."""
        if not self._bar.disable:
            self._draw(stats, extra)
            self._drawn_at = self._now()

    def set_total(self, total: int) -> None:
        """Set the rows to expect when they were not known at the start (a Dask run's)."""
        set_total(self._bar, total)

    def close(self, stats: RunStats, extra: Mapping[str, object] | None = None) -> None:
        """Draw the final state and close the bar; in Jupyter, the final state stays shown.

        The final state is set, not drawn: tqdm's ``close`` draws it (at the run's average
        rate), so a log file gets the last line once.
        """
        if not self._bar.disable:
            self._draw(stats, extra, final=True)
        self._bar.close()
        if self._handle is not None:
            self._handle.update(
                final_bundle(str(self._bar), self._bar.n, self._bar.total), raw=True
            )
            self._bar.container.close()

    def _draw(
        self, stats: RunStats, extra: Mapping[str, object] | None = None, *, final: bool = False
    ) -> None:
        bar = self._bar
        now = self._now()
        # A dict keeps this order; keyword arguments would be sorted by tqdm.
        postfix: dict[str, object] = {
            "ok": stats.succeeded,
            "failed": stats.failed,
            "retried": stats.retries,
            "cached": stats.cached,
            **(extra or {}),
        }
        if not final and _held(stats, now):
            assert stats.held_until is not None
            postfix["held"] = f"{stats.held_until - now:.0f}s, {stats.hold_reason}"
        bar.set_postfix(postfix, refresh=False)
        if final:
            bar.n = stats.done  # drawn by ``close``
        elif stats.done != bar.n:
            bar.update(stats.done - bar.n)
        else:
            bar.refresh()
        self._drawn = _tally(stats, now, extra)


class Progress(Protocol):
    """What a run tells its bar: ``RunProgress``, or its part of a ``SharedProgress``."""

    def refresh(self, stats: RunStats, extra: Mapping[str, object] | None = None) -> None:
        """Redraw when the tally changed; from the run's tick."""

    def close(self, stats: RunStats, extra: Mapping[str, object] | None = None) -> None:
        """The run is over: draw its final state."""


class SharedProgress:
    """One bar over several runs made one after another (``compare()``'s variants).

    ``part(name)`` is handed to the next run as its bar: the run's tally is drawn on top of
    the finished runs' (rows done, ok, failed, retried, cached), with ``variant=<name>`` in
    the postfix; the part's ``close`` adds the run to the finished ones, draws them at once
    (a quick run is seen even between two paced redraws) and leaves the bar open.
    ``close()`` closes the bar itself. ``total``: the rows of every run together; ``file``
    and ``now`` as ``RunProgress``'s.
    """

    def __init__(
        self,
        total: int,
        *,
        enabled: bool = True,
        description: str = "holysheep compare",
        file: IO[str] | None = None,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._bar = RunProgress(total, enabled=enabled, description=description, file=file, now=now)
        self._finished = RunStats()

    def part(self, name: str) -> Progress:
        """The bar of the next run, called ``name`` on the bar."""
        return _Part(self, name)

    def close(self) -> None:
        """Draw the final state of every run together and close the bar."""
        self._bar.close(self._finished)

    def _with_finished(self, stats: RunStats) -> RunStats:
        finished = self._finished
        return dataclasses.replace(
            stats,
            succeeded=finished.succeeded + stats.succeeded,
            failed=finished.failed + stats.failed,
            retries=finished.retries + stats.retries,
            cached=finished.cached + stats.cached,
        )


class _Part:
    """One run's view of a ``SharedProgress``."""

    def __init__(self, shared: SharedProgress, name: str) -> None:
        self._shared = shared
        self._name = name

    def refresh(self, stats: RunStats, extra: Mapping[str, object] | None = None) -> None:
        shared = self._shared
        shared._bar.refresh(shared._with_finished(stats), {"variant": self._name, **(extra or {})})

    def close(self, stats: RunStats, extra: Mapping[str, object] | None = None) -> None:
        shared = self._shared
        shared._finished = shared._with_finished(stats)
        shared._bar.draw(shared._finished, {"variant": self._name, **(extra or {})})


def final_bundle(text: str, done: int, total: int | None) -> dict[str, str]:
    """The finished bar as a display bundle without a widget: its text, and HTML (a meter
    and the text) that any viewer renders, nbconvert's HTML export offline included."""
    finished = total is not None and done >= total
    colour = "#5cb85c" if finished else "#d9534f"  # the widget's "success" / "danger"
    meter = (
        f'<progress value="{done}" max="{total}" style="width:12em;accent-color:{colour}">'
        "</progress> "
        if total
        else ""
    )
    return {
        "text/plain": text,
        "text/html": (
            '<div class="holysheep-progress" style="font-family:monospace;white-space:pre">'
            f"{meter}{html.escape(text)}</div>"
        ),
    }


def set_total(bar: std.tqdm, total: int) -> None:
    """Give ``bar`` the total it was made without; a widget's meter too, which keeps the one
    it was made with (none: a full "info" bar, whatever the count) unless told."""
    bar.total = total
    container = getattr(bar, "container", None)
    if container is not None and not bar.disable:
        meter = container.children[1]
        meter.max = total
        meter.bar_style = ""
        meter.layout.width = None  # an unknown total's meter is drawn 20 px wide


def _held(stats: RunStats, now: float) -> bool:
    """True while every new send waits for the provider's budget at least ``SHOWN_HOLD``
    seconds more (shown on the bar, as whole seconds: 1 at the least)."""
    return stats.held_until is not None and stats.held_until - now >= SHOWN_HOLD


def _tally(
    stats: RunStats, now: float, extra: Mapping[str, object] | None = None
) -> tuple[object, ...]:
    """What the bar shows: a redraw is due when it changes (a hold starting or ending too)."""
    held = stats.hold_reason if _held(stats, now) else ""
    counts = (stats.done, stats.succeeded, stats.failed, stats.retries, stats.cached, held)
    return (*counts, *(extra or {}).items())


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or file-like stream
        return False
