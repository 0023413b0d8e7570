"""The gold store: every label a person gives in ``review()``, kept in SQLite beside the cache.

One row per (task, text), the latest answer winning. A task is a label set (or a name the
user gives), so the gold of two tasks on the same texts never mixes. Each answer is its own
committed transaction, in WAL mode with ``synchronous=FULL``: once ``put`` returns, the answer
survives a crash of the kernel (SIGKILL included) and a power cut. Writes are rare (one per
key press), so paying an fsync each is nothing. Several kernels may write the same file: each
write takes SQLite's write lock (``BEGIN IMMEDIATE``), waiting up to ``db.BUSY_TIMEOUT``.

The file, its WAL and its transactions are the cache's (``holysheep_nb.cache.db``); only the
table differs, and it lives in a file of its own (``gold.sqlite``) so clearing the cache never
clears gold.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType

from holysheep_nb.cache import db
from holysheep_nb.cache.store import default_cache_path
from holysheep_nb.errors import ConfigError

SCHEMA_VERSION = 1
_CREATE = """
CREATE TABLE IF NOT EXISTS gold (
    task TEXT NOT NULL,
    text TEXT NOT NULL,
    label TEXT NOT NULL,
    predicted TEXT,
    labels TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (task, text)
)
"""
_COLUMNS = ["task", "text", "label", "predicted", "labels", "created"]

GoldRow = tuple[str, str, str, str | None, str, float]
"""One kept answer: task, text, label, the model's label (or None), the label set (a JSON
list), created (epoch seconds)."""


def default_gold_path() -> Path:
    """``gold.sqlite`` in the cache's folder (``$HOLYSHEEP_CACHE_DIR`` or the user cache)."""
    return default_cache_path().parent / "gold.sqlite"


def task_name(labels: Sequence[str]) -> str:
    """The task a label set stands for when none is named: its labels, sorted, joined by
    ``" | "`` (so the same set in another order is the same task)."""
    return " | ".join(sorted(labels))


class GoldStore:
    """The gold labels kept in one SQLite file (``path``: default ``default_gold_path()``).

    ``wall`` gives the time each answer is stamped with (epoch seconds). Use one object
    from one thread; open one per process (several processes may share the file).
    Raises ``ConfigError`` when the file is not a gold store.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path) if path is not None else default_gold_path()
        self._wall = wall
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # check_same_thread=False, every use under ``_lock``: ipykernel may run a widget's
        # message handlers on a thread other than the one that opened the panel.
        conn = sqlite3.connect(
            self.path, timeout=db.BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
        )
        try:
            db.enable_wal(conn)
            # FULL: a commit is on disk before put() returns (see the module docstring).
            conn.execute("PRAGMA synchronous=FULL")
            _init_schema(conn)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise ConfigError(f"{self.path} is not a holysheep_nb gold store: {exc}") from exc
        self._conn = conn
        self._lock = threading.Lock()

    def put(
        self,
        task: str,
        text: str,
        label: str,
        *,
        labels: Sequence[str],
        predicted: str | None = None,
    ) -> None:
        """Keep ``label`` for ``text`` in ``task`` (replacing an earlier one), committed."""
        row: GoldRow = (task, text, label, predicted, json.dumps(list(labels)), self._wall())
        with self._lock, db.transaction(self._conn):
            self._conn.execute("INSERT OR REPLACE INTO gold VALUES (?, ?, ?, ?, ?, ?)", row)

    def labels_of(self, task: str, texts: Iterable[str]) -> dict[str, str]:
        """The kept label of each of ``texts`` that has one in ``task``."""
        wanted = list(dict.fromkeys(texts))
        found: dict[str, str] = {}
        for start in range(0, len(wanted), db.MAX_VARIABLES):
            chunk = wanted[start : start + db.MAX_VARIABLES]
            marks = ",".join("?" * len(chunk))
            query = f"SELECT text, label FROM gold WHERE task = ? AND text IN ({marks})"
            with self._lock:
                found.update(self._conn.execute(query, [task, *chunk]).fetchall())
        return found

    def rows(self, task: str | None = None) -> list[GoldRow]:
        """Every kept answer (of ``task`` only, when given), oldest first."""
        query = f"SELECT {', '.join(_COLUMNS)} FROM gold"
        where, arguments = ("", ()) if task is None else (" WHERE task = ?", (task,))
        with self._lock:
            rows: list[GoldRow] = self._conn.execute(
                f"{query}{where} ORDER BY created, rowid", arguments
            ).fetchall()
        return rows

    def tasks(self) -> list[str]:
        """The tasks with kept answers, sorted."""
        with self._lock:
            found = self._conn.execute("SELECT DISTINCT task FROM gold ORDER BY 1").fetchall()
        return [row[0] for row in found]

    def close(self) -> None:
        """Close the file (every answer is already committed)."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> GoldStore:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"GoldStore({str(self.path)!r})"


def _init_schema(conn: sqlite3.Connection) -> None:
    with db.transaction(conn):
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            conn.execute(_CREATE)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        elif version != SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                f"schema version {version}; this holysheep_nb reads version {SCHEMA_VERSION}"
            )
        columns = [row[1] for row in conn.execute("PRAGMA table_info(gold)")]
        if columns != _COLUMNS:
            raise sqlite3.DatabaseError(f"unexpected columns in table gold: {columns}")
