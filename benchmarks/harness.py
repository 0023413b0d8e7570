"""What every benchmark case shares: figures and targets, the server, rows, checks and timing.

A case is a function ``(Context) -> list[Figure]``. It raises ``RowCheckError`` when a row
was lost, failed or got another row's answer: that (or any other exception) makes the whole
run exit non-zero, while a missed target is only reported.
"""

from __future__ import annotations

import contextlib
import gc
import io
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import pandas as pd

import holysheep_nb  # noqa: F401 - registers df.holysheep
from holysheep_nb.server import ServerConfig, ServerProcess

T = TypeVar("T")

MODEL = "gpt-4o"
SYSTEM = "Answer with one word: positive, negative or neutral."
PROMPT_COLUMN = "text"


@dataclass(frozen=True)
class Target:
    """A bound a figure should meet: ``>= low``, ``<= high`` or ``low..high``."""

    low: float | None = None
    high: float | None = None

    def met(self, value: float) -> bool:
        """Whether ``value`` is within the bound."""
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)

    def __str__(self) -> str:
        if self.low is not None and self.high is not None:
            return f"{self.low:g}..{self.high:g}"
        if self.low is not None:
            return f">= {self.low:g}"
        return f"<= {self.high:g}"


def at_least(value: float) -> Target:
    """The target ``>= value``."""
    return Target(low=value)


def at_most(value: float) -> Target:
    """The target ``<= value``."""
    return Target(high=value)


@dataclass(frozen=True)
class Figure:
    """One line of the table: a measured value (usually a ratio) and its target, if any."""

    name: str
    value: float | None
    target: Target | None = None
    unit: str = "x"
    note: str = ""

    @property
    def met(self) -> bool | None:
        """True / False against the target; None when there is no target or no value."""
        if self.target is None or self.value is None:
            return None
        return self.target.met(self.value)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of the figure."""
        return {
            "name": self.name,
            "value": self.value,
            "unit": self.unit,
            "target": None if self.target is None else str(self.target),
            "met": self.met,
            "note": self.note,
        }


@dataclass
class Context:
    """What a case may know about the run: the mode, and a place to leave raw numbers."""

    quick: bool
    details: dict[str, Any] = field(default_factory=dict)

    def pick(self, full: T, quick: T) -> T:
        """``full`` in a full run, ``quick`` with ``--quick``."""
        return quick if self.quick else full


class RowCheckError(AssertionError):
    """Rows were lost, failed, duplicated or mixed up: the run must not pass."""


# --- rows -----------------------------------------------------------------------------------


def prompts(rows: int, tag: str = "") -> list[str]:
    """Short, unique prompts, so that an answer given to the wrong row is noticed."""
    return [f"{tag}row {i}: the kettle works well" for i in range(rows)]


def frame(texts: Sequence[str]) -> pd.DataFrame:
    """The input DataFrame: one prompt column."""
    return pd.DataFrame({PROMPT_COLUMN: list(texts)})


def check_answers(answers: Sequence[object], texts: Sequence[str], label: str) -> None:
    """Every row answered with its own prompt (the server runs with ``echo=True``)."""
    if len(answers) != len(texts):
        raise RowCheckError(f"{label}: {len(answers)} answers for {len(texts)} rows")
    wrong = sum(answer != text for answer, text in zip(answers, texts, strict=True))
    if wrong:
        raise RowCheckError(f"{label}: {wrong} of {len(texts)} rows lost or mixed up")


def check_frame(out: pd.DataFrame, source: pd.DataFrame, label: str) -> None:
    """The result frame keeps every row, in order, each with its own answer and no error."""
    if not out.index.equals(source.index):
        raise RowCheckError(f"{label}: the result frame's index differs from the input's")
    failed = int(out["error"].notna().sum())
    if failed:
        first = out["error"].dropna().iloc[0]
        raise RowCheckError(f"{label}: {failed} rows failed, e.g. {first!r}")
    check_answers(out["response"].tolist(), source[PROMPT_COLUMN].tolist(), label)


# --- the server and the product -------------------------------------------------------------


@contextlib.contextmanager
def server(**options: Any) -> Iterator[ServerProcess]:
    """The embedded server in its own process (no shared GIL), answering with the prompt."""
    config = ServerConfig(echo=True, **options)
    with ServerProcess(config) as process:
        yield process


def warm_up(process: ServerProcess, rows: int = 200) -> None:
    """Send a few rows so both sides have their code paths warm, then zero the server.

    The reset also reseeds the server's latency draws, so a case can predict them.
    """
    texts = prompts(rows, "warm-up ")
    out = complete(frame(texts), process, max_concurrent=16, cache=False, progress=False)
    check_frame(out, frame(texts), "warm-up")
    process.reset()


class CountingSink(io.TextIOBase):
    """A text file that keeps nothing but counts writes: proves the progress bar was drawn."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return len(text)

    def writable(self) -> bool:
        return True


class Served(Protocol):
    """A server the client can be pointed at: the embedded one or ``chaos.CappedServer``."""

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL, ending in ``/v1``."""
        ...


def complete(df: pd.DataFrame, process: Served, **options: Any) -> pd.DataFrame:
    """``df.holysheep.complete`` against ``process``, as a user would call it.

    The progress bar (on unless ``progress=False``) is drawn to a sink instead of the terminal,
    so the benchmark's own table stays readable; it is drawn all the same.
    """
    sink = CountingSink()
    with contextlib.redirect_stderr(sink):
        out: pd.DataFrame = df.holysheep.complete(
            PROMPT_COLUMN, model=MODEL, system=SYSTEM, base_url=process.base_url, **options
        )
    if options.get("progress", True) and sink.writes == 0:
        raise RuntimeError("progress=True but the progress bar drew nothing")
    return out


# --- timing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """Wall and process CPU seconds of one run of ``rows`` rows."""

    rows: int
    wall: float
    cpu: float

    @property
    def rows_per_second(self) -> float:
        """Throughput."""
        return self.rows / self.wall

    @property
    def cpu_per_row(self) -> float:
        """Client CPU seconds per row (every thread of this process)."""
        return self.cpu / self.rows


def measure(rows: int, run: Callable[[], object]) -> tuple[Any, Sample]:
    """Run ``run()`` once; return its result and the wall / CPU time it took.

    The heap is collected first, untimed: a full collection costs tens of milliseconds,
    and left to chance it lands in whichever contender's run crosses the collector's
    threshold, paying for another's garbage. Collections the run itself causes are timed.
    """
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    result = run()
    return result, Sample(rows, time.perf_counter() - wall, time.process_time() - cpu)


def alternate(rounds: int, runs: dict[str, Callable[[], Sample]]) -> dict[str, list[Sample]]:
    """Run each contender once per round, in turn, so slow drifts of the machine hit all alike."""
    samples: dict[str, list[Sample]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            samples[name].append(run())
    return samples


def paired(
    pairs: int, first: Callable[[], Sample], second: Callable[[], Sample]
) -> list[tuple[Sample, Sample]]:
    """Run two contenders back to back ``pairs`` times, ``(first, second)`` each time.

    The order swaps every pair (first-second, second-first, ...), so that neither always
    runs on the heels of the other. A pair's two runs are seconds apart: a ratio taken within
    a pair cancels the machine's slow drifts, which on a shared machine move a run's speed
    by 10-20% from one minute to the next (medians of separate rounds do not cancel them).
    """
    samples: list[tuple[Sample, Sample]] = []
    for index in range(pairs):
        if index % 2 == 0:
            one = first()
            samples.append((one, second()))
        else:
            two = second()
            samples.append((first(), two))
    return samples


def summary(samples: Sequence[Sample]) -> dict[str, Any]:
    """Raw numbers of a contender's samples, for the JSON file."""
    return {
        "rows_per_second": [round(s.rows_per_second, 1) for s in samples],
        "cpu_us_per_row": [round(s.cpu_per_row * 1e6, 1) for s in samples],
        "wall_s": [round(s.wall, 3) for s in samples],
    }


def cpu_count() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
