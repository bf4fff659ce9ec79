"""prepare_image: what a provider receives from an accepted upload."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image, ImageCms

from shared.errors import ClientInputError
from workers.preprocess import PreparedImage, prepare_image

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
LIMITS = {"max_bytes": 20 * 1024 * 1024, "max_pixels": 64_000_000}


def _save(image: Image.Image, fmt: str, **params: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **params)
    return out.getvalue()


def _prepare(data: bytes, max_long_edge: int = 2048) -> PreparedImage:
    return prepare_image(data, max_long_edge=max_long_edge, **LIMITS)


def _decoded(prepared: PreparedImage) -> Image.Image:
    image = Image.open(io.BytesIO(prepared.data))
    image.load()
    assert (image.width, image.height) == (prepared.width, prepared.height)
    assert Image.MIME[image.format or ""] == prepared.mime_type
    return image


def test_photo_within_limits_keeps_its_size_and_becomes_jpeg() -> None:
    # Given a 640×427 JPEG photo  When prepared with a 2048 px edge cap
    prepared = _prepare((FIXTURES / "rocket.jpg").read_bytes())
    # Then it is a JPEG of the same size, and it says where it came from
    image = _decoded(prepared)
    assert (prepared.mime_type, image.size, image.mode) == ("image/jpeg", (640, 427), "RGB")
    assert prepared.source_format == "JPEG"


@pytest.mark.parametrize(("name", "edge", "expected"), [
    ("coffee.png", 300, (300, 200)),
    ("chelsea.png", 200, (200, 133)),
    ("rocket.jpg", 100, (100, 67)),  # JPEG draft (1/4 scale) then LANCZOS
    ("rocket.jpg", 320, (320, 214)),  # draft at exactly 1/2
])
def test_downscale_caps_the_long_edge_and_keeps_aspect_ratio(name: str, edge: int,
                                                             expected: tuple[int, int]) -> None:
    # Given a photo larger than the cap  When prepared
    prepared = _prepare((FIXTURES / name).read_bytes(), max_long_edge=edge)
    # Then the long edge equals the cap and the aspect ratio is kept (to the pixel)
    assert _decoded(prepared).size == expected


def test_small_images_are_never_upscaled() -> None:
    # Given a 451×300 photo and a 4096 px cap  When prepared  Then its size is unchanged
    assert _decoded(_prepare((FIXTURES / "chelsea.png").read_bytes(), max_long_edge=4096)).size == (451, 300)


def test_exif_orientation_is_applied() -> None:
    # Given a 40×20 JPEG whose EXIF says "rotate 90° clockwise to display" (Orientation=6)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _save(Image.new("RGB", (40, 20), "white"), "JPEG", exif=exif.tobytes())
    # When prepared
    prepared = _prepare(data)
    # Then the pixels are turned (dimensions swap) and no EXIF is left to turn them again
    image = _decoded(prepared)
    assert image.size == (20, 40)
    assert image.getexif().get(0x0112) is None


def test_exif_orientation_and_jpeg_draft_downscale_together() -> None:
    # Given a 400×200 JPEG with Orientation=6 and a 100 px cap
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _save(Image.new("RGB", (400, 200), "white"), "JPEG", exif=exif.tobytes())
    # When prepared  Then it is turned and scaled: 50×100
    assert _decoded(_prepare(data, max_long_edge=100)).size == (50, 100)


def test_cmyk_jpeg_becomes_rgb() -> None:
    # Given a CMYK JPEG filled with magenta+yellow ink (red)
    data = _save(Image.new("CMYK", (32, 32), (0, 255, 255, 0)), "JPEG")
    # When prepared
    image = _decoded(_prepare(data))
    # Then it is an RGB JPEG that is still red
    assert image.mode == "RGB"
    r, g, b = image.getpixel((16, 16))  # type: ignore[misc]
    assert r > 200 and g < 60 and b < 60


def test_icc_tagged_image_is_converted_to_untagged_srgb() -> None:
    # Given an RGB image tagged with an ICC profile (sRGB: the one LittleCMS can build without files)
    srgb_icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    tagged = _save(Image.new("RGB", (16, 16), (200, 30, 30)), "PNG", icc_profile=srgb_icc)
    # When prepared
    image = _decoded(_prepare(tagged))
    # Then the colour survives the sRGB→sRGB transform and no profile is embedded in the output
    assert image.info.get("icc_profile") is None
    r, g, b = image.getpixel((8, 8))  # type: ignore[misc]
    assert abs(r - 200) < 6 and abs(g - 30) < 6 and abs(b - 30) < 6


def test_unreadable_icc_profile_is_ignored() -> None:
    # Given an image whose embedded profile is garbage
    tagged = _save(Image.new("RGB", (16, 16), (200, 30, 30)), "PNG", icc_profile=b"not a profile" * 10)
    # When prepared  Then it still succeeds with the pixels as they are
    assert _decoded(_prepare(tagged)).getpixel((8, 8)) == (200, 30, 30)


def test_palette_png_with_transparency_keeps_alpha_as_png() -> None:
    # Given a palette PNG whose index 0 is transparent and used by the left half
    image = Image.new("P", (20, 10), 1)
    image.putpalette([0, 0, 0, 255, 0, 0])
    image.paste(0, (0, 0, 10, 10))
    data = _save(image, "PNG", transparency=0)
    # When prepared
    prepared = _prepare(data)
    # Then it is an RGBA PNG: left half transparent, right half opaque red
    out = _decoded(prepared)
    assert (prepared.mime_type, out.mode) == ("image/png", "RGBA")
    assert out.getpixel((2, 5))[3] == 0  # type: ignore[index]
    assert out.getpixel((15, 5)) == (255, 0, 0, 255)


def _palette_with_unused_transparency() -> bytes:
    image = Image.new("P", (8, 8), 1)
    image.putpalette([0, 0, 0, 255, 0, 0])
    return _save(image, "PNG", transparency=0)


@pytest.mark.parametrize("build", [
    lambda: _save(Image.new("RGBA", (8, 8), (10, 20, 30, 255)), "PNG"),  # alpha channel, all opaque
    _palette_with_unused_transparency,
], ids=["opaque-rgba", "palette-unused-transparent-index"])
def test_alpha_is_dropped_when_nothing_is_transparent(build: Callable[[], bytes]) -> None:
    # Given an image that could carry transparency but has none
    # When prepared  Then it is an RGB JPEG
    prepared = _prepare(build())
    assert (prepared.mime_type, _decoded(prepared).mode) == ("image/jpeg", "RGB")


def test_grey_with_alpha_becomes_rgba() -> None:
    # Given a half-transparent grey+alpha PNG  When prepared  Then it is RGBA with the same grey and alpha
    data = _save(Image.new("LA", (8, 8), (128, 100)), "PNG")
    out = _decoded(_prepare(data))
    assert out.mode == "RGBA" and out.getpixel((0, 0)) == (128, 128, 128, 100)


@pytest.mark.parametrize("mode", ["1", "L", "I;16", "P"])
def test_other_modes_become_8_bit_rgb(mode: str) -> None:
    # Given a white image stored in `mode`
    white = {"1": 1, "L": 255, "I;16": 65535, "P": 0}[mode]
    image = Image.new(mode, (8, 8), white)
    if mode == "P":
        image.putpalette([255, 255, 255])
    # When prepared  Then it is white 8-bit RGB (16-bit values are scaled, not clipped)
    out = _decoded(_prepare(_save(image, "PNG")))
    assert out.mode == "RGB" and out.getpixel((4, 4)) == (255, 255, 255)


def test_sixteen_bit_grey_is_scaled_not_clipped() -> None:
    # Given a 16-bit grey image at half intensity
    data = _save(Image.new("I;16", (8, 8), 32768), "PNG")
    # When prepared  Then it is mid grey, not white
    value = _decoded(_prepare(data)).getpixel((4, 4))[0]  # type: ignore[index]
    assert 120 < value < 136


def test_animated_gif_uses_its_first_frame() -> None:
    # Given an animated GIF whose first frame is red
    frames = [Image.new("RGB", (30, 20), colour) for colour in ("red", "lime", "blue")]
    data = _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)
    # When prepared  Then the output is the red first frame
    prepared = _prepare(data)
    r, g, b = _decoded(prepared).convert("RGB").getpixel((15, 10))  # type: ignore[misc]
    assert r > 200 and g < 40 and b < 40 and prepared.source_format == "GIF"


def test_multipage_tiff_uses_its_first_page() -> None:
    # Given a TIFF whose first page is 40×30 and second page 10×10
    data = _save(Image.new("RGB", (40, 30), "red"), "TIFF", save_all=True,
                 append_images=[Image.new("RGB", (10, 10), "blue")])
    # When prepared  Then the first page is used
    assert _decoded(_prepare(data)).size == (40, 30)


@pytest.mark.parametrize(("data", "code"), [
    (b"", "image_corrupt"),
    (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "unsupported_media_type"),
    ((FIXTURES / "rocket.jpg").read_bytes()[:50_000], "image_corrupt"),
])
def test_bad_data_raises_the_same_codes_as_the_api(data: bytes, code: str) -> None:
    # Given bad upload bytes  When prepared  Then the ClientInputError code matches inspect_image's
    with pytest.raises(ClientInputError) as caught:
        _prepare(data)
    assert caught.value.code == code


def test_pixel_limit_is_enforced_before_decoding() -> None:
    # Given a 273 280-pixel photo and a 1000-pixel limit  When prepared  Then too many pixels
    with pytest.raises(ClientInputError) as caught:
        prepare_image((FIXTURES / "rocket.jpg").read_bytes(), max_bytes=10**8, max_pixels=1000,
                      max_long_edge=2048)
    assert caught.value.code == "image_too_many_pixels"


def test_preparation_is_deterministic() -> None:
    # Given the same upload twice  When prepared  Then the results are identical, byte for byte
    data = (FIXTURES / "coffee.png").read_bytes()
    assert _prepare(data, 256) == _prepare(data, 256)
