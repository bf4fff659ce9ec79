"""Light, synchronous image inspection: is this upload an image we accept, and how big is it?

Two levels: `inspect_header` (the web process: headers only, never a pixel decoded) and `inspect_image` (the
same checks plus verify and a decode of the first frame). The preprocess worker runs the same steps itself
(`inspect_header`, `verify_structure`, then `load_strict` on the decode it needs anyway), so it decodes once.

Owns the acceptance rules shared by the API (before a job is accepted) and the preprocess worker (before it
converts): the allowed formats, identification by content only (names and Content-Type are never trusted),
the byte limit, the pixel limit (a decompression-bomb guard read from the header, before any pixel is
decoded) and the truncation/corruption check. Every refusal is a `ClientInputError` with its public code.

It must stay light, because the web process imports it: PIL core only (no resampling, no encoding, no
worker code). HEIC/HEIF is accepted when `pillow_heif` is importable; it is imported lazily, once, and only
when an upload carries an ISO-BMFF `ftyp` box (every other upload is opened with the core plugins alone).

Pillow's own bomb guard (`Image.MAX_IMAGE_PIXELS`, a process global) still runs inside `Image.open`; the
limit that decides here is the explicit `max_pixels` argument. Pillow's hard error (above twice its global)
and its warning (when a warnings filter escalates it) are both reported as `image_too_many_pixels`.
"""

from __future__ import annotations

import functools
import io
import struct
import threading
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from PIL import Image, ImageFile

from shared.errors import ClientInputError
from shared.image_frames import gif_frames, tiff_pages

# Pillow plugin ids tried when opening; MPO (multi-picture JPEG) is opened by the JPEG plugin.
_CORE_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
_MIME_TYPES: dict[str, str] = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
    "HEIF": "image/heif",
}
DEFAULT_MAX_FRAMES = 1000  # Settings.max_frames (NANOEDIT_MAX_FRAMES) overrides it
# What a decoder raises on damaged data (zlib.error from PNG chunks, struct.error from short headers).
_DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError, struct.error, zlib.error,
)


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """What an accepted upload is, read from its bytes."""

    format: str  # "PNG" | "JPEG" | "WEBP" | "GIF" | "BMP" | "TIFF" | "HEIF"
    mime_type: str
    width: int
    height: int
    frames: int


@functools.cache
def allowed_formats() -> tuple[str, ...]:
    """The Pillow plugin ids we open; HEIF only when pillow_heif registered its opener."""
    try:
        import pillow_heif  # optional: heavy native library, imported only when first needed

        pillow_heif.register_heif_opener()
    except (ImportError, OSError, AttributeError):  # absent or broken native build: no HEIC, no crash
        return _CORE_FORMATS
    return (*_CORE_FORMATS, "HEIF") if "HEIF" in Image.OPEN else _CORE_FORMATS


def open_image(data: bytes) -> ImageFile.ImageFile:
    """Open `data` lazily (header only) with the allowed plugins; refusals are ClientInputErrors.

    Applies the Pillow-level guards only; callers that have not run `inspect_image` must check the
    pixel limit themselves before loading.
    """
    # HEIF needs an ISO-BMFF "ftyp" box at offset 4 (pillow_heif's own test), so other uploads never pay for
    # importing its native library (~4-5 MB of RSS per process).
    formats = allowed_formats() if data[4:8] == b"ftyp" else _CORE_FORMATS
    try:
        return Image.open(io.BytesIO(data), formats=formats)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # The warning only arrives as an exception when a warnings filter escalates it.
        raise _pillow_bomb_guard() from exc
    except _DECODE_ERRORS as exc:  # includes UnidentifiedImageError (an OSError)
        # A plugin may accept a weak signature ("BM" of a text file) and then fail on the header, so only
        # an unambiguous signature of an accepted format makes a failed header "corrupt".
        magic = _sniff_allowed_magic(data)
        if magic is not None:
            raise ClientInputError(f"{magic} signature but the header could not be parsed "
                                   f"({type(exc).__name__})", code="image_corrupt") from exc
        raise ClientInputError(f"content not recognised as an accepted image ({_sniff_other(data)})",
                               code="unsupported_media_type") from exc


def inspect_header(data: bytes, *, max_bytes: int, max_pixels: int, max_frames: int = DEFAULT_MAX_FRAMES
                   ) -> ImageInfo:
    """The web process's check: format by content, byte length, dimensions, pixel and frame limits, from the
    headers only. Never decodes pixel data (Pillow's `Image.open` is lazy: it parses the header and stops);
    truncation and damaged pixel data are found by the preprocess worker (`inspect_image`), which fails the
    job with `image_corrupt`.
    """
    if not data:
        raise ClientInputError("empty file (0 bytes)", code="image_corrupt")
    if len(data) > max_bytes:
        raise ClientInputError(f"{len(data)} bytes exceeds the limit of {max_bytes} bytes",
                               code="image_too_large")
    with open_image(data) as im:
        width, height = im.size
        if width < 1 or height < 1:
            raise ClientInputError(f"the header says {width}x{height}", code="image_corrupt")
        if width * height > max_pixels:  # before anything else reads past the header
            raise ClientInputError(f"{width}x{height} = {width * height} pixels exceeds the limit of "
                                   f"{max_pixels} pixels", code="image_too_many_pixels")
        info = _describe(im, data, max_frames)
    if info.frames > max_frames:
        raise ClientInputError(f"more than {max_frames} frames/pages (the limit)", code="image_too_many_frames",
                               suggestion=f"Send a still image, or one with at most {max_frames} frames/pages; "
                                          "only the first is edited.")
    return info


def inspect_image(data: bytes, *, max_bytes: int, max_pixels: int, max_frames: int = DEFAULT_MAX_FRAMES
                  ) -> ImageInfo:
    """The preprocess worker's full check: `inspect_header`, then integrity; raises `ClientInputError`.

    Order matters: cheap checks first (byte length, header, pixel count) so a bomb is refused before any
    pixel is decoded; then integrity (`verify()` on one open, a full `load()` of the first frame on a fresh
    open, JPEG loaded at 1/8 scale so the check stays cheap).
    """
    info = inspect_header(data, max_bytes=max_bytes, max_pixels=max_pixels, max_frames=max_frames)
    verify_structure(data)
    with _strict_decoding(), open_image(data) as im:
        if im.format in ("JPEG", "MPO"):
            im.draft(None, (max(1, info.width // 8), max(1, info.height // 8)))
        _guard(im.load)
    return info


def verify_structure(data: bytes) -> None:
    """Pillow's `verify()` on a fresh open (PNG chunk CRCs, container structure), no pixel decoded.

    With `inspect_header` before it and a `load_strict` of frame 0 after it, this is `inspect_image` for a
    caller that decodes the frame anyway (the preprocess worker): the picture is then decoded once, not twice.
    """
    with _strict_decoding(), open_image(data) as im:
        _guard(im.verify)


def load_strict(im: ImageFile.ImageFile) -> None:
    """Decode the current frame with truncation refused; decoder failures become `image_corrupt`."""
    with _strict_decoding():
        _guard(im.load)


def _describe(im: ImageFile.ImageFile, data: bytes, max_frames: int) -> ImageInfo:
    fmt = "JPEG" if im.format == "MPO" else (im.format or "")
    mime = _MIME_TYPES.get(fmt, "application/octet-stream")
    if fmt == "HEIF":
        mime = im.get_format_mimetype() or mime  # "image/heic" for the HEVC brands
    width, height = im.size
    if fmt == "GIF":  # Pillow would walk every frame, unbounded: count the blocks, stop past the limit
        frames = gif_frames(data, max_frames)
    elif fmt == "TIFF":
        frames = tiff_pages(data, max_frames)
    else:  # the others state the count in a header (APNG acTL, WebP demux, MPO index, HEIF item list)
        try:
            frames = int(getattr(im, "n_frames", 1))
        except _DECODE_ERRORS as exc:
            raise ClientInputError(f"{fmt} frame table could not be read ({type(exc).__name__})",
                                   code="image_corrupt") from exc
    return ImageInfo(format=fmt, mime_type=mime, width=width, height=height, frames=max(1, frames))


def _guard(step: Callable[[], object]) -> None:
    """Run verify/load, mapping decoder failures to image_corrupt (never echoing third-party text)."""
    try:
        step()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _pillow_bomb_guard() from exc
    except _DECODE_ERRORS as exc:
        raise ClientInputError(f"image data is truncated or damaged ({type(exc).__name__})",
                               code="image_corrupt") from exc


def _pillow_bomb_guard() -> ClientInputError:
    limit = Image.MAX_IMAGE_PIXELS
    where = f" ({limit} pixels, hard limit {2 * limit})" if limit else ""
    return ClientInputError(f"image dimensions exceed Pillow's decompression-bomb limit{where}",
                            code="image_too_many_pixels")


def _sniff_allowed_magic(data: bytes) -> str | None:
    """The accepted format whose unambiguous signature `data` carries (BMP's 'BM' is too weak to count)."""
    head = data[:16]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "WEBP"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "TIFF"
    if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"hevc", b"hevx", b"mif1", b"msf1"):
        return "HEIF"
    return None


def _sniff_other(data: bytes) -> str:
    """A short, safe label for what a refused upload looks like (never echoes its content)."""
    head = data[:512].lstrip().lower()
    if head.startswith(b"%pdf"):
        return "looks like PDF"
    if b"<svg" in head:
        return "looks like SVG"
    if head.startswith((b"<!doctype html", b"<html")) or b"<html" in head:
        return "looks like HTML"
    if head.startswith(b"<?xml") or head.startswith(b"<"):
        return "looks like XML/markup"
    if head.startswith(b"pk\x03\x04"):
        return "looks like a ZIP archive"
    try:
        data[:512].decode("utf-8")
    except UnicodeDecodeError:
        return f"unknown binary, {len(data)} bytes"
    return "looks like text"


class _StrictDecoding:
    """Hold `ImageFile.LOAD_TRUNCATED_IMAGES` False while any inspection runs, then restore it.

    The flag is a Pillow process global; a reference count lets concurrent inspections (threaded web
    workers) overlap without one restoring the flag while another still relies on it being False.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._saved = False

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._depth == 0:
                self._saved = ImageFile.LOAD_TRUNCATED_IMAGES
            self._depth += 1
            ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0:
                    ImageFile.LOAD_TRUNCATED_IMAGES = self._saved


_strict_decoding = _StrictDecoding()
