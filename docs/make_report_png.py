"""Draw ``docs/report.png``, the README's picture: the report's plot of a real run.

The run is the demo's: 2,000 sample reviews labelled against the embedded server with
realistic latency and a few injected 429s and 5xx, sent through the real engine. Run it from
the repository root after a change to the report's plot::

    python docs/make_report_png.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import holysheep_nb  # noqa: F401 - registers df.holysheep
from holysheep_nb.demo import DEMO_FAULTS, INSTRUCTIONS, LABELS
from holysheep_nb.sample import load_reviews
from holysheep_nb.server import Faults, Latency, LocalServer, ServerConfig

OUT = Path(__file__).resolve().parent / "report.png"


def main() -> int:
    """Label the reviews, print the report, save its plot."""
    config = ServerConfig(
        latency=Latency.lognormal(median=0.15, sigma=0.5),
        faults=Faults(rates=DEMO_FAULTS),
        retry_after=0.5,
        off_label_rate=0.005,
    )
    with LocalServer(config) as server, tempfile.TemporaryDirectory() as folder:
        out = load_reviews(2000).holysheep.label(
            "text",
            labels=LABELS,
            instructions=INSTRUCTIONS,
            base_url=server.base_url,
            max_concurrent=32,
            cache=str(Path(folder) / "answers.sqlite"),
            progress=False,
        )
    report = out.holysheep.report()
    print(report)
    report.plot().savefig(OUT, dpi=72)
    print(f"\nwrote {OUT} ({OUT.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
