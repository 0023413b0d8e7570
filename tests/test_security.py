"""The key never leaks; HTTPS verifies certificates; proxies are honoured (docs/contract.md,
"Endpoints and keys").

A random key is pushed through every error path the package has and every place its output
can end up (error cells, reprs, tracebacks, DEBUG logs, the cache file, the progress bar, an
executed notebook). A leak is the whole key or any 16-character piece of it: error lines are
cut short, and a cut key is still a leaked key. Two keys are used: an ordinary ``sk-`` key and
a 200-character one (JWT-style bearer tokens and some project keys are that long or longer).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import logging
import pprint
import secrets
import sqlite3
import ssl
import traceback
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pandas as pd
import pytest
from aiohttp import web

import holysheep_nb
from holysheep_nb import (
    CompletionEngine,
    Endpoint,
    EngineSettings,
    OutcomeKind,
    Prices,
    RateLimits,
    RetryPolicy,
    RowOutcome,
    RunStats,
)
from holysheep_nb.job_options import JobOptions
from holysheep_nb.server import LocalServer, RunningServer, ServerConfig, start_server
from holysheep_nb.transport import proxy_for
from tests.helpers_reliability import (
    TLSFiles,
    assert_no_key,
    bounded,
    chat_completion,
    forward_proxy,
    make_tls_files,
    refused_port,
    serve_app,
)

KEYS = {
    "sk-key": "sk-" + secrets.token_hex(24),
    "200-char-key": "sk-proj-" + secrets.token_hex(96),
}
DEADLINE = 30.0
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture(params=list(KEYS))
def key(request: pytest.FixtureRequest) -> str:
    return KEYS[request.param]


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start from no proxy settings; the proxy tests set their own."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture(autouse=True)
def _notices_never_show_the_key(
    recwarn: pytest.WarningsRecorder, request: pytest.FixtureRequest
) -> Iterator[None]:
    """A run that stops says why in a ``HolySheepWarning``: that line must not leak either."""
    yield
    key = request.node.funcargs.get("key")
    notices = [w for w in recwarn if issubclass(w.category, holysheep_nb.HolySheepWarning)]
    for notice in notices:
        if key:
            assert_no_key(str(notice.message), key, "a HolySheepWarning")


@pytest.fixture
async def rejecting() -> AsyncIterator[RunningServer]:
    """Accepts only a key nobody has, and echoes back the key it was sent (as OpenAI does)."""
    config = ServerConfig(echo=True, api_key="sk-" + secrets.token_hex(24))
    async with await start_server(config) as server:
        yield server


def requests_at(server: RunningServer | LocalServer) -> int:
    return int(server.stats()["requests"])


def frame_texts(out: pd.DataFrame) -> dict[str, str]:
    """Every way a result frame, its report and its attrs get shown."""
    report = out.holysheep.report()
    return {
        "repr(frame)": repr(out),
        "frame.to_string()": out.to_string(),
        "frame.to_html()": out.to_html(),
        "frame.to_json()": out.to_json(),
        "frame._repr_html_()": out._repr_html_() or "",
        "error column": "\n".join(out["error"].dropna()),
        "repr(attrs)": repr(out.attrs),
        "str(report)": str(report),
        "repr(report)": repr(report),
        "report._repr_html_()": report._repr_html_(),
        "report.to_dict()": repr(report.to_dict()),
    }


def assert_clean(texts: Mapping[str, str | bytes], key: str) -> None:
    for where, text in texts.items():
        assert_no_key(text, key, where)


# --- error paths -------------------------------------------------------------------------------


async def test_server_echoes_the_key_it_refuses(rejecting: RunningServer, key: str) -> None:
    """The premise of the 401 test: the provider's message carries the whole key."""
    async with aiohttp.ClientSession() as session:
        response = await session.post(
            rejecting.base_url + "/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": f"Bearer {key}"},
        )
        body = await response.text()
    assert response.status == 401
    assert key in body


async def test_401_that_echoes_the_key_never_shows_it(
    rejecting: RunningServer, key: str, caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)
    frame = pd.DataFrame({"text": [f"row {i}" for i in range(5)]})
    out = await bounded(
        frame.holysheep.acomplete("text", base_url=rejecting.base_url, api_key=key,
                                  cache=False, progress=False),
        DEADLINE, "the 401 run",
    )  # fmt: skip
    errors = out["error"].tolist()
    assert all(e.startswith(("authentication failed (HTTP 401)", "not sent: ")) for e in errors)
    assert any("Incorrect API key provided" in e for e in errors)
    captured = capsys.readouterr()
    assert_clean({**frame_texts(out), "log": caplog.text, "stdout": captured.out,
                  "stderr": captured.err}, key)  # fmt: skip


async def test_403_500_400_drop_html_and_refused_never_show_the_key(
    key: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    frame = pd.DataFrame({"text": [
        "fine", "{{fault:500}}", "{{fault:400}}", "{{fault:drop}}", "{{fault:html}}",
        "{{fault:badjson}}", "{{fault:nochoices}}",
    ]})  # fmt: skip
    # The 403 stops its run: in a run of its own, so that rows waiting out a backoff above
    # (their order set by random jitter) cannot be stopped before their second attempt.
    stopped = pd.DataFrame({"text": ["{{fault:403}}", "never sent"]})
    texts: dict[str, str | bytes] = {"log": caplog.text}
    async with await start_server(ServerConfig(echo=True, api_key=key)) as server:
        options: dict[str, Any] = {"base_url": server.base_url, "api_key": key,
                                   "max_retries": 1, "max_concurrent": 1, "cache": False,
                                   "progress": False}  # fmt: skip
        out = await bounded(frame.holysheep.acomplete("text", **options), DEADLINE, "faults")
        refused_key = await bounded(
            stopped.holysheep.acomplete("text", **options), DEADLINE, "the 403 run"
        )
    assert out["response"].iat[0] == "fine"
    assert out["error"].iat[1].startswith("HTTP 500 after 2 attempts")
    assert refused_key["error"].iat[0].startswith("authentication failed (HTTP 403)")
    assert refused_key["error"].iat[1] == "not sent: authentication failed (HTTP 403)"
    texts.update(frame_texts(out))
    texts.update({f"403 {k}": v for k, v in frame_texts(refused_key).items()})
    with refused_port() as port:
        refused = await bounded(
            frame.holysheep.acomplete("text", base_url=f"http://127.0.0.1:{port}/v1",
                                      api_key=key, max_retries=0, cache=False, progress=False),
            DEADLINE, "the refused run",
        )  # fmt: skip
    # The first sends fail to connect; the rest are not sent once the run stops for it (the
    # run slow-starts: its first sends are the first INITIAL_WINDOW rows, not all of them).
    said = refused["error"].str
    assert (said.startswith("connection error") | said.startswith("not sent: cannot connect")).all()
    assert refused["error"].iat[0].startswith("connection error")
    texts.update({f"refused {k}": v for k, v in frame_texts(refused).items()})
    texts["log"] = caplog.text
    assert_clean(texts, key)


def outcome_texts(call: Callable[[], object]) -> dict[str, str]:
    """What the user gets to see from ``call``: the error and its traceback, or the result."""
    try:
        result = call()
    except Exception as exc:
        return exception_texts(exc)
    return frame_texts(result) if isinstance(result, pd.DataFrame) else {"repr": repr(result)}


def exception_texts(exc: BaseException) -> dict[str, str]:
    return {
        "str": str(exc),
        "repr": repr(exc),
        "args": repr(exc.args),
        "traceback": "".join(traceback.format_exception(exc)),
    }


def test_configuration_errors_and_their_tracebacks_never_show_the_key(key: str) -> None:
    frame = pd.DataFrame({"text": ["a"], "n": [1]})
    with refused_port() as port:
        # Every call is meant to fail before sending; should one not, it stays on this machine.
        local = f"http://127.0.0.1:{port}/v1"
        opts: dict[str, Any] = {"api_key": key, "base_url": local, "max_retries": 0,
                                "progress": False, "cache": False}  # fmt: skip
        calls: dict[str, Callable[[], object]] = {
            "missing column": lambda: frame.holysheep.complete("nope", **opts),
            "bad template": lambda: frame.holysheep.complete(template="{nope}", **opts),
            "max_concurrent 0": lambda: frame.holysheep.complete("text", **opts, max_concurrent=0),
            "timeout -1": lambda: frame.holysheep.complete("text", **opts, timeout=-1),
            "bad base_url": lambda: Endpoint(base_url="ftp://x", api_key=key),
            "unclosed IPv6 base_url": lambda: frame.holysheep.complete(
                "text", **{**opts, "base_url": "http://[::1/v1"}
            ),
            "bad port": lambda: Endpoint(base_url="http://h:99999", api_key=key),
            "bad model": lambda: Endpoint(base_url=local, model="", api_key=key),
            "bad verify": lambda: Endpoint(base_url=local, verify=3, api_key=key),  # type: ignore[arg-type]
            "key with a newline": lambda: frame.holysheep.complete(
                "text", **{**opts, "api_key": key[:20] + "\n" + key[20:]}),
            "key as a number": lambda: Endpoint(api_key=12345),  # type: ignore[arg-type]
            "reserved param": lambda: JobOptions.from_kwargs(**opts, messages=[]),
            "bad prices": lambda: JobOptions.from_kwargs(**opts, prices=(-1, 0)),
        }  # fmt: skip
        for name, call in calls.items():
            texts = outcome_texts(call)
            assert_clean({f"{name}: {where}": text for where, text in texts.items()}, key)


async def test_a_cancelled_run_traceback_never_shows_the_key(key: str) -> None:
    frame = pd.DataFrame({"text": [f"r{i} {{{{fault:hang}}}}" for i in range(50)]})
    config = ServerConfig(echo=True, api_key=key, hang_seconds=30.0)
    async with await start_server(config) as server:
        task = asyncio.ensure_future(frame.holysheep.acomplete(
            "text", base_url=server.base_url, api_key=key, max_concurrent=2, cache=False,
            progress=False, timeout=30,
        ))  # fmt: skip
        for _ in range(200):  # until both requests hang at the server
            await asyncio.sleep(0.01)
            if requests_at(server) >= 2:
                break
        assert requests_at(server) == 2
        task.cancel()
        with pytest.raises(asyncio.CancelledError) as info:
            await bounded(task, 20.0, "cancelling")  # a hang guard: the hangs last 30 s
    assert_clean(exception_texts(info.value), key)


# --- reprs of every public object ----------------------------------------------------------


async def test_repr_and_str_of_every_public_object_never_show_the_key(key: str) -> None:
    async with await start_server(ServerConfig(echo=True, api_key=key)) as server:
        frame = pd.DataFrame({"text": ["a", "b {{fault:400}}"]})
        out = await bounded(
            frame.holysheep.acomplete("text", base_url=server.base_url, api_key=key,
                                      cache=False, progress=False, prices=(0.001, 0.002)),
            DEADLINE, "the run",
        )  # fmt: skip
    endpoint = Endpoint(base_url="https://api.example.test/v1", api_key=key)
    settings = EngineSettings(retry=RetryPolicy(), limits=RateLimits(requests_per_minute=60))
    options = JobOptions.from_kwargs(api_key=key, base_url="https://api.example.test/v1",
                                     temperature=0)  # fmt: skip
    objects: dict[str, object] = {
        "Endpoint": endpoint,
        "Endpoint.resolve": Endpoint.resolve(
            environ={"HOLYSHEEP_API_KEY": key, "HOLYSHEEP_BASE_URL": "https://h.test"}
        ),
        "Endpoint replaced": dataclasses.replace(endpoint, model="other"),
        "EngineSettings": settings,
        "RetryPolicy": settings.retry,
        "RateLimits": settings.limits,
        "CompletionEngine": CompletionEngine(endpoint, settings),
        "JobOptions": options,
        "RunReport": out.holysheep.report(),
        "RowOutcome": RowOutcome(0, OutcomeKind.HTTP, status=400, detail="x"),
        "OutcomeKind": OutcomeKind.HTTP,
        "RunStats": RunStats(),
        "Prices": Prices(0.001, 0.002),
        "CacheInfo": holysheep_nb.cache_info(),
        "result frame": out,
        "result attrs": out.attrs,
    }
    # Keep this test honest when the public API grows: every exported class is built above
    # (exceptions are covered by the traceback test, functions by what they return).
    classes = {name for name in holysheep_nb.__all__
               if isinstance(getattr(holysheep_nb, name), type)
               and not issubclass(getattr(holysheep_nb, name), BaseException)}  # fmt: skip
    built = {type(value).__name__ for value in objects.values()}
    assert classes <= built, f"public classes not checked here: {sorted(classes - built)}"
    for name, value in objects.items():
        texts = {"repr": repr(value), "str": str(value), "format": f"{value}",
                 "pformat": pprint.pformat(value)}  # fmt: skip
        html = getattr(value, "_repr_html_", None)
        if callable(html):
            texts["html"] = html() or ""
        assert_clean({f"{name} {where}": text for where, text in texts.items()}, key)


# --- the cache file --------------------------------------------------------------------------


def read_files(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in folder.iterdir()}


async def test_cache_file_and_its_wal_never_hold_the_key(key: str, tmp_path: Path) -> None:
    cache = tmp_path / "answers.sqlite"
    async with await start_server(ServerConfig(echo=True, api_key=key)) as server:
        first = pd.DataFrame({"text": [f"first {i}" for i in range(20)]})
        await first.holysheep.acomplete("text", base_url=server.base_url, api_key=key,
                                        cache=str(cache), progress=False)  # fmt: skip
        # An open reader keeps the next run's writes in the -wal file for us to read.
        reader = sqlite3.connect(cache)
        try:
            reader.execute("SELECT COUNT(*) FROM answers").fetchone()
            second = pd.DataFrame({"text": [f"second {i}" for i in range(20)]})
            await second.holysheep.acomplete("text", base_url=server.base_url, api_key=key,
                                             cache=str(cache), progress=False)  # fmt: skip
            wrong = "sk-" + secrets.token_hex(24)
            await second.holysheep.acomplete("text", base_url=server.base_url, api_key=wrong,
                                             cache=str(cache), progress=False)  # fmt: skip
            files = read_files(tmp_path)
        finally:
            reader.close()
    assert b"first 3" in files["answers.sqlite"]
    assert b"second 3" in files["answers.sqlite-wal"]  # the scan reaches the newest answers
    assert_clean({f"file {name}": data for name, data in files.items()}, key)
    assert_clean({f"file {name}": data for name, data in files.items()}, wrong)


# --- the progress bar and DEBUG logs ---------------------------------------------------------


async def test_progress_bar_never_shows_the_key(
    rejecting: RunningServer, key: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    frame = pd.DataFrame({"text": [f"row {i}" for i in range(30)]})
    async with await start_server(ServerConfig(echo=True, api_key=key)) as server:
        ok = await bounded(frame.holysheep.acomplete(
            "text", base_url=server.base_url, api_key=key, cache=False, progress=True),
            DEADLINE, "the run with a bar")  # fmt: skip
    refused = await bounded(frame.holysheep.acomplete(
        "text", base_url=rejecting.base_url, api_key=key, cache=False, progress=True),
        DEADLINE, "the 401 run with a bar")  # fmt: skip
    assert ok["error"].isna().all()
    assert refused["response"].isna().all()
    captured = capsys.readouterr()
    assert "holysheep" in captured.err
    assert "30/30" in captured.err  # the bar really was drawn, to the end
    assert_clean({"stderr": captured.err, "stdout": captured.out}, key)


async def test_debug_logs_of_every_logger_never_show_the_key(
    rejecting: RunningServer, key: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("aiohttp", "aiohttp.client", "aiohttp.server", "aiohttp.web",
                 "aiohttp.internal", "aiohttp.access", "asyncio", "holysheep_nb"):  # fmt: skip
        caplog.set_level(logging.DEBUG, logger=name)
    loop = asyncio.get_running_loop()
    loop.set_debug(True)  # asyncio logs slow callbacks and their arguments in debug mode
    try:
        frame = pd.DataFrame({"text": ["one", "{{fault:500}}", "{{fault:drop}}"]})
        async with await start_server(ServerConfig(echo=True, api_key=key)) as server:
            await frame.holysheep.acomplete(
                "text",
                base_url=server.base_url,
                api_key=key,
                max_retries=1,
                cache=False,
                progress=False,
            )
        await frame.holysheep.acomplete("text", base_url=rejecting.base_url, api_key=key,
                                        cache=False, progress=False)  # fmt: skip
        with refused_port() as port:
            await frame.holysheep.acomplete("text", base_url=f"http://127.0.0.1:{port}",
                                            api_key=key, max_retries=0, cache=False,
                                            progress=False)  # fmt: skip
    finally:
        loop.set_debug(False)
    texts: dict[str, str | bytes] = {"caplog.text": caplog.text}
    for number, record in enumerate(caplog.records):
        texts[f"record {number} ({record.name})"] = (
            f"{record.getMessage()} {record.exc_text or ''} {record.stack_info or ''}"
        )
    assert_clean(texts, key)


# --- an executed notebook ----------------------------------------------------------------------

NOTEBOOK_CELLS = [
    """\
import logging
import os

import pandas as pd

import holysheep_nb

logging.basicConfig(level=logging.DEBUG, force=True)
logging.getLogger("aiohttp").setLevel(logging.DEBUG)
BASE_URL = os.environ["HS_TEST_BASE_URL"]
CACHE = os.environ["HS_TEST_CACHE"]
frame = pd.DataFrame({"text": ["great kettle", "awful lamp", "ดีมาก 😍"]})""",
    # The key comes from HOLYSHEEP_API_KEY: it appears in no cell.
    'out = frame.holysheep.complete("text", base_url=BASE_URL, cache=CACHE)\nout',
    "out.holysheep.report()",
    "print(out.attrs)\nholysheep_nb.Endpoint.resolve(base_url=BASE_URL)",
    'wrong = os.environ["HS_TEST_WRONG_KEY"]\n'
    'bad = frame.holysheep.complete("text", base_url=BASE_URL, api_key=wrong, cache=False)\n'
    "bad",
    "bad.holysheep.report()",
    'print(bad["error"].tolist())',
    'await frame.holysheep.acomplete("text", base_url=BASE_URL, api_key=wrong, cache=False)',
    'frame.holysheep.complete("no such column", base_url=BASE_URL, api_key=wrong)',
]


@pytest.mark.kernel
@pytest.mark.slow
def test_executed_notebook_never_shows_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    valid, wrong = KEYS["sk-key"], KEYS["200-char-key"]
    with LocalServer(ServerConfig(echo=True, api_key=valid)) as server:
        # The kernel inherits these; the notebook reads them, so no key is in its source.
        monkeypatch.setenv("HOLYSHEEP_API_KEY", valid)
        monkeypatch.setenv("HS_TEST_WRONG_KEY", wrong)
        monkeypatch.setenv("HS_TEST_BASE_URL", server.base_url)
        monkeypatch.setenv("HS_TEST_CACHE", str(tmp_path / "nb-cache.sqlite"))
        monkeypatch.delenv("TQDM_DISABLE", raising=False)  # progress bars on, as for a user
        notebook = nbformat.v4.new_notebook()
        notebook.cells = [nbformat.v4.new_code_cell(source) for source in NOTEBOOK_CELLS]
        notebook.cells[-1].metadata["tags"] = ["raises-exception"]
        client = nbclient.NotebookClient(
            notebook, timeout=60, startup_timeout=60, kernel_name="python3",
            resources={"metadata": {"path": str(tmp_path)}},
        )  # fmt: skip
        client.execute()
        stats = server.stats()

    def outputs(index: int) -> str:
        return json.dumps(notebook.cells[index].outputs, ensure_ascii=False)

    assert "awful lamp" in outputs(1)  # answered with the valid key...
    assert stats["by_status"].get("200") == 3
    assert "authentication failed (HTTP 401)" in outputs(6)  # ...and refused with the wrong one
    assert stats["by_status"].get("401", 0) >= 2
    assert "ConfigError" in outputs(8)
    document = nbformat.writes(notebook)
    assert_no_key(document, valid, "the executed notebook")
    assert_no_key(document, wrong, "the executed notebook")


# --- HTTPS -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
async def https_echo(tls: TLSFiles) -> AsyncIterator[RunningServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls.cert, tls.key)
    async with await start_server(ServerConfig(echo=True), ssl_context=context) as server:
        yield server


async def run_https(server: RunningServer, **options: Any) -> pd.DataFrame:
    frame = pd.DataFrame({"text": ["secure one", "secure two"]})
    return await bounded(
        frame.holysheep.acomplete("text", base_url=server.base_url, cache=False,
                                  progress=False, **options),
        DEADLINE, "the https run",
    )  # fmt: skip


async def test_https_server_is_really_https(https_echo: RunningServer) -> None:
    assert https_echo.base_url.startswith("https://127.0.0.1:")
    assert Endpoint(base_url=https_echo.base_url).verify is True  # verification on by default


async def test_https_default_verification_gives_each_row_a_certificate_error(
    https_echo: RunningServer,
) -> None:
    out = await run_https(https_echo, max_retries=1)
    assert out["response"].isna().all()
    errors = out["error"].tolist()
    assert all("certificate verify failed" in error for error in errors), errors
    assert requests_at(https_echo) == 0  # no request got past the handshake


async def test_https_with_the_ca_bundle_as_verify_succeeds(
    https_echo: RunningServer, tls: TLSFiles
) -> None:
    out = await run_https(https_echo, verify=str(tls.ca))
    assert out["response"].tolist() == ["secure one", "secure two"]
    assert requests_at(https_echo) == 2


async def test_https_with_verify_false_succeeds(https_echo: RunningServer) -> None:
    out = await run_https(https_echo, verify=False)
    assert out["response"].tolist() == ["secure one", "secure two"]


# --- proxies -----------------------------------------------------------------------------------

PROXY = "http://proxy.corp.test:3128"
BOTH = {"HTTP_PROXY": PROXY, "HTTPS_PROXY": PROXY}
HOLYSHEEP = "https://api.holysheep.ai/v1/chat/completions"
PLAIN = "http://api.example.test/v1/chat/completions"


@pytest.mark.parametrize(
    ("environment", "url", "expected"),
    [
        ({"HTTPS_PROXY": PROXY}, HOLYSHEEP, PROXY),
        ({"https_proxy": PROXY}, HOLYSHEEP, PROXY),
        ({"HTTP_PROXY": PROXY}, HOLYSHEEP, None),  # an http proxy is not for https
        ({"HTTP_PROXY": PROXY}, PLAIN, PROXY),
        ({"HTTPS_PROXY": PROXY, "NO_PROXY": "holysheep.ai"}, HOLYSHEEP, None),
        ({"HTTPS_PROXY": PROXY, "NO_PROXY": ".holysheep.ai"}, HOLYSHEEP, None),
        ({"HTTPS_PROXY": PROXY, "NO_PROXY": "other.test,api.holysheep.ai"}, HOLYSHEEP, None),
        ({"HTTPS_PROXY": PROXY, "NO_PROXY": "*"}, HOLYSHEEP, None),
        ({"HTTPS_PROXY": PROXY, "NO_PROXY": "example.test"}, HOLYSHEEP, PROXY),
        # Loopback never goes through a proxy, whatever NO_PROXY says (by design).
        (BOTH, "http://127.0.0.1:8000/v1/chat/completions", None),
        (BOTH, "https://localhost:8443/v1/chat/completions", None),
        (BOTH, "http://[::1]:8000/v1/chat/completions", None),
        (BOTH, "http://127.5.6.7:8000/v1/chat/completions", None),
        ({}, HOLYSHEEP, None),
    ],
)
def test_proxy_for_honours_the_environment_and_bypasses_loopback(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], url: str, expected: str | None
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert proxy_for(url) == expected


@pytest.fixture
def proxied(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """Call it with a proxy URL to route http and https through that proxy."""

    def use(proxy_url: str) -> None:
        monkeypatch.setenv("HTTP_PROXY", proxy_url)
        monkeypatch.setenv("HTTPS_PROXY", proxy_url)

    return use


async def test_requests_to_a_remote_host_go_through_the_proxy(
    proxied: Callable[[str], None], key: str
) -> None:
    frame = pd.DataFrame({"text": ["one", "two", "three"]})
    async with forward_proxy() as proxy:
        proxied(proxy.url)
        out = await bounded(
            frame.holysheep.acomplete("text", base_url="http://api.example.test/v1",
                                      api_key=key, cache=False, progress=False),
            DEADLINE, "the proxied run",
        )  # fmt: skip
    assert out["response"].tolist() == ["via proxy: one", "via proxy: two", "via proxy: three"]
    assert [seen.method for seen in proxy.seen] == ["POST"] * 3
    assert {seen.target for seen in proxy.seen} == {"http://api.example.test/v1/chat/completions"}
    assert {seen.host for seen in proxy.seen} == {"api.example.test"}
    # The key goes to the API host, through the proxy the user chose, as the header says.
    assert {seen.authorization for seen in proxy.seen} == {f"Bearer {key}"}


async def test_https_through_a_proxy_tunnels_and_shows_the_proxy_no_key(
    proxied: Callable[[str], None], key: str
) -> None:
    frame = pd.DataFrame({"text": ["one"]})
    async with forward_proxy() as proxy:
        proxied(proxy.url)
        out = await bounded(
            frame.holysheep.acomplete("text", base_url="https://api.example.test/v1",
                                      api_key=key, max_retries=0, cache=False, progress=False),
            DEADLINE, "the proxied https run",
        )  # fmt: skip
    assert [(seen.method, seen.target) for seen in proxy.seen] == [
        ("CONNECT", "api.example.test:443")
    ]
    assert proxy.seen[0].authorization is None  # the key travels only inside the tunnel
    # Not as Proxy-Authorization either (aiohttp copies a session's default headers into a
    # CONNECT), nor in any other header the proxy saw.
    assert_no_key(json.dumps(proxy.seen[0].headers), key, "the CONNECT request's headers")
    assert "Proxy-Authorization" not in proxy.seen[0].headers
    assert out["error"].iat[0].startswith("connection error after 1 attempt: ")
    assert_no_key(out["error"].iat[0], key, "the proxy error")


async def test_a_proxy_password_reaches_the_proxy_only_never_an_error(
    proxied: Callable[[str], None], key: str
) -> None:
    """Credentials in HTTPS_PROXY go to the proxy as Proxy-Authorization; the URL aiohttp
    quotes in its errors is the proxy's without them (a fresh user saw
    ``url='http://alice:s3cret@...'`` in a row's error)."""
    frame = pd.DataFrame({"text": ["one"]})
    async with forward_proxy() as proxy:
        proxied(proxy.url.replace("http://", "http://alice:s3cret%21@"))
        out = await bounded(
            frame.holysheep.acomplete("text", base_url="https://api.example.test/v1",
                                      api_key=key, max_retries=0, cache=False, progress=False),
            DEADLINE, "the proxied https run",
        )  # fmt: skip
    error = out["error"].iat[0]
    assert error.startswith("connection error after 1 attempt: ")
    assert "s3cret" not in error
    assert "alice" not in error
    expected = "Basic " + base64.b64encode(b"alice:s3cret!").decode()
    assert proxy.seen[0].headers.get("Proxy-Authorization") == expected


async def test_the_key_and_headers_never_follow_a_redirect_to_another_host(key: str) -> None:
    """A server that redirects (a moved API, a hostile proxy page) gets no second request:
    the key and the caller's headers reach only the host of base_url."""
    seen: list[dict[str, str]] = []

    async def elsewhere(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.json_response(chat_completion("should never be asked"))

    async def redirecting(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect(f"{other_url}/v1/chat/completions")

    other = web.Application()
    other.router.add_post("/v1/chat/completions", elsewhere)
    first = web.Application()
    first.router.add_post("/v1/chat/completions", redirecting)
    async with serve_app(other) as other_url, serve_app(first) as first_url:
        out = await bounded(
            pd.DataFrame({"text": ["one"]}).holysheep.acomplete(
                "text", base_url=f"{first_url}/v1", api_key=key, headers={"X-Team": key[::-1]},
                max_retries=0, cache=False, progress=False,
            ),
            DEADLINE, "the redirected run",
        )  # fmt: skip
    assert seen == []
    assert out["error"].iat[0].startswith("HTTP 307")
    assert_no_key(out["error"].iat[0], key, "the redirect error")


async def test_a_cookie_the_server_sets_is_never_sent_back() -> None:
    """A load balancer's or a proxy page's Set-Cookie is not kept: the rows after it go with
    the key alone (and the client spends nothing on a cookie jar per request)."""
    cookies: list[str | None] = []

    async def answer(request: web.Request) -> web.Response:
        body = await request.json()
        cookies.append(request.headers.get("Cookie"))
        response = web.json_response(chat_completion(body["messages"][-1]["content"]))
        response.set_cookie("AWSALB", "sticky-session")
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", answer)
    async with serve_app(app) as url:
        # By name: aiohttp's jar never keeps a cookie of a bare IP address.
        named = url.replace("127.0.0.1", "localhost")
        out = await bounded(
            pd.DataFrame({"text": ["one", "two", "three"]}).holysheep.acomplete(
                "text", base_url=f"{named}/v1", api_key="sk-test", max_concurrent=1,
                cache=False, progress=False,
            ),
            DEADLINE, "the cookie run",
        )  # fmt: skip
    assert out["response"].tolist() == ["one", "two", "three"]
    assert cookies == [None, None, None]


async def test_loopback_base_url_bypasses_the_proxy(proxied: Callable[[str], None]) -> None:
    frame = pd.DataFrame({"text": ["direct"]})
    async with forward_proxy() as proxy, await start_server(ServerConfig(echo=True)) as server:
        proxied(proxy.url)
        out = await bounded(
            frame.holysheep.acomplete("text", base_url=server.base_url, cache=False,
                                      progress=False),
            DEADLINE, "the loopback run",
        )  # fmt: skip
    assert out["response"].tolist() == ["direct"]
    assert proxy.seen == []
    assert requests_at(server) == 1
