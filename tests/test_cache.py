"""The answer cache (docs/contract.md, "Cache and resume"): keys, buffered writes, durability, sharing and damaged files."""

from __future__ import annotations

import hashlib
import json
import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import closing
from datetime import datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

import holysheep_nb
from holysheep_nb.cache import (
    CachedAnswer,
    CacheWarning,
    Fingerprinter,
    ResponseCache,
    cache_info,
    clear_cache,
    default_cache_path,
    fingerprint,
)
from holysheep_nb.cache.cli import main as cli
from holysheep_nb.errors import ConfigError
from holysheep_nb.logprobs import TokenLogprob, tokens_from_json, tokens_to_json
from tests.fakes import FakeClock

REPO_ROOT = Path(holysheep_nb.__file__).resolve().parents[1]
SYSTEM = "Answer with one word: positive, negative or neutral."
BASE: dict[str, Any] = {
    "base_url": "https://api.holysheep.ai/v1",
    "model": "gpt-4.1",
    "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "I love it"}],
    "params": {"temperature": 0.0, "max_tokens": 5},
}


def stored(path: Path) -> dict[str, tuple[str, int | None, int | None]]:
    """What a second, independent connection sees in the file: only committed answers."""
    with closing(sqlite3.connect(path)) as conn:
        rows = conn.execute("SELECT key, response, prompt_tokens, completion_tokens FROM answers")
        return {key: (response, pt, ct) for key, response, pt, ct in rows}


@pytest.fixture
def cache_path(tmp_path: Path) -> Path:
    return tmp_path / "answers.sqlite"


@pytest.fixture
def cache(cache_path: Path, clock: FakeClock) -> Iterator[ResponseCache]:
    with ResponseCache(cache_path, flush_interval=1.0, max_pending=100, clock=clock) as c:
        yield c


# -- fingerprint --------------------------------------------------------------------------


def test_fingerprint_is_sha256_of_the_canonical_json() -> None:
    # Whole floats are written as ints (temperature 0.0 is temperature 0).
    document = {**BASE, "params": {"temperature": 0, "max_tokens": 5}, "v": 1}
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    expected = hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    assert fingerprint(**BASE) == expected
    assert fingerprint(**BASE) == expected  # stable across calls
    shared = Fingerprinter(base_url=BASE["base_url"], model=BASE["model"], params=BASE["params"])
    assert shared(BASE["messages"]) == expected


def _with_message(index: int, content: str) -> dict[str, Any]:
    messages = [dict(m) for m in BASE["messages"]]
    messages[index]["content"] = content
    return {**BASE, "messages": messages}


@pytest.mark.parametrize(
    "changed",
    [
        pytest.param({**BASE, "base_url": "http://127.0.0.1:8000/v1"}, id="base_url"),
        pytest.param({**BASE, "model": "gpt-4o"}, id="model"),
        pytest.param(_with_message(0, "Answer in French."), id="system text"),
        pytest.param(_with_message(1, "I hate it"), id="user text"),
        pytest.param({**BASE, "params": {**BASE["params"], "temperature": 0.7}}, id="temperature"),
        pytest.param({**BASE, "params": {**BASE["params"], "max_tokens": 6}}, id="max_tokens"),
        pytest.param(
            {**BASE, "params": {**BASE["params"], "response_format": {"type": "json_object"}}},
            id="response_format",
        ),
    ],
)
def test_fingerprint_changes_with_every_input(changed: dict[str, Any]) -> None:
    assert fingerprint(**changed) != fingerprint(**BASE)


def test_fingerprint_ignores_key_order_mapping_type_and_trailing_slash() -> None:
    reordered = {
        "base_url": BASE["base_url"] + "/",
        "model": BASE["model"],
        "messages": [{"content": m["content"], "role": m["role"]} for m in BASE["messages"]],
        "params": MappingProxyType({"max_tokens": 5, "temperature": 0.0}),
    }
    assert fingerprint(**reordered) == fingerprint(**BASE)


def test_fingerprint_handles_unicode_and_lone_surrogates() -> None:
    thai = fingerprint(**_with_message(1, "สวัสดีครับ 🎉"))
    broken = fingerprint(**_with_message(1, "bad \ud800 data"))
    assert len({thai, broken, fingerprint(**BASE)}) == 3


# -- put / get_many -----------------------------------------------------------------------


def test_round_trip_keeps_unicode_and_token_counts(cache_path: Path) -> None:
    answers = {
        "thai": CachedAnswer("ภาษาไทย สวัสดีครับ", 12, 3),
        "emoji": CachedAnswer("positive 🎉👍🏽", 7, None),
        "empty": CachedAnswer(""),
    }
    with ResponseCache(cache_path) as cache:
        for key, answer in answers.items():
            cache.put(key, answer)
        # Visible at once, whether still buffered or already written.
        assert cache.get_many([*answers, "absent"]) == answers

    with ResponseCache(cache_path) as reopened:
        assert reopened.get_many(list(answers)) == answers
        assert reopened.get_many(["absent"]) == {}


def test_file_is_in_wal_mode_so_readers_and_writers_share_it(cache: ResponseCache) -> None:
    with closing(sqlite3.connect(cache.path)) as other:
        assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_get_many_crosses_the_500_key_query_limit(cache: ResponseCache) -> None:
    for i in range(1200):
        cache.put(f"k{i}", CachedAnswer(f"answer {i}"))
    cache.flush()
    cache.put("fresh", CachedAnswer("still pending"))

    keys = [f"k{i}" for i in range(1500)] + ["fresh"]
    found = cache.get_many(keys)

    assert len(found) == 1201
    assert found["k0"] == CachedAnswer("answer 0")
    assert found["k1199"] == CachedAnswer("answer 1199")
    assert found["fresh"] == CachedAnswer("still pending")
    assert "k1200" not in found


def test_put_refuses_a_missing_response(cache: ResponseCache, cache_path: Path) -> None:
    with pytest.raises(TypeError, match="only successful answers"):
        cache.put("failed", CachedAnswer(None))  # type: ignore[arg-type]
    cache.flush()
    assert cache.pending == 0
    assert stored(cache_path) == {}


def test_lone_surrogate_response_is_skipped_not_fatal(
    cache: ResponseCache, cache_path: Path
) -> None:
    cache.put("good", CachedAnswer("fine"))
    cache.put("bad", CachedAnswer("half an emoji \ud83d"))
    cache.flush()
    assert stored(cache_path) == {"good": ("fine", None, None)}
    assert cache.pending == 0


# -- batching -----------------------------------------------------------------------------


def test_puts_wait_for_the_interval_then_maybe_flush_writes(
    cache: ResponseCache, cache_path: Path, clock: FakeClock
) -> None:
    for i in range(10):
        cache.put(f"k{i}", CachedAnswer("x"))
    clock.advance(0.5)
    cache.maybe_flush()
    assert cache.pending == 10
    assert stored(cache_path) == {}

    clock.advance(0.5)
    cache.maybe_flush()
    assert cache.pending == 0
    assert len(stored(cache_path)) == 10

    cache.put("late", CachedAnswer("y"))
    cache.maybe_flush()  # the interval restarts at each write
    assert "late" not in stored(cache_path)


def test_put_flushes_itself_when_the_interval_has_passed(
    cache: ResponseCache, cache_path: Path, clock: FakeClock
) -> None:
    cache.put("first", CachedAnswer("a"))
    assert stored(cache_path) == {}
    clock.advance(1.0)
    cache.put("second", CachedAnswer("b"))
    assert set(stored(cache_path)) == {"first", "second"}


def test_put_flushes_itself_at_max_pending(cache: ResponseCache, cache_path: Path) -> None:
    for i in range(99):
        cache.put(f"k{i}", CachedAnswer("x"))
    assert stored(cache_path) == {}
    cache.put("k99", CachedAnswer("x"))  # the 100th: one transaction for all of them
    assert len(stored(cache_path)) == 100
    assert cache.pending == 0


def test_close_flushes_and_is_idempotent(cache_path: Path, clock: FakeClock) -> None:
    cache = ResponseCache(cache_path, clock=clock)
    cache.put("k", CachedAnswer("v", 1, 2))
    assert stored(cache_path) == {}
    cache.close()
    cache.close()
    assert stored(cache_path) == {"k": ("v", 1, 2)}
    with pytest.raises(RuntimeError, match="closed"):
        cache.put("k2", CachedAnswer("v"))


def test_context_manager_flushes_on_exception(cache_path: Path, clock: FakeClock) -> None:
    def interrupted_run() -> None:
        with ResponseCache(cache_path, clock=clock) as cache:
            cache.put("paid-for", CachedAnswer("keep me"))
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted_run()
    assert stored(cache_path) == {"paid-for": ("keep me", None, None)}


@pytest.mark.parametrize(
    ("options", "message"),
    [({"flush_interval": -1.0}, "flush_interval"), ({"max_pending": 0}, "max_pending")],
)
def test_bad_settings_are_config_errors(
    cache_path: Path, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        ResponseCache(cache_path, **options)
    assert not cache_path.exists()


# -- opening ------------------------------------------------------------------------------


def test_open_false_disables_the_cache() -> None:
    assert ResponseCache.open(False) is None


def test_open_path_creates_parent_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cache = ResponseCache.open("runs/labels.sqlite")
    assert cache is not None
    with cache:
        cache.put("k", CachedAnswer("v"))
    assert cache.path == Path("runs/labels.sqlite")
    assert stored(tmp_path / "runs" / "labels.sqlite") == {"k": ("v", None, None)}


@pytest.mark.parametrize("option", [True, None])
def test_open_default_honours_holysheep_cache_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, option: bool | None
) -> None:
    monkeypatch.setenv("HOLYSHEEP_CACHE_DIR", str(tmp_path / "shared"))
    cache = ResponseCache.open(option)
    assert cache is not None
    with cache:
        assert cache.path == tmp_path / "shared" / "cache.sqlite"
    assert cache.path.is_file()


@pytest.mark.parametrize("option", ["", 3])
def test_open_rejects_what_is_not_a_path(option: Any) -> None:
    with pytest.raises(ConfigError, match="cache must be True, False or a file path"):
        ResponseCache.open(option)


@pytest.mark.parametrize(
    ("platform", "env", "expected"),
    [
        ("linux", {}, "home/.cache"),
        ("linux", {"XDG_CACHE_HOME": "/xdg"}, "/xdg"),
        ("linux", {"XDG_CACHE_HOME": "relative"}, "home/.cache"),
        ("darwin", {}, "home/Library/Caches"),
        ("win32", {"LOCALAPPDATA": "/local"}, "/local"),
    ],
)
def test_default_path_per_platform(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    platform: str,
    env: dict[str, str],
    expected: str,
) -> None:
    monkeypatch.delenv("HOLYSHEEP_CACHE_DIR")
    for name in ("XDG_CACHE_HOME", "LOCALAPPDATA"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(sys, "platform", platform)
    base = Path(expected) if expected.startswith("/") else tmp_path / expected
    assert default_cache_path() == base / "holysheep_nb" / "cache.sqlite"


# -- damaged or unusable files ------------------------------------------------------------


def test_corrupt_file_is_moved_aside_and_a_fresh_cache_works(
    cache_path: Path, clock: FakeClock
) -> None:
    garbage = b"this is not a database, just bytes " * 200
    cache_path.write_bytes(garbage)

    with pytest.warns(CacheWarning, match=r"answers\.sqlite is corrupt or not a SQLite database"):
        cache = ResponseCache(cache_path, clock=clock)
    with cache:
        cache.put("k", CachedAnswer("fresh"))

    [moved] = cache_path.parent.glob("answers.sqlite.corrupt-*")
    stamp = datetime.fromtimestamp(clock.wall()).strftime("%Y%m%d-%H%M%S")
    assert moved.name == f"answers.sqlite.corrupt-{stamp}"  # named by the clock's wall time
    assert moved.read_bytes() == garbage
    assert stored(cache_path) == {"k": ("fresh", None, None)}


def _corrupt_under_open_connections(path: Path) -> None:
    # Another process commits and checkpoints (so open connections must re-read the file),
    # then the file is overwritten: the next query of an open connection fails.
    with closing(sqlite3.connect(path)) as other:
        other.execute("INSERT INTO answers (key, response, created) VALUES ('other', 'x', 0)")
        other.commit()
        other.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    path.write_bytes(b"\xde\xad\xbe\xef" * 4096)


def test_corruption_during_a_run_is_recovered_once(cache_path: Path, clock: FakeClock) -> None:
    first = ResponseCache(cache_path, clock=clock)
    second = ResponseCache(cache_path, clock=clock)
    first.put("old", CachedAnswer("lost with the file"))
    first.flush()
    _corrupt_under_open_connections(cache_path)
    first.put("pending", CachedAnswer("kept"))

    with pytest.warns(CacheWarning, match="moved it aside"):
        found = first.get_many(["old", "other", "pending"])
    assert found == {"pending": CachedAnswer("kept")}

    # The second cache finds the file already replaced: it joins the fresh one, no warning,
    # and does not move the first cache's fresh file aside.
    second.put("from-second", CachedAnswer("also kept"))
    second.flush()
    first.close()
    second.close()
    moved = cache_path.parent.glob("answers.sqlite.corrupt-*")
    assert len([p for p in moved if not p.name.endswith(("-wal", "-shm"))]) == 1
    assert set(stored(cache_path)) == {"pending", "from-second"}


def test_unknown_schema_version_falls_back_to_memory(cache_path: Path) -> None:
    with closing(sqlite3.connect(cache_path)) as conn:
        conn.execute("PRAGMA user_version = 99")

    with pytest.warns(CacheWarning, match="schema version 99"):
        cache = ResponseCache(cache_path)
    with cache:
        assert "in memory" in repr(cache)
        cache.put("k", CachedAnswer("v"))
        cache.flush()
        assert cache.get_many(["k"]) == {"k": CachedAnswer("v")}

    with closing(sqlite3.connect(cache_path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (99,)
        assert conn.execute("SELECT name FROM sqlite_master").fetchall() == []


def test_unopenable_path_falls_back_to_memory(tmp_path: Path) -> None:
    with pytest.warns(CacheWarning, match="in memory for this session only"):
        cache = ResponseCache(tmp_path)  # a directory, not a file
    with cache:
        cache.put("k", CachedAnswer("v"))
        cache.flush()
        assert cache.get_many(["k"]) == {"k": CachedAnswer("v")}


# -- processes ----------------------------------------------------------------------------


def _python(code: str, *args: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


WRITER = """
import sys
import threading
from holysheep_nb.cache import CachedAnswer, ResponseCache
path, prefix = sys.argv[1], sys.argv[2]
sys.stdin.readline()  # start together: both also create the fresh file at the same moment
# max_pending=5: 400 short transactions each, so the two writers collide often.
with ResponseCache(path, max_pending=5) as cache:
    for i in range(2000):
        cache.put(f"{prefix}-{i}", CachedAnswer(f"{prefix} answer {i}", i, 1))
"""


def test_two_processes_share_one_file_without_losing_answers(cache_path: Path) -> None:
    with (
        _python(WRITER, str(cache_path), "a") as first,
        _python(WRITER, str(cache_path), "b") as second,
    ):
        writers = [first, second]
        for writer in writers:  # release both at once
            assert writer.stdin is not None
            writer.stdin.write("go\n")
            writer.stdin.flush()
        outputs = [writer.communicate(timeout=60) for writer in writers]

    assert [w.returncode for w in writers] == [0, 0], outputs
    assert all(err == "" for _, err in outputs), outputs  # no "database is locked", no warning
    rows = stored(cache_path)
    assert len(rows) == 4000
    assert rows["a-1999"] == ("a answer 1999", 1999, 1)
    assert rows["b-0"] == ("b answer 0", 0, 1)


KILLED = """
import sys
from holysheep_nb.cache import CachedAnswer, ResponseCache

class Clock:  # moved by hand: the flush interval passes when this script says so
    t = 0.0
    def now(self): return self.t
    def wall(self): return 1_700_000_000.0 + self.t
    async def sleep(self, seconds): self.t += seconds

clock = Clock()
cache = ResponseCache(sys.argv[1], flush_interval=0.05, clock=clock)
for i in range(300):
    cache.put(f"k{i}", CachedAnswer(f"answer {i}"))
cache.maybe_flush()  # the caller's periodic tick, within the interval: nothing is written
print("put", flush=True)
sys.stdin.readline()  # the parent has looked at the file
clock.t += 0.05
cache.maybe_flush()  # the tick after the interval
print("interval passed", flush=True)
sys.stdin.readline()  # the parent never writes: only SIGKILL ends this
"""


def _lines(proc: subprocess.Popen[str]) -> queue.Queue[str]:
    """Collect the child's stdout lines in a thread, so the test can wait with a timeout."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.strip())

    threading.Thread(target=pump, daemon=True).start()
    return lines


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_answers_older_than_the_flush_interval_survive_sigkill(cache_path: Path) -> None:
    with _python(KILLED, str(cache_path)) as child:
        try:
            lines = _lines(child)
            # Timeouts are hang guards: the child's clock is its own, moved by the script.
            assert lines.get(timeout=60) == "put"
            assert stored(cache_path) == {}  # buffered: within the interval, nothing written
            assert child.stdin is not None
            child.stdin.write("looked\n")
            child.stdin.flush()
            assert lines.get(timeout=60) == "interval passed"
            os.kill(child.pid, signal.SIGKILL)  # no finally, no close, no atexit
            assert child.wait(timeout=60) == -signal.SIGKILL
        finally:
            child.kill()

    rows = stored(cache_path)
    assert len(rows) == 300
    assert rows["k299"] == ("answer 299", None, None)


# -- info / clear / cli -------------------------------------------------------------------


def _fill(path: Path, count: int) -> None:
    with ResponseCache(path) as cache:
        for i in range(count):
            cache.put(f"k{i}", CachedAnswer("v"))


def test_cache_info_of_a_missing_file_does_not_create_it(cache_path: Path) -> None:
    info = cache_info(cache_path)
    assert (info.entries, info.size_bytes, info.oldest, info.newest) == (0, 0, None, None)
    assert not cache_path.exists()
    assert "entries    : 0" in str(info)


def test_cache_info_counts_entries_and_dates(cache_path: Path, clock: FakeClock) -> None:
    first = datetime.fromtimestamp(clock.wall()).astimezone()
    with ResponseCache(cache_path, clock=clock) as cache:
        cache.put("k0", CachedAnswer("v"))
        cache.flush()
        clock.advance(90.0)
        cache.put("k1", CachedAnswer("v"))
        cache.put("k2", CachedAnswer("v"))
    info = cache_info(cache_path)

    assert info.path == cache_path
    assert info.entries == 3
    assert info.size_bytes > 0
    # Each answer is stamped with the wall time of the clock the cache was given.
    assert info.oldest == first
    assert info.newest == first + timedelta(seconds=90)
    lines = str(info).splitlines()
    assert lines[0] == f"cache file : {cache_path}"
    assert "entries    : 3" in lines
    assert f"oldest     : {first:%Y-%m-%d %H:%M:%S}" in lines
    assert len({line.index(":") for line in lines}) == 1  # aligned


def test_clear_cache_removes_every_entry(cache_path: Path) -> None:
    _fill(cache_path, 5)
    assert clear_cache(cache_path) == 5
    assert stored(cache_path) == {}
    assert clear_cache(cache_path) == 0
    assert clear_cache(cache_path.with_name("never-created.sqlite")) == 0


def test_cli_info_and_clear(cache_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _fill(cache_path, 2)

    assert cli(["info", "--path", str(cache_path)]) == 0
    assert "entries    : 2" in capsys.readouterr().out

    assert cli(["clear", "--path", str(cache_path)]) == 0
    assert capsys.readouterr().out == f"removed 2 entries from {cache_path}\n"


def test_cli_uses_the_default_path(capsys: pytest.CaptureFixture[str]) -> None:
    _fill(default_cache_path(), 1)
    assert cli(["clear"]) == 0
    assert capsys.readouterr().out == f"removed 1 entry from {default_cache_path()}\n"


def test_cli_rejects_an_unknown_action(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["explode"]) == 2
    assert "invalid choice" in capsys.readouterr().err


def test_a_version_1_file_is_upgraded_in_place_and_keeps_its_answers(cache_path: Path) -> None:
    """Files written before finish reasons, reasoning and tool calls were kept still serve."""
    with closing(sqlite3.connect(cache_path)) as conn:
        conn.execute(
            "CREATE TABLE answers (key TEXT PRIMARY KEY, response TEXT NOT NULL, "
            "prompt_tokens INTEGER, completion_tokens INTEGER, created REAL)"
        )
        conn.execute("INSERT INTO answers VALUES ('old', 'positive', 12, 1, 0)")
        conn.execute("PRAGMA user_version = 1")
        conn.commit()
    with ResponseCache(cache_path) as cache:
        assert cache.get_many(["old"]) == {"old": CachedAnswer("positive", 12, 1)}
        cut = CachedAnswer("posi", 5, 1, finish_reason="length", reasoning="hm", tool_calls=None)
        cache.put("new", cut)
        cache.flush()
    with ResponseCache(cache_path) as cache:
        assert cache.get_many(["new"]) == {"new": cut}
    with closing(sqlite3.connect(cache_path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2


def test_logprobs_are_kept_beside_the_answers_in_a_table_older_releases_ignore(
    cache_path: Path,
) -> None:
    """A label's confidence is read from its answer's logprobs, so the cache keeps them: in a
    table of their own, so that a release that knows only ``answers`` (schema version 2, the
    same) reads and writes the file as before."""
    tokens = tokens_to_json((TokenLogprob('{"label":"', -0.01), TokenLogprob("pos\ud83d", -0.2)))
    asked = CachedAnswer('{"label":"pos"}', 9, 4, "stop", logprobs=tokens)
    with ResponseCache(cache_path) as cache:
        cache.put("asked", asked)
        cache.put("plain", CachedAnswer("neutral"))
    with ResponseCache(cache_path) as cache:
        found = cache.get_many(["asked", "plain"])
    assert found == {"asked": asked, "plain": CachedAnswer("neutral")}
    kept = tokens_from_json(found["asked"].logprobs)
    assert kept is not None
    assert kept[1] == TokenLogprob("pos\ud83d", -0.2)  # a lone surrogate, kept
    with closing(sqlite3.connect(cache_path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
        columns = [row[1] for row in conn.execute("PRAGMA table_info(answers)")]
        assert "logprobs" not in columns  # what an older release checks is unchanged
        # An older release replaces the answer (it knows no logprobs); the new one writes it
        # again without any: the stale tokens go with it.
        conn.execute("INSERT OR REPLACE INTO answers (key, response) VALUES ('asked', 'x')")
        conn.commit()
    with ResponseCache(cache_path) as cache:
        cache.put("asked", CachedAnswer("negative"))
    with ResponseCache(cache_path) as cache:
        assert cache.get_many(["asked"]) == {"asked": CachedAnswer("negative")}
        cache.put("again", asked)
        cache.flush()
        assert cache.clear() == 3  # asked, plain, again
    with closing(sqlite3.connect(cache_path)) as conn:
        assert conn.execute("SELECT COUNT(*) FROM logprobs").fetchone() == (0,)
    assert tokens_from_json("not json") is None
    assert tokens_from_json('[["a", 0.5]]') is None  # a log-probability above 0
    assert tokens_from_json('[["a"]]') is None


def test_whole_floats_and_ints_in_parameters_share_one_key() -> None:
    """temperature=0 and temperature=0.0 ask the same of the model: paid once."""
    messages = [{"role": "user", "content": "hi"}]

    def key(**params: object) -> str:
        return fingerprint(base_url="http://h/v1", model="m", messages=messages, params=params)

    assert key(temperature=0) == key(temperature=0.0)
    assert key(temperature=1, top_p=1.0) == key(temperature=1.0, top_p=1)
    assert key(logit_bias={"42": 5.0}) == key(logit_bias={"42": 5})
    assert key(temperature=0.5) != key(temperature=0)
    assert key(seed=True) != key(seed=1)
