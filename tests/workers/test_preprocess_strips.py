"""prepare_image (workers/preprocess.py), continued: the single decode, downscaling in strips, EXIF orientation
after the downscale, and uploads sent on unchanged. Helpers are those of test_preprocess.py."""

from __future__ import annotations

import io
import random
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image, ImageOps, PngImagePlugin

from shared.errors import ClientInputError
from tests.workers.test_preprocess import FIXTURES, _decoded, _prepare, _save

# --- one decode, strips, and what the downscale must keep -------------------------------------------------

def _damaged_png_pixels(data: bytes) -> bytes:
    """`data` (a PNG) with its compressed pixels overwritten but every chunk CRC still valid."""
    out = bytearray(data)
    idat = out.index(b"IDAT")
    length = int.from_bytes(out[idat - 4: idat], "big")
    out[idat + 4 + 10: idat + 4 + 40] = b"\xff" * 30
    out[idat + 4 + length: idat + 8 + length] = zlib.crc32(bytes(out[idat: idat + 4 + length])).to_bytes(4, "big")
    return bytes(out)


def _bad_png_crc(data: bytes) -> bytes:
    out = bytearray(data)
    out[out.index(b"IDAT") + 20] ^= 0xFF  # pixels changed, CRC not updated: only verify() sees it
    return bytes(out)


@pytest.mark.parametrize(("build", "edge"), [
    (lambda: (FIXTURES / "chelsea.png").read_bytes()[:20_000], 2048),
    (lambda: (FIXTURES / "rocket.jpg").read_bytes()[:30_000], 100),  # truncated, decoded at a 1/4 draft
    (lambda: _damaged_png_pixels((FIXTURES / "coffee.png").read_bytes()), 2048),
    (lambda: _bad_png_crc((FIXTURES / "coffee.png").read_bytes()), 2048),
], ids=["png-cut", "jpeg-cut-draft", "png-damaged-pixels", "png-bad-crc"])
def test_damage_found_by_the_single_decode_is_image_corrupt(build: Callable[[], bytes], edge: int) -> None:
    # Given damaged upload bytes (the worker no longer decodes twice)  When prepared
    with pytest.raises(ClientInputError) as caught:
        _prepare(build(), max_long_edge=edge)
    # Then the job would fail image_corrupt, as inspect_image would have said
    assert caught.value.code == "image_corrupt"


def _noise(mode: str, size: tuple[int, int], seed: int = 3) -> Image.Image:
    rng = random.Random(seed)
    bands = len(Image.new(mode, (1, 1)).getbands())
    return Image.frombytes(mode, size, rng.randbytes(size[0] * size[1] * bands))


@pytest.mark.parametrize(("source_size", "edge", "size"), [
    ((900, 1000), 300, (270, 300)),  # several strips, LANCZOS alone
    ((1999, 1401), 250, (250, 175)),  # 8x: a box reduction by 2 first, then LANCZOS (Pillow's reducing_gap=3)
])
def test_strip_downscale_equals_one_lanczos_resize(source_size: tuple[int, int], edge: int,
                                                   size: tuple[int, int]) -> None:
    # Given an RGB PNG of noise (every pixel different) larger than the cap
    source = _noise("RGB", source_size)
    # When prepared
    prepared = _prepare(_save(source, "PNG"), max_long_edge=edge)
    # Then it is what Pillow's one-call LANCZOS resize gives, encoded the same way (to a unit of rounding in
    # the filter weights: a strip's box is a float; nearest-neighbour or a seam would be tens of levels off)
    resized = source.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    expected = Image.open(io.BytesIO(_save(resized, "JPEG", quality=92)))
    got = _decoded(prepared)
    assert got.size == expected.size == size
    diffs = [abs(a - b) for a, b in zip(got.tobytes(), expected.tobytes(), strict=True)]
    assert max(diffs) <= 16 and sum(diffs) / len(diffs) < 0.05


def test_transparent_image_is_downscaled_premultiplied_in_strips() -> None:
    # Given a 600×800 RGBA PNG: noise colours under noise alpha (transparent pixels carry colour, too)
    source = _noise("RGBA", (600, 800))
    # When prepared with a 200 px cap
    prepared = _prepare(_save(source, "PNG"), max_long_edge=200)
    # Then it is a PNG with the pixels of Pillow's own (premultiplied) LANCZOS resize of the whole image
    out = _decoded(prepared)
    assert (prepared.mime_type, out.mode, out.size) == ("image/png", "RGBA", (150, 200))
    assert out.tobytes() == source.resize((150, 200), Image.Resampling.LANCZOS).tobytes()


def test_one_transparent_corner_in_the_last_strip_keeps_alpha() -> None:
    # Given a large opaque photo with a small transparent patch at the very bottom
    source = _noise("RGB", (400, 900)).convert("RGBA")
    source.paste((0, 0, 0, 0), (0, 880, 20, 900))
    # When prepared with a 300 px cap  Then the output is RGBA, transparent there only
    out = _decoded(_prepare(_save(source, "PNG"), max_long_edge=300))
    assert out.mode == "RGBA"
    assert out.getpixel((1, 298))[3] < 64 and out.getpixel((100, 100))[3] == 255  # type: ignore[index]


def test_palette_image_is_resampled_not_picked_nearest() -> None:
    # Given a palette image of 1-pixel black and white columns
    image = Image.new("P", (800, 400), 0)
    image.putpalette([0, 0, 0, 255, 255, 255])
    for x in range(1, 800, 2):
        image.paste(1, (x, 0, x + 1, 400))
    # When prepared with a 200 px cap (4× down)
    out = _decoded(_prepare(_save(image, "PNG"), max_long_edge=200))
    # Then the columns average to grey (nearest-neighbour would keep pure black or white)
    assert out.mode == "RGB" and 100 < out.getpixel((100, 50))[0] < 156  # type: ignore[index]


def test_sixteen_bit_grey_is_scaled_when_downscaled_too() -> None:
    # Given a 16-bit grey image at half intensity, larger than the cap
    data = _save(Image.new("I;16", (600, 400), 32768), "PNG")
    # When prepared with a 150 px cap  Then it is mid grey at the new size, not white
    out = _decoded(_prepare(data, max_long_edge=150))
    assert out.size == (150, 100) and 120 < out.getpixel((75, 50))[0] < 136  # type: ignore[index]


def _marked(size: tuple[int, int]) -> Image.Image:
    """White, with a red top-left quarter and a blue bottom-right quarter: every orientation looks different."""
    image = Image.new("RGB", size, "white")
    w, h = size
    image.paste((255, 0, 0), (0, 0, w // 2, h // 2))
    image.paste((0, 0, 255), (w // 2, h // 2, w, h))
    return image


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_is_applied_after_the_downscale(orientation: int) -> None:
    # Given an 800×400 PNG with EXIF Orientation `orientation`
    exif = Image.Exif()
    exif[0x0112] = orientation
    source = _marked((800, 400))
    # When prepared with a 200 px cap
    out = _decoded(_prepare(_save(source, "PNG", exif=exif.tobytes()), max_long_edge=200))
    # Then it looks like the upright picture (what ImageOps.exif_transpose shows), downscaled
    upright = ImageOps.exif_transpose(_save_and_open(source, exif)).resize(out.size)
    assert out.size == upright.size
    for x, y in ((out.width // 4, out.height // 4), (3 * out.width // 4, 3 * out.height // 4),
                 (3 * out.width // 4, out.height // 4)):
        got, want = out.getpixel((x, y)), upright.getpixel((x, y))
        assert all(abs(a - b) < 40 for a, b in zip(got, want, strict=True))  # type: ignore[arg-type]


def _save_and_open(image: Image.Image, exif: Image.Exif) -> Image.Image:
    return Image.open(io.BytesIO(_save(image, "PNG", exif=exif.tobytes())))


def test_opening_a_non_heif_upload_does_not_load_the_heif_library() -> None:
    # Given a fresh interpreter  When it prepares a PNG
    code = ("import sys; from pathlib import Path; from workers.preprocess import prepare_image; "
            f"prepare_image(Path({str(FIXTURES / 'coffee.png')!r}).read_bytes(), max_bytes=10**8, "
            "max_pixels=10**8, max_long_edge=256); print('pillow_heif' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    # Then pillow_heif (a large native library) was never imported
    assert out.stdout.strip() == "False"


# --- no re-encoding where the bytes are already acceptable -------------------------------------------------

def _plain_jpeg() -> bytes:
    return _save(_noise("RGB", (120, 80)), "JPEG", quality=80)


def _transparent_png(**params: object) -> bytes:
    image = _noise("RGB", (60, 40)).convert("RGBA")
    image.paste((0, 0, 0, 0), (0, 0, 10, 10))
    return _save(image, "PNG", **params)


@pytest.mark.parametrize(("build", "mime"), [
    (_plain_jpeg, "image/jpeg"),
    (_transparent_png, "image/png"),
], ids=["plain-rgb-jpeg", "plain-transparent-png"])
def test_upload_that_already_is_the_output_is_sent_byte_for_byte(build: Callable[[], bytes], mime: str) -> None:
    # Given an 8-bit upload within the edge, with no metadata, in the format preparation would produce
    data = build()
    # When prepared  Then the very same bytes are sent (no generation loss, no work)
    prepared = _prepare(data)
    assert (prepared.data, prepared.mime_type) == (data, mime)
    assert (prepared.width, prepared.height) == Image.open(io.BytesIO(data)).size


def _png_with_text() -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "someone")
    return _transparent_png(pnginfo=info)


@pytest.mark.parametrize("build", [
    lambda: _save(_noise("RGB", (120, 80)), "JPEG", comment=b"shot by someone"),
    lambda: _save(_noise("RGB", (120, 80)), "JPEG", exif=Image.Exif().tobytes()),
    lambda: _save(_noise("L", (120, 80)), "JPEG"),  # grey: the output is RGB
    _png_with_text,
    lambda: _save(_noise("RGB", (3000, 20)), "JPEG"),  # over the edge
], ids=["jpeg-comment", "jpeg-exif", "grey-jpeg", "png-text", "too-wide"])
def test_uploads_with_metadata_or_work_to_do_are_re_encoded(build: Callable[[], bytes]) -> None:
    # Given an upload that carries metadata, or needs converting or downscaling
    data = build()
    # When prepared  Then new bytes are made, with nothing of the metadata left
    prepared = _prepare(data)
    assert prepared.data != data
    out = _decoded(prepared)
    assert out.mode in ("RGB", "RGBA") and not {"comment", "exif", "Author"} & set(out.info)


def test_plain_jpeg_sent_as_is_is_still_checked_for_truncation() -> None:
    # Given a metadata-free JPEG (one that would be sent as is) cut short
    data = _save(_noise("RGB", (400, 300)), "JPEG")
    # When prepared  Then the job would fail image_corrupt
    with pytest.raises(ClientInputError) as caught:
        _prepare(data[: len(data) // 2])
    assert caught.value.code == "image_corrupt"
