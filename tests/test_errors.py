"""One error tree (docs/contract.md, "Bad input"): every exception and warning class the
package defines sits under ``HolySheepError`` / ``HolySheepWarning``, and ``errors.py``
draws each public one."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import warnings

import pytest

import holysheep_nb
from holysheep_nb import errors


def _package_classes() -> list[type]:
    found: list[type] = []
    for info in pkgutil.walk_packages(holysheep_nb.__path__, "holysheep_nb."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            # Private classes (``_Stopped``) are control flow inside one module.
            if (
                inspect.isclass(value)
                and value.__module__ == info.name
                and not name.startswith("_")
            ):
                found.append(value)
    return found


def test_every_exception_and_warning_is_in_the_tree() -> None:
    classes = _package_classes()
    exceptions = [c for c in classes if issubclass(c, BaseException)]
    assert len(exceptions) >= 10  # the walk found the package's classes
    for cls in exceptions:
        root = errors.HolySheepWarning if issubclass(cls, Warning) else errors.HolySheepError
        assert issubclass(cls, root), f"{cls.__module__}.{cls.__name__} is outside the tree"


def test_the_docstring_draws_every_public_error() -> None:
    drawn = errors.__doc__ or ""
    for name, value in vars(errors).items():
        if inspect.isclass(value) and issubclass(value, BaseException):
            assert name in drawn, name


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("holysheep_nb.files", "FileFormatError"),
        ("holysheep_nb.batch", "BatchError"),
        ("holysheep_nb.batch", "BatchUnavailableError"),
        ("holysheep_nb.batch.client", "BatchError"),
        ("holysheep_nb.cache", "CacheWarning"),
        ("holysheep_nb.cache.store", "CacheWarning"),
        ("holysheep_nb", "BatchError"),
    ],
)
def test_old_import_names_are_the_tree_s_classes(module: str, name: str) -> None:
    assert getattr(importlib.import_module(module), name) is getattr(errors, name)


def test_filtering_holysheep_warning_catches_the_cache_warning() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("ignore", errors.HolySheepWarning)
        warnings.warn("corrupt cache moved aside", errors.CacheWarning, stacklevel=1)
    assert caught == []
    assert issubclass(errors.BatchUnavailableError, errors.BatchError)
    assert errors.BatchError("x", status=404).status == 404
