"""Tables on disk for the command line: CSV, Parquet and JSON Lines, read whole and written
atomically.

The format comes from the file name (``.csv``, ``.parquet`` / ``.pq`` or a folder of Parquet
files, ``.jsonl`` / ``.ndjson``) unless given. Input is read as the user wrote it: CSV cells
stay text (``00123`` keeps its zeros, ``NA`` stays ``NA``; only an empty cell is missing), and
a byte the encoding cannot decode is an error naming the line, unless ``encoding_errors`` is
``"replace"``. Output goes to a temporary file in the destination's folder and is renamed
over the destination once complete, so an interrupted write never leaves half a file where a
whole one is expected. Parquet needs pyarrow (the ``parquet`` extra).
"""

from __future__ import annotations

import codecs
import contextlib
import importlib.util
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from holysheep_nb.errors import FileFormatError as FileFormatError  # defined in the one tree

Format = Literal["csv", "parquet", "jsonl"]
FORMATS: tuple[Format, ...] = ("csv", "parquet", "jsonl")
EncodingErrors = Literal["strict", "replace"]

_SUFFIXES: dict[str, Format] = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
PARQUET_HINT = "Parquet files need pyarrow: pip install 'holysheep_nb[parquet]'"


def table_format(path: Path, given: str | None = None) -> Format:
    """The format of ``path``: ``given`` when set, else from its suffix (a folder: Parquet)."""
    if given is not None:
        if given not in FORMATS:
            raise FileFormatError(f"unknown format {given!r}: use one of {', '.join(FORMATS)}")
        return given
    found = _SUFFIXES.get(path.suffix.lower())
    if found is not None:
        return found
    if path.is_dir():
        return "parquet"
    raise FileFormatError(
        f"cannot tell the format of {str(path)!r} from its name: name it .csv, .parquet or "
        ".jsonl, or say which with --format csv|parquet|jsonl"
    )


def read_table(
    path: Path,
    fmt: Format,
    *,
    encoding: str = "utf-8-sig",
    encoding_errors: EncodingErrors = "strict",
) -> pd.DataFrame:
    """Read the whole table at ``path``. Text cells stay text; only empty cells are missing."""
    if not path.exists():
        raise FileFormatError(f"{path}: no such file or folder")
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise FileFormatError(
            f"unknown encoding {encoding!r}: try utf-8, cp1252 or latin-1"
        ) from None
    if fmt == "parquet":
        return _read_parquet(path)
    try:
        if fmt == "csv":
            return pd.read_csv(
                path,
                dtype=str,
                keep_default_na=False,
                na_values=[""],
                encoding=encoding,
                encoding_errors=encoding_errors,
            )
        return _read_jsonl(path, encoding, encoding_errors)
    except UnicodeDecodeError as exc:
        raise FileFormatError(_decode_error(path, encoding, exc)) from None
    except pd.errors.ParserError as exc:
        raise FileFormatError(f"{path} is not a readable CSV file: {exc}") from None
    except pd.errors.EmptyDataError:
        raise FileFormatError(f"{path} is empty: expected a header line of column names") from None


def write_table(frame: pd.DataFrame, path: Path, fmt: Format) -> None:
    """Write ``frame`` (without its index) to ``path`` atomically: whole, or not at all."""
    out = frame.copy(deep=False)  # the report goes into a Parquet file's metadata (carried)
    if fmt == "parquet":
        require_pyarrow()
    with _atomic_destination(path) as temporary:
        if fmt == "csv":
            _as_json_text(out).to_csv(temporary, index=False)
        elif fmt == "parquet":
            out.to_parquet(temporary, index=False)
        else:
            out.to_json(
                temporary, orient="records", lines=True, force_ascii=False, date_format="iso"
            )


@contextlib.contextmanager
def _atomic_destination(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path``, renamed over it when the block completes."""
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        # mkstemp makes the file private; the result gets the mode a plain open() would give.
        os.chmod(temporary, _new_file_mode(path))
        yield temporary
        with temporary.open("rb+") as written:  # on disk before it takes the name
            os.fsync(written.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _new_file_mode(path: Path) -> int:
    """The destination's mode if it exists, else what the umask allows a new file."""
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def require_pyarrow() -> None:
    """Raise ``FileFormatError`` with the install hint when pyarrow is not installed."""
    if importlib.util.find_spec("pyarrow") is None:
        raise FileFormatError(PARQUET_HINT)


def _read_parquet(path: Path) -> pd.DataFrame:
    require_pyarrow()
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise FileFormatError(f"{path} is not a readable Parquet file or folder: {exc}") from None


def _read_jsonl(path: Path, encoding: str, encoding_errors: EncodingErrors) -> pd.DataFrame:
    """One JSON object per line (blank lines skipped); a bad line is an error naming it."""
    records: list[dict[str, Any]] = []
    with path.open(encoding=encoding, errors=encoding_errors, newline="") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise FileFormatError(
                    f"{path} line {number}: not valid JSON ({exc.msg}, column {exc.colno})"
                ) from None
            if not isinstance(record, dict):
                raise FileFormatError(
                    f"{path} line {number}: expected a JSON object of column values, got "
                    f"{type(record).__name__}"
                )
            if _lone_surrogate(line, record):
                raise FileFormatError(
                    f"{path} line {number}: a \\u escape there is half an emoji (a lone "
                    "surrogate such as \\ud83d), which is not text; fix or drop that line"
                )
            records.append(record)
    frame: pd.DataFrame = pd.DataFrame.from_records(records)
    return frame


def _lone_surrogate(line: str, record: dict[str, Any]) -> bool:
    """True when a ``\\udXXX`` escape of ``line`` left half a UTF-16 pair in ``record``."""
    if _SURROGATE_ESCAPE.search(line) is None:  # the common case: no such escape at all
        return False
    try:
        json.dumps(record, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _decode_error(path: Path, encoding: str, exc: UnicodeDecodeError) -> str:
    """Say which line holds the first byte ``encoding`` cannot decode, and the two ways out."""
    line, byte = _first_undecodable(path, encoding)
    where = f"line {line}" if line is not None else "somewhere"
    what = f"byte 0x{byte:02x}" if byte is not None else f"a byte ({exc.reason})"
    return (
        f"{path} {where}: {what} is not valid {encoding}. If the file is in another encoding "
        "say which with --encoding (e.g. cp1252 or latin-1); to read it anyway with U+FFFD in "
        "place of the bad bytes, pass --encoding-errors replace"
    )


def _first_undecodable(path: Path, encoding: str) -> tuple[int | None, int | None]:
    """Line number and value of the first byte that does not decode, reading line by line."""
    decoder = codecs.getincrementaldecoder(encoding)()
    with path.open("rb") as raw:
        for number, line in enumerate(raw, 1):
            try:
                decoder.decode(line)
            except UnicodeDecodeError as exc:
                return number, exc.object[exc.start]
    return None, None


def _as_json_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Lists and dicts (several labels, extracted objects) as JSON text for a CSV cell."""
    out = frame
    for name in frame.columns:
        column = frame[name]
        if column.dtype != object:
            continue
        if column.map(lambda value: isinstance(value, (list, tuple, dict))).any():
            if out is frame:
                out = frame.copy(deep=False)
            out[name] = column.map(
                lambda value: (
                    json.dumps(value, ensure_ascii=False)
                    if isinstance(value, (list, tuple, dict))
                    else value
                )
            )
    return out
