"""``python -m holysheep_nb label | complete | extract | estimate FILE``: files from the shell.

Each command reads a CSV, Parquet or JSON Lines file, runs the accessor method of the same
name on it (so the engine, the cache, the progress bar and the run report are the ones a
notebook gets), prints the report and writes the result table atomically. Running the same
command again resumes: rows answered before come from the cache.

Exit status: 0 when every row has an answer, ``EXIT_ROWS_FAILED`` when some rows failed (the
output is written all the same, with their ``error``), 2 for misuse (a bad option, an
unreadable file, a missing key), ``EXIT_INTERRUPTED`` after Ctrl-C (nothing written; the
answers received so far are in the cache).

Length: one argparse flag per accessor option, each with its help text; the work itself is
the accessor's, and reading and writing files is ``files``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from holysheep_nb.accessor import HolySheepFrameAccessor
from holysheep_nb.cache import default_cache_path
from holysheep_nb.errors import HolySheepError, MissingAPIKeyError
from holysheep_nb.files import (
    FORMATS,
    Format,
    read_table,
    require_pyarrow,
    table_format,
    write_table,
)

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


#: Accessor options that have a flag of their own, so are not request parameters.
_OWN_FLAGS = {
    "model": "--model",
    "system": "--system",
    "base_url": "--base-url",
    "api_key": "--api-key-env",
    "max_concurrent": "--max-concurrent",
    "requests_per_minute": "--rpm",
    "tokens_per_minute": "--tpm",
    "max_retries": "--max-retries",
    "timeout": "--timeout",
    "chunk_size": "--chunk-size",
    "progress": "--no-progress",
    "cache": "--cache",
    "prices": "--prices",
    "verify": "--no-verify / --ca-bundle",
    "labels": "--labels",
    "instructions": "--instructions",
    "multi": "--multi",
    "structured": "--no-structured",
    "template": "--template",
    "schema": "--schema",
    "flatten": "--no-flatten",
}


class _Misuse(Exception):
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
            "the variable that holds it with --api-key-env NAME",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except (_Misuse, HolySheepError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(
            f"\n{parser.prog}: interrupted; nothing written. The answers received so far are "
            "in the cache: run the same command again to go on from there.",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED


def _one_line_warning(prog: str) -> Callable[..., None]:
    """``warnings.showwarning`` for a command: ``prog: warning: message``, no source line."""

    def show(message: Warning | str, *_: Any, **__: Any) -> None:
        print(f"{prog}: warning: {message}", file=sys.stderr)

    return show


def build_parser(command: str) -> argparse.ArgumentParser:
    """The argument parser of one file command, with every accessor option as a flag."""
    summaries = {
        "label": "Give every row one of a set of labels (several with --multi).",
        "complete": "Send every row as a prompt and keep the free-text answer.",
        "extract": "Pull the fields of a JSON Schema out of every row.",
        "estimate": "Dry run: rows to send, tokens, time and cost. Sends nothing.",
    }
    parser = argparse.ArgumentParser(
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
    _endpoint_arguments(parser)
    _pace_arguments(parser)
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
    group.add_argument("--system", metavar="TEXT", help="system message sent before every prompt")


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
    group.add_argument("--instructions", metavar="TEXT", help="what the labels mean, for the model")
    group.add_argument("--multi", action="store_true", help="every label that applies, as a list")
    group.add_argument(
        "--no-structured",
        dest="structured",
        action="store_false",
        help="do not send a response_format JSON schema (for servers that reject it)",
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
    group.add_argument("--instructions", metavar="TEXT", help="how to read the rows, for the model")
    group.add_argument(
        "--no-structured",
        dest="structured",
        action="store_false",
        help="do not send the schema as a response_format (for servers that reject it)",
    )
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
        default=1.0,
        help="seconds a request is assumed to take (default 1.0; time a --head 50 run first)",
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
    group.add_argument("--no-progress", action="store_true", help="no progress bar on the terminal")


def _endpoint_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("endpoint")
    group.add_argument(
        "--model", "-m", metavar="NAME", help="model name (default: $HOLYSHEEP_MODEL or gpt-4o)"
    )
    group.add_argument(
        "--base-url",
        metavar="URL",
        help="any OpenAI-compatible server, e.g. http://localhost:8000/v1 "
        "(default: $HOLYSHEEP_BASE_URL or https://api.holysheep.ai/v1)",
    )
    group.add_argument(
        "--api-key-env",
        metavar="NAME",
        help=f"read the API key from environment variable NAME instead of {KEY_VARIABLE}",
    )
    verify = group.add_mutually_exclusive_group()
    verify.add_argument(
        "--ca-bundle", metavar="PEM", help="trust the CA certificates in this file or folder"
    )
    verify.add_argument(
        "--no-verify",
        action="store_true",
        help="do not check the server's TLS certificate (a self-signed test server)",
    )


def _pace_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("pace, retries, cache and cost")
    group.add_argument(
        "--max-concurrent", type=int, metavar="N", help="requests open at once (default 16)"
    )
    group.add_argument(
        "--rpm", type=float, metavar="N", help="client-side requests per minute (default: no limit)"
    )
    group.add_argument(
        "--tpm", type=float, metavar="N", help="client-side tokens per minute (default: no limit)"
    )
    group.add_argument(
        "--max-retries",
        type=int,
        metavar="N",
        help="retries after the first attempt, for timeouts, 429s and 5xx (default 5)",
    )
    group.add_argument(
        "--timeout", type=float, metavar="SECONDS", help="seconds per attempt (default 60)"
    )
    group.add_argument(
        "--chunk-size",
        type=int,
        metavar="ROWS",
        help="rows prepared at a time; memory stays flat (default 1000)",
    )
    cache = group.add_mutually_exclusive_group()
    cache.add_argument("--cache", metavar="FILE", help=f"answer cache (default: {_cache_hint()})")
    cache.add_argument("--no-cache", action="store_true", help="neither read nor store answers")
    group.add_argument(
        "--prices",
        type=_prices,
        metavar="IN,OUT",
        help="USD per 1,000 input and output tokens, to put a cost on the report",
    )
    group.add_argument(
        "--param",
        action="append",
        type=_param,
        default=[],
        metavar="KEY=VALUE",
        help="a request parameter, repeatable: --param temperature=0 --param max_tokens=50; "
        'VALUE is read as JSON when it parses (0.2, true, ["\\n"]), else as a string',
    )


def _cache_hint() -> str:
    return str(default_cache_path()).replace("%", "%%")


def _comma_list(text: str) -> list[str]:
    items = [item.strip() for item in text.split(",")]
    if not all(items):
        raise argparse.ArgumentTypeError(f"an empty label in {text!r}: write them as a,b,c")
    return items


def _prices(text: str) -> tuple[float, float]:
    try:
        first, second = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give two numbers, input and output USD per 1,000 tokens, e.g. 0.15,0.6"
        ) from None
    return first, second


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
    options = _options(args)
    frame = read_table(
        source, in_format, encoding=args.encoding, encoding_errors=args.encoding_errors
    )
    if args.head is not None:
        frame = frame.head(args.head)
    accessor = HolySheepFrameAccessor(frame)
    if command == "estimate":
        print(_estimate(accessor, args, options))
        return EXIT_OK
    assert out is not None
    assert out_format is not None
    result = _method(command, frame, accessor, args)(
        args.column, template=args.template, progress=not args.no_progress, **options
    )
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


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """The accessor's keyword options from the flags given (the accessor's defaults else)."""
    options: dict[str, Any] = {"cache": False if args.no_cache else (args.cache or True)}
    flags = {
        "model": args.model,
        "system": args.system,
        "base_url": args.base_url,
        "max_concurrent": args.max_concurrent,
        "requests_per_minute": args.rpm,
        "tokens_per_minute": args.tpm,
        "max_retries": args.max_retries,
        "timeout": args.timeout,
        "chunk_size": args.chunk_size,
        "prices": args.prices,
    }
    options.update((name, value) for name, value in flags.items() if value is not None)
    if args.api_key_env is not None:
        key = os.environ.get(args.api_key_env)
        if not key:
            raise _Misuse(f"--api-key-env {args.api_key_env}: that variable is not set")
        options["api_key"] = key
    if args.no_verify:
        options["verify"] = False
    elif args.ca_bundle is not None:
        options["verify"] = args.ca_bundle
    for key, value in args.param:
        if key in _OWN_FLAGS:
            raise _Misuse(f"--param {key}=...: use the option's own flag, {_OWN_FLAGS[key]}")
        options[key] = value
    return options


def _method(
    command: str, frame: pd.DataFrame, accessor: HolySheepFrameAccessor, args: argparse.Namespace
) -> Callable[..., pd.DataFrame]:
    """The accessor call for ``command``, its own arguments already bound."""
    if command == "label":

        def label(column: str | None, **options: Any) -> pd.DataFrame:
            labelled: pd.DataFrame = accessor.label(
                column,
                labels=args.labels,
                instructions=args.instructions,
                multi=args.multi,
                structured=args.structured,
                **options,
            )
            return labelled

        return label
    if command == "extract":
        schema = _schema(args.schema)
        extract: Callable[..., pd.DataFrame] = frame.holysheep.extract

        def fields(column: str | None, **options: Any) -> pd.DataFrame:
            return extract(
                column,
                schema=schema,
                instructions=args.instructions,
                flatten=args.flatten,
                structured=args.structured,
                **options,
            )

        return fields
    return accessor.complete


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


def _estimate(
    accessor: HolySheepFrameAccessor, args: argparse.Namespace, options: dict[str, Any]
) -> Any:
    label_options: dict[str, Any] = {}
    if args.labels is not None:
        label_options = {
            "labels": args.labels,
            "instructions": args.instructions,
            "multi": args.multi,
            "structured": args.structured,
        }
    return accessor.estimate(
        args.column,
        template=args.template,
        latency=args.latency,
        output_tokens=args.output_tokens,
        **label_options,
        **options,
    )
