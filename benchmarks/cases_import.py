"""Case 7: what ``import holysheep_nb`` costs beyond pandas and aiohttp, its heavy dependencies.

Each run is a fresh interpreter that times ``import pandas, aiohttp`` and then
``import holysheep_nb``; the medians of several runs are compared. One more run with
``-X importtime`` names the modules that take the most of the extra time.
"""

from __future__ import annotations

import json
import subprocess
import sys

from analysis import median
from harness import Context, Figure, at_most

_TIMED = (
    "import json, time\n"
    "t0 = time.perf_counter()\n"
    "import pandas, aiohttp\n"
    "t1 = time.perf_counter()\n"
    "import holysheep_nb\n"
    "t2 = time.perf_counter()\n"
    "print(json.dumps([t1 - t0, t2 - t1]))\n"
)
_PROFILED = "import pandas, aiohttp\nimport holysheep_nb\n"
#: Our own bar: the package may add at most this fraction to its dependencies' import time.
MAX_EXTRA = 0.25


def import_time(ctx: Context) -> list[Figure]:
    """Case 7: median extra import time, as a fraction of importing pandas and aiohttp."""
    runs = ctx.pick(9, 3)
    timings = [_timed_import() for _ in range(runs)]
    deps = median([deps for deps, _ in timings])
    extra = median([extra for _, extra in timings])
    ctx.details.update(
        runs=runs,
        pandas_aiohttp_ms=round(deps * 1e3, 1),
        holysheep_extra_ms=round(extra * 1e3, 1),
        heaviest_modules=_heaviest_modules(),
    )
    return [
        Figure(
            "import holysheep_nb beyond pandas+aiohttp",
            extra / deps,
            at_most(MAX_EXTRA),
            note=f"{extra * 1e3:.0f} ms on top of {deps * 1e3:.0f} ms",
        )
    ]


def _timed_import() -> tuple[float, float]:
    done = subprocess.run(
        [sys.executable, "-c", _TIMED], capture_output=True, text=True, check=True, timeout=120
    )
    deps, extra = json.loads(done.stdout)
    return float(deps), float(extra)


def _heaviest_modules(count: int = 8) -> list[dict[str, object]]:
    """Modules imported by ``import holysheep_nb`` alone, by their own (self) time."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", _PROFILED],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    lines = [line for line in done.stderr.splitlines() if line.startswith("import time:")]
    # Lines come in the order imports finish: everything after the top-level aiohttp line
    # was imported by holysheep_nb.
    last_dep = max(i for i, line in enumerate(lines) if line.rstrip().endswith("| aiohttp"))
    modules = []
    for line in lines[last_dep + 1 :]:
        self_us, cumulative_us, name = (part.strip() for part in line.split(":", 1)[1].split("|"))
        modules.append(
            {
                "module": name,
                "self_ms": int(self_us) / 1e3,
                "cumulative_ms": int(cumulative_us) / 1e3,
            }
        )
    return sorted(modules, key=lambda m: -float(m["self_ms"]))[:count]  # type: ignore[arg-type]
