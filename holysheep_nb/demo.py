"""``python -m holysheep_nb demo``: label the shipped sample reviews end to end.

With ``HOLYSHEEP_API_KEY`` set it talks to the real provider; otherwise it starts the
embedded server with realistic latency and a few injected faults, so a fresh machine with
no key and no internet shows the whole product: progress, retries, report, labelled CSV.
There the labeller is a simulated model of known quality and price (``sim-small`` unless
``--model`` says otherwise; ``docs/server.md``), and the demo ends with its accuracy
against the sample's gold sentiment.
With ``--batch`` the rows go through the Batch API instead (the embedded server's batch
finishes after a few polls), at the batch price.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

import holysheep_nb  # noqa: F401 - registers the accessor
from holysheep_nb.cli_parser import Parser
from holysheep_nb.endpoint import (
    DEFAULT_BASE_URL,
    ENV_API_KEY,
    ENV_BASE_URL,
    normalise_base_url,
)
from holysheep_nb.prices import Prices
from holysheep_nb.sample import load_reviews
from holysheep_nb.server import Faults, Latency, LocalServer, ServerConfig
from holysheep_nb.server.models import SIM_MODELS, SimModel

LABELS = ["positive", "negative", "neutral"]
INSTRUCTIONS = (
    "The texts are customer reviews of household products. Label the reviewer's overall "
    "sentiment; a mixed review that ends up recommending the product is positive."
)
#: What the demo server injects so that retries show up in the report: a few 429s and 5xx.
DEMO_FAULTS = {"429": 0.01, "500": 0.005, "503": 0.005}
#: Polls before the embedded server's batch is done, so the demo shows it progressing.
DEMO_BATCH_POLLS = 2
#: The model that labels on the embedded server unless --model names another.
LOCAL_MODEL = "sim-small"


def describe(model: SimModel) -> str:
    """One line naming a simulated model with its configured accuracy, calibration, price."""
    return (
        f"{model.name}: accuracy {model.accuracy:.2f}, {model.calibration}, "
        f"${model.input_per_1k:g} / ${model.output_per_1k:g} per 1K tokens in / out"
    )


@contextlib.contextmanager
def _target(local: bool, latency: float, batch: bool) -> Iterator[dict[str, str]]:
    """Options pointing at the real provider, or at an embedded server started for the demo."""
    if not local:
        base_url = normalise_base_url(os.environ.get(ENV_BASE_URL) or DEFAULT_BASE_URL)
        print(f"sending to {base_url} with the key in ${ENV_API_KEY} (--local for no key)")
        yield {}
        return
    config = ServerConfig(
        latency=Latency.lognormal(median=latency, sigma=0.5) if latency else Latency(),
        faults=Faults(rates=DEMO_FAULTS),
        retry_after=0.2,
        off_label_rate=0.005,
        batch_polls=DEMO_BATCH_POLLS if batch else 0,
    )
    # The server's port is new every run, so its answers could never be reused: they go to a
    # cache of the run's own (repeated reviews are still served from it), not the user's.
    with LocalServer(config) as server, tempfile.TemporaryDirectory() as folder:
        print(f"embedded OpenAI-compatible server on {server.base_url} (no key needed)")
        print("simulated models:")
        for model in SIM_MODELS:
            print(f"  {describe(model)}")
        yield {"base_url": server.base_url, "cache": str(Path(folder) / "demo.sqlite")}


def main(argv: list[str]) -> int:
    """Run the demo; returns the process exit code."""
    parser = Parser(prog="python -m holysheep_nb demo", description=__doc__)
    parser.add_argument("--rows", type=int, default=3000, help="reviews to label (default 3000)")
    parser.add_argument("--out", type=Path, default=Path("labelled_reviews.csv"))
    parser.add_argument(
        "--model",
        default=None,
        help=f"model (default: $HOLYSHEEP_MODEL or gpt-4o; {LOCAL_MODEL} on the embedded server)",
    )
    parser.add_argument("--max-concurrent", type=int, default=64)
    parser.add_argument(
        "--latency",
        type=float,
        default=0.15,
        help="embedded server's median latency in seconds (default 0.15)",
    )
    parser.add_argument(
        "--local",
        action="store_true",
        help="use the embedded server even when HOLYSHEEP_API_KEY is set",
    )
    parser.add_argument(
        "--batch",
        action="store_true",
        help="send the rows through the provider's Batch API (batch price, up to 24 h)",
    )
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    local = args.local or not os.environ.get(ENV_API_KEY)
    reviews = load_reviews(args.rows)
    model = args.model or (LOCAL_MODEL if local else None)
    simulated = next((m for m in SIM_MODELS if m.name == model), None) if local else None
    with _target(local, args.latency, args.batch) as target:
        options: dict[str, Any] = {
            "labels": LABELS,
            "instructions": INSTRUCTIONS,
            "model": model,
            "max_concurrent": args.max_concurrent,
            "temperature": 0,
            **target,
        }
        if simulated is not None:
            print(f"labelling with {simulated.name} (--model sim-large for the larger one)\n")
            options["prices"] = Prices(simulated.input_per_1k, simulated.output_per_1k)
        # The assumed latency: the embedded server's median, or a typical provider's second.
        latency = args.latency if local and args.latency > 0 else 1.0
        estimate = reviews.holysheep.estimate("text", latency=latency, batch=args.batch, **options)
        print(estimate, end="\n\n")
        out = reviews.holysheep.label(
            "text", progress=not args.no_progress, batch=args.batch, **options
        )
    out.to_csv(args.out, index=False)
    report = out.holysheep.report()
    print()
    print(report)
    print()
    shown = out[["text", "label", "error", "latency"]]
    failed = shown[shown["error"].notna()]
    with pd.option_context("display.max_colwidth", 60, "display.width", 120):
        print(shown.head(5).to_string())
        if len(failed):
            # What a user looks at next: why rows failed, in their own column.
            first = ", the first 5" if len(failed) > 5 else ""
            print(f"\nthe {len(failed):,} rows that failed{first}:")
            print(failed.head(5).to_string())
    print(f"\nwrote {len(out):,} labelled rows to {args.out}")
    labelled = out["label"].notna()
    if simulated is not None and labelled.any():
        right = (out.loc[labelled, "label"].astype(str) == out.loc[labelled, "sentiment"]).mean()
        print(
            f"accuracy against the sample's gold sentiment: {right:.3f} on {labelled.sum():,} "
            f"labelled rows ({simulated.name} is configured for {simulated.accuracy:.2f} when "
            "asked plainly; the instructions define mixed reviews, which helps)"
        )
    if args.batch and report.failed:
        print(
            "rows that failed in the batch are sent again by the same call: in a new batch "
            "(batch=True), or at once without it"
        )
    return 0 if report.succeeded else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
