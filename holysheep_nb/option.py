"""How a run option is declared: a dataclass field with a doc line and its command-line flag.

Every option of a run is a field of one of the small frozen dataclasses that group them by
concern (``Endpoint``, ``EngineSettings``, ``RateLimits``, ``RetryPolicy``, ``RunOutput``,
``RequestParams``: see ``job_options.OPTION_GROUPS``). Its name, type and default are the
field's; ``option()`` adds the one line of doc and the flag. The accessor, the command line
(``commands``), the Dask accessor and the options table of ``docs/contract.md`` all read
the fields, so each default is written once, on its field.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import MISSING, dataclass
from typing import Any

#: Field metadata keys.
DOC = "holysheep_doc"
FLAGS = "holysheep_flags"
ENV = "holysheep_env"


@dataclass(frozen=True)
class Flag:
    """One command-line flag of an option.

    ``parse`` reads the flag's text (a ``ValueError`` says what is wrong with it); with
    ``const`` set the flag takes no value and gives the option that value (``--no-cache``
    gives ``cache=False``). ``names`` empty: the flag is ``--`` and the option's name with
    dashes. ``nargs``: argparse's, for an option that takes several values (``"+"``: a
    list). Several flags of one option are mutually exclusive.
    """

    names: tuple[str, ...] = ()
    parse: Callable[[str], Any] | None = None
    const: bool | None = None
    metavar: str | None = None
    help: str | None = None
    nargs: str | None = None


#: The flag an option gets when it names none: ``--max-concurrent N``, read as its type.
DEFAULT_FLAG = Flag()
#: An option that has no flag (its value is not text: a dict of headers, a policy object).
NO_FLAG: tuple[Flag, ...] = ()


def option(
    default: Any = MISSING,
    doc: str = "",
    *,
    flags: tuple[Flag, ...] = (DEFAULT_FLAG,),
    env: str | None = None,
    default_factory: Callable[[], Any] | Any = MISSING,
    repr: bool = True,
    compare: bool = True,
) -> Any:
    """A dataclass field that is a run option: ``default`` (or ``default_factory``), one
    line of ``doc``, its command-line ``flags`` and the environment variable (``env``) read
    when the option is not given."""
    metadata = {DOC: doc, FLAGS: flags, ENV: env}
    if default_factory is not MISSING:
        return dataclasses.field(
            default_factory=default_factory, metadata=metadata, repr=repr, compare=compare
        )
    return dataclasses.field(default=default, metadata=metadata, repr=repr, compare=compare)


def options_of(cls: type) -> Iterator[dataclasses.Field[Any]]:
    """The fields of the dataclass ``cls`` that are run options, in declaration order."""
    for item in dataclasses.fields(cls):
        if DOC in item.metadata:
            yield item


def default_of(item: dataclasses.Field[Any]) -> Any:
    """The field's default value (made by its factory, if it has one)."""
    if item.default_factory is not MISSING:
        return item.default_factory()
    return item.default


def example(cls: type, name: str) -> str:
    """``name=<default>``: the example an error message gives for a bad value."""
    item = next(field for field in dataclasses.fields(cls) if field.name == name)
    return f"{name}={default_of(item)!r}"


#: The flag of a request parameter: ``--param name=VALUE``, one flag for all of them.
PARAM = Flag(("--param",), metavar="KEY=VALUE")


def default_text(item: dataclasses.Field[Any]) -> str:
    """The option's default as the docs and ``--help`` show it: ``$HOLYSHEEP_MODEL or
    gpt-4o``, ``16``, ``none``; ``not sent`` for a request parameter."""
    if PARAM in item.metadata[FLAGS]:
        return "not sent"
    default = default_of(item)
    shown = "none" if default is None or default == {} else str(default)
    env = item.metadata[ENV]
    if env is None:
        return shown
    return f"${env}" if shown == "none" else f"${env} or {shown}"
