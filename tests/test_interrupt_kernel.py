"""Interrupting a run in a real Jupyter kernel: one line, and the answered rows kept
(docs/guide.md, "Interrupt and resume").

The stop button sends the kernel SIGINT. The cell must end with a one-line notice (not the
event loop's frames), and ``holysheep_nb.last_result()`` must give the rows answered so far
without sending anything again.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from typing import Any

import pytest

from holysheep_nb.server import Latency, LocalServer, ServerConfig
from tests.test_kernel import DEADLINE, Kernel, running_kernel

pytestmark = pytest.mark.kernel
jupyter_client = pytest.importorskip("jupyter_client")


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with LocalServer(ServerConfig(echo=True, latency=Latency.fixed(0.2))) as running:
        yield running


@pytest.fixture(scope="module")
def kernel(server: LocalServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    setup = (
        "import pandas as pd, holysheep_nb\n"
        f"URL = {server.base_url!r}\n"
        "frame = pd.DataFrame({'text': [f'row {i}' for i in range(400)]})\n"
    )
    with running_kernel(tmp_path_factory.mktemp("interrupt-cache"), setup) as running:
        yield running


def error_reply(kernel: Kernel, msg_id: str) -> dict[str, Any]:
    """The cell's execute_reply content (it carries ename and the rendered traceback)."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        try:
            reply = kernel.client.get_shell_msg(timeout=0.1)
        except queue.Empty:
            continue
        if reply["parent_header"].get("msg_id") == msg_id:
            content: dict[str, Any] = reply["content"]
            return content
    raise TimeoutError("no reply from the kernel")


def test_interrupt_shows_one_line_and_keeps_the_answered_rows(
    kernel: Kernel, server: LocalServer
) -> None:
    server.reset()
    msg_id = kernel.submit("out = frame.holysheep.complete('text', base_url=URL, max_concurrent=8)")
    deadline = time.monotonic() + DEADLINE
    while server.stats()["requests"] < 40:
        assert time.monotonic() < deadline, "the cell never started sending"
        time.sleep(0.01)
    kernel.manager.interrupt_kernel()
    content = error_reply(kernel, msg_id)
    kernel._drain_iopub({}, {})

    assert content["status"] == "error"
    assert content["ename"] == "KeyboardInterrupt"
    shown = "\n".join(content["traceback"])
    assert len(content["traceback"]) == 1, shown  # no frames of asyncio or nest_asyncio2
    assert "holysheep_nb.last_result()" in shown
    assert "Run the cell again" in shown
    assert "nest_asyncio" not in shown
    assert "selectors" not in shown

    sent = server.stats()["requests"]
    check = kernel.run(
        "part = holysheep_nb.last_result()\n"
        "answered = part['response'].notna()\n"
        "print('ROWS', len(part), 'ANSWERED', int(answered.sum()),\n"
        "      'RIGHT', int((part['response'][answered] == part['text'][answered]).sum()),\n"
        "      'WAITING', int((part['error'] == 'interrupted: no answer yet').sum()))\n"
        "print('REPORT', part.holysheep.report().rows, part.holysheep.report().stop_cause)\n"
        "print('DEFINED', 'out' in globals())"
    )
    assert check.status == "ok", check
    first, second, third = check.stdout.strip().splitlines()
    words = first.split()
    rows, answered, right, waiting = int(words[1]), int(words[3]), int(words[5]), int(words[7])
    assert rows == 400
    assert 0 < answered < 400
    assert right == answered  # each answered row has its own answer
    assert answered + waiting == 400
    assert second.split() == ["REPORT", str(answered), "interrupted"]
    assert third == "DEFINED False"  # the cell never assigned: last_result() is the way back
    assert server.stats()["requests"] == sent  # looking at the partial result sent nothing

    server.update(latency=Latency.fixed(0.01))
    rerun = kernel.run(
        "out = frame.holysheep.complete('text', base_url=URL, max_concurrent=8)\n"
        "print('CACHED', int(out['cached'].sum()), 'LAST', holysheep_nb.last_result())"
    )
    assert rerun.status == "ok", rerun
    cached = int(rerun.stdout.split()[1])
    assert cached >= answered  # what last_result() showed was not paid for again
    assert rerun.stdout.split()[3] == "None"  # a finished run keeps nothing
