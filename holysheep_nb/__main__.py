"""``python -m holysheep_nb demo | serve | cache | batches | label | complete | extract |
estimate | evaluate``."""

from __future__ import annotations

import os
import sys

FILE_COMMANDS = ("label", "complete", "extract", "estimate")
COMMANDS = ("demo", "serve", "cache", "batches", "evaluate", *FILE_COMMANDS)

USAGE = """usage: python -m holysheep_nb COMMAND [options]

commands:
  demo    label the sample reviews (embedded server, or HolySheep if HOLYSHEEP_API_KEY is set)
  serve   run the embedded OpenAI-compatible server (--port, --latency, --fault-rate, ...)
  cache   show or clear the answer cache (info | clear)
  batches list or cancel the provider batches submitted with batch=True (list | cancel ID)

  label     FILE --column C --labels a,b,c --out OUT   label every row of a CSV/Parquet/JSONL file
  complete  FILE --column C --out OUT                  free-text answer for every row
  extract   FILE --column C --schema S.json --out OUT  the fields of a JSON Schema from every row
  estimate  FILE --column C [--labels a,b,c]           dry run: rows, tokens, time, cost
  evaluate  FILE --gold COLUMN                         judge labels against gold, with intervals

Run 'python -m holysheep_nb COMMAND --help' for a command's options."""


def main(argv: list[str] | None = None) -> int:
    """Dispatch to the command named first; return the exit code."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "demo":
        from holysheep_nb.demo import main as demo

        return demo(rest)
    if command == "serve":
        from holysheep_nb.server import cli as serve

        return serve(rest)
    if command == "cache":
        from holysheep_nb.cache.cli import main as cache

        return cache(rest)
    if command == "batches":
        from holysheep_nb.batch.cli import main as batches

        return batches(rest)
    if command == "evaluate":
        from holysheep_nb.quality.cli import main as evaluate

        return evaluate(rest)
    if command in FILE_COMMANDS:
        from holysheep_nb.commands import main as file_command

        return file_command(command, rest)
    import difflib

    close = difflib.get_close_matches(command, COMMANDS, n=1)
    hint = f": did you mean {close[0]}?" if close else ""
    print(f"unknown command {command!r}{hint}\n\n{USAGE}", file=sys.stderr)
    return 2


def run() -> int:
    """``main()`` for a process: a reader that closed stdout early (``... | head``) ends it
    quietly, as the Python docs' "Note on SIGPIPE" (the ``signal`` module) recommends: stdout
    goes to devnull so that the interpreter's final flush cannot fail again; exit code 1."""
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    return code


if __name__ == "__main__":
    sys.exit(run())
