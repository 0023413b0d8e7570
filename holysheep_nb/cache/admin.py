"""Looking after the cache file from outside a run: what it holds, and emptying it."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from holysheep_nb.cache.store import ResponseCache, default_cache_path


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


def cache_file(path: str | os.PathLike[str] | None) -> Path:
    """The file ``path`` names (``~`` expanded), or the default cache file when None."""
    return default_cache_path() if path is None else Path(path).expanduser()


def cache_info(path: str | os.PathLike[str] | None = None) -> CacheInfo:
    """Describe the cache file (the default one unless ``path`` is given); a missing file is
    reported empty, not created."""
    file = cache_file(path)
    if not file.exists():
        return CacheInfo(file, 0, 0, None, None)
    with ResponseCache(file) as cache:
        stats = cache.stats()
    return CacheInfo(
        file,
        stats.entries,
        _disk_size(file),
        _local_time(stats.oldest),
        _local_time(stats.newest),
    )


def clear_cache(path: str | os.PathLike[str] | None = None) -> int:
    """Delete every stored answer (default file unless ``path``); return how many were removed.

    Rows are deleted rather than the file unlinked, so a kernel that has it open keeps working.
    """
    file = cache_file(path)
    if not file.exists():
        return 0
    with ResponseCache(file) as cache:
        return cache.clear()


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
