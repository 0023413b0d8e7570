"""The answer cache: every paid-for answer is kept in a local SQLite file (SPEC §6).

A labelling run over 50,000 rows costs money; a crash, an interrupt or a re-run must never pay
twice for an answer already received. The caller computes a :func:`fingerprint` per row, looks
keys up in chunks with :meth:`ResponseCache.get_many` before sending, and :meth:`~ResponseCache.put`
s each successful answer as it arrives. Errors are never cached.

Durability versus speed: ``put`` only buffers in memory; the buffer is written in one short
transaction when it holds ``max_pending`` answers or ``flush_interval`` seconds have passed since
the last write (the caller's periodic tick calls :meth:`~ResponseCache.maybe_flush`). So a
``kill -9`` loses at most about ``flush_interval`` seconds of answers, a clean ``close`` (the
caller closes in a ``finally``) loses nothing, and the hot path never commits per row.

Sharing: the file is in WAL mode with a 30 s busy timeout, so several kernels or processes can
read and write it at once. A corrupt file is moved aside with a :class:`CacheWarning` and a
fresh one is started; a file that cannot be used at all (read-only disk, unknown schema version)
degrades to an in-memory cache for the session, also with a warning. The cache never crashes a
run. Nothing here takes or stores an API key.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import os
import sqlite3
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from holysheep_nb.chat import invalid_text
from holysheep_nb.errors import ConfigError

__all__ = [
    "CacheInfo",
    "CacheWarning",
    "CachedAnswer",
    "Fingerprinter",
    "ResponseCache",
    "cache_info",
    "clear_cache",
    "cli",
    "default_cache_path",
    "fingerprint",
]

_A = TypeVar("_A")
_R = TypeVar("_R")

SCHEMA_VERSION = 1
"""Stored in ``PRAGMA user_version``; a file with another version is left alone."""

FINGERPRINT_VERSION = 1
"""Part of every key: bump it when the request encoding changes, so old answers stop matching."""

BUSY_TIMEOUT = 30.0
"""Seconds a statement waits for another process's write lock before giving up."""

_MAX_VARIABLES = 500
"""Keys per ``IN (...)`` query: below SQLite's historic limit of 999 bound variables."""

_COLUMNS = ["key", "response", "prompt_tokens", "completion_tokens", "created"]
_CREATE = """
CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY,
    response TEXT NOT NULL,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    created REAL
)
"""
_INSERT = "INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?)"
# Primary result codes that mean "this file is damaged or not a database" (the low byte of an
# extended code): SQLITE_CORRUPT and SQLITE_NOTADB. Busy, locked or I/O errors are not in here.
_CORRUPTION_CODES = frozenset({11, 26})
# SQLITE_BUSY and SQLITE_LOCKED: another connection holds the lock; worth waiting for.
_BUSY_CODES = frozenset({5, 6})


class CacheWarning(UserWarning):
    """The cache file could not be used as is; the run goes on (filterable category)."""


def _jsonable(value: object) -> dict[str, Any]:
    # Messages and params may be any Mapping (e.g. a MappingProxyType); the C encoder only
    # knows dicts, and converting in this hook costs nothing for the common plain dict.
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"cannot fingerprint a value of type {type(value).__name__}: {value!r}")


# One encoder for every key: json.dumps(...) with options builds a new encoder per call.
_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_jsonable
)


def _utf8(text: str) -> bytes:
    # surrogatepass: a prompt may hold a lone surrogate (bad source data); it still needs a key.
    return text.encode("utf-8", "surrogatepass")


class Fingerprinter:
    """Computes :func:`fingerprint` for many rows that share base URL, model and params.

    The constant parts are encoded and hashed once, so each row costs one JSON encoding of its
    messages and one hash (about a third of the cost of :func:`fingerprint`).
    """

    __slots__ = ("_head", "_tail")

    def __init__(self, *, base_url: str, model: str, params: Mapping[str, Any]) -> None:
        # The canonical document is {"base_url","messages","model","params","v"} with sorted
        # keys, so "messages" sits between a fixed head and a fixed tail.
        head = f'{{"base_url":{_ENCODER.encode(base_url.rstrip("/"))},"messages":'
        tail = (
            f',"model":{_ENCODER.encode(model)},"params":{_ENCODER.encode(params)}'
            f',"v":{FINGERPRINT_VERSION}}}'
        )
        self._head = hashlib.sha256(_utf8(head))
        self._tail = _utf8(tail)

    def __call__(self, messages: Sequence[Mapping[str, Any]]) -> str:
        """Return the cache key of a request with these messages."""
        digest = self._head.copy()
        digest.update(_utf8(_ENCODER.encode(list(messages))))
        digest.update(self._tail)
        return digest.hexdigest()


def fingerprint(
    *,
    base_url: str,
    model: str,
    messages: Sequence[Mapping[str, Any]],
    params: Mapping[str, Any],
) -> str:
    """Return the cache key of one request: a sha256 hex digest of its canonical JSON.

    The canonical JSON (sorted keys, no whitespace, UTF-8) is of ``{"v": 1, "base_url": ...,
    "model": ..., "messages": ..., "params": ...}`` with the base URL's trailing ``/``
    stripped, so it is independent of dict key order. It covers everything that shapes the
    answer and never the API key: the caller does not pass it, so the key never reaches the
    cache file and answers stay valid when the key rotates.
    """
    return Fingerprinter(base_url=base_url, model=model, params=params)(messages)


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """One stored successful answer: the assistant text and its token usage, if reported."""

    response: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


def default_cache_path() -> Path:
    """Return where the cache lives unless told otherwise: ``$HOLYSHEEP_CACHE_DIR`` or the
    platform's user cache directory, then ``holysheep_nb/cache.sqlite``."""
    override = os.environ.get("HOLYSHEEP_CACHE_DIR")
    if override:
        return Path(override).expanduser() / "cache.sqlite"
    if sys.platform == "win32":
        local = os.environ.get("LOCALAPPDATA")
        base = Path(local) if local else Path.home() / "AppData" / "Local"
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        # The XDG spec says to ignore a relative value.
        base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "holysheep_nb" / "cache.sqlite"


class _UnusableCacheError(Exception):
    """The file is a healthy SQLite database, but not one this version can use."""


class ResponseCache:
    """A write-buffered, process-shared SQLite store of answers keyed by :func:`fingerprint`.

    Use it from one thread (the event loop's): the connection is opened with the default
    ``check_same_thread=True``. ``clock`` (monotonic seconds) is injectable so tests control
    when buffered answers are written.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        flush_interval: float = 1.0,
        max_pending: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not flush_interval >= 0:
            raise ConfigError(f"flush_interval must be >= 0 seconds, got {flush_interval!r}")
        if max_pending < 1:
            raise ConfigError(f"max_pending must be at least 1, got {max_pending!r}")
        self._path = Path(path)
        self._flush_interval = flush_interval
        self._max_pending = max_pending
        self._clock = clock
        self._pending: dict[str, CachedAnswer] = {}
        self._on_disk = True
        self._file_id: tuple[int, int] | None = None
        self._conn: sqlite3.Connection | None = None
        try:
            self._conn = self._open_file()
        except (OSError, sqlite3.DatabaseError, _UnusableCacheError) as exc:
            self._recover(exc)
        self._last_flush = clock()

    @classmethod
    def open(cls, option: bool | str | os.PathLike[str] | None = True) -> ResponseCache | None:
        """Open the cache the ``cache=`` option asks for: True/None the default file, False
        none at all, a path that file (parent folders created)."""
        if option is False:
            return None
        if option is None or option is True:
            return cls(default_cache_path())
        if isinstance(option, (str, os.PathLike)) and os.fspath(option):
            return cls(Path(option).expanduser())
        raise ConfigError(
            f"cache must be True, False or a file path, got {option!r}; "
            "for example cache='labels.sqlite'"
        )

    @property
    def path(self) -> Path:
        """The cache file (even while degraded to memory after a warning)."""
        return self._path

    @property
    def pending(self) -> int:
        """Answers buffered in memory, not yet written to the file."""
        return len(self._pending)

    def get_many(self, keys: Sequence[str]) -> dict[str, CachedAnswer]:
        """Return the stored answers among ``keys`` (absent keys are left out), including
        answers still buffered in memory; one query per 500 keys."""
        found: dict[str, CachedAnswer] = {}
        missing: list[str] = []
        pending = self._pending
        for key in keys:
            answer = pending.get(key)
            if answer is None:
                missing.append(key)
            else:
                found[key] = answer
        for start in range(0, len(missing), _MAX_VARIABLES):
            rows = self._run(self._select, missing[start : start + _MAX_VARIABLES])
            for key, response, prompt_tokens, completion_tokens in rows:
                found[key] = CachedAnswer(response, prompt_tokens, completion_tokens)
        return found

    def put(self, key: str, answer: CachedAnswer) -> None:
        """Buffer one successful answer; write the buffer out when it is full or old enough."""
        if not isinstance(answer.response, str):
            raise TypeError(
                f"only successful answers are cached; response must be str, "
                f"got {type(answer.response).__name__}"
            )
        if self._conn is None:
            raise RuntimeError(f"the cache {self._path} is closed")
        self._pending[key] = answer
        if (
            len(self._pending) >= self._max_pending
            or self._clock() - self._last_flush >= self._flush_interval
        ):
            self.flush()

    def maybe_flush(self) -> None:
        """Write the buffer if it holds anything and ``flush_interval`` has passed since the
        last write; call it from a periodic tick so a lone answer never waits long."""
        if self._pending and self._clock() - self._last_flush >= self._flush_interval:
            self.flush()

    def flush(self) -> None:
        """Write every buffered answer in one short transaction, then empty the buffer."""
        if not self._pending:
            return
        created = time.time()
        rows = [
            (key, a.response, a.prompt_tokens, a.completion_tokens, created)
            for key, a in self._pending.items()
        ]
        # In key order the inserts walk the key index left to right instead of jumping about
        # (measured here: 10-20% less CPU for a flush of a few thousand answers).
        rows.sort()
        try:
            self._run(self._write, rows)
        except UnicodeEncodeError:
            # A response can hold a lone surrogate (a JSON "\ud800" escape). SQLite stores only
            # valid UTF-8, so such answers are not cached rather than failing the whole batch.
            self._run(self._write, [row for row in rows if invalid_text(row[1]) is None])
        self._pending.clear()
        self._last_flush = self._clock()

    def close(self) -> None:
        """Write the buffer and close the file; calling it again does nothing."""
        if self._conn is None:
            return
        try:
            self.flush()
        finally:
            conn, self._conn = self._conn, None
            conn.close()

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._conn is None else "open" if self._on_disk else "in memory"
        return f"ResponseCache(path={str(self._path)!r}, {state}, pending={self.pending})"

    # -- storage -------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError(f"the cache {self._path} is closed")
        return self._conn

    def _select(self, keys: list[str]) -> list[tuple[str, str, int | None, int | None]]:
        return self._connection().execute(_select_sql(len(keys)), keys).fetchall()

    def _write(self, rows: list[tuple[str, str, int | None, int | None, float]]) -> None:
        with _transaction(self._connection()) as conn:
            conn.executemany(_INSERT, rows)

    def _open_file(self) -> sqlite3.Connection:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: no implicit transactions; writes use explicit BEGIN IMMEDIATE,
        # which takes the write lock up front (waiting up to the busy timeout) instead of
        # upgrading a read lock, which in WAL mode can fail at once with SQLITE_BUSY.
        conn = sqlite3.connect(self._path, timeout=BUSY_TIMEOUT, isolation_level=None)
        try:
            self._file_id = _file_id(self._path)
            _enable_wal(conn)
            # Safe with WAL: a power cut may lose the last commits, never corrupt the file.
            conn.execute("PRAGMA synchronous=NORMAL")
            _init_schema(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _run(self, op: Callable[[_A], _R], arg: _A) -> _R:
        """Run ``op(arg)``; if the file fails, recover (see :meth:`_recover`) and run it again."""
        try:
            return op(arg)
        except sqlite3.ProgrammingError:
            raise  # misuse (closed, wrong thread): a bug to see, not a file to replace
        except sqlite3.DatabaseError as exc:
            if not self._on_disk:
                raise
            self._recover(exc)
        return op(arg)

    def _recover(self, exc: BaseException) -> None:
        """Replace a corrupt file by a fresh one, or fall back to memory; warn either way."""
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None
        if not _is_corruption(exc):
            self._use_memory(f"{type(exc).__name__}: {exc}")
            return
        # If another process already moved the file aside, the path now names its fresh
        # file: moving that one too would pull it from under that process.
        if _file_id(self._path) == self._file_id:
            try:
                target = _move_aside(self._path)
            except OSError as move_error:
                self._use_memory(f"corrupt ({exc}) and could not be moved aside: {move_error}")
                return
            warnings.warn(
                f"holysheep_nb cache file {self._path} is corrupt or not a SQLite database "
                f"({exc}); moved it aside to {target.name} and started a fresh cache",
                CacheWarning,
                stacklevel=4,
            )
        try:
            self._conn = self._open_file()
        except (OSError, sqlite3.DatabaseError, _UnusableCacheError) as reopen_error:
            self._use_memory(f"{type(reopen_error).__name__}: {reopen_error}")

    def _use_memory(self, reason: str) -> None:
        warnings.warn(
            f"holysheep_nb cannot use the cache file {self._path} ({reason}); answers are "
            "cached in memory for this session only",
            CacheWarning,
            stacklevel=4,
        )
        self._on_disk = False
        self._conn = sqlite3.connect(":memory:", isolation_level=None)
        _init_schema(self._conn)

    def _stats(self) -> tuple[int, float | None, float | None]:
        self.flush()
        query = "SELECT COUNT(*), MIN(created), MAX(created) FROM answers"
        entries, oldest, newest = self._connection().execute(query).fetchone()
        return entries, oldest, newest

    def _delete_all(self) -> int:
        self.flush()
        conn = self._connection()
        with _transaction(conn):
            removed: int = conn.execute("DELETE FROM answers").rowcount
        # Give the space back; if another process holds the file busy it just stays large.
        with contextlib.suppress(sqlite3.OperationalError):
            conn.execute("VACUUM")
        return removed


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Run the block in one write transaction; roll back if it raises (even on Ctrl-C)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        # Some errors (disk full, I/O) end the transaction themselves.
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _enable_wal(conn: sqlite3.Connection) -> None:
    """Switch the file to WAL mode (persistent: a no-op once any process has done it)."""
    deadline = time.monotonic() + BUSY_TIMEOUT
    delay = 0.001
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as exc:
            # While another process is creating the same fresh file, this pragma reports
            # "database is locked" at once, without waiting in SQLite's busy handler
            # (measured: 5 in 60 two-process starts). So wait here, briefly and boundedly.
            if not _is_busy(exc) or time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        else:
            return


def _init_schema(conn: sqlite3.Connection) -> None:
    with _transaction(conn):
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            conn.execute(_CREATE)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        elif version != SCHEMA_VERSION:
            raise _UnusableCacheError(
                f"schema version {version}; this holysheep_nb reads version {SCHEMA_VERSION}"
            )
        columns = [row[1] for row in conn.execute("PRAGMA table_info(answers)")]
        if columns != _COLUMNS:
            raise _UnusableCacheError(f"unexpected columns in table answers: {columns}")


@functools.lru_cache(maxsize=8)
def _select_sql(count: int) -> str:
    marks = ",".join("?" * count)
    return (
        "SELECT key, response, prompt_tokens, completion_tokens "
        f"FROM answers WHERE key IN ({marks})"
    )


def _is_corruption(exc: BaseException) -> bool:
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        return (code & 0xFF) in _CORRUPTION_CODES
    # Python 3.10: the sqlite3 module maps CORRUPT and NOTADB to the bare DatabaseError;
    # busy, locked, I/O and the like are OperationalError.
    return type(exc) is sqlite3.DatabaseError


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        return (code & 0xFF) in _BUSY_CODES
    return "locked" in str(exc)


def _file_id(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def _move_aside(path: Path) -> Path:
    """Rename ``path`` (and its -wal/-shm companions) to ``<name>.corrupt-<timestamp>``."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    number = 1
    while target.exists():
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{number}")
        number += 1
    path.rename(target)
    # A stale WAL next to a fresh database would be replayed into it; keep the pair together.
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            Path(f"{path}{suffix}").rename(f"{target}{suffix}")
    return target


@dataclass(frozen=True)
class CacheInfo:
    """What a cache file holds: its size and how many answers, from when to when."""

    path: Path
    entries: int
    size_bytes: int
    oldest: datetime | None
    newest: datetime | None

    def __str__(self) -> str:
        def when(moment: datetime | None) -> str:
            return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S")

        return "\n".join(
            [
                f"cache file : {self.path}",
                f"entries    : {self.entries:,}",
                f"size       : {_human_size(self.size_bytes)}",
                f"oldest     : {when(self.oldest)}",
                f"newest     : {when(self.newest)}",
            ]
        )


def _human_size(size: int) -> str:
    if size < 1024:
        return f"{size:,} bytes"
    value = size / 1024
    for unit in ("KB", "MB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def _disk_size(path: Path) -> int:
    total = 0
    for candidate in (path, Path(f"{path}-wal")):
        with contextlib.suppress(FileNotFoundError):
            total += candidate.stat().st_size
    return total


def _local_time(timestamp: float | None) -> datetime | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp).astimezone()


def cache_info(path: str | os.PathLike[str] | None = None) -> CacheInfo:
    """Describe the cache file (the default one unless ``path`` is given); a missing file is
    reported empty, not created."""
    file = default_cache_path() if path is None else Path(path).expanduser()
    if not file.exists():
        return CacheInfo(file, 0, 0, None, None)
    with ResponseCache(file) as cache:
        entries, oldest, newest = cache._stats()
    return CacheInfo(file, entries, _disk_size(file), _local_time(oldest), _local_time(newest))


def clear_cache(path: str | os.PathLike[str] | None = None) -> int:
    """Delete every stored answer (default file unless ``path``); return how many were removed.

    Rows are deleted rather than the file unlinked, so a kernel that has it open keeps working.
    """
    file = default_cache_path() if path is None else Path(path).expanduser()
    if not file.exists():
        return 0
    with ResponseCache(file) as cache:
        return cache._delete_all()


def cli(argv: list[str]) -> int:
    """Run ``holysheep-nb cache info|clear [--path P]``; return the process exit code."""
    parser = argparse.ArgumentParser(
        prog="holysheep-nb cache",
        description="Inspect or empty the holysheep_nb answer cache.",
    )
    parser.add_argument("action", choices=["info", "clear"])
    parser.add_argument("--path", help=f"cache file (default: {default_cache_path()})")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help and on bad arguments
        return exc.code if isinstance(exc.code, int) else 0
    if args.action == "info":
        print(cache_info(args.path))
        return 0
    file = default_cache_path() if args.path is None else Path(args.path).expanduser()
    removed = clear_cache(file)
    print(f"removed {removed:,} {'entry' if removed == 1 else 'entries'} from {file}")
    return 0
