"""Run a function once a module has been imported, now or whenever that happens later.

Python has no post-import hook of its own (PEP 369 proposed one and was withdrawn); this is
the usual stand-in, the one ``wrapt.when_imported`` provides: a one-shot finder at the front
of ``sys.meta_path`` that lets the normal machinery find the module, and runs the callback
right after the module's code has run. The finder removes itself on first use, and the
module keeps its real loader, so nothing else ever sees the wrapper.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import sys
import warnings
from collections.abc import Callable, Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

from holysheep_nb.errors import HolySheepWarning


def when_imported(name: str, callback: Callable[[], None]) -> None:
    """Call ``callback()`` now if top-level module ``name`` is imported, else right after it is.

    An exception in ``callback`` becomes a ``HolySheepWarning``: the import it rides on (the
    user's ``import pandas``) must not fail because of it.
    """
    if name in sys.modules:
        callback()
    else:
        sys.meta_path.insert(0, _Finder(name, callback))


class _Finder(importlib.abc.MetaPathFinder):
    def __init__(self, name: str, callback: Callable[[], None]) -> None:
        self._name = name
        self._callback = callback

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        if fullname != self._name:
            return None
        # One shot: off the path first, so the search below does not come back here.
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _Loader(spec.loader, self._callback)
        return spec


class _Loader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader, callback: Callable[[], None]) -> None:
        self._loader = loader
        self._callback = callback

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        # Give the module its real loader back before its code runs (resources, source).
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        self._loader.exec_module(module)
        try:
            self._callback()
        except Exception as exc:  # reported, never raised into the import
            warnings.warn(
                f"after importing {module.__name__}: {type(exc).__name__}: {exc}",
                HolySheepWarning,
                stacklevel=2,
            )
