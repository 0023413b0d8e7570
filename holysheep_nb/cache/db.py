"""The SQLite file under the store: schema, WAL mode, transactions, and damage versus contention.

Plain functions on a connection or a path, used by ``store`` (the buffered cache) only.
Nothing here buffers, warns or decides what to do about a failure; the store does.
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from holysheep_nb.errors import HolySheepError

SCHEMA_VERSION = 2
"""Stored in ``PRAGMA user_version``. Version 1 files (no finish reason, reasoning or tool
calls) are upgraded in place; a file with a newer version is left alone. The ``logprobs``
table beside ``answers`` needs no new version: a release that does not know it reads and
writes ``answers`` as before."""

BUSY_TIMEOUT = 30.0
"""Seconds a statement waits for another process's write lock before giving up."""

MAX_VARIABLES = 500
"""Keys per ``IN (...)`` query: below SQLite's historic limit of 999 bound variables."""

Row = tuple[str, str, int | None, int | None, float, str | None, str | None, str | None, str | None]
"""One stored answer: key, response, prompt tokens, completion tokens, created (epoch s),
finish reason, reasoning, tool calls (JSON), the answer's token logprobs (JSON, or None:
none asked for; kept in the ``logprobs`` table)."""

Found = tuple[str, str, int | None, int | None, str | None, str | None, str | None, str | None]
"""One answer read back: a ``Row`` without its ``created`` time."""

_COLUMNS_V1 = ["key", "response", "prompt_tokens", "completion_tokens", "created"]
_ADDED_V2 = ["finish_reason", "reasoning", "tool_calls"]
_COLUMNS = [*_COLUMNS_V1, *_ADDED_V2]
_CREATE = """
CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY,
    response TEXT NOT NULL,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    created REAL,
    finish_reason TEXT,
    reasoning TEXT,
    tool_calls TEXT
)
"""
_INSERT = "INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
#: An answer's token logprobs, when its request asked for them (``logprobs=True``): a label's
#: confidence is read from them, for an answer from the cache as for a fresh one.
_CREATE_LOGPROBS = """
CREATE TABLE IF NOT EXISTS logprobs (
    key TEXT PRIMARY KEY,
    tokens TEXT NOT NULL
)
"""
_INSERT_LOGPROBS = "INSERT OR REPLACE INTO logprobs VALUES (?, ?)"
_DELETE_LOGPROBS = "DELETE FROM logprobs WHERE key = ?"
# Primary result codes that mean "this file is damaged or not a database" (the low byte of an
# extended code): SQLITE_CORRUPT and SQLITE_NOTADB. Busy, locked or I/O errors are not in here.
_CORRUPTION_CODES = frozenset({11, 26})
# SQLITE_BUSY and SQLITE_LOCKED: another connection holds the lock; worth waiting for.
_BUSY_CODES = frozenset({5, 6})


class UnusableCacheError(HolySheepError):
    """The file is a healthy SQLite database, but not one this version can use."""


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) the cache file at ``path``; :func:`prepare` it next."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: no implicit transactions; writes use explicit BEGIN IMMEDIATE,
    # which takes the write lock up front (waiting up to the busy timeout) instead of
    # upgrading a read lock, which in WAL mode can fail at once with SQLITE_BUSY.
    return sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None)


def prepare(conn: sqlite3.Connection) -> None:
    """Put a fresh connection in WAL mode and check the schema; close it if that fails."""
    try:
        enable_wal(conn)
        # Safe with WAL: a power cut may lose the last commits, never corrupt the file.
        conn.execute("PRAGMA synchronous=NORMAL")
        init_schema(conn)
    except BaseException:
        conn.close()
        raise


def connect_memory() -> sqlite3.Connection:
    """A private in-memory database with the cache schema (the fallback for a bad file)."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    init_schema(conn)
    return conn


def select(conn: sqlite3.Connection, keys: list[str]) -> list[Found]:
    """The stored rows among ``keys`` (at most ``MAX_VARIABLES`` of them), without ``created``."""
    return conn.execute(_select_sql(len(keys)), keys).fetchall()


def write(conn: sqlite3.Connection, rows: list[Row]) -> None:
    """Insert or replace ``rows`` in one transaction, each answer's logprobs beside it (an
    answer replaced by one without logprobs drops the old ones)."""
    with transaction(conn):
        conn.executemany(_INSERT, [row[:8] for row in rows])
        conn.executemany(_INSERT_LOGPROBS, [(row[0], row[8]) for row in rows if row[8]])
        if conn.execute("SELECT 1 FROM logprobs LIMIT 1").fetchone() is not None:
            conn.executemany(_DELETE_LOGPROBS, [(row[0],) for row in rows if not row[8]])


def summary(conn: sqlite3.Connection) -> tuple[int, float | None, float | None]:
    """How many answers are stored, and the oldest and newest ``created`` times."""
    query = "SELECT COUNT(*), MIN(created), MAX(created) FROM answers"
    entries, oldest, newest = conn.execute(query).fetchone()
    return entries, oldest, newest


def delete_all(conn: sqlite3.Connection) -> int:
    """Delete every answer and give the space back when nobody holds the file busy."""
    with transaction(conn):
        removed: int = conn.execute("DELETE FROM answers").rowcount
        conn.execute("DELETE FROM logprobs")
    with contextlib.suppress(sqlite3.OperationalError):
        conn.execute("VACUUM")
    return removed


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
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


def enable_wal(conn: sqlite3.Connection) -> None:
    """Switch the file to WAL mode (persistent: a no-op once any process has done it).

    This waits on another process's lock, so it reads the real clock, not an injected one:
    a test clock that never moves would turn the bounded wait into an endless one.
    """
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


def init_schema(conn: sqlite3.Connection) -> None:
    """Create the table in a new file; raise ``UnusableCacheError`` for a foreign one."""
    with transaction(conn):
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            conn.execute(_CREATE)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        elif version == 1:
            for column in _ADDED_V2:
                conn.execute(f"ALTER TABLE answers ADD COLUMN {column} TEXT")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        elif version != SCHEMA_VERSION:
            raise UnusableCacheError(
                f"schema version {version}; this holysheep_nb reads version {SCHEMA_VERSION}"
            )
        columns = [row[1] for row in conn.execute("PRAGMA table_info(answers)")]
        if columns != _COLUMNS:
            raise UnusableCacheError(f"unexpected columns in table answers: {columns}")
        conn.execute(_CREATE_LOGPROBS)


@functools.lru_cache(maxsize=8)
def _select_sql(count: int) -> str:
    marks = ",".join("?" * count)
    return (
        "SELECT a.key, a.response, a.prompt_tokens, a.completion_tokens, a.finish_reason, "
        "a.reasoning, a.tool_calls, l.tokens FROM answers AS a LEFT JOIN logprobs AS l "
        f"ON l.key = a.key WHERE a.key IN ({marks})"
    )


def is_corruption(exc: BaseException) -> bool:
    """True when ``exc`` says the file is damaged or not a database (not busy, not I/O)."""
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


def file_id(path: Path) -> tuple[int, int] | None:
    """The file's (device, inode), to tell whether another process replaced it; None if absent."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def move_aside(path: Path, when: float) -> Path:
    """Rename ``path`` (and its -wal/-shm companions) to ``<name>.corrupt-<timestamp>``.

    ``when`` (seconds since the epoch) gives the timestamp, in local time.
    """
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(when))
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
