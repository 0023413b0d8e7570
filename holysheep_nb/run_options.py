"""``RunOptions``: the run options as a ``TypedDict``, so that an IDE completes them.

The accessor methods take ``**options: Unpack[RunOptions]``. The options themselves are
declared once, as fields of ``job_options.OPTION_GROUPS`` (defaults and docs are there);
this class only repeats their names and types for static type checkers, and
``tests/test_options.py`` checks that it matches the declaration name for name and type for
type. Nothing here is read at run time.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable, Mapping
from typing import TYPE_CHECKING, Any, TypedDict

if TYPE_CHECKING:
    from holysheep_nb.batch import BatchLimits
    from holysheep_nb.endpoint import Endpoint
    from holysheep_nb.fewshot.options import Select
    from holysheep_nb.image_files import ImageLimits
    from holysheep_nb.image_options import Detail
    from holysheep_nb.policies import EngineSettings, RateLimits, RetryPolicy
    from holysheep_nb.prices import Prices


class RunOptions(TypedDict, total=False):
    """Every keyword option of ``complete``, ``label``, ``extract`` and ``estimate``, on
    pandas and Dask alike; see ``docs/contract.md``, "Options"."""

    # Endpoint
    base_url: str
    model: str
    api_key: str | None
    verify: bool | str
    api_version: str | None
    headers: Mapping[str, str]
    azure_ad_token: str | None
    azure_ad_token_provider: Callable[[], str] | None
    # JobOptions
    system: str | None
    chunk_size: int
    progress: bool
    cache: bool | str | os.PathLike[str]
    prices: Prices | tuple[float, float] | None
    # EngineSettings
    max_concurrent: int
    timeout: float
    # RateLimits
    requests_per_minute: float | None
    tokens_per_minute: float | None
    request_burst: float | None
    token_burst: float | None
    # RetryPolicy
    max_retries: int
    initial_wait: float
    max_wait: float
    max_retry_after: float
    # Sending
    batch: bool | BatchLimits
    # Shots
    examples: Any
    k: int | None
    select: Select
    example_columns: tuple[str, str]
    embedding_model: str | None
    # Votes
    votes: int | None
    # Images
    images: Hashable | list[Hashable] | None
    image_detail: Detail | None
    image_limits: ImageLimits
    # RequestParams
    temperature: float | None
    top_p: float | None
    max_tokens: int | None
    max_completion_tokens: int | None
    seed: int | None
    stop: str | list[str] | None
    logprobs: bool | None
    top_logprobs: int | None
    presence_penalty: float | None
    frequency_penalty: float | None
    logit_bias: dict[str, int] | None
    reasoning_effort: str | None
    service_tier: str | None
    user: str | None
    safety_identifier: str | None
    prompt_cache_key: str | None
    metadata: dict[str, str] | None
    store: bool | None
    response_format: dict[str, Any] | None
    tools: list[dict[str, Any]] | None
    tool_choice: str | dict[str, Any] | None
    parallel_tool_calls: bool | None
    stream: bool | None
    stream_options: dict[str, Any] | None
    modalities: list[str] | None
    audio: dict[str, Any] | None
    prediction: dict[str, Any] | None
    verbosity: str | None
    web_search_options: dict[str, Any] | None
    extra_body: Mapping[str, Any] | None
    extra_headers: Mapping[str, str] | None
    extra_query: Mapping[str, str] | None
    # policy objects standing for their whole group
    endpoint: Endpoint
    settings: EngineSettings
    retry: RetryPolicy
    limits: RateLimits
