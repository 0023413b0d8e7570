"""``python -m holysheep_nb evaluate FILE --gold COLUMN``: judge a result file from the shell.

FILE is a table ``label`` or ``extract`` wrote (CSV, Parquet, JSON Lines). ``--gold COLUMN``
judges the labels against a gold column; ``--gold FIELD=COLUMN`` (repeated) judges extracted
fields; ``--against COLUMN`` (repeated) measures agreement instead. The evaluation is printed
as text. Exit status: 0, or 2 for misuse (a bad option, an unreadable file, a missing column,
the ``eval`` extra not installed).

A CSV file holds text only: a confidence column is read back as numbers, lists of labels
(JSON text in a cell) as lists, and a field column as numbers when every value is one.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from holysheep_nb.cli_parser import Parser
from holysheep_nb.cli_wording import for_cli
from holysheep_nb.errors import HolySheepError
from holysheep_nb.files import FORMATS, read_table, table_format
from holysheep_nb.quality.classification import LabelEvaluation
from holysheep_nb.quality.evaluate import evaluate
from holysheep_nb.quality.frames import label_column

EXIT_OK = 0
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    """The ``evaluate`` command's arguments."""
    parser = Parser(
        prog="python -m holysheep_nb evaluate",
        description=(
            "Judge labels (or extracted fields) in a result file against gold, or measure "
            "agreement between label columns. Every figure has an interval."
        ),
    )
    parser.add_argument("file", type=Path, help="a CSV, Parquet or JSON Lines result file")
    parser.add_argument("--format", choices=FORMATS, help="of FILE (default: from its suffix)")
    parser.add_argument(
        "--gold",
        action="append",
        metavar="COLUMN | FIELD=COLUMN",
        help="the gold labels' column; FIELD=COLUMN (repeat) for the fields of extract",
    )
    parser.add_argument(
        "--against",
        action="append",
        metavar="COLUMN",
        help="agreement with this label column instead of gold (repeat for several)",
    )
    parser.add_argument("--column", help="the predicted labels (default: label/predicted_label)")
    parser.add_argument("--confidence", help="the confidence column (default: confidence)")
    parser.add_argument(
        "--tolerance",
        type=float,
        default=0.0,
        help="numeric fields: an absolute difference still right",
    )
    parser.add_argument("--level", type=float, default=0.95, help="of the intervals (0.95)")
    parser.add_argument("--seed", type=int, default=0, help="of the bootstrap (0)")
    parser.add_argument(
        "--threshold-for",
        type=float,
        metavar="ACCURACY",
        help="also give the lowest confidence threshold whose accuracy lower bound reaches it",
    )
    return parser


def main(argv: Sequence[str]) -> int:
    """Run ``evaluate``; return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        print(_run(args))
    except (HolySheepError, ImportError) as exc:
        print(f"{parser.prog}: error: {for_cli(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def _run(args: argparse.Namespace) -> str:
    frame = read_table(args.file, table_format(args.file, args.format))
    gold: Any = None
    if args.gold:
        pairs = [item.split("=", 1) for item in args.gold]
        if all(len(pair) == 2 for pair in pairs):
            gold = {field: column for field, column in pairs}
            frame = _numbers(frame, list(gold))
        elif len(pairs) == 1:
            gold = args.gold[0]
        else:
            raise HolySheepError("--gold takes one COLUMN, or FIELD=COLUMN pairs (repeated)")
    if gold is None or isinstance(gold, str):
        frame = _labels_read_back(frame, args)
    result = evaluate(
        frame,
        gold,
        against=args.against,
        column=args.column,
        confidence=args.confidence,
        tolerance=args.tolerance,
        level=args.level,
        seed=args.seed,
    )
    shown = str(result)
    if args.threshold_for is not None:
        if not isinstance(result, LabelEvaluation):
            raise HolySheepError("--threshold-for needs single labels with gold and confidence")
        chosen, reason = result.choose_threshold(args.threshold_for)
        heading = "no threshold" if chosen is None else f"threshold {chosen:.3g}"
        shown += f"\n\n{heading} for accuracy {args.threshold_for:.1%}: {for_cli(reason)}"
    return shown


def _labels_read_back(frame: pd.DataFrame, args: argparse.Namespace) -> pd.DataFrame:
    """A CSV's text cells as ``label()`` wrote them: numbers for confidence, JSON lists."""
    names = [c for c in frame.columns if str(c).startswith("confidence")]
    frame = _numbers(frame, [*names, args.confidence] if args.confidence else names)
    labels = label_column(frame, args.column)
    frame[labels] = frame[labels].map(_json_list)
    return frame


def _json_list(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("["):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            return value
        return parsed if isinstance(parsed, list) else value
    return value


def _numbers(frame: pd.DataFrame, fields: list[str]) -> pd.DataFrame:
    """These columns as numbers where every value is one (a CSV holds text only)."""
    frame = frame.copy()
    for name in fields:
        if name in frame.columns and not pd.api.types.is_numeric_dtype(frame[name]):
            try:
                frame[name] = pd.to_numeric(frame[name])
            except (ValueError, TypeError):
                continue
    return frame
