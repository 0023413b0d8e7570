"""The frame adapter of a polars DataFrame (``frames.FrameAdapter``): rows in, columns out.

Rows in: one column's values for a chunk of rows, ``frame[column].slice(...).to_list()``:
no pandas frame is ever made of the input. Columns out: the input's columns (shared, not
copied) then the format's columns and the result columns, typed the polars way:

- text columns are ``pl.String``, counts ``pl.Int64``, ``latency`` ``pl.Float64``, and a
  value that is missing is null (never NaN: ``latency`` of a row not sent, a token count
  the server did not give, a ``confidence`` the server sent no logprobs for);
- a label column is ``pl.Enum`` over the label set (``pl.List(pl.Enum)`` with
  ``multi=True``), a Literal or Enum field of a schema too;
- a schema's fields take the type the pydantic schema gives them (``Schema.dtypes``:
  ``str`` -> ``pl.String``, ``int`` -> ``pl.Int64``, ``float`` -> ``pl.Float64``, ``bool``
  -> ``pl.Boolean``); lists and nested objects become ``pl.List`` / ``pl.Struct`` as polars
  reads them.

The formats (``labels``, ``extract``, ``votes``) build their columns once, for pandas; this
adapter lets them build those columns only (beside a stand-in frame of the input's column
names, a byte a cell, so names follow ``columns.free_name`` exactly as on pandas), and
turns each into a polars Series: one conversion of the new columns at the end of a run.

What a pandas result frame keeps in ``attrs`` (the run report, the call that made it), a
polars frame cannot: polars has no ``attrs``. It is kept here, by the frame's identity,
for as long as that very frame object lives (a ``weakref.finalize`` drops it): the frame a
call returned has its ``holysheep.report()``; a frame derived from it (``filter``,
``with_columns``, ``join``) is a new frame and has none, as a joined pandas frame has none.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import polars as pl

from holysheep_nb.columns import free_name

if TYPE_CHECKING:
    from holysheep_nb.formats import AnswerFormat
    from holysheep_nb.results import ResultColumns

#: What each live polars result frame carries beside its data, by ``id(frame)``.
_ATTRS: dict[int, dict[str, Any]] = {}


class PolarsFrames:
    """The adapter of a polars DataFrame (see the module docstring)."""

    def columns(self, frame: pl.DataFrame) -> list[Hashable]:
        return list(frame.columns)

    def values(self, frame: pl.DataFrame, column: Hashable, start: int, stop: int) -> list[Any]:
        return frame.get_column(str(column)).slice(start, stop - start).to_list()

    def result(
        self, frame: pl.DataFrame, columns: ResultColumns, answer_format: AnswerFormat | None
    ) -> pl.DataFrame:
        taken = set(frame.columns)
        results: list[pl.Series] = []
        for series in _result_series(columns):
            name = free_name(series.name, taken)
            taken.add(name)
            results.append(series.alias(name))
        added: list[pl.Series] = []
        if answer_format is not None:
            assert columns.values is not None
            names = [*frame.columns, *(s.name for s in results)]
            added = _format_series(answer_format, columns.values, names, results[0].name)
        out: pl.DataFrame = frame.hstack([*added, *results])
        return out

    def attrs(self, frame: pl.DataFrame) -> dict[str, Any]:
        key = id(frame)
        found = _ATTRS.get(key)
        if found is None:
            found = _ATTRS[key] = {}
            weakref.finalize(frame, _ATTRS.pop, key, None)
        return found

    def to_pandas(self, frame: pl.DataFrame) -> pd.DataFrame:
        """Column by column, with no pyarrow: ``pl.Enum`` becomes a Categorical, nullable
        integers and booleans pandas' ``Int64`` / ``boolean``, lists and structs Python lists
        and dicts (as the pandas path makes them)."""
        columns = {name: _to_pandas(frame.get_column(name)) for name in frame.columns}
        out: pd.DataFrame = pd.DataFrame(columns)
        out.attrs.update(_ATTRS.get(id(frame), {}))
        return out

    def from_pandas(self, frame: pd.DataFrame) -> pl.DataFrame:
        out = pl.DataFrame([to_polars(str(name), frame[name]) for name in frame.columns])
        self.attrs(out).update({str(key): value for key, value in frame.attrs.items()})
        return out


POLARS = PolarsFrames()


def report_attrs(frame: pl.DataFrame) -> dict[str, Any]:
    """What ``frame`` carries, without keeping an empty entry for a frame no call made."""
    return _ATTRS.get(id(frame), {})


def _result_series(columns: ResultColumns) -> list[pl.Series]:
    """The result columns as polars Series. Numbers are copied out of the run's buffers
    (polars may share a numpy array's memory), as ``ResultColumns.to_frame`` does."""
    plain = columns.plain()
    out = []
    for name, values in plain.items():
        if isinstance(values, list):
            out.append(pl.Series(name, values, dtype=pl.String))
        elif values.dtype == np.int64 and name != "attempts":  # -1: not given
            out.append(pl.Series(name, values.copy()).set(pl.Series(values < 0), None))
        else:
            out.append(pl.Series(name, values.copy(), nan_to_null=True))
    return out


def _format_series(
    answer_format: AnswerFormat, values: list[Any], names: list[str], response: str
) -> list[pl.Series]:
    """The format's own columns for ``values``, named as on pandas, as polars Series."""
    stand_in = pd.DataFrame(np.zeros((len(values), len(names)), dtype=bool), columns=names)
    built = answer_format.add_columns(stand_in, values, before=response)
    labels = _label_set(answer_format)
    given = set(names)
    return [
        to_polars(str(name), built[name], labels) for name in built.columns if name not in given
    ]


def _label_set(answer_format: object) -> list[str] | None:
    """The labels of a label format (a ``LabelSet``, or one wrapped: confidence, votes)."""
    inner = answer_format
    for _ in range(4):
        labels = getattr(inner, "labels", None)
        if isinstance(labels, tuple | list):
            return [str(label) for label in labels]
        inner = labels if labels is not None else getattr(inner, "inner", None)
        if inner is None:
            return None
    return None


def to_polars(name: str, column: pd.Series, labels: list[str] | None = None) -> pl.Series:
    """One pandas column as a polars Series: a Categorical as ``pl.Enum`` over its
    categories, pandas' nullable types as the polars type with nulls, NaN as null, object
    columns as polars reads them (lists of labels as ``pl.List(pl.Enum)`` over ``labels``)."""
    dtype = column.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        categories = [str(c) for c in dtype.categories]
        codes = column.cat.codes.to_numpy()
        cells = [None if code < 0 else categories[code] for code in codes.tolist()]
        return pl.Series(name, cells, dtype=pl.Enum(categories))
    kind = str(dtype)
    if kind in _NULLABLE:
        return pl.Series(name, _nulls(column.tolist()), dtype=_NULLABLE[kind])
    if dtype != np.dtype(object):
        return pl.Series(name, column.to_numpy(), nan_to_null=True)
    series = pl.Series(name, _nulls(column.tolist()), strict=False)
    if labels is not None and series.dtype == pl.List(pl.String):
        series = series.cast(pl.List(pl.Enum(labels)))
    return series


#: pandas' nullable dtypes (what ``Schema.dtypes`` gives a schema's fields) -> polars types.
_NULLABLE: dict[str, Any] = {
    "Int64": pl.Int64,
    "Float64": pl.Float64,
    "boolean": pl.Boolean,
    "string": pl.String,
    "str": pl.String,
}


def _nulls(cells: list[Any]) -> list[Any]:
    """``cells`` with pandas' missing markers (None, NaN, ``pd.NA``) as None."""
    return [None if _missing(cell) else cell for cell in cells]


def _missing(cell: object) -> bool:
    return cell is None or cell is pd.NA or (isinstance(cell, float) and math.isnan(cell))


def _to_pandas(series: pl.Series) -> Any:
    dtype = series.dtype
    if isinstance(dtype, pl.Enum | pl.Categorical):
        categories = dtype.categories.to_list() if isinstance(dtype, pl.Enum) else None
        return pd.Categorical(series.to_list(), categories=categories)
    if dtype.is_integer() and series.null_count():
        return pd.array(series.to_list(), dtype="Int64")
    if dtype == pl.Boolean and series.null_count():
        return pd.array(series.to_list(), dtype="boolean")
    if dtype.is_numeric() or dtype == pl.Boolean:
        return series.to_numpy()
    return pd.Series(series.to_list(), dtype=object)
