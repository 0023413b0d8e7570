"""Image content parts on the local server: the official ``openai`` client sends them, bad
shapes get OpenAI's 400s, and the simulated answer follows the image (its colour), online and
through the Batch API, for ``label``, ``extract`` and ``complete``. Every request goes to a
server on 127.0.0.1 that the test starts."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import openai
import pandas as pd
import pytest
from PIL import Image
from pydantic import BaseModel

import holysheep_nb  # noqa: F401 - registers the accessor
from holysheep_nb.server import LocalServer, ServerConfig
from holysheep_nb.server.images import describe_image, dominant_colour
from tests.openai_clients import connect

COLOURS = {"red": (255, 0, 0), "green": (0, 160, 0), "blue": (0, 0, 255)}
LABELS = list(COLOURS)


def png(colour: tuple[int, int, int], mode: str = "RGB", size: tuple[int, int] = (8, 8)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).convert(mode).save(buffer, format="PNG")
    return buffer.getvalue()


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with LocalServer(ServerConfig(batch_polls=1)) as running:
        yield running


@pytest.fixture
def client(server: LocalServer) -> Iterator[openai.OpenAI]:
    with connect(server.base_url) as opened:
        yield opened


@pytest.fixture
def photos(tmp_path: Path) -> pd.DataFrame:
    """Rows of red, green and blue 8x8 PNGs by path, twice over in another order."""
    paths = {}
    for name, colour in COLOURS.items():
        paths[name] = tmp_path / f"{name}.png"
        paths[name].write_bytes(png(colour))
    order = ["red", "green", "blue", "blue", "red", "green"]
    return pd.DataFrame({"truth": order, "photo": [str(paths[name]) for name in order]})


# --- the official client -------------------------------------------------------------------


def test_the_openai_client_sends_an_image_and_the_answer_is_its_colour(
    client: openai.OpenAI,
) -> None:
    for name, colour in COLOURS.items():
        answer = client.chat.completions.create(
            model="gpt-4o",
            messages=[
                {"role": "system", "content": "Labels: red, green, blue"},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Which colour is this?"},
                        {
                            "type": "image_url",
                            "image_url": {"url": data_url(png(colour)), "detail": "low"},
                        },
                    ],
                },
            ],
        )
        assert answer.choices[0].message.content == name


@pytest.mark.parametrize(
    ("content", "param", "code"),
    [
        ([], "messages[0].content", "empty_array"),
        ([{"type": "picture"}], "messages[0].content[0].type", "invalid_value"),
        ([{"type": "text"}], "messages[0].content[0].text", "missing_required_parameter"),
        ([{"type": "image_url"}], "messages[0].content[0].image_url", "missing_required_parameter"),
        ([{"type": "image_url", "image_url": {"url": 5}}], "messages[0].content[0].image_url.url",
         "invalid_type"),
        ([{"type": "image_url", "image_url": {"url": "photo.png"}}],
         "messages[0].content[0].image_url.url", "invalid_value"),
        ([{"type": "image_url", "image_url": {"url": "data:image/png;base64,aGVsbG8="}}],
         "messages[0].content[0].image_url.url", "invalid_image_format"),
        ([{"type": "image_url", "image_url": {"url": "https://a.b/c.png", "detail": "medium"}}],
         "messages[0].content[0].image_url.detail", "invalid_value"),
    ],
)  # fmt: skip
def test_a_bad_content_part_is_a_400_as_openai_words_it(
    client: openai.OpenAI, content: list[Any], param: str, code: str
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": content}]
        )
    assert (info.value.param, info.value.code) == (param, code)
    assert info.value.status_code == 400


def test_an_image_outside_a_user_message_is_refused(client: openai.OpenAI) -> None:
    image = {"type": "image_url", "image_url": {"url": data_url(png(COLOURS["red"]))}}
    with pytest.raises(openai.BadRequestError, match="only allowed for messages with role 'user'"):
        client.chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "system", "content": [image]}, {"role": "user", "content": "hi"}],
        )


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P"])
def test_the_dominant_colour_is_read_from_any_8_bit_png(mode: str) -> None:
    expected = "grey" if mode == "L" else "blue"
    colour = (128, 128, 128) if mode == "L" else COLOURS["blue"]
    assert dominant_colour(png(colour, mode, size=(33, 17))) == expected


def test_an_image_by_url_is_described_by_its_url() -> None:
    part = {"type": "image_url", "image_url": {"url": "https://example.com/green-leaf.jpg"}}
    assert describe_image(part) == "[image https://example.com/green-leaf.jpg]"


# --- label, extract and complete, online and in a batch ------------------------------------


def run_options(server: LocalServer) -> dict[str, Any]:
    return {"base_url": server.base_url, "cache": False, "progress": False}


def test_label_online_gives_each_image_its_colour(
    server: LocalServer, photos: pd.DataFrame
) -> None:
    out = photos.holysheep.label(labels=LABELS, images="photo", **run_options(server))
    assert out["label"].tolist() == photos["truth"].tolist()
    assert out["error"].isna().all()


def test_label_with_a_template_and_the_image_after_its_text(
    server: LocalServer, photos: pd.DataFrame
) -> None:
    out = photos.holysheep.label(
        template="Colour of the {truth} thing?", labels=LABELS, images="photo",
        **run_options(server),
    )  # fmt: skip
    assert out["label"].tolist() == photos["truth"].tolist()


def test_extract_reads_the_colour_into_a_field(server: LocalServer, photos: pd.DataFrame) -> None:
    class Seen(BaseModel):
        colour: Literal["red", "green", "blue"]

    out = photos.holysheep.extract(schema=Seen, images="photo", **run_options(server))
    assert out["colour"].tolist() == photos["truth"].tolist()


def test_complete_answers_from_the_image(photos: pd.DataFrame) -> None:
    with LocalServer(ServerConfig(echo=True)) as echo:
        out = photos.holysheep.complete(images="photo", **run_options(echo))
    assert [text.strip() for text in out["response"]] == [
        f"[image png 8x8 {name}]" for name in photos["truth"]
    ]


def test_label_with_batch_true_gives_the_same_labels(
    server: LocalServer, photos: pd.DataFrame, tmp_path: Path
) -> None:
    options = {**run_options(server), "cache": str(tmp_path / "answers.sqlite")}
    before = server.stats()["batches"]["lines_run"]
    out = photos.holysheep.label(labels=LABELS, images="photo", batch=True, **options)
    assert out["label"].tolist() == photos["truth"].tolist()
    assert server.stats()["batches"]["lines_run"] - before == 3  # repeats asked once
    assert out.holysheep.report().batch_ids


def test_the_batch_namespace_takes_images(server: LocalServer, photos: pd.DataFrame) -> None:
    handle = photos.holysheep.batch.extract(
        schema={"type": "object", "properties": {"colour": {"enum": LABELS}},
                "required": ["colour"], "additionalProperties": False},
        images="photo", image_detail="low", **run_options(server),
    )  # fmt: skip
    assert handle.collect()["colour"].tolist() == photos["truth"].tolist()


def test_a_batch_line_with_a_bad_image_part_fails_alone(client: openai.OpenAI) -> None:
    def line(custom_id: str, image: dict[str, Any]) -> str:
        content = [{"type": "text", "text": "Labels: red, green, blue"}, image]
        body = {"model": "gpt-4o", "messages": [{"role": "user", "content": content}]}
        request = {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions"}
        return json.dumps({**request, "body": body}) + "\n"

    good = {"type": "image_url", "image_url": {"url": data_url(png(COLOURS["green"]))}}
    bad = {"type": "image_url", "image_url": {"url": "https://a.b/c.png", "detail": "huge"}}
    data = (line("good", good) + line("bad", bad)).encode()
    upload = client.files.create(file=("input.jsonl", data), purpose="batch")
    batch = client.batches.create(
        input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    for _ in range(5):  # the server moves a batch on at each look (batch_polls)
        batch = client.batches.retrieve(batch.id)
        if batch.status == "completed":
            break
    assert batch.status == "completed"
    assert batch.output_file_id is not None
    assert batch.error_file_id is not None
    (output,) = [
        json.loads(x) for x in client.files.content(batch.output_file_id).text.splitlines()
    ]
    (error,) = [json.loads(x) for x in client.files.content(batch.error_file_id).text.splitlines()]
    assert output["custom_id"] == "good"
    assert output["response"]["body"]["choices"][0]["message"]["content"] == "green"
    assert error["custom_id"] == "bad"
    assert error["response"]["status_code"] == 400
    assert error["response"]["body"]["error"]["param"] == "messages[0].content[1].image_url.detail"


def picture(path: Path, kind: str, size: tuple[int, int]) -> str:
    Image.new("RGB", size, COLOURS["green"]).save(path, format=kind)
    return str(path)


def test_an_image_whose_colour_is_not_read_gets_no_colour_guessed(
    server: LocalServer, tmp_path: Path
) -> None:
    """A JPEG or a PNG too big to decode here: described by format and size only, and the
    answer is "unsure", never a colour the server did not read."""
    photos = pd.DataFrame({"photo": [
        picture(tmp_path / "small.png", "PNG", (8, 8)),
        picture(tmp_path / "photo.jpg", "JPEG", (64, 32)),
        picture(tmp_path / "big.png", "PNG", (1024, 1024)),
    ]})  # fmt: skip
    with LocalServer(ServerConfig(echo=True)) as echo:
        seen = photos.holysheep.complete(images="photo", **run_options(echo))["response"]
    assert [text.strip() for text in seen] == [
        "[image png 8x8 green]",
        "[image jpeg 64x32 colour not read]",
        "[image png 1024x1024 colour not read]",
    ]
    out = photos.holysheep.label(labels=LABELS, images="photo", **run_options(server))
    assert out["label"].tolist()[0] == "green"
    assert out["error"].tolist()[1:] == ["not in label set: 'unsure'"] * 2
    allowed = photos.holysheep.label(
        labels=[*LABELS, "unsure"], images="photo", **run_options(server)
    )
    assert allowed["label"].tolist() == ["green", "unsure", "unsure"]


@pytest.mark.parametrize("detail", [None, "low", "high"])
def test_the_server_counts_image_tokens_as_the_estimate_does(
    server: LocalServer, tmp_path: Path, detail: str | None
) -> None:
    photos = pd.DataFrame({
        "caption": ["a mug", "a bike", "a lawn", "a cat"],
        "photo": [picture(tmp_path / "a.png", "PNG", (8, 8)),
                  picture(tmp_path / "b.jpg", "JPEG", (64, 32)),
                  picture(tmp_path / "c.png", "PNG", (1024, 1024)),
                  "https://example.com/cat.jpg"],
    })  # fmt: skip
    options = {**run_options(server), "images": "photo", "image_detail": detail}
    estimate = photos.holysheep.estimate("caption", labels=LABELS, **options)
    out = photos.holysheep.label("caption", labels=LABELS, **options)
    report = out.holysheep.report()
    images = 85 * 4 if detail == "low" else 255 + 255 + 765 + 85
    assert estimate.input_tokens > images
    assert report.prompt_tokens == estimate.input_tokens
