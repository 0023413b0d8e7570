"""``python -m holysheep_nb cache info|clear [--path P]``: the cache's command line."""

from __future__ import annotations

from holysheep_nb.cache.admin import cache_file, cache_info, clear_cache
from holysheep_nb.cache.store import default_cache_path
from holysheep_nb.cli_parser import Parser


def main(argv: list[str]) -> int:
    """Run ``python -m holysheep_nb cache info|clear [--path P]``; return the process exit code."""
    parser = Parser(
        prog="python -m holysheep_nb cache",
        description="Inspect or empty the holysheep_nb answer cache.",
    )
    parser.add_argument("action", choices=["info", "clear"])
    parser.add_argument("--path", help=f"cache file (default: {default_cache_path()})")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help and on bad arguments
        return exc.code if isinstance(exc.code, int) else 0
    if args.action == "info":
        print(cache_info(args.path))
        return 0
    file = cache_file(args.path)
    removed = clear_cache(file)
    print(f"removed {removed:,} {'entry' if removed == 1 else 'entries'} from {file}")
    return 0
