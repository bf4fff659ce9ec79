"""inspect_image: what the API accepts, identified by content, and every refusal's public code."""

from __future__ import annotations

import io
import random
import struct
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image, ImageFile, PngImagePlugin

from shared.errors import ClientInputError
from shared.imaging import ImageInfo, allowed_formats, inspect_image

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
MB = 1024 * 1024
LIMITS = {"max_bytes": 20 * MB, "max_pixels": 64_000_000}


def _save(image: Image.Image, fmt: str, **params: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **params)
    return out.getvalue()


def _photo(size: tuple[int, int] = (64, 48)) -> Image.Image:
    return Image.open(FIXTURES / "chelsea.png").convert("RGB").resize(size)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bomb(width: int = 30_000, height: int = 30_000) -> bytes:
    """A PNG whose header claims width×height RGB; the IDAT holds the start of a stream of zero rows.

    Decoding it would need width×height×3 bytes; refusing it must only need the header.
    """
    rows = zlib.compressobj(9)
    idat = rows.compress(bytes(1 + 3 * width) * 64) + rows.flush(zlib.Z_SYNC_FLUSH)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat)
            + _png_chunk(b"IEND", b""))


def _refusal(data: bytes, **limits: int) -> ClientInputError:
    with pytest.raises(ClientInputError) as caught:
        inspect_image(data, **{**LIMITS, **limits})
    return caught.value


# --- accepted formats -------------------------------------------------------------------------------------

def _animated_gif() -> bytes:
    frames = [Image.new("RGB", (40, 30), colour) for colour in ("red", "green", "blue")]
    return _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def _multipage_tiff() -> bytes:
    return _save(_photo(), "TIFF", save_all=True, append_images=[_photo((32, 32))])


def _mpo() -> bytes:
    return _save(_photo(), "MPO", save_all=True, append_images=[_photo()])


def _heif() -> bytes:
    if "HEIF" not in allowed_formats():
        pytest.skip("pillow_heif not available")
    return _save(_photo(), "HEIF")


ACCEPTED: list[tuple[str, Callable[[], bytes], str, str, int]] = [
    ("png", lambda: _save(_photo(), "PNG"), "PNG", "image/png", 1),
    ("jpeg", lambda: _save(_photo(), "JPEG"), "JPEG", "image/jpeg", 1),
    ("webp", lambda: _save(_photo(), "WEBP"), "WEBP", "image/webp", 1),
    ("gif-animated", _animated_gif, "GIF", "image/gif", 3),
    ("bmp", lambda: _save(_photo(), "BMP"), "BMP", "image/bmp", 1),
    ("tiff-multipage", _multipage_tiff, "TIFF", "image/tiff", 2),
    ("mpo", _mpo, "JPEG", "image/jpeg", 2),
    ("heic", _heif, "HEIF", "image/heic", 1),
]


@pytest.mark.parametrize(("build", "fmt", "mime", "frames"), [a[1:] for a in ACCEPTED],
                         ids=[a[0] for a in ACCEPTED])
def test_each_accepted_format_is_identified_by_content(build: Callable[[], bytes], fmt: str, mime: str,
                                                       frames: int) -> None:
    # Given an image in an accepted format
    data = build()
    # When it is inspected
    info = inspect_image(data, **LIMITS)
    # Then its format, type, size and frame count are read from the bytes
    expected_size = (40, 30) if fmt == "GIF" else (64, 48)
    assert info == ImageInfo(format=fmt, mime_type=mime, width=expected_size[0], height=expected_size[1],
                             frames=frames)


@pytest.mark.parametrize(("name", "fmt", "size"), [
    ("chelsea.png", "PNG", (451, 300)), ("coffee.png", "PNG", (600, 400)), ("rocket.jpg", "JPEG", (640, 427)),
])
def test_real_photos_are_accepted(name: str, fmt: str, size: tuple[int, int]) -> None:
    # Given a real photograph  When inspected
    info = inspect_image((FIXTURES / name).read_bytes(), **LIMITS)
    # Then it is accepted with its true dimensions
    assert (info.format, (info.width, info.height)) == (fmt, size)


# --- not images, or images we do not accept -------------------------------------------------------------

NOT_IMAGES = {
    "text": b"Hello, this is a plain text file.\nNothing to see here.\n",
    "html": b"<!DOCTYPE html><html><body><img src=x onerror=alert(1)></body></html>",
    "svg": b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>',
    "pdf": b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n",
    "random": random.Random(42).randbytes(4096),
    "bmp-lookalike-text": b"BMW drivers rarely signal.\n" * 4,
    "ico": _save(Image.new("RGB", (32, 32), "red"), "ICO"),
    "tga": _save(Image.new("RGB", (32, 32), "red"), "TGA"),
    "ppm": _save(Image.new("RGB", (32, 32), "red"), "PPM"),
}


@pytest.mark.parametrize("data", NOT_IMAGES.values(), ids=NOT_IMAGES.keys())
def test_non_images_and_other_formats_are_unsupported_media_type(data: bytes) -> None:
    # Given bytes that are not an accepted image, whatever the upload was called
    # When inspected
    error = _refusal(data)
    # Then they are refused as unsupported (415), with a short technical detail that does not echo content
    assert (error.code, error.status) == ("unsupported_media_type", 415)
    assert len(error.details) < 120 and b"alert" not in error.details.encode()


def test_svg_detail_names_what_it_looks_like() -> None:
    assert "SVG" in _refusal(NOT_IMAGES["svg"]).details


# --- empty, oversize, corrupt ---------------------------------------------------------------------------

def test_empty_file_is_image_corrupt() -> None:
    # Given 0 bytes  When inspected  Then image_corrupt says the file is empty
    error = _refusal(b"")
    assert error.code == "image_corrupt" and "empty file" in error.details


def test_oversize_file_is_image_too_large_naming_size_and_limit() -> None:
    # Given a 112 KB photo and a 100 000-byte limit
    data = (FIXTURES / "rocket.jpg").read_bytes()
    # When inspected
    error = _refusal(data, max_bytes=100_000)
    # Then it is too large, and the detail names both numbers
    assert (error.code, error.status) == ("image_too_large", 413)
    assert str(len(data)) in error.details and "100000" in error.details


@pytest.mark.parametrize("name", ["chelsea.png", "rocket.jpg"])
def test_file_cut_in_half_is_image_corrupt(name: str) -> None:
    # Given a real photo cut in half
    data = (FIXTURES / name).read_bytes()
    # When inspected  Then it is refused as corrupt (truncation is detected, not padded with grey)
    assert _refusal(data[: len(data) // 2]).code == "image_corrupt"


def test_truncation_is_refused_even_if_someone_enabled_load_truncated_images(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a process where Pillow was told to accept truncated images
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    data = (FIXTURES / "rocket.jpg").read_bytes()
    # When a truncated JPEG is inspected
    error = _refusal(data[: len(data) // 2])
    # Then it is still corrupt, and the process-wide flag is left as it was
    assert error.code == "image_corrupt"
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True


def test_accepted_signature_with_broken_header_is_image_corrupt() -> None:
    # Given a PNG signature followed by garbage  When inspected  Then corrupt, not "unsupported"
    assert _refusal(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64).code == "image_corrupt"


def test_png_with_damaged_pixel_data_is_image_corrupt() -> None:
    # Given a PNG whose compressed pixel data is damaged but whose chunk CRCs are valid
    data = bytearray(_save(_photo(), "PNG"))
    idat = data.index(b"IDAT")
    length = struct.unpack(">I", data[idat - 4: idat])[0]
    data[idat + 4 + 10: idat + 4 + 40] = b"\xff" * 30
    data[idat + 4 + length: idat + 8 + length] = struct.pack(
        ">I", zlib.crc32(bytes(data[idat: idat + 4 + length])))
    # When inspected  Then the full load catches it
    assert _refusal(bytes(data)).code == "image_corrupt"


# --- pixel limit (bomb guard) ---------------------------------------------------------------------------

def test_png_bomb_is_refused_fast_from_the_header() -> None:
    # Given a 30000×30000 PNG (2.7 GB decoded) that is a few KB on disk
    data = png_bomb()
    assert len(data) < 500_000
    # When inspected
    started = time.perf_counter()
    error = _refusal(data)
    # Then it is refused as too many pixels, quickly
    assert (error.code, error.status) == ("image_too_many_pixels", 422)
    assert time.perf_counter() - started < 1.0


def test_pixel_limit_does_not_depend_on_pillows_global_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given Pillow's own bomb guard switched off, and decoding made to fail loudly if it is attempted
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)

    def no_decoding(*_: object) -> None:
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    monkeypatch.setattr(PngImagePlugin.PngImageFile, "verify", no_decoding)
    # When the bomb is inspected
    error = _refusal(png_bomb())
    # Then the explicit max_pixels refuses it from the header, naming size and limit
    assert error.code == "image_too_many_pixels"
    assert "30000x30000" in error.details and "64000000" in error.details


def test_explicit_limit_below_pillows_is_enforced() -> None:
    # Given a 640×427 photo (273 280 pixels) and a 100 000-pixel limit
    error = _refusal((FIXTURES / "rocket.jpg").read_bytes(), max_pixels=100_000)
    # Then it is too many pixels
    assert error.code == "image_too_many_pixels" and "640x427" in error.details


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")
def test_escalated_pillow_bomb_warning_maps_to_too_many_pixels(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given Pillow's warning threshold below the image size and warnings escalated to errors
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    data = _save(Image.new("RGB", (40, 40)), "PNG")  # 1600 pixels: above 1000, below Pillow's hard 2000
    # When inspected  Then it is refused with the public code, not a raw warning
    assert _refusal(data).code == "image_too_many_pixels"
