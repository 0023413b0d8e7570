"""The calls every ``holysheep`` namespace has, typed once: ``complete``, ``label``, ``extract``.

``Calls[Out]`` holds their signatures and docs; a namespace says only how it runs one
``Call`` and what it returns: the pandas accessors a DataFrame (``accessor``), their
``batch`` namespace a ``BatchHandle``, the Dask accessors a lazy Dask DataFrame
(``dask.accessor``). ``AsyncCalls[Out]`` adds the ``await``-able twins, ``Estimates`` the
dry run (``estimate``). The run options are ``**options: Unpack[RunOptions]`` (declared in
``job_options``), so an IDE completes them and a type checker knows each one's type.
Nothing here imports pandas.
"""

from __future__ import annotations

import difflib
import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from holysheep_nb.errors import ConfigError
from holysheep_nb.estimate import DEFAULT_LATENCY

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from holysheep_nb.estimate import Estimate
    from holysheep_nb.run_options import RunOptions

Out = TypeVar("Out")
Method = Literal["complete", "label", "extract"]


@dataclass(frozen=True)
class Call:
    """One call: its method, the prompt column (or a template) and the method's own
    arguments (``labels``, ``instructions``, ``multi``, ``schema`` ...), options apart."""

    method: Method
    column: Hashable | None = None
    template: str | None = None
    arguments: Mapping[str, Any] = field(default_factory=dict)

    def keywords(self) -> dict[str, Any]:
        """The method's keyword arguments as the public call takes them."""
        return {"template": self.template, **self.arguments}


class _Required:
    def __repr__(self) -> str:
        return "<required>"


#: The default of an argument a call cannot go without (``labels``, ``schema``): left out,
#: or misspelt into the run options, it is a ``ConfigError`` that names the slip (Python's
#: own ``TypeError`` for a missing keyword would not say that ``lables=`` was given).
REQUIRED: Any = _Required()


def needed(method: str, name: str, value: Any, options: Mapping[str, object]) -> Any:
    """``value``, or ``ConfigError`` when ``name`` was not given to ``method``."""
    if value is not REQUIRED:
        return value
    close = difflib.get_close_matches(name, list(options), n=1)
    slip = f": {close[0]!r} is not an option, did you mean {name}?" if close else ""
    raise ConfigError(f"{method}() needs {name}={_WHAT[name]}{slip}")


def checked(
    call: Call, options: Mapping[str, object], *, by: Callable[..., object] | None = None
) -> dict[str, Any]:
    """The call's run ``options``, every name checked: ``ConfigError`` for one no option
    declares, naming the closest option or argument of the call (``job_options.check_names``);
    of the method ``by`` when it is not the call's own (``estimate``).
    """
    from holysheep_nb.job_options import check_names

    current = {name: value for name, value in options.items() if name not in _DEPRECATED}
    if by is None:
        check_names(current, ["column", *call.keywords()], f"{call.method}()")
    else:
        named = [
            p.name for p in inspect.signature(by).parameters.values() if p.kind is p.KEYWORD_ONLY
        ]
        check_names(current, ["column", *named], f"{by.__name__}()")
    return dict(options)


#: Names still taken, with a ``DeprecationWarning``, by the accessor (``submit_only=True``:
#: ``df.holysheep.batch`` now).
_DEPRECATED = frozenset({"submit_only"})


_WHAT = {
    "labels": "[...] (the label set)",
    "schema": "... (a pydantic model, a dict of field types or a JSON Schema)",
}


def label_call(
    column: Hashable | None,
    labels: Sequence[str],
    instructions: str | None,
    multi: bool,
    structured: bool,
    template: str | None,
) -> Call:
    arguments = {
        # A string is left whole for the label set to refuse (as list, its letters were labels).
        "labels": labels if isinstance(labels, (str, bytes)) else list(labels),
        "instructions": instructions,
        "multi": multi,
        "structured": structured,
    }
    return Call("label", column, template, arguments)


def extract_call(
    column: Hashable | None,
    schema: object,
    instructions: str | None,
    flatten: bool,
    structured: bool,
    template: str | None,
) -> Call:
    arguments = {
        "schema": schema,
        "instructions": instructions,
        "flatten": flatten,
        "structured": structured,
    }
    return Call("extract", column, template, arguments)


class Calls(ABC, Generic[Out]):
    """``complete``, ``label`` and ``extract``, each returning ``Out``."""

    @abstractmethod
    def _call(self, call: Call, options: dict[str, Any]) -> Out:
        """Run ``call`` with the run ``options`` (not yet checked)."""

    def complete(
        self,
        column: Hashable | None = None,
        *,
        template: str | None = None,
        **options: Unpack[RunOptions],
    ) -> Out:
        """Answer every row; the result has ``response``, ``error``, ``latency`` ...

        ``column`` holds the prompts, or ``template="... {col} ..."`` builds them from
        columns (a Series: its values are the prompts, no column). Options: every keyword of
        ``RunOptions`` (``docs/contract.md``, "Options"): the endpoint (model, base_url,
        api_key ...), limits, retries, cache, progress, prices, and the chat-completions
        parameters by name (temperature, max_tokens, ...); a provider's own in
        ``extra_body={...}``. An unknown name raises ``ConfigError`` naming the closest
        option, before anything is sent. Result columns and failure kinds:
        ``docs/contract.md``.

        ``batch=True`` sends the rows through the provider's Batch API instead (about half
        the price, answers within 24 hours; ``BatchLimits(...)`` for a provider with smaller
        per-batch limits) and waits for it; ``df.holysheep.batch.complete(...)`` submits and
        returns a ``BatchHandle`` at once. Raises ``BatchUnavailableError`` when the provider
        has no Batch API (nothing charged). See ``docs/contract.md``, "Batch".
        """
        call = Call("complete", column, template)
        return self._call(call, checked(call, options))

    def label(
        self,
        column: Hashable | None = None,
        *,
        labels: Sequence[str] = REQUIRED,
        instructions: str | None = None,
        multi: bool = False,
        structured: bool = True,
        template: str | None = None,
        **options: Unpack[RunOptions],
    ) -> Out:
        """Give every row one label of ``labels`` (several with ``multi=True``).

        Returns ``complete()``'s result plus a ``label`` column (a Categorical over
        ``labels``; lists with ``multi=True``) before ``response``, the raw answer. An answer
        outside the set leaves the label missing and says ``not in label set: '...'`` in
        ``error``. ``instructions`` say what the labels mean; ``structured=False`` drops the
        JSON-schema ``response_format`` for servers that reject it. Options as ``complete``.

        With ``logprobs=True`` (a chat-completions parameter) a ``confidence`` column (float,
        0..1) follows the label: the probability the model gave its label, the product of
        ``exp(logprob)`` over the tokens that spell it (OpenAI's cookbook "Using logprobs").
        It is the model's own probability, not a calibrated accuracy, and NaN when the server
        sends no logprobs and when the answer does not spell the label out (see
        ``ConfidentLabels``). The cache keeps the logprobs: a row answered from it has its
        confidence too.
        """
        labels = needed("label", "labels", labels, options)
        call = label_call(column, labels, instructions, multi, structured, template)
        return self._call(call, checked(call, options))

    def extract(
        self,
        column: Hashable | None = None,
        *,
        schema: object = REQUIRED,
        instructions: str | None = None,
        template: str | None = None,
        flatten: bool = True,
        structured: bool = True,
        **options: Unpack[RunOptions],
    ) -> Out:
        """Pull the fields of ``schema`` out of every row, into typed columns.

        ``schema`` is a pydantic model class, a dict of field name to type (``{"product":
        str, "stars": int | None, "tone": Literal["warm", "cold"]}``) or a JSON Schema with
        an object at the top. Returns ``complete()``'s result with one column per top-level
        field before ``response`` (the raw answer): ``string``, ``Int64``, ``Float64``,
        ``boolean``, ``category`` for a Literal or Enum, ``object`` for lists and nested
        objects (as dicts). A field named like a column of the frame goes to ``<field>_2``
        (``_3``, ...), never over it. ``flatten=False`` gives one ``extracted`` column of
        dicts instead.

        Requests carry a strict ``json_schema`` ``response_format``; once a server rejects
        it, the rest of the run describes the schema in the system message instead (with a
        notice), and ``structured=False`` does so from the start. The JSON object is read
        from the answer as plain JSON, a fenced block or after prose, past any
        ``<think>...</think>``, and validated in pydantic's strict mode: nothing is coerced.
        A row whose answer does not fit has every field missing and ``error`` names each
        field and why (``answer does not fit the schema: stars: not an integer ('five')``);
        the report counts failures per field. A key the schema does not name is refused for
        a dict of types, follows ``additionalProperties`` for a JSON Schema and the model's
        own ``extra`` setting for a pydantic model (pydantic's default drops it); an
        optional field may be null or left out (strict mode has no optional properties,
        so the request asks for it as nullable). Raises ``ConfigError`` for a schema it cannot
        use. Options as ``complete``.
        """
        schema = needed("extract", "schema", schema, options)
        call = extract_call(column, schema, instructions, flatten, structured, template)
        return self._call(call, checked(call, options))


class Estimates(ABC):
    """``estimate``: what a call would send, take and cost, with nothing sent."""

    @abstractmethod
    def _estimate(
        self, call: Call, options: dict[str, Any], *, latency: float, output_tokens: int | None
    ) -> Estimate:
        """The estimate of ``call`` with the run ``options`` (checked)."""

    def estimate(
        self,
        column: Hashable | None = None,
        *,
        template: str | None = None,
        labels: Sequence[str] | None = None,
        schema: object = None,
        instructions: str | None = None,
        multi: bool = False,
        structured: bool = True,
        latency: float = DEFAULT_LATENCY,
        output_tokens: int | None = None,
        **options: Unpack[RunOptions],
    ) -> Estimate:
        """What ``complete()`` (``label()`` with ``labels=``, ``extract()`` with ``schema=``)
        would send, take and cost.

        Sends nothing. Counts rows to send after cache hits and missing prompts, estimates
        input tokens, the time under the given limits and concurrency (``latency`` seconds a
        request assumed), and the cost when ``prices`` are given. Output tokens come from
        ``output_tokens`` per row, the label set or schema, or ``max_tokens``.
        ``batch=True``: what ``batch=True`` would cost (the batch price,
        ``Prices.batch_discount``) and take (up to the Batch API's 24 h window). On a Dask
        collection every partition is read once, where it lives, and the limits hold for
        the whole cluster (``Estimate.combine``). Raises ``ConfigError`` for bad options,
        before any row is read.
        """
        if labels is not None and schema is not None:
            raise ConfigError("pass labels= (for label()) or schema= (for extract()), not both")
        call = Call("complete", column, template)
        if labels is not None:
            call = label_call(column, labels, instructions, multi, structured, template)
        elif schema is not None:
            call = extract_call(column, schema, instructions, True, structured, template)
        given = checked(call, options, by=Estimates.estimate)
        return self._estimate(call, given, latency=latency, output_tokens=output_tokens)


class AsyncCalls(ABC, Generic[Out]):
    """``acomplete``, ``alabel`` and ``aextract``: the calls for ``await`` in a notebook cell
    or async code, in the caller's event loop, without patching it."""

    @abstractmethod
    async def _acall(self, call: Call, options: dict[str, Any]) -> Out:
        """Run ``call`` with the run ``options`` in the running loop."""

    async def acomplete(
        self,
        column: Hashable | None = None,
        *,
        template: str | None = None,
        **options: Unpack[RunOptions],
    ) -> Out:
        """``complete`` for ``await``."""
        call = Call("complete", column, template)
        return await self._acall(call, checked(call, options))

    async def alabel(
        self,
        column: Hashable | None = None,
        *,
        labels: Sequence[str] = REQUIRED,
        instructions: str | None = None,
        multi: bool = False,
        structured: bool = True,
        template: str | None = None,
        **options: Unpack[RunOptions],
    ) -> Out:
        """``label`` for ``await``."""
        labels = needed("alabel", "labels", labels, options)
        call = label_call(column, labels, instructions, multi, structured, template)
        return await self._acall(call, checked(call, options))

    async def aextract(
        self,
        column: Hashable | None = None,
        *,
        schema: object = REQUIRED,
        instructions: str | None = None,
        template: str | None = None,
        flatten: bool = True,
        structured: bool = True,
        **options: Unpack[RunOptions],
    ) -> Out:
        """``extract`` for ``await``."""
        schema = needed("aextract", "schema", schema, options)
        call = extract_call(column, schema, instructions, flatten, structured, template)
        return await self._acall(call, checked(call, options))
