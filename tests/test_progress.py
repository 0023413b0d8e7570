"""The progress bar's pace: a redraw when something changed, never more than tqdm's pace,
and no line at all in a log for a second in which nothing happened.

Time is the injected fake clock; the run's tick (every 0.1 s) is played by calling
``refresh`` by hand.
"""

from __future__ import annotations

import io
import re

import pytest

from holysheep_nb.outcome import RunStats
from holysheep_nb.progress import (
    IDLE_INTERVAL,
    MIN_INTERVAL,
    RunProgress,
    SharedProgress,
    set_total,
)
from tests.fakes import FakeClock

TICK = 0.1


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _bars_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TQDM_DISABLE", raising=False)


def redraws(output: io.StringIO) -> int:
    return output.getvalue().count("\r")


def tick(progress: RunProgress, stats: RunStats, clock: FakeClock, times: int) -> None:
    for _ in range(times):
        clock.advance(TICK)
        progress.refresh(stats)


def test_a_log_gets_no_redraw_while_nothing_changes(clock: FakeClock) -> None:
    """A two-minute cool-down in a log: not 1,200 identical lines, none."""
    log = io.StringIO()
    stats = RunStats()
    progress = RunProgress(100, file=log, now=clock.now)
    stats.succeeded = 10
    tick(progress, stats, clock, 1)
    before = redraws(log)
    tick(progress, stats, clock, 1200)
    assert redraws(log) == before
    assert "10/100" in log.getvalue()


def test_every_change_is_drawn_at_most_at_tqdms_pace(clock: FakeClock) -> None:
    log = io.StringIO()
    stats = RunStats()
    progress = RunProgress(1000, file=log, now=clock.now)
    start = redraws(log)
    for _ in range(50):  # a row answered every 0.02 s: five changes per redraw interval
        stats.succeeded += 1
        clock.advance(0.02)
        progress.refresh(stats)
    drawn = redraws(log) - start
    assert drawn == pytest.approx(50 * 0.02 / MIN_INTERVAL, abs=1)
    assert "50/1000" in log.getvalue()


def test_a_retry_alone_is_a_change(clock: FakeClock) -> None:
    log = io.StringIO()
    stats = RunStats()
    progress = RunProgress(10, file=log, now=clock.now)
    tick(progress, stats, clock, 3)
    stats.retries = 1
    tick(progress, stats, clock, 1)
    assert log.getvalue().rsplit("\r", 1)[-1].count("retried=1") == 1


def test_a_terminal_bar_keeps_its_clock_moving_while_idle(clock: FakeClock) -> None:
    terminal = Terminal()
    stats = RunStats()
    progress = RunProgress(100, file=terminal, now=clock.now)
    before = redraws(terminal)
    tick(progress, stats, clock, round(10 / TICK))  # ten idle seconds
    assert redraws(terminal) - before == pytest.approx(10 / IDLE_INTERVAL, abs=1)


def test_close_draws_the_final_state(clock: FakeClock) -> None:
    log = io.StringIO()
    stats = RunStats()
    progress = RunProgress(5, file=log, now=clock.now)
    stats.succeeded, stats.failed, stats.cached = 4, 1, 2
    progress.close(stats)  # no time passed since the last redraw: drawn all the same
    last = log.getvalue().strip().rsplit("\r", 1)[-1]
    assert "5/5" in last
    assert "ok=4, failed=1, retried=0, cached=2" in last
    # Once: a log file or a CI page shows no repeated last line (tqdm's close draws it).
    assert sum("5/5" in line for line in log.getvalue().split("\r")) == 1


def test_a_shared_bar_adds_each_run_to_the_finished_ones(clock: FakeClock) -> None:
    log = io.StringIO()
    bar = SharedProgress(6, file=log, now=clock.now)
    first = bar.part("a")
    done = RunStats(succeeded=2, failed=1, retries=4)
    clock.advance(TICK)
    first.refresh(done)
    assert "3/6" in log.getvalue().rsplit("\r", 1)[-1]
    assert "variant=a" in log.getvalue().rsplit("\r", 1)[-1]
    first.close(done)
    second = bar.part("b")
    clock.advance(TICK)
    second.refresh(RunStats(succeeded=1, cached=1))  # a new run counts from 0 again
    last = log.getvalue().rsplit("\r", 1)[-1]
    assert "4/6" in last
    assert "ok=3, failed=1, retried=4, cached=1, variant=b" in last
    second.close(RunStats(succeeded=3, cached=2))  # no time passed: drawn all the same
    assert "6/6" in log.getvalue().rsplit("\r", 1)[-1]
    assert "variant=b" in log.getvalue().rsplit("\r", 1)[-1]
    bar.close()
    last = log.getvalue().strip().rsplit("\r", 1)[-1]
    assert "6/6" in last
    assert "ok=5, failed=1, retried=4, cached=2" in last
    assert "holysheep compare" in last


def test_disabled_draws_nothing(clock: FakeClock) -> None:
    log = io.StringIO()
    stats = RunStats()
    progress = RunProgress(5, file=log, enabled=False, now=clock.now)
    stats.succeeded = 5
    tick(progress, stats, clock, 3)
    progress.close(stats)
    assert log.getvalue() == ""


def test_the_bar_says_when_the_run_is_held_and_why(clock: FakeClock) -> None:
    """A spent budget holds every send: the bar says so once, and again when it ends."""
    log = io.StringIO()
    stats = RunStats()
    progress = RunProgress(100, file=log, now=clock.now)
    stats.succeeded = 10
    tick(progress, stats, clock, 1)
    stats.held_until = clock.now() + 30.0
    stats.hold_reason = "the provider's budget is spent"
    tick(progress, stats, clock, 1)
    assert "held=30s, the provider's budget is spent" in log.getvalue()
    drawn = redraws(log)
    tick(progress, stats, clock, 200)  # 20 s held, nothing else changing: no new line
    assert redraws(log) == drawn
    tick(progress, stats, clock, 110)  # the hold is over
    assert redraws(log) == drawn + 1
    assert not log.getvalue().rsplit("\r", 1)[-1].count("held")


def test_a_hold_under_a_second_is_not_shown(clock: FakeClock) -> None:
    """Told the rate and paced under it, the provider's sliding window is nearly full at
    every send, and its headers say "spent" until a slot frees a few milliseconds later:
    that is the pace at work, not a hold worth a word, and ``held=0s`` says nothing."""
    log = io.StringIO()
    stats = RunStats()
    progress = RunProgress(100, file=log, now=clock.now)
    stats.hold_reason = "the provider's budget is spent"
    for _ in range(30):  # a new short hold at every tick, as a paced run has them
        stats.succeeded += 2
        stats.held_until = clock.now() + 0.3 + TICK
        tick(progress, stats, clock, 1)
    assert "held" not in log.getvalue()


def test_a_hold_counts_down_to_one_second_and_never_shows_0s(clock: FakeClock) -> None:
    log = io.StringIO()
    stats = RunStats()
    progress = RunProgress(100, file=log, now=clock.now)
    stats.held_until = clock.now() + 3.0
    stats.hold_reason = "the provider's budget is spent"
    for _ in range(30):  # a row done at every tick: every tick is redrawn
        stats.succeeded += 1
        tick(progress, stats, clock, 1)
    shown = set(re.findall(r"held=(\d+)s", log.getvalue()))
    assert shown == {"3", "2", "1"}


def test_the_final_line_shows_no_hold(clock: FakeClock) -> None:
    """A run that ended (all done, or stopped) holds nothing: a saved notebook must not
    keep a hold as the run's last word."""
    log = io.StringIO()
    stats = RunStats()
    progress = RunProgress(5, file=log, now=clock.now)
    stats.succeeded = 5
    stats.held_until = clock.now() + 20.0  # the last answer's headers: spent until a reset
    stats.hold_reason = "the provider's budget is spent"
    progress.close(stats)
    last = log.getvalue().strip().rsplit("\r", 1)[-1]
    assert "5/5" in last
    assert "held" not in last


def test_a_total_known_late_reaches_a_widgets_meter() -> None:
    """A Dask run learns its rows as its partitions start: the widget's meter, made without
    a total (a full "info" bar), must measure against it from then on."""
    notebook = pytest.importorskip("tqdm.notebook")
    pytest.importorskip("ipywidgets")
    bar = notebook.tqdm(total=None, display=False, unit="row")
    bar.update(100)
    set_total(bar, 400)
    bar.refresh()
    meter = bar.container.children[1]
    assert (meter.max, meter.value, meter.bar_style) == (400, 100, "")
    bar.close()
