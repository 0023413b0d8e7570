"""Running a coroutine to completion from synchronous code, in a script or a Jupyter cell.

With no loop running this is plain ``asyncio.run``. Inside a running loop (a Jupyter
kernel) the loop is made re-entrant with ``nest_asyncio2``, lazily at the first such call
and never at import; a loop already patched by nest_asyncio or nest_asyncio2 is reused.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

from holysheep_nb import interrupt
from holysheep_nb.errors import LoopError

T = TypeVar("T")


def run_sync(make_coroutine: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run the coroutine ``make_coroutine()`` returns and give back its result.

    On KeyboardInterrupt the run's task is cancelled and driven to the end of its cleanup
    (requests cancelled, session closed, answers flushed) before the interrupt propagates,
    so no task is left behind on the kernel's loop. An interrupted run that kept its answered
    rows (``interrupt.last_result``) raises a fresh KeyboardInterrupt saying so, which IPython
    shows as that one line instead of the event loop's frames.
    """
    interrupt.forget()
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        try:
            return asyncio.run(_boxed(make_coroutine())).value
        except KeyboardInterrupt:
            _raise_notice()
            raise
    ensure_reentrant(loop)
    task = loop.create_task(make_coroutine())
    try:
        return loop.run_until_complete(task)
    except KeyboardInterrupt:
        _finish_cancelled(loop, task)
        _raise_notice()
        raise
    except BaseException:
        _finish_cancelled(loop, task)
        raise


def _raise_notice() -> None:
    """Raise the one-line interrupt notice when the interrupted run kept its answered rows."""
    line = interrupt.notice()
    if line is not None:
        raise interrupt.short(KeyboardInterrupt(line)) from None


class _Box(Generic[T]):
    """A result kept out of reprs. ``asyncio.run`` formats its main task once as it restores
    the SIGINT handler (the handler's repr names the task, the task's repr its result):
    without the box, every call from a script rendered its whole result frame as text,
    about 10 ms for nothing."""

    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value = value


async def _boxed(coroutine: Coroutine[Any, Any, T]) -> _Box[T]:
    return _Box(await coroutine)


def ensure_reentrant(loop: asyncio.AbstractEventLoop) -> None:
    """Patch ``loop`` with nest_asyncio2 unless it (or nest_asyncio) already did."""
    if getattr(loop, "_nest_patched", False):
        return
    if not isinstance(loop, asyncio.BaseEventLoop):
        # nest_asyncio2 patches asyncio's own loops only (not uvloop's); checked here, before
        # it patches asyncio itself, so a refused call leaves nothing patched behind.
        raise LoopError(
            f"complete() cannot run inside this {type(loop).__module__}.{type(loop).__name__} "
            "event loop (it cannot be re-entered): use the async form instead, "
            "e.g. out = await df.holysheep.acomplete(...)"
        )
    import nest_asyncio2

    nest_asyncio2.apply(loop)


def _finish_cancelled(loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> None:
    if task.done():
        return
    task.cancel()
    # A second interrupt while cleaning up must not leave the task half-closed either.
    for _ in range(3):
        with contextlib.suppress(BaseException):
            loop.run_until_complete(task)
        if task.done():
            return
