"""The batches a notebook submitted, kept in the cache file so a kernel restart loses none.

A table of its own (``batches``, created if missing) beside the answers, in the file the
run's ``cache=`` names, or the default cache file when ``cache=False`` (the ids cost nothing
to keep, and losing them would mean paying for a batch twice). Each record says which set of
requests a batch answers (``lines.request_set``), which part of it (a large set is split),
where it was sent, and whether its results were collected. Running the same cell again
finds the uncollected batches of its set and waits for them instead of submitting anew.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from holysheep_nb.cache import db
from holysheep_nb.cache.store import default_cache_path

_CREATE = """
CREATE TABLE IF NOT EXISTS batches (
    batch_id TEXT PRIMARY KEY,
    request_set TEXT NOT NULL,
    part INTEGER NOT NULL,
    parts INTEGER NOT NULL,
    base_url TEXT NOT NULL,
    model TEXT NOT NULL,
    requests INTEGER NOT NULL,
    created REAL NOT NULL,
    collected REAL
)
"""
_FIELDS = "batch_id, request_set, part, parts, base_url, model, requests, created, collected"


@dataclass(frozen=True)
class BatchRecord:
    """One submitted batch: its id, the request set and part it carries (of ``parts``), the
    base URL and model, how many requests, when it was created and collected (epoch
    seconds; ``collected`` None while its results are still to be read)."""

    batch_id: str
    request_set: str
    part: int
    parts: int
    base_url: str
    model: str
    requests: int
    created: float
    collected: float | None = None


def records_path(cache: bool | str | os.PathLike[str]) -> Path:
    """The file the records of a run with this ``cache=`` option live in."""
    if isinstance(cache, bool):
        return default_cache_path()
    return Path(cache).expanduser()


class BatchRecords:
    """The ``batches`` table of one cache file; ``with BatchRecords(path) as records:``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        conn = db.connect(self.path)
        db.prepare(conn)
        try:
            with db.transaction(conn):
                conn.execute(_CREATE)
        except BaseException:
            conn.close()
            raise
        self._conn: sqlite3.Connection = conn

    def find(self, request_set: str, base_url: str) -> dict[int, BatchRecord]:
        """The uncollected batches of ``request_set`` at ``base_url``, by part."""
        rows = self._conn.execute(
            f"SELECT {_FIELDS} FROM batches WHERE request_set = ? AND base_url = ? "
            "AND collected IS NULL",
            (request_set, base_url),
        ).fetchall()
        return {row[2]: BatchRecord(*row) for row in rows}

    def add(self, record: BatchRecord) -> None:
        """Keep a new batch (written at once: the batch is already being paid for)."""
        with db.transaction(self._conn) as conn:
            conn.execute(
                f"INSERT OR REPLACE INTO batches ({_FIELDS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.batch_id,
                    record.request_set,
                    record.part,
                    record.parts,
                    record.base_url,
                    record.model,
                    record.requests,
                    record.created,
                    record.collected,
                ),
            )

    def replace(self, old_id: str, new_id: str, when: float) -> None:
        """A part submitted again (``capacity``): ``new_id`` carries what ``old_id`` did,
        created ``when``, and ``old_id`` is no longer waited for."""
        with db.transaction(self._conn) as conn:
            conn.execute(
                f"INSERT OR REPLACE INTO batches ({_FIELDS}) SELECT ?, request_set, part, parts, "
                "base_url, model, requests, ?, NULL FROM batches WHERE batch_id = ?",
                (new_id, when, old_id),
            )
            conn.execute("UPDATE batches SET collected = ? WHERE batch_id = ?", (when, old_id))

    def collected(self, batch_ids: list[str], when: float) -> None:
        """Mark batches as read: a later run of the same set submits anew."""
        with db.transaction(self._conn) as conn:
            conn.executemany(
                "UPDATE batches SET collected = ? WHERE batch_id = ?",
                [(when, batch_id) for batch_id in batch_ids],
            )

    def all(self) -> list[BatchRecord]:
        """Every record, newest first."""
        rows = self._conn.execute(
            f"SELECT {_FIELDS} FROM batches ORDER BY created DESC, part"
        ).fetchall()
        return [BatchRecord(*row) for row in rows]

    def close(self) -> None:
        """Close the file."""
        self._conn.close()

    def __enter__(self) -> BatchRecords:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
