"""Image columns (``images=``): what each row sends, the checks before sending, the cache key,
repeats and the token estimate. Requests go to a capturing server on 127.0.0.1 that the test
starts; the images are tiny, made with Pillow in ``tmp_path``."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from aiohttp import web
from PIL import Image

import holysheep_nb  # noqa: F401 - registers the accessor
from holysheep_nb.errors import ConfigError
from holysheep_nb.image_files import ImageLimits, dimensions, image_tokens, sniff

RED, GREEN, BLUE = (255, 0, 0), (0, 160, 0), (0, 0, 255)


def image_bytes(
    colour: tuple[int, int, int], kind: str = "PNG", size: tuple[int, int] = (8, 8)
) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format=kind)
    return buffer.getvalue()


def write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def data_url(part: dict[str, Any]) -> tuple[str, bytes]:
    """(MIME type, bytes) of an image part's data URL."""
    head, _, payload = part["image_url"]["url"].partition(",")
    assert head.startswith("data:")
    assert head.endswith(";base64")
    return head[5:-7], base64.b64decode(payload)


class Capture:
    """A chat-completions server that answers "ok" and keeps every request body."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.base_url = ""

    async def chat(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.json())
        message = {"role": "assistant", "content": "ok"}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
        body = {"id": "x", "object": "chat.completion", "choices": [choice], "usage": usage}
        return web.json_response(body)

    def user_content(self) -> list[Any]:
        """Each request's last message content, in the order the rows were sent."""
        return [body["messages"][-1]["content"] for body in self.bodies]


@pytest.fixture
async def capture() -> AsyncIterator[Capture]:
    seen = Capture()
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/chat/completions", seen.chat)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    seen.base_url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    yield seen
    await runner.cleanup()


def options(capture: Capture, **more: Any) -> dict[str, Any]:
    return {"base_url": capture.base_url, "cache": False, "progress": False, "max_concurrent": 1,
            **more}  # fmt: skip


# --- what each row sends -------------------------------------------------------------------


async def test_paths_bytes_and_pil_images_become_data_urls_of_their_type(
    capture: Capture, tmp_path: Path
) -> None:
    png = image_bytes(RED, "PNG")
    jpeg = image_bytes(GREEN, "JPEG")
    gif = image_bytes(BLUE, "GIF")
    pil = Image.open(io.BytesIO(image_bytes(RED, "WEBP")))
    df = pd.DataFrame({
        "text": ["a path", "a Path", "bytes", "a PIL image"],
        "photo": [write(tmp_path / "r.png", png), tmp_path / "g.jpg", gif, pil],
    })  # fmt: skip
    (tmp_path / "g.jpg").write_bytes(jpeg)

    out = await df.holysheep.acomplete("text", images="photo", **options(capture))

    assert out["error"].isna().all()
    contents = sorted(capture.user_content(), key=lambda c: c[0]["text"])
    by_text = {content[0]["text"]: content for content in contents}
    assert [part["type"] for part in by_text["a path"]] == ["text", "image_url"]
    assert data_url(by_text["a path"][1]) == ("image/png", png)
    assert data_url(by_text["a Path"][1]) == ("image/jpeg", jpeg)
    assert data_url(by_text["bytes"][1]) == ("image/gif", gif)
    mime, sent = data_url(by_text["a PIL image"][1])
    assert mime == "image/webp"
    assert sniff(sent) == "webp"
    assert "detail" not in by_text["a path"][1]["image_url"]  # not given: not sent


async def test_a_polars_frame_sends_its_image_column_through_the_same_adapter(
    capture: Capture, tmp_path: Path
) -> None:
    pl = pytest.importorskip("polars")
    png, gif = image_bytes(RED, "PNG"), image_bytes(BLUE, "GIF")
    df = pl.DataFrame({
        "text": ["a path", "bytes", "no image"],
        "photo": [write(tmp_path / "r.png", png), None, None],
        "raw": [None, gif, None],
    })  # fmt: skip

    out = await df.holysheep.acomplete("text", images=["photo", "raw"], **options(capture))

    assert isinstance(out, pl.DataFrame)
    assert out["error"].to_list() == [None, None, None]
    by_text = {content[0]["text"] if isinstance(content, list) else content: content
               for content in capture.user_content()}  # fmt: skip
    assert data_url(by_text["a path"][1]) == ("image/png", png)
    assert data_url(by_text["bytes"][1]) == ("image/gif", gif)
    assert by_text["no image"] == "no image"  # text alone, as a plain string


async def test_urls_go_as_they_are_and_a_data_url_gets_the_type_of_its_bytes(
    capture: Capture,
) -> None:
    jpeg = image_bytes(GREEN, "JPEG")
    mislabelled = "data:image/png;base64," + base64.b64encode(jpeg).decode()
    url = "https://example.com/cat.png?size=large"
    df = pd.DataFrame({"text": ["by URL", "by data URL"], "photo": [url, mislabelled]})

    await df.holysheep.acomplete("text", images="photo", image_detail="low", **options(capture))

    by_text = {content[0]["text"]: content[1] for content in capture.user_content()}
    assert by_text["by URL"] == {"type": "image_url", "image_url": {"url": url, "detail": "low"}}
    assert data_url(by_text["by data URL"]) == ("image/jpeg", jpeg)
    assert by_text["by data URL"]["image_url"]["detail"] == "low"


async def test_without_text_only_the_images_are_sent_in_column_order(
    capture: Capture, tmp_path: Path
) -> None:
    red, blue = image_bytes(RED), image_bytes(BLUE)
    df = pd.DataFrame({"front": [red, None], "back": [[blue, red], blue]})

    out = await df.holysheep.acomplete(images=["front", "back"], **options(capture))

    assert out["response"].tolist() == ["ok", "ok"]
    first, second = capture.user_content()
    assert [data_url(part)[1] for part in first] == [red, blue, red]
    assert [data_url(part)[1] for part in second] == [blue]  # None: no image, no text part


async def test_a_missing_image_sends_the_text_alone_and_neither_is_a_missing_prompt(
    capture: Capture,
) -> None:
    df = pd.DataFrame({"text": ["only text", None, "both"],
                       "photo": [None, float("nan"), image_bytes(RED)]})  # fmt: skip

    out = await df.holysheep.acomplete("text", images="photo", **options(capture))

    assert pd.isna(out["error"][0])
    assert pd.isna(out["error"][2])
    assert out["error"][1] == "missing prompt"
    sent = sorted(capture.user_content(), key=str)
    assert sent[1] == "only text"  # a plain string, as without images
    assert [part["type"] for part in sent[0]] == ["text", "image_url"]
    assert sent[0][0]["text"] == "both"


# --- checks before sending -----------------------------------------------------------------


async def test_bad_images_are_their_rows_errors_naming_the_file(
    capture: Capture, tmp_path: Path
) -> None:
    good = write(tmp_path / "good.png", image_bytes(RED))
    text_file = write(tmp_path / "notes.png", b"just some text, not an image")
    big = write(tmp_path / "big.png", image_bytes(RED, size=(64, 64)) + bytes(300))
    folder = tmp_path / "folder.png"
    folder.mkdir()
    df = pd.DataFrame({
        "text": ["ok", "missing", "unreadable", "unknown", "too big", "two too many", "a number"],
        "photo": [good, str(tmp_path / "gone.png"), str(folder), text_file, big,
                  [good, good, good], 42],
    })  # fmt: skip
    limits = ImageLimits(per_image=300, per_request=150)

    out = await df.holysheep.acomplete(
        "text", images="photo", image_limits=limits, **options(capture)
    )

    errors = dict(zip(df["text"], out["error"], strict=True))
    assert pd.isna(errors["ok"])
    assert errors["missing"] == f"image file not found: {str(tmp_path / 'gone.png')!r}"
    assert errors["unreadable"] == f"cannot read image file {str(folder)!r}: not a file"
    assert errors["unknown"] == (
        f"image file {text_file!r} is not a PNG, JPEG, GIF or WebP image (unknown format)"
    )
    assert errors["too big"].startswith(f"image file {big!r} is ")
    assert errors["too big"].endswith("over the provider's limit of 300 bytes an image")
    assert "over the provider's limit of 150 bytes a request" in errors["two too many"]
    assert errors["a number"].startswith("column 'photo' holds an int, not an image")
    assert len(capture.bodies) == 1  # only the good row was sent
    assert out["attempts"].tolist() == [1, 0, 0, 0, 0, 0, 0]


async def test_when_no_row_could_be_sent_it_is_a_config_error_before_sending(
    capture: Capture, tmp_path: Path
) -> None:
    df = pd.DataFrame({"text": ["a", "b"], "photo": [str(tmp_path / "x.png"), b"GIF8"]})

    with pytest.raises(ConfigError, match="no row has an image that can be sent") as info:
        await df.holysheep.acomplete("text", images="photo", **options(capture))

    assert "x.png" in str(info.value)
    assert "unknown format" in str(info.value)
    assert capture.bodies == []


async def test_when_every_image_is_missing_the_config_error_counts_them_by_problem(
    capture: Capture, tmp_path: Path
) -> None:
    gone = [str(tmp_path / f"gone{i}.png") for i in range(300)]
    df = pd.DataFrame({"text": ["a"] * 301, "photo": [*gone, b"GIF8"]})

    with pytest.raises(ConfigError) as info:
        await df.holysheep.acomplete("text", images="photo", **options(capture))

    assert str(info.value) == (
        f"no row has an image that can be sent: image file not found: 300 rows, e.g. image "
        f"file not found: {gone[0]!r}; not a PNG, JPEG, GIF or WebP image: 1 row, e.g. the "
        "bytes in column 'photo' are not a PNG, JPEG, GIF or WebP image (unknown format)"
    )
    assert capture.bodies == []


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"images": "nope"}, "images= names no column 'nope'"),
        ({"images": []}, "images= names no column"),
        ({"images": "photo", "image_detail": "medium"}, "image_detail must be 'low', 'high'"),
        ({"image_detail": "low"}, "image_detail and image_limits apply to images="),
        ({"images": "photo", "image_limits": 5}, "image_limits must be an ImageLimits"),
    ],
)
def test_a_bad_image_option_is_a_config_error(given: dict[str, Any], message: str) -> None:
    df = pd.DataFrame({"text": ["a"], "photo": [image_bytes(RED)]})
    with pytest.raises(ConfigError, match=message):
        df.holysheep.complete("text", base_url="http://127.0.0.1:9/v1", **given)


def test_image_limits_refuse_a_value_that_is_no_count() -> None:
    with pytest.raises(ConfigError, match=r"ImageLimits\.per_image must be a whole number >= 1"):
        ImageLimits(per_image=0)


# --- cache and repeats ---------------------------------------------------------------------


async def test_the_cache_key_follows_the_image_bytes_not_the_path(
    capture: Capture, tmp_path: Path
) -> None:
    path = tmp_path / "photo.png"
    copy = tmp_path / "copy.png"
    cache = str(tmp_path / "answers.sqlite")
    run = {**options(capture), "cache": cache}
    df = pd.DataFrame({"text": ["what colour?"], "photo": [str(path)]})

    path.write_bytes(image_bytes(RED))
    first = await df.holysheep.acomplete("text", images="photo", **run)
    again = await df.holysheep.acomplete("text", images="photo", **run)
    copy.write_bytes(image_bytes(RED))
    moved = await df.assign(photo=[str(copy)]).holysheep.acomplete("text", images="photo", **run)
    path.write_bytes(image_bytes(BLUE))  # the same path, new bytes
    changed = await df.holysheep.acomplete("text", images="photo", **run)

    assert [frame["cached"][0] for frame in (first, again, moved, changed)] == [
        False, True, True, False,
    ]  # fmt: skip
    assert len(capture.bodies) == 2
    assert data_url(capture.user_content()[1][1])[1] == image_bytes(BLUE)


async def test_repeats_must_share_the_image_as_well_as_the_text(
    capture: Capture, tmp_path: Path
) -> None:
    red = write(tmp_path / "red.png", image_bytes(RED))
    also_red = write(tmp_path / "also_red.png", image_bytes(RED))
    blue = write(tmp_path / "blue.png", image_bytes(BLUE))
    df = pd.DataFrame({"text": ["colour?"] * 4, "photo": [red, blue, also_red, red]})

    out = await df.holysheep.acomplete("text", images="photo", **options(capture))

    assert out["shared"].tolist() == [False, False, True, True]
    assert len(capture.bodies) == 2


# --- the token estimate --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "detail", "tokens"),
    [
        ((1024, 1024), "high", 765),  # -> 768 x 768: 4 tiles
        ((2048, 4096), "high", 1105),  # -> 1024 x 2048 -> 768 x 1536: 6 tiles
        ((4096, 8192), "low", 85),
        ((8, 8), "high", 255),  # never enlarged: 1 tile
        ((8, 8), None, 255),  # auto / unset counted as high
        ((1000, 3000), "auto", 1445),  # -> 682.67 x 2048, short side under 768: 2 x 4 tiles
        (None, "high", 85),  # by URL: size unknown
    ],
)
def test_image_tokens_follow_openai_tile_rule(
    size: tuple[int, int] | None, detail: str | None, tokens: int
) -> None:
    assert image_tokens(size, detail) == tokens


@pytest.mark.parametrize("kind", ["PNG", "JPEG", "GIF", "WEBP"])
def test_the_size_is_read_from_the_header(kind: str) -> None:
    data = image_bytes(GREEN, kind, size=(300, 77))
    found = sniff(data)
    assert found == kind.lower()
    assert dimensions(data, found) == (300, 77)


def test_a_lossless_and_an_extended_webp_give_their_size() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (123, 45), RED).save(buffer, format="WEBP", lossless=True)
    assert dimensions(buffer.getvalue(), "webp") == (123, 45)
    buffer = io.BytesIO()
    Image.new("RGBA", (321, 54), (*RED, 128)).save(buffer, format="WEBP")
    assert dimensions(buffer.getvalue(), "webp") == (321, 54)


def test_the_estimate_counts_image_tokens_by_the_rule(tmp_path: Path) -> None:
    square = write(tmp_path / "square.png", image_bytes(RED, size=(1024, 1024)))
    tall = write(tmp_path / "tall.png", image_bytes(RED, size=(2048, 4096)))
    df = pd.DataFrame({"text": ["abcd", "efgh"], "photo": [square, tall]})
    base = {"base_url": "http://127.0.0.1:9/v1", "cache": False}
    text_only = df.holysheep.estimate("text", **base).input_tokens

    high = df.holysheep.estimate("text", images="photo", image_detail="high", **base)
    low = df.holysheep.estimate("text", images="photo", image_detail="low", **base)
    by_url = pd.DataFrame({"text": ["abcd"], "photo": ["https://example.com/a.png"]})
    unknown = by_url.holysheep.estimate("text", images="photo", **base)

    assert high.input_tokens == text_only + 765 + 1105
    assert low.input_tokens == text_only + 2 * 85
    assert (high.images, high.unsized_images) == (2, 0)
    assert (unknown.images, unknown.unsized_images) == (1, 1)
    assert "1 by URL of unknown size counted at 85 tokens each" in str(unknown)


# --- bad images in the report and the estimate ----------------------------------------------


async def test_the_report_groups_bad_images_by_problem_with_a_file_or_two_as_examples(
    capture: Capture, tmp_path: Path
) -> None:
    good = write(tmp_path / "good.png", image_bytes(RED))
    text_file = write(tmp_path / "notes.png", b"just some text")
    gone = [str(tmp_path / f"gone{i}.png") for i in range(30)]
    df = pd.DataFrame({"text": ["colour?"] * 32, "photo": [good, text_file, *gone]})

    out = await df.holysheep.acomplete("text", images="photo", **options(capture))

    report = out.holysheep.report()
    assert dict(report.failures) == {
        "image file not found": 30,
        "not a PNG, JPEG, GIF or WebP image": 1,
    }
    examples = dict(report.failure_examples)["image file not found"]
    assert examples == tuple(f"image file not found: {path!r}" for path in gone[:2])
    text = str(report)
    assert text.count("gone") == 2  # two examples, not a line per file
    assert "e.g. image file not found: " in text
    assert out["error"].tolist()[2:] == [f"image file not found: {path!r}" for path in gone]
    assert report.not_sent == 31


def test_the_estimate_tells_bad_images_from_missing_prompts(tmp_path: Path) -> None:
    good = write(tmp_path / "good.png", image_bytes(RED))
    text_file = write(tmp_path / "notes.png", b"just some text")
    df = pd.DataFrame({
        "text": ["a mug", "a ghost", "a ghost too", "a note", None],
        "photo": [good, str(tmp_path / "x.png"), str(tmp_path / "y.png"), text_file, good],
    })  # fmt: skip

    estimate = df.holysheep.estimate(
        "text", images="photo", base_url="http://127.0.0.1:9/v1", cache=False
    )

    assert (estimate.to_send, estimate.missing) == (1, 1)
    assert estimate.bad_images == (
        ("image file not found", 2),
        ("not a PNG, JPEG, GIF or WebP image", 1),
    )
    line = next(line for line in str(estimate).splitlines() if "bad image" in line)
    assert line.split()[:3] == ["bad", "image", "3"]
    assert line.endswith(
        "(image file not found: 2, not a PNG, JPEG, GIF or WebP image: 1; never sent)"
    )
    assert "missing value" in str(estimate)  # the one row without text, told apart
    assert estimate.to_dict()["bad_images"] == {
        "image file not found": 2,
        "not a PNG, JPEG, GIF or WebP image": 1,
    }


async def test_a_relative_path_not_found_names_the_working_directory(
    capture: Capture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "photos").mkdir()
    write(tmp_path / "photos" / "red.png", image_bytes(RED))
    monkeypatch.chdir(tmp_path)
    df = pd.DataFrame({"text": ["a", "b"], "photo": ["photos/red.png", "red.png"]})

    out = await df.holysheep.acomplete("text", images="photo", **options(capture))

    assert pd.isna(out["error"][0])
    assert out["error"][1] == (
        "image file not found: 'red.png' (a relative path is read from the working "
        f"directory {str(tmp_path)!r})"
    )
    assert dict(out.holysheep.report().failures) == {"image file not found": 1}


async def test_a_url_of_another_scheme_is_refused_as_such_and_bytes_agree(
    capture: Capture,
) -> None:
    df = pd.DataFrame({"text": ["a", "b", "c"],
                       "photo": ["ftp://example.com/y.png", b"not an image", image_bytes(RED)]})  # fmt: skip

    out = await df.holysheep.acomplete("text", images="photo", **options(capture))

    assert out["error"][0] == (
        "URL scheme not supported (http, https and data URLs only): 'ftp://example.com/y.png'"
    )
    assert out["error"][1] == (
        "the bytes in column 'photo' are not a PNG, JPEG, GIF or WebP image (unknown format)"
    )
