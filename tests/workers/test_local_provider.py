"""LocalProvider: a deterministic offline editor that follows plain-English instructions."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageStat

from tests.support.clocks import HookedClock
from workers.providers.base import (
    EditRequest,
    EditResult,
    InputImage,
    InvalidProviderRequest,
    NoImageGenerated,
    Provider,
)
from workers.providers.local import UNDERSTOOD, LocalProvider, parse_instruction

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def _fixture(name: str) -> InputImage:
    mime = "image/jpeg" if name.endswith(".jpg") else "image/png"
    return InputImage(data=(FIXTURES / name).read_bytes(), mime_type=mime)


def _generated(image: Image.Image) -> InputImage:
    out = io.BytesIO()
    image.save(out, "PNG")
    return InputImage(data=out.getvalue(), mime_type="image/png")


def _run(instruction: str, *images: InputImage, operation: str = "edit") -> tuple[Image.Image, EditResult]:
    result = LocalProvider().edit(EditRequest(operation=operation, instruction=instruction,
                                              images=images or (_fixture("chelsea.png"),)))
    assert len(result.images) == 1 and result.images[0].mime_type == "image/png"
    image = Image.open(io.BytesIO(result.images[0].data))
    image.load()
    assert image.format == "PNG"
    return image, result


def _luminance(image: Image.Image) -> float:
    return ImageStat.Stat(image.convert("L")).mean[0]


def test_it_is_a_provider_named_local() -> None:
    provider: Provider = LocalProvider()
    assert provider.name == "local"


@pytest.mark.parametrize("instruction", ["grayscale", "Make it BLACK AND WHITE", "b&w please", "greyscale",
                                         "monochrome"])
def test_grayscale_makes_every_pixel_neutral(instruction: str) -> None:
    # Given a colour photo  When asked for grayscale in any of its spellings
    image, result = _run(instruction)
    # Then R == G == B for every pixel
    r, g, b = image.convert("RGB").split()
    assert ImageChops.difference(r, g).getextrema() == (0, 0)
    assert ImageChops.difference(g, b).getextrema() == (0, 0)
    assert result.text == "Applied: grayscale"


def test_rotate_90_turns_clockwise_and_swaps_dimensions() -> None:
    # Given a 40×20 image whose top-left pixel is red
    source = Image.new("RGB", (40, 20), "white")
    source.putpixel((0, 0), (255, 0, 0))
    # When rotated 90 degrees
    image, result = _run("rotate 90 degrees", _generated(source))
    # Then width and height swap, and the red corner is now top-right (a clockwise turn)
    assert image.size == (20, 40)
    assert image.getpixel((19, 0)) == (255, 0, 0)
    assert result.text == "Applied: rotate 90°"


@pytest.mark.parametrize(("instruction", "corner"), [
    ("rotate left", (0, 39)), ("rotate right", (19, 0)), ("rotate 90 degrees counterclockwise", (0, 39)),
    ("rotate clockwise", (19, 0)), ("rotate -90", (0, 39)), ("rotate 180", None),
])
def test_rotation_directions(instruction: str, corner: tuple[int, int] | None) -> None:
    # Given a 40×20 image with a red top-left pixel  When rotated  Then the red pixel lands where a person
    # turning the picture that way expects it
    source = Image.new("RGB", (40, 20), "white")
    source.putpixel((0, 0), (255, 0, 0))
    image, _ = _run(instruction, _generated(source))
    if corner is None:  # 180°: same size, red corner bottom-right
        assert image.size == (40, 20) and image.getpixel((39, 19)) == (255, 0, 0)
    else:
        assert image.size == (20, 40) and image.getpixel(corner) == (255, 0, 0)


def test_arbitrary_angle_grows_the_canvas_with_transparent_corners() -> None:
    # Given the 451×300 photo  When rotated 45°  Then the canvas grows and the new corners are transparent
    image, _ = _run("rotate 45 degrees")
    assert image.mode == "RGBA" and image.width > 451 and image.getpixel((0, 0))[3] == 0  # type: ignore[index]


def test_brighten_raises_mean_luminance_and_darken_lowers_it() -> None:
    # Given a photo
    before = _luminance(Image.open(FIXTURES / "chelsea.png"))
    # When brightened / darkened
    brighter, _ = _run("make it brighter")
    much_brighter, result = _run("brighten it by 60%")
    darker, _ = _run("darker")
    # Then mean luminance moves the right way, further with a bigger percentage
    assert _luminance(darker) < before < _luminance(brighter) < _luminance(much_brighter)
    assert result.text == "Applied: brighter 60%"


@pytest.mark.parametrize(("instruction", "check"), [
    ("more contrast", lambda a, b: ImageStat.Stat(b.convert("L")).stddev[0] > ImageStat.Stat(a.convert("L")).stddev[0]),
    ("less contrast", lambda a, b: ImageStat.Stat(b.convert("L")).stddev[0] < ImageStat.Stat(a.convert("L")).stddev[0]),
    ("invert", lambda a, b: a.getpixel((5, 5)) == tuple(255 - v for v in b.getpixel((5, 5)))),
    ("crop to square", lambda a, b: b.size == (300, 300)),
    ("resize to 200 px", lambda a, b: b.size == (200, 133)),
    ("make it 100 px wide", lambda a, b: b.size == (100, 67)),
    ("flip it upside down", lambda a, b: b.getpixel((0, 0)) == a.getpixel((0, a.height - 1))),
    ("mirror", lambda a, b: b.getpixel((0, 0)) == a.getpixel((a.width - 1, 0))),
    ("blur radius 5", lambda a, b: ImageStat.Stat(b).stddev[0] < ImageStat.Stat(a).stddev[0]),
    ("sepia", lambda a, b: ImageStat.Stat(b).mean[0] > ImageStat.Stat(b).mean[2]),
    ("desaturate", lambda a, b: _spread(b) < _spread(a)),
    ("make it vivid", lambda a, b: _spread(b) > _spread(a)),
    ("sharpen", lambda a, b: b.size == a.size and b.tobytes() != a.tobytes()),
])
def test_each_operation_does_what_it_says(instruction: str,
                                         check: Callable[[Image.Image, Image.Image], bool]) -> None:
    # Given the 451×300 cat photo  When the instruction is applied  Then its effect is visible
    original = Image.open(FIXTURES / "chelsea.png").convert("RGB")
    image, _ = _run(instruction)
    assert check(original, image.convert("RGB"))


def _spread(image: Image.Image) -> float:
    """Mean distance of each pixel's channels from its grey: a crude saturation measure."""
    rgb = image.convert("RGB")
    return sum(ImageStat.Stat(ImageChops.difference(rgb, rgb.convert("L").convert("RGB"))).mean)


def test_several_operations_apply_in_the_order_written() -> None:
    # Given one instruction with several operations
    image, result = _run("make it black and white and rotate 90 degrees")
    # Then both are applied, and the text lists them in order
    assert image.size == (300, 451)
    r, _, b = image.convert("RGB").split()
    assert ImageChops.difference(r, b).getextrema() == (0, 0)
    assert result.text == "Applied: grayscale, rotate 90°"
    # And order matters: width first then rotate differs from rotate then width
    assert _run("make it 100 px wide and rotate 90 degrees")[0].size == (67, 100)
    assert _run("rotate 90 degrees and make it 100 px wide")[0].size == (100, 150)


def test_unknown_instruction_raises_no_image_generated_with_what_is_understood() -> None:
    # Given an instruction the local provider has no verb for
    with pytest.raises(NoImageGenerated) as caught:
        _run("add a pirate hat to the cat")
    # Then the error says so, and the suggestion lists the understood instructions
    assert caught.value.code == "no_image_generated" and not caught.value.retryable
    assert "grayscale" in caught.value.suggestion
    assert all(word in caught.value.suggestion for word in ("rotate", "sepia", "crop to square"))
    assert "grayscale / black and white" in UNDERSTOOD


def test_edit_uses_the_first_image_and_ignores_the_rest() -> None:
    # Given two images for an edit  When edited  Then the output is the first image's size
    image, _ = _run("invert", _fixture("chelsea.png"), _fixture("coffee.png"))
    assert image.size == (451, 300)


def test_compose_places_images_side_by_side_at_the_smallest_height() -> None:
    # Given a 451×300 and a 600×400 photo
    image, result = _run("put them side by side", _fixture("chelsea.png"), _fixture("coffee.png"),
                         operation="compose")
    # Then the coffee photo is scaled to height 300 (450 wide) and the widths add up
    assert image.size == (451 + 450, 300)
    assert result.text == "Applied: side-by-side composition of 2 images"


def test_compose_then_adjust() -> None:
    # Given a composition with an adjustment  When composed  Then the adjustment applies to the whole
    image, result = _run("combine and make it black and white", _fixture("chelsea.png"),
                         _fixture("rocket.jpg"), operation="compose")
    r, g, _ = image.convert("RGB").split()
    assert ImageChops.difference(r, g).getextrema() == (0, 0)
    assert result.text is not None and result.text.endswith("grayscale")


def test_style_transfer_moves_the_mean_colour_toward_the_style_image() -> None:
    # Given a warm photo as content and a blue gradient as style
    content = Image.open(FIXTURES / "coffee.png").convert("RGB")
    style = Image.linear_gradient("L").resize((64, 64)).convert("RGB")
    style = Image.merge("RGB", (style.getchannel(0).point(lambda v: v // 5), style.getchannel(1).point(
        lambda v: v // 2), style.getchannel(2).point(lambda v: 128 + v // 2)))
    # When the style is transferred
    image, result = _run("in this style", _fixture("coffee.png"), _generated(style), operation="style_transfer")
    # Then the output's mean colour is much closer to the style's than the content's was
    target = ImageStat.Stat(style).mean

    def distance(im: Image.Image) -> float:
        return sum((a - b) ** 2 for a, b in zip(ImageStat.Stat(im).mean, target, strict=True)) ** 0.5

    assert image.size == content.size
    assert distance(image.convert("RGB")) < 0.3 * distance(content)
    assert result.text == "Applied: colour transfer from the style image"


def test_alpha_survives_colour_operations() -> None:
    # Given an image whose left half is transparent  When colour operations run  Then alpha is untouched
    source = Image.new("RGBA", (10, 10), (200, 40, 40, 255))
    source.paste((0, 0, 0, 0), (0, 0, 5, 10))
    image, _ = _run("grayscale and invert", _generated(source))
    assert image.mode == "RGBA"
    assert image.getpixel((2, 2))[3] == 0 and image.getpixel((7, 7))[3] == 255  # type: ignore[index]


def test_same_request_gives_identical_bytes() -> None:
    # Given the same request twice  When edited  Then the output bytes are identical
    request = EditRequest(operation="edit", instruction="sepia, blur and rotate 30 degrees",
                          images=(_fixture("rocket.jpg"),))
    assert LocalProvider().edit(request) == LocalProvider().edit(request)


def test_delay_uses_the_injected_sleep() -> None:
    # Given a provider with a simulated latency and a recording sleep
    slept: list[float] = []
    provider = LocalProvider(delay_s=1.5, clock=HookedClock(slept.append))
    # When it edits  Then it "slept" once for the delay, without real waiting
    provider.edit(EditRequest(operation="edit", instruction="invert", images=(_fixture("chelsea.png"),)))
    assert slept == [1.5]
    LocalProvider(clock=HookedClock(slept.append)).edit(
        EditRequest(operation="edit", instruction="invert", images=(_fixture("chelsea.png"),)))
    assert slept == [1.5]


@pytest.mark.parametrize(("operation", "count"), [("compose", 1), ("style_transfer", 1), ("style_transfer", 3),
                                                  ("outpaint", 1)])
def test_malformed_requests_are_invalid_provider_requests(operation: str, count: int) -> None:
    # Given the wrong image count for an operation, or an unknown operation  Then the request is refused
    with pytest.raises(InvalidProviderRequest):
        _run("grayscale", *([_fixture("chelsea.png")] * count), operation=operation)


def test_undecodable_input_is_an_invalid_provider_request() -> None:
    # Given bytes that are not an image  When edited  Then the request is refused, not crashed
    with pytest.raises(InvalidProviderRequest):
        _run("grayscale", InputImage(data=b"not an image", mime_type="image/png"))


def test_huge_resize_requests_are_capped() -> None:
    # Given a 400×1 strip (so the capped result stays cheap)  When asked for a 99 999 px long edge
    image, result = _run("resize to 99999 px", _generated(Image.new("RGB", (400, 1), "red")))
    # Then the long edge is capped at 4096
    assert image.size == (4096, 10) and result.text == "Applied: resize to 4096 px"


@pytest.mark.parametrize(("instruction", "labels"), [
    ("Rotate left, then flip it horizontally and flip", ["rotate 90° counter-clockwise", "mirror", "flip"]),
    ("20% brighter and darker by 10% then blur with radius 4", ["brighter 20%", "darker 10%", "blur radius 4"]),
    ("crop to a square, resize to 300px, make it 200 px wide", ["crop to square", "resize to 300 px",
                                                                "200 px wide"]),
    ("increase contrast, less saturation", ["more contrast", "desaturate"]),
    ("the cat looks nice", []),
])
def test_parse_instruction_reads_operations_in_order(instruction: str, labels: list[str]) -> None:
    assert [op.label for op in parse_instruction(instruction)] == labels


def test_blur_does_not_bleed_hidden_colour_from_transparent_pixels() -> None:
    # Given red on the right, fully transparent black on the left
    source = Image.new("RGBA", (20, 20), (255, 0, 0, 255))
    source.paste((0, 0, 0, 0), (0, 0, 10, 20))
    # When blurred
    image, _ = _run("blur", _generated(source))
    # Then the soft edge is translucent red, not darkened
    r, g, b, a = image.getpixel((9, 10))  # type: ignore[misc]
    assert 0 < a < 255 and r > 240 and g == b == 0
