"""inspect_header (the web process's check): headers only, never a pixel decoded; frames counted with a bound."""

from __future__ import annotations

import io
import struct
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image, ImageFile, WebPImagePlugin

from shared.errors import ClientInputError
from shared.image_frames import gif_frames, tiff_pages
from shared.imaging import allowed_formats, inspect_header, inspect_image

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
LIMITS = {"max_bytes": 20 * 1024 * 1024, "max_pixels": 64_000_000}


def _save(image: Image.Image, fmt: str, **params: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **params)
    return out.getvalue()


def _photo(size: tuple[int, int] = (64, 48)) -> Image.Image:
    return Image.open(FIXTURES / "chelsea.png").convert("RGB").resize(size)


def gif(frames: int, size: tuple[int, int] = (8, 8)) -> bytes:
    images = [Image.new("P", size, i % 256) for i in range(frames)]
    return _save(images[0], "GIF", save_all=True, append_images=images[1:], duration=10, optimize=False)


def _heif() -> bytes:
    if "HEIF" not in allowed_formats():
        pytest.skip("pillow_heif not available")
    return _save(_photo(), "HEIF")


FORMATS: dict[str, Callable[[], bytes]] = {
    "png": lambda: _save(_photo(), "PNG"),
    "apng": lambda: _save(_photo(), "PNG", save_all=True, append_images=[_photo().rotate(90)]),
    "jpeg": lambda: _save(_photo(), "JPEG"),
    "mpo": lambda: _save(_photo(), "MPO", save_all=True, append_images=[_photo()]),
    "webp": lambda: _save(_photo(), "WEBP"),
    "webp-animated": lambda: _save(_photo(), "WEBP", save_all=True, append_images=[_photo().rotate(90)]),
    "gif": lambda: gif(3),
    "bmp": lambda: _save(_photo(), "BMP"),
    "tiff-multipage": lambda: _save(_photo(), "TIFF", save_all=True, append_images=[_photo()]),
    "cmyk-jpeg": lambda: _save(_photo().convert("CMYK"), "JPEG"),
    "heic": _heif,
}


@pytest.mark.parametrize("build", FORMATS.values(), ids=FORMATS.keys())
def test_header_check_never_decodes_pixels(build: Callable[[], bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    # Given any accepted image, and every way Pillow decodes pixels made to fail loudly
    data = build()

    def no_decoding(*_: object, **__: object) -> None:
        raise AssertionError("pixels were decoded in the web process")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    monkeypatch.setattr(Image.Image, "load", no_decoding)
    monkeypatch.setattr(ImageFile.ImageFile, "verify", no_decoding)
    monkeypatch.setattr(WebPImagePlugin.WebPImageFile, "load", no_decoding)
    monkeypatch.setattr(Image, "_getdecoder", no_decoding)
    # When the header is checked  Then it is accepted with its size, without one decoder call
    info = inspect_header(data, **LIMITS)
    assert (info.width, info.height) == ((8, 8) if info.format == "GIF" else (64, 48))


def test_truncated_file_passes_the_header_check_and_fails_the_full_one() -> None:
    # Given a PNG cut in half: its header is intact, its pixel data is not
    data = (FIXTURES / "chelsea.png").read_bytes()
    half = data[: len(data) // 2]
    # When the web checks its header  Then it is accepted (no pixel is decoded there)
    assert inspect_header(half, **LIMITS).format == "PNG"
    # And the preprocess worker's full check refuses it as image_corrupt, with the suggestion
    with pytest.raises(ClientInputError) as caught:
        inspect_image(half, **LIMITS)
    assert caught.value.code == "image_corrupt" and "re-upload" in caught.value.suggestion


@pytest.mark.parametrize(("frames", "expected"), [(1, 1), (3, 3), (1000, 1000)])
def test_gif_frames_are_counted_from_the_blocks(frames: int, expected: int) -> None:
    data = gif(frames)
    assert gif_frames(data, 5000) == expected
    assert Image.open(io.BytesIO(data)).n_frames == expected  # same answer as Pillow's full walk


def test_frame_limit_refuses_with_its_own_code_and_stops_counting() -> None:
    # Given a 2,000-frame GIF and the default limit of 1,000 frames
    data = gif(2000)
    assert gif_frames(data, 10) == 11  # counting stops one past the limit
    # When its header is checked  Then it is refused as image_too_many_frames, 422, naming the limit
    with pytest.raises(ClientInputError) as caught:
        inspect_header(data, **LIMITS, max_frames=1000)
    assert (caught.value.code, caught.value.status) == ("image_too_many_frames", 422)
    assert "1000" in caught.value.details and "1000" in caught.value.suggestion
    # And a 1,000-frame GIF is within it
    assert inspect_header(gif(1000), **LIMITS, max_frames=1000).frames == 1000


def test_gif_with_many_tiny_sub_blocks_is_counted_fast() -> None:
    # Given a 20 MB GIF frame made of 1-byte data sub-blocks (10 million of them)
    head = gif(1)
    descriptor = head.index(b"\x2c")
    body = b"\x2c" + head[descriptor + 1: descriptor + 10] + b"\x02" + b"\x01\x00" * 10_000_000 + b"\x00\x3b"
    data = head[:descriptor] + body
    # When its frames are counted  Then it takes well under two seconds (bounded by the byte limit)
    started = time.perf_counter()
    assert gif_frames(data, 1000) == 1
    assert time.perf_counter() - started < 2.0


def _tiff_chain(pages: int, loop: bool = False) -> bytes:
    """A little-endian TIFF of `pages` minimal IFDs (the last pointing back to the first when `loop`)."""
    out = bytearray(b"II*\x00" + struct.pack("<I", 8))
    for page in range(pages):
        entries = [(256, 3, 1, 1), (257, 3, 1, 1), (258, 3, 1, 8), (262, 3, 1, 1), (273, 4, 1, 0), (279, 4, 1, 1)]
        ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e) for e in entries)
        nxt = len(out) + len(ifd) + 4 if page < pages - 1 else (8 if loop else 0)
        out += ifd + struct.pack("<I", nxt)
    return bytes(out)


@pytest.mark.parametrize(("pages", "loop", "expected"), [(1, False, 1), (5, False, 5), (5, True, 5),
                                                         (3000, False, 1001)])
def test_tiff_pages_follow_the_ifd_chain_with_a_bound(pages: int, loop: bool, expected: int) -> None:
    assert tiff_pages(_tiff_chain(pages, loop), 1000) == expected


def test_real_multipage_tiff_page_count_matches_pillow() -> None:
    data = _save(_photo(), "TIFF", save_all=True, append_images=[_photo(), _photo()])
    assert tiff_pages(data, 1000) == Image.open(io.BytesIO(data)).n_frames == 3


@pytest.mark.parametrize("data", [b"", b"GIF89a", b"II*\x00", b"II*\x00" + b"\xff" * 20, b"MM\x00*" + b"\x00" * 12])
def test_frame_counters_never_raise_on_damaged_structure(data: bytes) -> None:
    assert gif_frames(data, 10) >= 1 and tiff_pages(data, 10) >= 1


def test_header_claiming_zero_or_huge_dimensions() -> None:
    # Given PNG headers claiming 100000×100000 (a bomb)  Then refused from the header, quickly
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(
        b"IEND", b"")
    with pytest.raises(ClientInputError) as caught:
        inspect_header(bomb, **LIMITS)
    assert caught.value.code == "image_too_many_pixels"
