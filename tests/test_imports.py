"""What importing the package loads, and that ``import holysheep_nb`` gives DataFrames ``.holysheep``.

Each case runs in a fresh interpreter: what is already imported in the test process says
nothing about what an import loads.
"""

from __future__ import annotations

import pytest

import holysheep_nb
from tests.fresh_python import fresh_python


def test_engine_and_server_import_without_pandas_numpy_or_tqdm() -> None:
    loaded = fresh_python(
        "import sys, holysheep_nb.engine, holysheep_nb.server\n"
        "print(sorted(m for m in ('pandas', 'numpy', 'tqdm') if m in sys.modules))\n"
    )
    assert loaded.strip() == "[]"


@pytest.mark.parametrize(
    "imports",
    [
        "import holysheep_nb\nimport pandas as pd",  # the package first: pandas later
        "import pandas as pd\nimport holysheep_nb",  # the usual order
        # A module of the package that itself imports pandas: the accessor is registered
        # in the middle of that import and must not need the half-imported module.
        "import holysheep_nb.job\nimport pandas as pd",
        "import holysheep_nb.accessor\nimport pandas as pd",
    ],
)
def test_import_holysheep_nb_registers_the_accessor(imports: str) -> None:
    out = fresh_python(
        f"{imports}\n"
        "frame = pd.DataFrame({'text': ['a']})\n"
        "print(type(frame.holysheep).__name__, type(frame.text.holysheep).__name__)\n"
    )
    assert out.split() == ["HolySheepFrameAccessor", "HolySheepSeriesAccessor"]


def test_the_public_names_load_on_first_access() -> None:
    for name in holysheep_nb.__all__:
        assert getattr(holysheep_nb, name) is not None
    assert set(holysheep_nb.__all__) <= set(dir(holysheep_nb))
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        holysheep_nb.nothing_here  # noqa: B018


def test_the_core_never_imports_dask() -> None:
    loaded = fresh_python(
        "import sys, pandas as pd, holysheep_nb\n"
        "pd.DataFrame({'text': ['a']}).holysheep\n"
        "print(sorted(m for m in ('dask', 'distributed') if m in sys.modules))\n"
    )
    assert loaded.strip() == "[]"
