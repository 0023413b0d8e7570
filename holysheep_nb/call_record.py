"""The call that made a result frame, kept with it so that ``escalate()`` can ask some of
its rows again: method, prompt column or template, the method's arguments, the options
(never the key or headers), the input columns and the model.

It lives in the frame's ``attrs`` as a ``carried.Carried``: the object itself, and a plain
form JSON can write (a Parquet file's metadata). The plain form is the whole record when
its arguments and options are JSON values, and only the method, the model and the names of
what JSON could not write otherwise (a pydantic class, a frame of examples, a policy).
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any, cast, get_args

import pandas as pd

from holysheep_nb.carried import Carried, carried, from_file
from holysheep_nb.errors import ConfigError, HolySheepError
from holysheep_nb.namespace import Call, Method

#: The frame attribute holding the call that made a result frame.
CALL_ATTR = "holysheep_call"
#: Options never kept with a result: secrets, and objects that may hold them.
SECRET_OPTIONS = frozenset(
    {"api_key", "azure_ad_token", "azure_ad_token_provider", "headers", "extra_headers"}
)


@dataclass(frozen=True, eq=False)
class CallRecord:
    """The call that made a result frame: enough to ask some of its rows again.

    ``eq=False``: pandas compares ``attrs`` when it joins frames; a record is equal only to
    itself (its options may hold a frame of examples).
    """

    call: Call
    options: Mapping[str, Any]  # without SECRET_OPTIONS
    input_columns: tuple[Hashable, ...]
    model: str

    def __deepcopy__(self, memo: dict[int, Any]) -> CallRecord:
        return self  # immutable; pandas deep-copies attrs on most operations

    def plain(self) -> dict[str, Any]:
        """The record as JSON values, what a Parquet file's metadata keeps: whole when the
        call's arguments and options are JSON values (labels, instructions, a JSON schema,
        model, base_url, request parameters), else only its method and model (a pydantic
        class, a frame of examples or a policy object stays with the frame's object)."""
        whole = {
            "method": self.call.method,
            "model": self.model,
            "column": self.call.column,
            "template": self.call.template,
            "arguments": dict(self.call.arguments),
            "options": dict(self.options),
            "input_columns": list(self.input_columns),
        }
        if _writes(whole):
            return whole
        held = {**self.call.arguments, **self.options, "column": self.call.column}
        unwritten = sorted(str(name) for name, value in held.items() if not _writes(value))
        return {"method": self.call.method, "model": self.model, "unwritten": unwritten}

    @classmethod
    def from_plain(cls, plain: Mapping[str, Any]) -> CallRecord | None:
        """The record ``plain()`` wrote whole (read back from a file), or None for one that
        kept only the method and model."""
        method = plain.get("method")
        arguments, options = plain.get("arguments"), plain.get("options")
        columns, model = plain.get("input_columns"), plain.get("model")
        if (
            method not in get_args(Method)
            or not isinstance(arguments, dict)
            or not isinstance(options, dict)
            or not isinstance(columns, list)
            or not isinstance(model, str)
        ):
            return None
        call = Call(cast(Method, method), plain.get("column"), plain.get("template"), arguments)
        return cls(call, options, tuple(columns), model)

    def __repr__(self) -> str:
        return f"CallRecord({self.call.method}, model={self.model!r})"


def _writes(value: object) -> bool:
    """Whether JSON writes ``value`` as it is (no object, no NaN)."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def record(
    call: Call, options: Mapping[str, Any], columns: Sequence[Hashable], model: str
) -> CallRecord:
    """The record of a call, its secrets left out (an ``endpoint=`` object becomes its
    ``base_url``)."""
    kept = {name: value for name, value in options.items() if name not in SECRET_OPTIONS}
    endpoint = kept.pop("endpoint", None)
    if endpoint is not None and "base_url" not in kept:
        kept["base_url"] = endpoint.base_url
    return CallRecord(call, kept, tuple(columns), model)


def keep_call(attrs: MutableMapping[Any, Any], made: CallRecord) -> None:
    """Keep the record of the call that made a frame in its ``attrs`` (with a plain form,
    for Parquet: ``carried``)."""
    attrs[CALL_ATTR] = Carried(made, made.plain())


def call_of(frame: pd.DataFrame) -> CallRecord:
    """The call that made ``frame``, or a ``HolySheepError`` saying how to get one."""
    found = carried(frame.attrs, CALL_ATTR, CallRecord)
    if found is None and from_file(frame.attrs, CALL_ATTR):
        plain = frame.attrs[CALL_ATTR]
        found = CallRecord.from_plain(plain)
        if found is None:
            held = ", ".join(f"{name}=" for name in plain.get("unwritten", ())) or "objects"
            raise HolySheepError(
                f"escalate() asks rows again through the call that made this frame, and a "
                f"frame read back from Parquet keeps only the call's method and model when the "
                f"call held what JSON cannot write, such as a pydantic class, a frame of "
                f"examples or a policy object (here: {held}): call it on the frame the call "
                f"returned, or on one kept with DataFrame.to_pickle, which keeps the call whole"
            )
    if found is None:
        raise HolySheepError(
            "escalate() asks rows again through the call that made this frame, and this frame "
            "has none: call it on the frame label(), extract() or complete() returned (or "
            "escalate() itself), not on a frame joined from several results"
        )
    return found


#: The arguments of ``complete()``, ``label()`` and ``extract()`` besides the run options.
CALL_ARGUMENTS = frozenset(
    {"column", "template", "labels", "instructions", "multi", "structured", "schema", "flatten"}
)


def check_not_arguments(options: Mapping[str, Any], made: CallRecord) -> None:
    """``ConfigError`` for an argument of a call (``schema``, ``labels``, ``template`` ...)
    given to ``escalate()``: the rows go through the call as it was made."""
    method = made.call.method
    given = sorted(name for name in options if name in CALL_ARGUMENTS | set(made.call.arguments))
    if given:
        names = ", ".join(f"{name}=" for name in given)
        raise ConfigError(
            f"{names} is not an option of escalate(): it asks the rows again through the "
            f"{method}() call that made this frame, as it was made, with other options only "
            f"(model=, prices=, ...); to ask with another {given[0]}, call a method on the "
            f"rows you want"
        )
