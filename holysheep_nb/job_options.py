"""The run options: declared once, by concern, and resolved into one frozen ``JobOptions``.

Each option is a field of one of ``OPTION_GROUPS`` (``holysheep_nb.option`` says how a field
becomes an option). ``JobOptions.from_kwargs`` maps a call's keyword options onto them:

- a policy object stands for its whole group (``retry=RetryPolicy(...)``,
  ``limits=RateLimits(...)``, ``settings=EngineSettings(...)``, ``endpoint=Endpoint(...)``;
  ``prices=Prices(...)`` is an option of its own); a keyword naming one of its fields beats it
  (``retry=policy, max_retries=2``);
- the chat-completions parameters pass through by name (``RequestParams``); a provider's
  own go in ``extra_body``;
- any other name is a ``ConfigError`` naming the closest option, before anything is sent.

Everything is checked here: a bad option raises ``ConfigError`` naming the value and the fix.

Length: the groups are declared in their own modules; what is here is the one resolution of
a call's keywords (policies, their fields, request parameters, the closest-name error), which
must not be split between two places that could disagree.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from holysheep_nb.chat import RESERVED_PARAMS, Messages, build_messages, invalid_text
from holysheep_nb.endpoint import Endpoint
from holysheep_nb.errors import ConfigError
from holysheep_nb.fewshot.options import Shots
from holysheep_nb.image_options import ImageOptions
from holysheep_nb.option import (
    DOC,
    FLAGS,
    NO_FLAG,
    PARAM,
    Flag,
    default_text,
    example,
    option,
    options_of,
)
from holysheep_nb.policies import EngineSettings, RateLimits, RetryPolicy
from holysheep_nb.prices import Prices
from holysheep_nb.request_params import PROVIDER_PARAMS, RequestParams, check_types
from holysheep_nb.sampling import Votes
from holysheep_nb.validation import is_whole, require_whole_at_least

if TYPE_CHECKING:
    from holysheep_nb.batch import BatchLimits
    from holysheep_nb.fewshot.turns import ExampleTurns

CacheOption = bool | str | os.PathLike[str]


def _cache_file(text: str) -> str:
    """``--cache FILE``'s text: a path, never ``True``/``False`` (a file of that name is not
    what anyone typing it means)."""
    if text.strip().lower() in ("true", "false"):
        raise ValueError(
            f"--cache takes a file path, not {text!r}: answers are cached in the per-user "
            "cache by default; --no-cache turns the cache off"
        )
    return text


@dataclass(frozen=True)
class JobOptions:
    """Everything one ``complete()`` call needs besides the DataFrame: the endpoint, the
    engine's settings, the request's system message and body parameters, and how the run
    is prepared, kept and shown."""

    endpoint: Endpoint
    settings: EngineSettings = field(default_factory=EngineSettings)
    system: str | None = option(
        None, "system message before every prompt", flags=(Flag(metavar="TEXT"),)
    )
    params: Mapping[str, Any] = field(default_factory=dict)
    chunk_size: int = option(
        1000, "rows prepared at a time; memory stays flat", flags=(Flag(metavar="ROWS"),)
    )
    progress: bool = option(
        True,
        "the progress bar",
        flags=(Flag(("--no-progress",), const=False, help="no progress bar on the terminal"),),
    )
    cache: CacheOption = option(
        True,
        "answer cache: True (the default file), False, or a file path (see Cache and resume)",
        flags=(
            Flag(
                parse=_cache_file,
                metavar="FILE",
                help="the cache file (default: the per-user cache; see the 'cache info' command)",
            ),
            Flag(("--no-cache",), const=False, help="neither read nor store answers"),
        ),
    )
    prices: Prices | None = option(
        None,
        "USD per 1,000 input and output tokens: Prices(...) or a pair, for the cost",
        flags=(Flag(parse=Prices.parse, metavar="IN,OUT"),),
    )
    #: The call's few-shot examples as turns (set by the accessor from ``Shots``), or None.
    turns: ExampleTurns | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        system = self.system
        if system is not None and not isinstance(system, str):
            raise ConfigError(f"system must be a string or None, got {type(system).__name__}")
        if system is not None and (problem := invalid_text(system)):
            raise ConfigError(f"system {problem}")
        require_whole_at_least("chunk_size", self.chunk_size, 1, example(JobOptions, "chunk_size"))
        if not isinstance(self.progress, bool):
            raise ConfigError(f"progress must be True or False, got {self.progress!r}")
        if not isinstance(self.cache, (bool, str, os.PathLike)):
            raise ConfigError(
                f"cache must be True, False or a file path, got {type(self.cache).__name__}"
            )
        object.__setattr__(self, "prices", Prices.of(self.prices))

    def messages(self, prompt: str) -> Messages:
        """One row's messages: the system message, the few-shot turns chosen for this
        prompt (``turns``, see ``holysheep_nb.fewshot``), then the prompt."""
        if self.turns is None:
            return build_messages(prompt, self.system)
        return self.turns.messages(prompt, self.system)

    @classmethod
    def from_kwargs(cls, *, key_required: bool = True, **options: Any) -> JobOptions:
        """Resolve a call's keyword options (``docs/contract.md``, "Options").

        ``key_required=False`` for a run that sends nothing (the dry-run estimate): a missing
        API key is then no error. The openai client's ``extra_headers``, ``extra_query`` and
        ``extra_body`` mean what they mean there (headers, URL query, body fields), so they
        never land in the body by mistake. Raises ``ConfigError`` for an unknown name, a
        reserved parameter, or a value its option refuses.
        """
        check_names(options)
        given = dict(options)
        objects = {name: _group_object(given, name, kind) for name, kind in GROUP_OBJECTS}
        headers = {
            **_mapping("headers", given.pop("headers", None)),
            **_mapping("extra_headers", given.pop("extra_headers", None)),
        }
        query = _mapping("extra_query", given.pop("extra_query", None))
        body = _mapping("extra_body", given.pop("extra_body", None))
        endpoint = _endpoint(objects["endpoint"], given, headers, query, key_required)
        settings = objects["settings"] or EngineSettings()
        retry = _fill(objects["retry"] or settings.retry, given)
        limits = _fill(objects["limits"] or settings.limits, given)
        settings = _fill(dataclasses.replace(settings, retry=retry, limits=limits), given)
        own = {item.name: given.pop(item.name) for item in options_of(cls) if item.name in given}
        # What is left: request parameters, and the accessor's own ``batch`` (not the job's).
        params = {name: value for name, value in given.items() if name not in _SENDING}
        check_types(params)
        return cls(
            endpoint=endpoint,
            settings=settings,
            params=_checked_params({**params, **body}),
            **own,
        )

    @property
    def max_tokens(self) -> int | None:
        """The completion budget the request asks for, if any (for the token estimate)."""
        value = self.params.get("max_tokens", self.params.get("max_completion_tokens"))
        return value if is_whole(value) else None


@dataclass(frozen=True)
class Sending:
    """How the rows are sent: online through the engine, or through the Batch API."""

    batch: bool | BatchLimits = option(
        False, "True or a BatchLimits: through the provider's Batch API (see Batch)", flags=NO_FLAG
    )


#: Every group of run options, by concern, in the order the docs and ``--help`` show them.
OPTION_GROUPS: tuple[tuple[str, type], ...] = (
    ("endpoint", Endpoint),
    ("pace", EngineSettings),
    ("pace", RateLimits),
    ("retries", RetryPolicy),
    ("run, cache and cost", JobOptions),
    ("sending", Sending),
    ("few-shot examples", Shots),
    ("votes", Votes),
    ("images", ImageOptions),
    ("request parameters", RequestParams),
)
#: Options of the call itself, not of the request body: taken by the accessor.
_SENDING = frozenset(
    item.name for group in (Sending, Shots, Votes, ImageOptions) for item in options_of(group)
)
#: The policy objects that stand for a whole group when given as an option.
GROUP_OBJECTS: tuple[tuple[str, type], ...] = (
    ("endpoint", Endpoint),
    ("settings", EngineSettings),
    ("retry", RetryPolicy),
    ("limits", RateLimits),
)


def option_names() -> list[str]:
    """Every name a call takes as a run option, in declaration order."""
    names = [item.name for _, group in OPTION_GROUPS for item in options_of(group)]
    return names + [name for name, _ in GROUP_OBJECTS if name not in names]


#: How alike (``difflib``'s ratio) a name and the closest option are when the name is a slip
#: of it (``max_concurent``: 0.96, ``temprature``: 0.95, ``seeds``: 0.89, ``modle``: 0.80)
#: rather than a provider's own parameter that happens to look like one
#: (``max_output_tokens`` and ``max_tokens``: 0.74; ``user_id`` and ``user``: 0.73).
TYPO_RATIO = 0.8


def check_names(
    options: Mapping[str, object], arguments: Collection[str] = (), method: str = "the call"
) -> None:
    """Raise ``ConfigError`` for an option no group declares: a reserved body key, a
    provider's own parameter (to go in ``extra_body``) or a slip (the closest name).

    ``arguments`` are the names ``method`` takes besides the options (``labels``,
    ``instructions`` ...): a slip of one of them lands among the options too, and is named as
    the argument it was meant to be.
    """
    known = option_names()
    reserved = sorted(RESERVED_PARAMS.intersection(options).difference(known))
    if reserved:
        raise ConfigError(
            f"{', '.join(reserved)} cannot be passed through: holysheep_nb builds the messages "
            "from the rows and reads one answer per row (n=1)"
        )
    for name, value in options.items():
        if name in known:
            continue
        # Only a number is shown: a misspelt api_key's value is the key itself.
        shown = repr(value) if isinstance(value, (int, float)) else "..."
        hint = f"a provider's own parameter goes in extra_body={{{name!r}: {shown}}}"
        if name in PROVIDER_PARAMS:
            raise ConfigError(f"{name} is not an OpenAI chat-completions parameter: {hint}")
        close = difflib.get_close_matches(name, [*known, *arguments], n=1)
        if close and close[0] not in known:  # then it is one of the call's arguments
            raise ConfigError(
                f"unknown option {name!r}: did you mean {close[0]}? (an argument of {method})"
            )
        if close and difflib.SequenceMatcher(None, name, close[0]).ratio() >= TYPO_RATIO:
            # A letter missing or swapped: no hint that would send the slip to the provider.
            raise ConfigError(f"unknown option {name!r}: did you mean {close[0]}?")
        if close:
            raise ConfigError(f"unknown option {name!r}: did you mean {close[0]}? If not, {hint}")
        raise ConfigError(f"unknown option {name!r}: {hint}")


def options_table() -> str:
    """The options table of ``docs/contract.md`` ("Options"), made from the declaration."""
    rows = [
        "| option | concern | type | default | meaning | command line |",
        "|---|---|---|---|---|---|",
    ]
    for title, group in OPTION_GROUPS:
        for item in options_of(group):
            flags = [
                " / ".join(flag.names or (f"--{item.name.replace('_', '-')}",))
                for flag in item.metadata[FLAGS]
            ]
            if PARAM in item.metadata[FLAGS]:
                flags = [f"--param {item.name}=..."]
            cells = (
                f"`{item.name}`",
                title,
                f"`{item.type}`",
                f"`{default_text(item)}`",
                item.metadata[DOC],
                ", ".join(f"`{flag}`" for flag in flags) or "none",
            )
            rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    for name, kind in GROUP_OBJECTS:
        doc = f"the whole {kind.__name__} at once; an option naming one of its fields beats it"
        rows.append(f"| `{name}` | policy object | `{kind.__name__}` | `none` | {doc} | none |")
    return "\n".join(rows)


def _group_object(given: dict[str, Any], name: str, kind: type) -> Any:
    """The policy object given for ``name`` (and taken out of ``given``), or None."""
    value = given.pop(name, None)
    if value is None:
        return None
    if not isinstance(value, kind):
        raise ConfigError(
            f"{name} must be a {kind.__name__}, got {type(value).__name__}: pass e.g. "
            f"{name}={kind.__name__}(...), or its fields as keyword options"
        )
    return value


def _fill(policy: Any, given: dict[str, Any]) -> Any:
    """``policy`` with the fields ``given`` names (taken out of ``given``), validated."""
    fields = {
        item.name: given.pop(item.name) for item in options_of(type(policy)) if item.name in given
    }
    return dataclasses.replace(policy, **fields) if fields else policy


def _endpoint(
    endpoint: Endpoint | None,
    given: dict[str, Any],
    headers: dict[str, Any],
    query: dict[str, Any],
    key_required: bool,
) -> Endpoint:
    if endpoint is not None:
        endpoint = _fill(endpoint, given)
        extra = {"headers": {**endpoint.headers, **headers}} if headers else {}
        if query:
            extra["query"] = {**endpoint.query, **query}
        return dataclasses.replace(endpoint, **extra) if extra else endpoint
    fields = {
        item.name: given.pop(item.name) for item in options_of(Endpoint) if item.name in given
    }
    return Endpoint.resolve(**fields, headers=headers, query=query, key_required=key_required)


def _mapping(name: str, value: object) -> dict[str, Any]:
    """An optional dict option (None means empty), or a ``ConfigError`` naming it."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{name} must be a dict, got {type(value).__name__}")
    return dict(value)


def _checked_params(params: dict[str, Any]) -> dict[str, Any]:
    reserved = sorted(RESERVED_PARAMS.intersection(params))
    if reserved:
        raise ConfigError(
            f"{', '.join(reserved)} cannot be passed through: holysheep_nb sets the model with "
            "model=..., builds the messages from the rows, and reads one answer per row"
        )
    try:
        encoded = json.dumps(params, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"request parameters must be JSON values: {exc}") from None
    if problem := invalid_text(encoded):  # the body is sent as UTF-8, as written
        raise ConfigError(f"request parameters: the text {problem}")
    return params
