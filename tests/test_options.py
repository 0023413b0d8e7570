"""One declaration of the run options (docs/contract.md, "Options"): names, types, defaults,
docs and flags in one place, read by the accessors, the command line and the docs table."""

from __future__ import annotations

import inspect
import json
import re
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from aiohttp import web

from holysheep_nb import ConfigError, Endpoint, EngineSettings, Prices, RateLimits, RetryPolicy
from holysheep_nb.accessor import BatchCalls, HolySheepFrameAccessor, HolySheepSeriesAccessor
from holysheep_nb.commands import build_parser
from holysheep_nb.commands import main as command
from holysheep_nb.job_options import GROUP_OBJECTS, OPTION_GROUPS, JobOptions, options_table
from holysheep_nb.option import default_of, options_of
from holysheep_nb.request_params import RequestParams
from holysheep_nb.run_options import RunOptions

ROOT = Path(__file__).resolve().parents[1]
LOCAL = "http://127.0.0.1:9"  # nothing listens there; nothing is ever sent in these tests
#: The parameters issue 25 names, each with a value OpenAI documents for it.
OPENAI_PARAMS: dict[str, object] = {
    "temperature": 0.2,
    "top_p": 0.9,
    "max_tokens": 50,
    "max_completion_tokens": 60,
    "seed": 7,
    "stop": ["\n"],
    "logprobs": True,
    "top_logprobs": 2,
    "presence_penalty": 0.5,
    "frequency_penalty": -0.5,
    "logit_bias": {"50256": -100},
    "reasoning_effort": "low",
    "service_tier": "flex",
    "user": "u-1",
    "metadata": {"run": "a"},
    "store": False,
    "response_format": {"type": "json_object"},
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
}


def resolve(**options: Any) -> JobOptions:
    return JobOptions.from_kwargs(base_url=LOCAL, **options)


# --- unknown names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "closest"),
    [("max_concurent", "max_concurrent"), ("tempreature", "temperature"), ("timout", "timeout")],
)
def test_a_misspelt_option_names_the_closest_one_before_anything_is_sent(
    name: str, closest: str
) -> None:
    frame = pd.DataFrame({"text": ["a"]})
    with pytest.raises(ConfigError, match=f"did you mean {closest}\\?"):
        frame.holysheep.label("text", labels=["x", "y"], base_url=LOCAL, **{name: 4})


@pytest.mark.parametrize(
    ("call", "slip", "message"),
    [
        ("label", "lables", "label() needs labels=[...] (the label set): 'lables' is not an "
         "option, did you mean labels?"),
        ("extract", "shema", "extract() needs schema=... (a pydantic model, a dict of field "
         "types or a JSON Schema): 'shema' is not an option, did you mean schema?"),
        ("label", "max_concurrent", "label() needs labels=[...] (the label set)"),
    ],
)  # fmt: skip
async def test_a_misspelt_or_missing_labels_or_schema_is_named_before_anything_is_sent(
    call: str, slip: str, message: str
) -> None:
    """Python's TypeError for a missing keyword would not say that ``lables=`` was given."""
    frame = pd.DataFrame({"text": ["a"]})
    given = {slip: ["x", "y"] if slip != "max_concurrent" else 4}
    with pytest.raises(ConfigError) as info:
        getattr(frame.holysheep, call)("text", base_url=LOCAL, **given)
    assert str(info.value) == message
    with pytest.raises(ConfigError, match=rf"a{call}\(\) needs"):
        await getattr(frame.holysheep, f"a{call}")("text", base_url=LOCAL, **given)


@pytest.mark.parametrize(
    ("call", "arguments", "slip", "meant"),
    [
        ("label", {"labels": ["x", "y"]}, "instructons", "instructions"),
        ("label", {"labels": ["x", "y"]}, "structed", "structured"),
        ("extract", {"schema": {"a": str}}, "flaten", "flatten"),
        ("complete", {}, "templte", "template"),
    ],
)
async def test_a_misspelt_argument_of_the_call_is_named_as_that_argument(
    call: str, arguments: dict[str, Any], slip: str, meant: str
) -> None:
    """A slip of the method's own argument lands among the options; the message names the
    argument, not the closest option nor extra_body (where it does not belong)."""
    frame = pd.DataFrame({"text": ["a"]})
    message = f"unknown option {slip!r}: did you mean {meant}? (an argument of {call}())"
    with pytest.raises(ConfigError) as info:
        getattr(frame.holysheep, call)("text", base_url=LOCAL, **arguments, **{slip: "x"})
    assert str(info.value) == message
    with pytest.raises(ConfigError) as info:
        await getattr(frame.holysheep, f"a{call}")(
            "text", base_url=LOCAL, **arguments, **{slip: "x"}
        )
    assert str(info.value) == message
    with pytest.raises(ConfigError, match=re.escape(f"did you mean {meant}?")):
        getattr(frame.holysheep.batch, call)("text", base_url=LOCAL, **arguments, **{slip: "x"})


def test_a_slip_of_an_option_gets_no_extra_body_hint_a_lookalike_does() -> None:
    """A fresh user read "did you mean max_concurrent? (a provider's own parameter goes in
    extra_body={'max_concurent': 4})" as advice to send the slip to the provider."""
    for slip, meant in (("max_concurent", "max_concurrent"), ("temprature", "temperature")):
        with pytest.raises(ConfigError) as info:
            resolve(**{slip: 4})
        assert str(info.value) == f"unknown option {slip!r}: did you mean {meant}?"
    with pytest.raises(ConfigError) as info:
        resolve(max_output_tokens=100)  # Gemini's name: maybe max_tokens, maybe a provider's
    assert str(info.value) == (
        "unknown option 'max_output_tokens': did you mean max_tokens? If not, a provider's own "
        "parameter goes in extra_body={'max_output_tokens': 100}"
    )


def test_a_provider_parameter_is_told_to_go_in_extra_body() -> None:
    with pytest.raises(ConfigError, match=re.escape("extra_body={'top_k': 40}")):
        resolve(top_k=40)
    with pytest.raises(ConfigError, match=re.escape("extra_body={'frobnicate': 1}")):
        resolve(frobnicate=1)
    with pytest.raises(ConfigError, match="did you mean api_key") as info:
        resolve(api_kye="sk-secret-key-0123456789")
    assert "sk-secret" not in str(info.value)  # a misspelt key's value is the key
    assert resolve(extra_body={"top_k": 40}).params == {"top_k": 40}


@pytest.mark.parametrize("name", ["messages", "n"])
def test_reserved_body_keys_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="cannot be passed through"):
        resolve(**{name: 2})
    with pytest.raises(ConfigError, match="cannot be passed through"):
        resolve(extra_body={name: 2})


def test_the_openai_parameters_pass_through_by_name() -> None:
    assert dict(resolve(**OPENAI_PARAMS).params) == OPENAI_PARAMS


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"temperature": "hot"}, "temperature must be a number or None, got str 'hot'"),
        ({"temperature": True}, "temperature must be a number or None, got bool True"),
        ({"max_tokens": 1.5}, "max_tokens must be a whole number or None, got float 1.5"),
        ({"logprobs": 1}, "logprobs must be True or False or None, got int 1"),
        ({"stop": ["ok", 3]}, "stop must be a string or a list of (a string) or None"),
        ({"logit_bias": {"50256": "x"}}, "logit_bias must be a dict of a string to"),
        ({"metadata": "tag"}, "metadata must be a dict of a string to (a string) or None"),
    ],
)
def test_a_request_parameter_of_the_wrong_type_is_refused_before_sending(
    options: dict[str, Any], message: str
) -> None:
    frame = pd.DataFrame({"text": ["a"]})
    with pytest.raises(ConfigError, match=re.escape(message)):
        frame.holysheep.label("text", labels=["x", "y"], base_url=LOCAL, **options)


def test_a_request_parameter_of_its_declared_type_passes() -> None:
    given = {"temperature": 0, "top_p": 0.5, "stop": "\n", "logprobs": None,
             "tool_choice": {"type": "function", "function": {"name": "f"}}}  # fmt: skip
    assert dict(resolve(**given).params) == given
    # extra_body is the provider's: its values are not checked against OpenAI's types.
    assert resolve(extra_body={"temperature": "hot"}).params == {"temperature": "hot"}


def test_every_declared_request_parameter_is_one_openai_documents() -> None:
    openai_params = pytest.importorskip("openai.types.chat.completion_create_params")
    documented = set(openai_params.CompletionCreateParamsBase.__annotations__) | {"stream"}
    declared = {item.name for item in options_of(RequestParams)}
    extras = {"extra_body", "extra_headers", "extra_query"}
    assert declared - extras <= documented
    assert set(OPENAI_PARAMS) <= declared


async def test_options_reach_the_request_and_misspellings_never_do() -> None:
    bodies: list[dict[str, Any]] = []

    async def chat(request: web.Request) -> web.Response:
        bodies.append(await request.json())
        answer = {"role": "assistant", "content": "ok"}
        choice = {"index": 0, "message": answer, "finish_reason": "stop"}
        return web.json_response({"id": "x", "object": "chat.completion", "choices": [choice]})

    async with _serve(chat) as base_url:
        frame = pd.DataFrame({"text": ["a"]})
        out = await frame.holysheep.acomplete(
            "text", base_url=base_url, cache=False, progress=False, temperature=0,
            extra_body={"top_k": 40}, retry=RetryPolicy(max_retries=0),
        )  # fmt: skip
        with pytest.raises(ConfigError):
            await frame.holysheep.acomplete("text", base_url=base_url, max_concurent=4)
    assert out["response"].tolist() == ["ok"]
    assert len(bodies) == 1
    assert (bodies[0]["temperature"], bodies[0]["top_k"]) == (0, 40)
    assert "max_concurent" not in json.dumps(bodies)


class _serve:
    """A chat-completions server on 127.0.0.1 for one test: ``async with`` gives its URL."""

    def __init__(self, handler: Any) -> None:
        self.app = web.Application()
        self.app.router.add_post("/v1/chat/completions", handler)
        self.runner = web.AppRunner(self.app)

    async def __aenter__(self) -> str:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        return f"http://127.0.0.1:{port}/v1"

    async def __aexit__(self, *_: object) -> None:
        await self.runner.cleanup()


# --- policy objects as option values ------------------------------------------------------


def test_policy_objects_are_options_and_a_field_keyword_beats_them() -> None:
    policy = RetryPolicy(max_retries=2, initial_wait=0.1, max_wait=1.0)
    assert resolve(retry=policy).settings.retry == policy
    assert resolve(retry=policy, max_retries=0).settings.retry == RetryPolicy(
        max_retries=0, initial_wait=0.1, max_wait=1.0
    )
    limits = RateLimits(requests_per_minute=60)
    settings = EngineSettings(max_concurrent=3, limits=limits)
    resolved = resolve(settings=settings, tokens_per_minute=1000).settings
    assert (resolved.max_concurrent, resolved.limits.requests_per_minute) == (3, 60)
    assert resolved.limits.tokens_per_minute == 1000
    assert resolve(settings=settings, limits=RateLimits()).settings.limits == RateLimits()
    endpoint = Endpoint(base_url=LOCAL, model="m1")
    assert JobOptions.from_kwargs(endpoint=endpoint, model="m2").endpoint.model == "m2"
    assert resolve(prices=Prices(0.1, 0.2)).prices == Prices(0.1, 0.2)
    assert resolve(prices=(0.1, 0.2)).prices == Prices(0.1, 0.2)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"retry": 3}, "retry must be a RetryPolicy"),
        ({"limits": {"requests_per_minute": 60}}, "limits must be a RateLimits"),
        ({"prices": "cheap"}, "prices must be Prices"),
        ({"retry": RetryPolicy(), "max_retries": -1}, "max_retries must be a whole number"),
    ],
)
def test_a_wrong_policy_value_is_a_config_error(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve(**options)


# --- one declaration, read everywhere ------------------------------------------------------


def test_run_options_typed_dict_matches_the_declaration() -> None:
    from holysheep_nb import (
        batch,
        endpoint,
        image_files,
        image_options,
        job_options,
        policies,
        prices,
        request_params,
    )
    from holysheep_nb.fewshot import options as fewshot
    from holysheep_nb.fewshot.turns import ExampleTurns

    names = {**vars(job_options), **vars(request_params), **vars(policies), **vars(endpoint)}
    names.update(vars(fewshot), ExampleTurns=ExampleTurns)
    names.update(vars(image_options), ImageLimits=image_files.ImageLimits)
    names.update(vars(prices), BatchLimits=batch.BatchLimits, Any=Any, Mapping=Mapping)
    typed = typing.get_type_hints(RunOptions, localns=names)
    declared: dict[str, Any] = {}
    for _, group in OPTION_GROUPS:
        hints = typing.get_type_hints(group, localns=names)
        declared.update({item.name: hints[item.name] for item in options_of(group)})
    declared.update({name: kind for name, kind in GROUP_OBJECTS})
    declared["prices"] = Prices | tuple[float, float] | None  # the pair is resolved to Prices
    assert typed == declared


def test_the_docs_options_table_is_made_from_the_declaration() -> None:
    contract = (ROOT / "docs" / "contract.md").read_text(encoding="utf-8")
    assert options_table() in contract


def test_every_default_is_written_once() -> None:
    """No ``name=<default>`` or ``name: type = <default>`` outside the declaration's
    ``option(...)`` calls, in code or help text."""
    sources = {
        path: path.read_text(encoding="utf-8") for path in (ROOT / "holysheep_nb").rglob("*.py")
    }
    for _, group in OPTION_GROUPS:
        for item in options_of(group):
            default = default_of(item)
            if default is None or isinstance(default, (bool, dict)):
                continue
            written = re.compile(
                rf"\b{item.name}\b\s*(?::[^=\n]*)?=\s*{re.escape(repr(default))}(?![\w.])"
            )
            found = [str(path) for path, text in sources.items() if written.search(text)]
            assert found == [], f"{item.name}={default!r} written again in {found}"
    commands = (ROOT / "holysheep_nb" / "commands.py").read_text(encoding="utf-8")
    assert not re.search(r"\(default \d", commands)  # help defaults come from the fields


@pytest.mark.parametrize("name", ["label", "complete", "extract", "estimate"])
def test_every_option_with_a_flag_is_on_the_command_line(name: str) -> None:
    parser = build_parser(name)
    text = parser.format_help()
    for _, group in OPTION_GROUPS:
        for item in options_of(group):
            for flag in item.metadata["holysheep_flags"]:
                flag_name = (flag.names or (f"--{item.name.replace('_', '-')}",))[0]
                assert flag_name in text, flag_name
    required = {"label": ["--labels", "a,b"], "extract": ["--schema", "s.json"]}.get(name, [])
    out = [] if name == "estimate" else ["--out", "o.csv"]
    args = parser.parse_args(["in.csv", *required, *out, "--initial-wait", "0.1", "--rpm", "60"])
    assert (args.initial_wait, args.requests_per_minute) == (0.1, 60.0)
    assert not hasattr(args, "max_retries")  # not given: the declared default applies


def test_a_misspelt_param_on_the_command_line_names_the_closest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "in.csv"
    source.write_text("text\na\n", encoding="utf-8")
    argv = [str(source), "--column", "text", "--out", str(tmp_path / "o.csv"), "--base-url", LOCAL]
    assert command("complete", [*argv, "--param", "max_concurent=4"]) == 2
    assert "did you mean max_concurrent?" in capsys.readouterr().err
    assert command("label", [*argv, "--labels", "a,b", "--param", "multi=true"]) == 2
    assert "multi is an argument of label" in capsys.readouterr().err
    assert not (tmp_path / "o.csv").exists()


# --- one surface ----------------------------------------------------------------------------


@pytest.mark.parametrize("namespace", [HolySheepFrameAccessor, HolySheepSeriesAccessor, BatchCalls])
def test_every_call_has_one_return_type_and_typed_options(namespace: type) -> None:
    for name in ("complete", "label", "extract", "acomplete", "alabel", "aextract"):
        method = getattr(namespace, name)
        assert typing.get_overloads(method) == []
        signature = inspect.signature(method)
        assert "|" not in str(signature.return_annotation), (name, signature)
        assert signature.parameters["options"].annotation == "Unpack[RunOptions]"


def test_a_series_has_no_column_to_name() -> None:
    with pytest.raises(ConfigError, match="a Series has no columns"):
        pd.Series(["a"]).holysheep.complete("text", base_url=LOCAL)


def test_batch_is_the_accessor_s_never_a_body_parameter() -> None:
    assert "batch" not in resolve(batch=False, temperature=0).params
