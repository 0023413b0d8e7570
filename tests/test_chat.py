"""The request side of the wire format: every body, however it is encoded, is the JSON the
API expects."""

from __future__ import annotations

import json
from typing import Any

import pytest

from holysheep_nb.chat import ChatRequest, EncodedParams, build_messages

RESPONSE_FORMAT = {"type": "json_object"}


@pytest.mark.parametrize(
    "messages",
    [
        build_messages("hi", None),
        build_messages("hi", "Be brief."),
        build_messages("naïve “quotes” \\ and \n lines", "Système: réponds en JSON"),
        (
            {"role": "system", "content": "a"},
            {"role": "assistant", "content": "b"},
            {"role": "user", "content": "c"},
        ),
        ({"role": "system", "content": "a", "name": "s"}, {"role": "user", "content": "c"}),
        (  # an image row: its content is a list of parts, encoded whole
            {"role": "system", "content": "a"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "c"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}},
                ],
            },
        ),
        ({"role": "system", "content": "a"}, {"role": "user", "content": "c", "name": "u"}),
    ],
)
@pytest.mark.parametrize("structured", [True, False])
def test_a_body_is_the_json_of_model_messages_and_params(
    messages: tuple[dict[str, str], ...], structured: bool
) -> None:
    params = EncodedParams({"temperature": 0, "response_format": RESPONSE_FORMAT})
    expected: dict[str, Any] = {"model": "m", "messages": list(messages), "temperature": 0}
    if structured:
        expected["response_format"] = RESPONSE_FORMAT
    for _ in range(2):  # the second time from what the run encoded once
        body = ChatRequest(messages, params).body("m", structured=structured)
        assert json.loads(body) == expected


def test_rows_of_one_run_share_the_encoded_head_but_keep_their_own_prompt() -> None:
    params = EncodedParams({})
    first = ChatRequest(build_messages("one", "S"), params).body("m")
    other_system = ChatRequest(build_messages("two", "T"), params).body("m")
    other_model = ChatRequest(build_messages("two", "S"), params).body("n")
    assert json.loads(first)["messages"] == [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "one"},
    ]
    assert json.loads(other_system)["messages"][0] == {"role": "system", "content": "T"}
    assert json.loads(other_model)["model"] == "n"
    assert json.loads(other_model)["messages"][1] == {"role": "user", "content": "two"}


def test_the_fallback_body_describes_the_format_in_its_own_system_message() -> None:
    params = EncodedParams({"response_format": RESPONSE_FORMAT})
    request = ChatRequest(build_messages("row", "Answer in JSON."), params, 0, "Answer in words.")
    assert json.loads(request.body("m", structured=True))["messages"][0]["content"] == (
        "Answer in JSON."
    )
    fallback = json.loads(request.body("m", structured=False))
    assert fallback["messages"] == [
        {"role": "system", "content": "Answer in words."},
        {"role": "user", "content": "row"},
    ]
    assert "response_format" not in fallback
