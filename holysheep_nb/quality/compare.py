"""``compare()``: run variants of one ``label()`` call on the same rows, then compare them.

Each variant is a dict of what it changes: any argument of ``label()`` (``labels``,
``instructions``, ``template``, ``multi``, ``structured``; few-shot examples once
``label()`` takes them) or any run option (``model``, ``system``, ``temperature``,
``prices``, limits, cache ...), on top of what the ``compare()`` call itself passes. Every
variant is checked (and its job built) before anything is sent; a bad one is a
``ConfigError``. The variants then run one after another through the normal path (cache,
repeats, limits, retries), all on one progress bar (``progress.SharedProgress``). The
result frames go to ``Comparison.of`` (the statistics are ``compare_stats``); a
``project_to`` frame is planned after the runs, as ``estimate()`` plans it, so the rows
the sample put in the cache count as cache hits.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from holysheep_nb.errors import ConfigError, RunStoppedError
from holysheep_nb.job_options import check_names
from holysheep_nb.namespace import Call, Calls
from holysheep_nb.progress import SharedProgress
from holysheep_nb.quality.compare_stats import ALPHA
from holysheep_nb.quality.comparison import Comparison
from holysheep_nb.quality.frames import aligned
from holysheep_nb.quality.intervals import LEVEL

if TYPE_CHECKING:
    from holysheep_nb.job import CompletionJob

#: Builds the job of ``call`` on a frame: ``(frame, call, options, sending)`` (the accessor's).
MakeJob = Callable[[pd.DataFrame, Call, dict[str, Any], bool], "CompletionJob"]

#: ``label()``'s own arguments, read from its signature so a new one is a variant key at once.
CALL_ARGUMENTS = frozenset(
    name
    for name, parameter in inspect.signature(Calls.label).parameters.items()
    if parameter.kind is inspect.Parameter.KEYWORD_ONLY
)
_DEFAULTS: dict[str, Any] = {"instructions": None, "multi": False, "structured": True}
#: What only the whole comparison can set: one bar, and the sample runs online.
_WHOLE_ONLY = {
    "progress": "one progress bar shows every variant: pass progress= to compare() itself",
    "batch": "the sample runs online; pass batch=True to compare() to price project_to at the "
    "Batch API's discount",
}


@dataclass(frozen=True)
class Variant:
    """One variant ready to run: its name, its ``label()`` call and its run options."""

    name: str
    call: Call
    options: dict[str, Any]


@dataclass(frozen=True)
class VariantRuns:
    """The variants of one comparison, checked and built, ready to ``run()``."""

    frame: pd.DataFrame
    variants: tuple[Variant, ...]
    jobs: tuple[CompletionJob, ...]
    make_job: MakeJob
    gold: Hashable | pd.Series | None
    project_to: pd.DataFrame | int | None
    batch: bool
    progress: bool
    level: float
    alpha: float

    @classmethod
    def plan(
        cls,
        frame: pd.DataFrame,
        column: Hashable | None,
        variants: object,
        options: Mapping[str, Any],
        *,
        make_job: MakeJob,
    ) -> VariantRuns:
        """Check every variant and build its job; raises ``ConfigError`` before anything is
        sent (bad variants, bad options, a missing gold column, a bad ``project_to``)."""
        given = dict(options)
        gold = given.pop("gold", None)
        project_to = given.pop("project_to", None)
        batch = given.pop("batch", False)
        progress = given.pop("progress", True)
        level = given.pop("level", LEVEL)
        alpha = given.pop("alpha", ALPHA)
        if not isinstance(batch, bool):
            raise ConfigError(f"compare(batch=...) must be True or False, got {batch!r}")
        if not isinstance(progress, bool):
            raise ConfigError(f"progress must be True or False, got {progress!r}")
        if gold is not None:
            aligned(frame, gold, "gold")
        _check_project_to(project_to)
        built = _variants(column, variants, given)
        jobs = tuple(make_job(frame, v.call, dict(v.options), True) for v in built)
        if isinstance(project_to, pd.DataFrame):  # its columns are checked now, planned later
            for v in built:
                make_job(project_to, v.call, dict(v.options), False)
        return cls(frame, built, jobs, make_job, gold, project_to, batch, progress, level, alpha)

    async def run(self) -> Comparison:
        """Run every variant in turn on one bar, then compare the result frames.

        A variant whose run stopped as a whole (a refused key, an unknown model) stops the
        comparison at once with a ``RunStoppedError`` naming it: its rows would all count as
        wrong. Answers already received stay in the cache, so the same call again sends only
        what is missing.
        """
        total = len(self.frame) * len(self.jobs)
        bar = SharedProgress(total, enabled=self.progress)
        results: dict[str, pd.DataFrame] = {}
        try:
            for variant, job in self._built():
                job.progress = bar.part(variant.name)
                out = results[variant.name] = await job.run()
                _check_finished(variant.name, out)
        finally:
            bar.close()
        return Comparison.of(
            results,
            gold=self.gold,
            project_to=self._projected_rows(),
            prices={v.name: job.options.prices for v, job in self._built()},
            batch=self.batch,
            level=self.level,
            alpha=self.alpha,
        )

    def _built(self) -> zip[tuple[Variant, CompletionJob]]:
        return zip(self.variants, self.jobs, strict=True)

    def _projected_rows(self) -> int | dict[str, int] | None:
        """Rows each variant would send on ``project_to``: after cache hits and repeats
        (``estimate()``'s ``to_send``) for a frame, or the count given."""
        target = self.project_to
        if not isinstance(target, pd.DataFrame):
            return target
        return {
            v.name: self.make_job(target, v.call, dict(v.options), False).plan().to_send
            for v in self.variants
        }


def _check_finished(name: str, out: pd.DataFrame) -> None:
    """Raise ``RunStoppedError`` when the variant's run stopped before its end."""
    report = out.holysheep.report()
    if report.stop is not None:
        raise RunStoppedError(
            f"compare() stopped at variant {name!r}, whose run stopped: {report.stop}"
        )


def _check_project_to(project_to: object) -> None:
    if project_to is None or isinstance(project_to, pd.DataFrame):
        return
    if isinstance(project_to, bool) or not isinstance(project_to, int) or project_to < 0:
        raise ConfigError(
            f"project_to must be a DataFrame (the frame you would label) or a row count >= 0, "
            f"got {project_to!r}"
        )


def _variants(
    column: Hashable | None, variants: object, shared: dict[str, Any]
) -> tuple[Variant, ...]:
    if not isinstance(variants, Mapping):
        raise ConfigError(
            "variants must be a dict of name -> what the variant changes, e.g. "
            "{'small': {'model': 'sim-small'}, 'large': {'model': 'sim-large'}}, "
            f"got {type(variants).__name__}"
        )
    if len(variants) < 2:
        raise ConfigError(f"compare needs at least two variants, got {len(variants)}")
    arguments = {name: shared.pop(name) for name in list(shared) if name in CALL_ARGUMENTS}
    check_names(shared)
    built = []
    for name, spec in variants.items():
        if not isinstance(name, str) or not name:
            raise ConfigError(f"a variant's name must be a non-empty string, got {name!r}")
        if not isinstance(spec, Mapping):
            raise ConfigError(
                f"variant {name!r} must be a dict of what it changes (e.g. "
                f"{{'model': 'sim-large'}}, {{}} for the call as given), got {type(spec).__name__}"
            )
        built.append(_variant(name, column, {**arguments}, dict(shared), dict(spec)))
    return tuple(built)


def _variant(
    name: str,
    column: Hashable | None,
    arguments: dict[str, Any],
    options: dict[str, Any],
    spec: dict[str, Any],
) -> Variant:
    for key in spec:
        if key in _WHOLE_ONLY:
            raise ConfigError(f"variant {name!r} sets {key}: {_WHOLE_ONLY[key]}")
    own = {key: spec.pop(key) for key in list(spec) if key in CALL_ARGUMENTS}
    try:
        check_names(spec)
    except ConfigError as exc:
        raise ConfigError(f"variant {name!r}: {exc}") from None
    arguments = {**_DEFAULTS, **arguments, **own}
    labels = arguments.get("labels")
    if labels is None:
        raise ConfigError(f"variant {name!r} has no labels: pass labels=[...] to compare()")
    if isinstance(labels, str) or not all(isinstance(label, str) for label in labels):
        raise ConfigError(f"variant {name!r}: labels must be a list of strings, got {labels!r}")
    arguments["labels"] = list(labels)
    template = arguments.pop("template", None)
    # A variant's template builds its prompts from the columns instead of the prompt column.
    call = Call("label", None if template is not None else column, template, arguments)
    return Variant(name, call, {**options, **spec})
