"""``python -m holysheep_nb label | complete | extract | estimate FILE``: files from the shell.

Each command reads a CSV, Parquet or JSON Lines file, runs the accessor method of the same
name on it (so the engine, the cache, the progress bar and the run report are the ones a
notebook gets), prints the report and writes the result table atomically. Running the same
command again resumes: rows answered before come from the cache.

Exit status: 0 when every row has an answer, ``EXIT_ROWS_FAILED`` when some rows failed (the
output is written all the same, with their ``error``), 2 for misuse (a bad option, an
unreadable file, a missing key), ``EXIT_INTERRUPTED`` after Ctrl-C (nothing written; the
answers received so far are in the cache).

The run options' flags are made from their one declaration (``job_options.OPTION_GROUPS``:
name, type, default, doc and flag of each); this module adds the flags of the file, the
prompts and the method's own arguments, which it reads back by the method's parameter
names. The work itself is the accessor's, and reading and writing files is ``files``.

Length: the file, prompt, label, field and output flags are written out here with their
help text (what ``--help`` shows a user); everything else is generated or delegated.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from holysheep_nb.accessor import HolySheepFrameAccessor
from holysheep_nb.cli_parser import Parser
from holysheep_nb.cli_wording import for_cli
from holysheep_nb.endpoint import ENV_BASE_URL
from holysheep_nb.errors import ConfigError, HolySheepError, MissingAPIKeyError
from holysheep_nb.estimate import DEFAULT_LATENCY
from holysheep_nb.files import (
    FORMATS,
    Format,
    read_table,
    require_pyarrow,
    table_format,
    write_table,
)
from holysheep_nb.job_options import OPTION_GROUPS, option_names
from holysheep_nb.namespace import Calls
from holysheep_nb.option import DOC, FLAGS, PARAM, Flag, default_text, options_of

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_ROWS_FAILED = 3
EXIT_INTERRUPTED = 130
KEY_VARIABLE = "HOLYSHEEP_API_KEY"

_EPILOG = f"""\
The API key is read from the environment ({KEY_VARIABLE}, or the variable named by
--api-key-env), never from the command line, where other users and the shell history would
see it; it is never printed. --base-url and --model default to $HOLYSHEEP_BASE_URL and
$HOLYSHEEP_MODEL. Answers are cached: run the same command again to resume an interrupted
or partly failed run without paying twice.

exit status: 0 every row answered; {EXIT_ROWS_FAILED} some rows failed (the output is written,
with an error column); 2 misuse (bad option, unreadable file, missing key);
{EXIT_INTERRUPTED} interrupted (nothing written, answers so far are in the cache)."""


class _Misuse(ConfigError):
    """A command line that cannot run; the message is printed as ``error: ...``."""


def main(command: str, argv: Sequence[str]) -> int:
    """Run one file command (``label``, ``complete``, ``extract``, ``estimate``)."""
    parser = build_parser(command)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help (0) and on bad arguments (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warning(parser.prog)
            return _run(command, args)
    except MissingAPIKeyError:  # its own text speaks of api_key=..., which has no flag here
        print(
            f"{parser.prog}: error: no API key for this base URL: set HOLYSHEEP_API_KEY, or name "
            f"the variable that holds it with --api-key-env NAME{_try_locally(args)}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except (_Misuse, HolySheepError) as exc:
        print(f"{parser.prog}: error: {for_cli(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(
            f"\n{parser.prog}: interrupted; nothing written. The answers received so far are "
            "in the cache: run the same command again to go on from there.",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED


def _try_locally(args: argparse.Namespace) -> str:
    """For a run with no ``--base-url`` (nor ``$HOLYSHEEP_BASE_URL``): how to try the command
    without a key, on the embedded server."""
    if hasattr(args, "base_url") or os.environ.get(ENV_BASE_URL):
        return ""
    return (
        ". To try it without a key, start the embedded server (python -m holysheep_nb serve "
        "--port 8765) and pass --base-url http://127.0.0.1:8765/v1"
    )


def _one_line_warning(prog: str) -> Callable[..., None]:
    """``warnings.showwarning`` for a command: ``prog: warning: message``, no source line."""

    def show(message: Warning | str, *_: Any, **__: Any) -> None:
        print(f"{prog}: warning: {for_cli(str(message))}", file=sys.stderr)

    return show


def build_parser(command: str) -> argparse.ArgumentParser:
    """The argument parser of one file command, with every accessor option as a flag."""
    summaries = {
        "label": "Give every row one of a set of labels (several with --multi).",
        "complete": "Send every row as a prompt and keep the free-text answer.",
        "extract": "Pull the fields of a JSON Schema out of every row.",
        "estimate": "Dry run: rows to send, tokens, time and cost. Sends nothing.",
    }
    parser = Parser(
        prog=f"python -m holysheep_nb {command}",
        description=summaries[command],
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _input_arguments(parser)
    _prompt_arguments(parser)
    if command in ("label", "estimate"):
        _label_arguments(parser, required=command == "label")
    if command == "extract":
        _extract_arguments(parser)
    if command == "estimate":
        _estimate_arguments(parser)
    else:
        _output_arguments(parser, command)
    _option_arguments(parser)
    return parser


def _input_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("input")
    group.add_argument(
        "file", type=Path, metavar="FILE", help="a .csv, .parquet (or Parquet folder) or .jsonl"
    )
    group.add_argument(
        "--format",
        choices=FORMATS,
        help="the input's format, when its name does not say (default: from the extension)",
    )
    group.add_argument(
        "--encoding",
        metavar="NAME",
        default="utf-8-sig",
        help="text encoding of a CSV or JSONL input (default: UTF-8, with or without a BOM)",
    )
    group.add_argument(
        "--encoding-errors",
        choices=("strict", "replace"),
        default="strict",
        help="strict (default): a byte the encoding cannot decode is an error naming its "
        "line; replace: read it as U+FFFD and go on",
    )
    group.add_argument(
        "--head", type=int, metavar="N", help="only the first N rows (a cheap trial run)"
    )


def _prompt_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("prompts")
    group.add_argument(
        "--column", "-c", metavar="NAME", help="the column whose text is sent for each row"
    )
    group.add_argument(
        "--template",
        metavar="TEXT",
        help="build each prompt from columns instead, e.g. 'Title: {title}\\n\\n{body}'",
    )


def _label_arguments(parser: argparse.ArgumentParser, *, required: bool) -> None:
    group = parser.add_argument_group("labels")
    group.add_argument(
        "--labels",
        required=required,
        type=_comma_list,
        metavar="A,B,C",
        help="the label set, comma-separated"
        + ("" if required else " (estimate a label() run; without it, a complete() run)"),
    )
    _reading_arguments(group, "what the labels mean", "a response_format JSON schema")
    group.add_argument("--multi", action="store_true", help="every label that applies, as a list")


def _reading_arguments(group: Any, instructions: str, structured: str) -> None:
    """``--instructions`` and ``--no-structured``, as label and extract take them."""
    group.add_argument("--instructions", metavar="TEXT", help=f"{instructions}, for the model")
    group.add_argument(
        "--no-structured",
        dest="structured",
        action="store_false",
        help=f"do not send {structured} (for servers that reject it)",
    )


def _extract_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("fields")
    group.add_argument(
        "--schema",
        required=True,
        type=Path,
        metavar="SCHEMA.json",
        help="a JSON Schema file: the object whose fields to extract from every row",
    )
    _reading_arguments(group, "how to read the rows", "the schema as a response_format")
    group.add_argument(
        "--no-flatten",
        dest="flatten",
        action="store_false",
        help="keep each row's fields as one object column instead of a column per field",
    )


def _estimate_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("estimate")
    group.add_argument(
        "--latency",
        type=float,
        metavar="SECONDS",
        default=DEFAULT_LATENCY,
        help=f"seconds a request is assumed to take (default: {DEFAULT_LATENCY}; time a "
        "--head 50 run first)",
    )
    group.add_argument(
        "--output-tokens", type=int, metavar="N", help="answer tokens per row assumed"
    )


def _output_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    group = parser.add_argument_group("output")
    group.add_argument(
        "--out",
        "-o",
        type=Path,
        required=True,
        help="where to write the input's columns plus the answers (.csv, .parquet or .jsonl); "
        "written whole or not at all",
    )
    group.add_argument(
        "--out-format", choices=FORMATS, help="the output's format (default: from --out's name)"
    )


#: Types an option's flag reads its text as, by the first type its annotation names.
_TEXT_TYPES: dict[str, Callable[[str], Any]] = {"int": int, "float": float, "str": str}


def _option_arguments(parser: argparse.ArgumentParser) -> None:
    """A flag for every declared run option that has one, with its doc and default."""
    groups: dict[str, Any] = {}
    for title, declared in OPTION_GROUPS:
        group = groups.get(title) or parser.add_argument_group(title)
        groups[title] = group
        for item in options_of(declared):
            flags = [flag for flag in item.metadata[FLAGS] if flag is not PARAM]
            target = group.add_mutually_exclusive_group() if len(flags) > 1 else group
            for flag in flags:
                target.add_argument(
                    *(flag.names or (f"--{item.name.replace('_', '-')}",)),
                    dest=item.name,
                    default=argparse.SUPPRESS,
                    **_flag_arguments(item, flag),
                )
    groups["request parameters"].add_argument(
        "--param",
        action="append",
        type=_param,
        default=[],
        metavar="KEY=VALUE",
        help="a chat-completions parameter, repeatable: --param temperature=0 --param "
        'max_tokens=50; VALUE is read as JSON when it parses (0.2, true, ["\\n"]), else as a '
        "string. A provider's own: --param 'extra_body={\"top_k\": 40}'",
    )


def _flag_arguments(item: dataclasses.Field[Any], flag: Flag) -> dict[str, Any]:
    """``add_argument``'s keywords for one flag of the option ``item``."""
    if flag.const is not None:
        return {"action": "store_const", "const": flag.const, "help": flag.help}
    text = flag.help or f"{item.metadata[DOC]} (default: {default_text(item)})".replace("%", "%%")
    if flag.parse is not None:
        parse = _flag_text(flag.parse)
    else:
        parse = _TEXT_TYPES[str(item.type).split(" | ")[0]]
    seconds = item.metadata[DOC].startswith("seconds")
    metavar = flag.metavar or ("SECONDS" if seconds else "N")
    several = {"nargs": flag.nargs} if flag.nargs is not None else {}
    return {"type": parse, "metavar": metavar, "help": text, **several}


def _flag_text(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """``parse`` for argparse: its ``ValueError`` becomes the flag's error message."""

    def read(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return read


def _comma_list(text: str) -> list[str]:
    items = [item.strip() for item in text.split(",")]
    if not all(items):
        raise argparse.ArgumentTypeError(f"an empty label in {text!r}: write them as a,b,c")
    return items


def _param(text: str) -> tuple[str, Any]:
    key, equals, raw = text.partition("=")
    if not equals or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: write a parameter as KEY=VALUE")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip(), value


def _run(command: str, args: argparse.Namespace) -> int:
    source: Path = args.file
    in_format = table_format(source, args.format)
    out: Path | None = getattr(args, "out", None)
    out_format: Format | None = None
    if out is not None:
        out_format = table_format(out, args.out_format)
        _check_destination(source, out, out_format)
    if args.column is None and args.template is None:
        raise _Misuse("say what to send: --column NAME, or --template '... {column} ...'")
    options = _options(command, args)
    frame = read_table(
        source, in_format, encoding=args.encoding, encoding_errors=args.encoding_errors
    )
    if args.head is not None:
        frame = frame.head(args.head)
    call = getattr(HolySheepFrameAccessor(frame), command)
    result = call(args.column, **_arguments(command, args), **options)
    if command == "estimate":
        print(result)
        return EXIT_OK
    assert out is not None
    assert out_format is not None
    write_table(result, out, out_format)
    report = result.holysheep.report()
    print(report)
    failed = report.failed
    note = f"; {failed:,} failed: see the error column" if failed else ""
    print(f"\nwrote {len(result):,} rows to {out}{note}")
    return EXIT_ROWS_FAILED if failed else EXIT_OK


def _check_destination(source: Path, out: Path, out_format: Format) -> None:
    if out_format == "parquet":
        # Before the run, not after it: the answers would be paid for and then not written.
        require_pyarrow()
    folder = out.parent
    if not folder.is_dir():
        raise _Misuse(f"--out {out}: the folder {folder} does not exist")
    if out.exists() and source.exists() and out.resolve() == source.resolve():
        raise _Misuse("--out names the input file: write the result to another file")


def _options(command: str, args: argparse.Namespace) -> dict[str, Any]:
    """The accessor's keyword options from the flags given (the declared defaults else)."""
    given = vars(args)
    options = {name: given[name] for name in option_names() if name in given}
    call_arguments = _own_arguments(command)
    for key, value in args.param:
        flagged = _own_flag(key)
        if flagged is not None:
            raise _Misuse(f"--param {key}=...: use the option's own flag, {flagged}")
        if key in call_arguments:
            raise _Misuse(f"--param {key}=...: {key} is an argument of {command}: see --help")
        options[key] = value
    return options


def _own_flag(name: str) -> str | None:
    """The flag of the declared option ``name``, if it has one besides ``--param``."""
    for _, declared in OPTION_GROUPS:
        for item in options_of(declared):
            flags = [flag for flag in item.metadata[FLAGS] if flag is not PARAM]
            if item.name == name and flags:
                return " / ".join(
                    flag.names[0] if flag.names else f"--{name.replace('_', '-')}" for flag in flags
                )
    return None


def _own_arguments(command: str) -> set[str]:
    """The names of the accessor method's own keyword arguments (template, labels ...)."""
    declared = getattr(Calls, command, None) or getattr(HolySheepFrameAccessor, command)
    return set(inspect.signature(declared).parameters) - {"self", "column", "options"}


def _arguments(command: str, args: argparse.Namespace) -> dict[str, Any]:
    """The accessor method's own keyword arguments (labels, schema, latency ...), read from
    the flags of the same name."""
    own = _own_arguments(command)
    arguments = {name: getattr(args, name) for name in own if hasattr(args, name)}
    if command == "extract":
        arguments["schema"] = _schema(args.schema)
    return arguments


def _schema(path: Path) -> dict[str, Any]:
    from holysheep_nb.schema import looks_like_json_schema  # pydantic: for extract only

    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise _Misuse(f"--schema {path}: {exc.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _Misuse(f"--schema {path} is not a JSON file: {exc}") from None
    if not isinstance(schema, dict):
        kind = type(schema).__name__
        raise _Misuse(f"--schema {path}: expected a JSON Schema object, got {kind}")
    if not looks_like_json_schema(schema):
        # In Python a dict may map fields to types; a file can only be a JSON Schema.
        raise _Misuse(
            f'--schema {path}: expected a JSON Schema ({{"type": "object", "properties": '
            f"{{...}}}}), got an object with keys {', '.join(map(repr, list(schema)[:5]))}"
        )
    return schema
