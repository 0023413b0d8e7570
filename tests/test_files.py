"""Reading and writing table files (``holysheep_nb.files``): as written, and atomically."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from holysheep_nb.files import FileFormatError, read_table, table_format, write_table


def test_csv_cells_are_read_as_written(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes("\ufeffid,text\n007,NA\n010,\n".encode())  # with a BOM, as Excel writes
    frame = read_table(path, "csv")
    assert frame.columns.tolist() == ["id", "text"]
    assert frame["id"].tolist() == ["007", "010"]
    assert frame.loc[0, "text"] == "NA"
    assert pd.isna(frame.loc[1, "text"])  # only an empty cell is missing


def test_a_new_output_gets_the_usual_mode_and_an_old_one_keeps_its_own(tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": [1]})
    umask = os.umask(0o022)
    try:
        write_table(frame, tmp_path / "new.csv", "csv")
    finally:
        os.umask(umask)
    assert (tmp_path / "new.csv").stat().st_mode & 0o777 == 0o644  # not mkstemp's 0o600
    old = tmp_path / "old.csv"
    old.write_text("a\n0\n")
    old.chmod(0o640)
    write_table(frame, old, "csv")
    assert old.stat().st_mode & 0o777 == 0o640
    assert old.read_text() == "a\n1\n"


@pytest.mark.parametrize(
    ("name", "expected"),
    [("a.csv", "csv"), ("a.CSV", "csv"), ("a.parquet", "parquet"), ("a.pq", "parquet"),
     ("a.jsonl", "jsonl"), ("a.ndjson", "jsonl")],
)  # fmt: skip
def test_the_format_comes_from_the_name(name: str, expected: str) -> None:
    assert table_format(Path(name)) == expected


def test_a_folder_is_parquet_and_an_unknown_name_says_what_to_do(tmp_path: Path) -> None:
    assert table_format(tmp_path) == "parquet"
    with pytest.raises(FileFormatError, match="--format csv"):
        table_format(tmp_path / "data.json")
    assert table_format(tmp_path / "data.json", "jsonl") == "jsonl"


def test_lists_and_objects_are_json_text_in_a_csv(tmp_path: Path) -> None:
    frame = pd.DataFrame({"labels": [["a", "b"], []], "fields": [{"x": 1}, None]})
    write_table(frame, tmp_path / "out.csv", "csv")
    assert (
        tmp_path / "out.csv"
    ).read_text() == 'labels,fields\n"[""a"", ""b""]","{""x"": 1}"\n[],\n'
