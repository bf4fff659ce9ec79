"""Worker-side preprocessing: turn one accepted upload into the image a provider is sent.

Owns what happens to pixels between acceptance and the provider call: first frame/page only, EXIF
orientation applied, colour normalised to 8-bit sRGB RGB (or RGBA when the image really is transparent),
long edge capped at `max_long_edge` (never upscaled), re-encoded as PNG (alpha) or JPEG quality 92.
Metadata (EXIF, GPS, ICC, comments) is not carried over: orientation and colour are baked into the pixels.
No re-encoding where the bytes are already acceptable: an upload that already is such a JPEG or PNG (within
the edge, 8-bit, no metadata at all; `_sendable_as_is`) is sent byte for byte, after the same integrity check.

Acceptance rules are not repeated here: the checks of `shared.imaging.inspect_image` (header limits, then
`verify`, then a strict decode of frame 0) run first and their `ClientInputError`s pass through unchanged (the
task turns them into job errors). The web process only read the headers (`inspect_header`), so this is where
truncated or damaged pixel data is found: the job fails with `image_corrupt` and its suggestion. Pure function,
no I/O; heavy Pillow work (resampling, colour management, encoding) lives here so the web process never loads it.

Memory: the one full-size buffer is the decode of frame 0 (a JPEG is decoded by libjpeg at the smallest of
1/1, 1/2, 1/4, 1/8 that is still at least the target size). Everything else is done on the small image or on
strips: mode conversions that must precede resampling (palette, 1-bit, 16-bit, alpha premultiplication) are
applied to row strips of the source as they are resized, the EXIF transpose and the ICC transform run after
the downscale, and the decode is released before them. The strip loop is hand-written because Pillow's
`resize` holds its whole first-pass intermediate (target width x source height) beside the source and the
result, and converts an RGBA/LA source to premultiplied form in full before resizing; with `box` (Pillow reads
the filter's support outside the box) every strip is computed exactly as the one-call resize would.
Filter: LANCZOS for every downscale (two 1-D passes, support 3 target pixels), never nearest-neighbour.
"""

from __future__ import annotations

import functools
import io
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image, ImageCms

from shared.errors import ClientInputError
from shared.imaging import ImageInfo, inspect_header, load_strict, open_image, verify_structure

JPEG_QUALITY = 92
# zlib level 1 for the PNG (transparent) output: a 2048x1536 RGBA photo encodes ~5x faster than at Pillow's
# default 6 (about 0.2 s instead of 1 s here) for ~17 % more bytes; the provider decodes both alike.
PNG_COMPRESS_LEVEL = 1
STRIP_ROWS = 32  # target rows per step: ~1 MB of strip buffers; 64 rows is ~6 % faster for ~1 MB more peak
_LANCZOS_SUPPORT = 3.0  # in target pixels; Pillow scales it to source pixels when shrinking
_REDUCING_GAP = 3.0  # a box reduction first only while LANCZOS is still left >= 3x (Pillow's reducing_gap)
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_PLAIN_PNG_CHUNKS = frozenset({b"IHDR", b"IDAT", b"IEND", b"pHYs", b"sRGB"})  # pixels, no metadata
# EXIF Orientation -> the transpose that shows the pixels upright (the table ImageOps.exif_transpose applies;
# applied here to the downscaled image, because transposing the full-size decode is a full-size copy).
_ORIENTATION: dict[object, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

Step = Callable[[Image.Image], Image.Image]


@dataclass(frozen=True, slots=True)
class PreparedImage:
    """A provider-ready image and what it came from."""

    data: bytes
    mime_type: str  # "image/png" | "image/jpeg"
    width: int
    height: int
    source_format: str  # ImageInfo.format of the upload, e.g. "HEIF"


def prepare_image(data: bytes, *, max_bytes: int, max_pixels: int, max_long_edge: int) -> PreparedImage:
    """Check, orient, normalise, downscale and re-encode one upload."""
    # The frame limit is the web's (NANOEDIT_MAX_FRAMES, checked at intake); only frame 0 is decoded here.
    info = inspect_header(data, max_bytes=max_bytes, max_pixels=max_pixels, max_frames=sys.maxsize)
    verify_structure(data)
    size = _target_size(info.width, info.height, max_long_edge)
    # Not a `with` block: leaving one closes the image, and the full-size decode must instead be released by
    # dropping its last reference as soon as the downscaled image exists (BytesIO holds no OS resource).
    src = open_image(data)  # frame 0 of a GIF / page 0 of a TIFF is what open() positions on
    as_is = _sendable_as_is(src, data, info, size)
    if info.format == "JPEG" and (as_is or size != (info.width, info.height)):
        # libjpeg picks the smallest DCT scale whose result is still >= the size asked for. Bytes sent as they
        # are need only the integrity check, which 1/8 scale gives as well as the full decode (inspect_image).
        src.draft(None, (max(1, info.width // 8), max(1, info.height // 8)) if as_is else size)
    load_strict(src)  # the integrity check: frame 0 decoded in full (a JPEG at its draft scale)
    if as_is and (src.mode != "RGBA" or _alpha_min(src) < 255):
        return PreparedImage(data=data, mime_type=info.mime_type, width=info.width, height=info.height,
                             source_format=info.format)
    orientation = _orientation(src)
    icc = src.info.get("icc_profile")
    icc = icc if isinstance(icc, bytes) and icc else None
    normaliser = _Normaliser(src)
    image = normaliser.whole(src) if size == src.size else _resized(src, size, normaliser.step)
    del src  # the full-size pixels go now, before any copy of the small image is made
    image, has_alpha = normaliser.finish(image)
    if orientation is not None:
        image = image.transpose(orientation)
    if image.mode == "CMYK":  # ink values only mean something through their profile
        image = _to_srgb(image, icc, "RGB") if icc else image
        image = image.convert("RGB") if image.mode == "CMYK" else image
    elif icc:  # after downscaling: colour management is per pixel, so do it on the fewest pixels
        image = _to_srgb(image, icc, image.mode)
    image.info = {}  # PNG save would embed an `icc_profile` left in info; nothing of the upload is sent on
    out = io.BytesIO()
    if has_alpha:
        image.save(out, "PNG", compress_level=PNG_COMPRESS_LEVEL)
        mime = "image/png"
    else:
        image.save(out, "JPEG", quality=JPEG_QUALITY)
        mime = "image/jpeg"
    return PreparedImage(data=out.getvalue(), mime_type=mime, width=image.width, height=image.height,
                         source_format=info.format)


def _sendable_as_is(src: Image.Image, data: bytes, info: ImageInfo, size: tuple[int, int]) -> bool:
    """Whether the upload already is what preparation makes, so its bytes are sent without re-encoding: within
    the long edge, one frame, and either an 8-bit RGB JPEG whose only application segment is JFIF (no EXIF,
    so no orientation; no ICC, so sRGB; no XMP, comments or Adobe segment) or an 8-bit RGBA PNG with no chunk
    beyond pixels, pHYs and sRGB (the caller then also needs a pixel that is not fully opaque)."""
    if size != (info.width, info.height) or info.frames != 1:
        return False
    if info.format == "JPEG":
        segments = getattr(src, "applist", None)
        return (src.format == "JPEG" and src.mode == "RGB" and isinstance(segments, list)
                and all(marker == "APP0" and body.startswith(b"JFIF\0") for marker, body in segments))
    if info.format == "PNG":
        return src.mode == "RGBA" and data[24:25] == b"\x08" and _png_chunk_types(data) <= _PLAIN_PNG_CHUNKS
    return False


def _png_chunk_types(data: bytes) -> set[bytes]:
    """The chunk types of a PNG, walked from the signature to IEND (the structure verify() already checked)."""
    types: set[bytes] = set()
    pos = 8
    while pos + 8 <= len(data):
        kind = data[pos + 4: pos + 8]
        types.add(kind)
        if kind == b"IEND":
            break
        pos += 12 + int.from_bytes(data[pos: pos + 4], "big")
    return types


def _alpha_min(image: Image.Image) -> int:
    low, _ = image.getchannel("A").getextrema()
    return int(low) if isinstance(low, int | float) else 0


def _target_size(width: int, height: int, max_long_edge: int) -> tuple[int, int]:
    long_edge = max(width, height)
    if long_edge <= max_long_edge:
        return width, height
    scale = max_long_edge / long_edge
    return max(1, round(width * scale)), max(1, round(height * scale))


def _orientation(image: Image.Image) -> Image.Transpose | None:
    """The transpose the EXIF Orientation tag asks for; a malformed EXIF block is ignored, not a failure."""
    try:
        return _ORIENTATION.get(image.getexif().get(0x0112))
    except (OSError, ValueError, KeyError, TypeError, SyntaxError):
        return None


def _resized(src: Image.Image, size: tuple[int, int], step: Step | None) -> Image.Image:
    """`src` resized to `size` with LANCZOS, `STRIP_ROWS` target rows at a time; `step` converts each source
    strip (with the filter's margin) into the mode it is resampled in. Never upscales: callers pass
    `size` <= the decoded size (a JPEG draft is never below it).

    A shrink by 6x or more of an image resampled as it is (RGB, L, CMYK) starts with an integer box reduction
    that leaves >= 3x for LANCZOS, as Pillow's `reducing_gap=3.0` does (visually identical, several times
    faster); the reduced copy is at most a quarter of the source."""
    width, height = size
    extent_x, extent_y = float(src.width), float(src.height)  # the source area, in `src` pixels
    factor = (int(src.width / width / _REDUCING_GAP) or 1, int(src.height / height / _REDUCING_GAP) or 1)
    if step is None and min(factor) > 1:
        src = src.reduce(factor)
        extent_x, extent_y = extent_x / factor[0], extent_y / factor[1]
    scale_y = extent_y / height
    margin = math.ceil(_LANCZOS_SUPPORT * scale_y) + 1  # source rows the filter reads beyond a strip
    out: Image.Image | None = None
    for y0 in range(0, height, STRIP_ROWS):
        y1 = min(height, y0 + STRIP_ROWS)
        top, bottom = y0 * scale_y, y1 * scale_y
        piece, offset = src, 0
        if step is not None:
            offset = max(0, math.floor(top) - margin)
            piece = step(src.crop((0, offset, src.width, min(src.height, math.ceil(bottom) + margin))))
        strip = piece.resize((width, y1 - y0), Image.Resampling.LANCZOS,
                             box=(0, top - offset, extent_x, bottom - offset))
        if out is None:
            out = Image.new(strip.mode, size)
        out.paste(strip, (0, y0))
    assert out is not None  # height >= 1
    return out


class _Normaliser:
    """Which mode the source is resampled in, converted strip by strip, and the final 8-bit RGB/RGBA.

    RGB, L and CMYK are resampled as they are. Palette and 1-bit images are expanded first (Pillow resamples
    them with nearest-neighbour otherwise), 16-bit and 32-bit grey scaled into 8 bits (a plain convert would
    clip), and anything that may be transparent is resampled premultiplied (as Pillow's own resize does, so
    transparent pixels lend no colour) while the lowest alpha seen decides RGBA versus RGB.
    """

    def __init__(self, src: Image.Image) -> None:
        self.alpha_min = 255
        mode = src.mode
        self.step: Step | None
        if mode in _SIXTEEN_BIT or mode in ("I", "F"):
            self.step = _eight_bit(src)
        elif (mode in _ALPHA_MODES or "transparency" in src.info
              or (mode == "P" and src.palette is not None and src.palette.mode == "RGBA")):
            self.step = self._premultiplied
        elif mode in ("RGB", "L", "CMYK"):
            self.step = None
        else:  # "1", "P", and the rarer ones (YCbCr, LAB, HSV, RGBX)
            self.step = _converter("RGB")

    def whole(self, src: Image.Image) -> Image.Image:
        """The conversion alone, for an image that needs no resizing (no premultiplication round trip)."""
        if self.step == self._premultiplied:
            return self._rgba(src)
        return self.step(src) if self.step is not None else src

    def _premultiplied(self, image: Image.Image) -> Image.Image:
        return self._rgba(image).convert("RGBa")

    def _rgba(self, image: Image.Image) -> Image.Image:
        rgba = _converter("RGBA")(image.convert("LA") if image.mode == "La" else image)
        alpha_min, _ = rgba.getchannel("A").getextrema()
        if isinstance(alpha_min, int | float):
            self.alpha_min = min(self.alpha_min, int(alpha_min))
        return rgba

    def finish(self, image: Image.Image) -> tuple[Image.Image, bool]:
        """The resized image in RGB (or CMYK, for the ICC step) or, when some pixel is transparent, RGBA."""
        if image.mode in ("RGBa", "RGBA"):
            rgba = image.convert("RGBA") if image.mode == "RGBa" else image
            return (rgba, True) if self.alpha_min < 255 else (rgba.convert("RGB"), False)
        if image.mode in ("RGB", "CMYK"):
            return image, False
        return _converter("RGB")(image), False


def _converter(mode: str) -> Step:
    def convert(image: Image.Image) -> Image.Image:
        try:
            return image.convert(mode)
        except ValueError as exc:
            raise ClientInputError(f"pixel mode {image.mode} cannot be converted to {mode}",
                                   code="unsupported_media_type") from exc
    return convert


def _eight_bit(src: Image.Image) -> Step:
    """Scale 16-bit and 32-bit grey into 0..255 (Pillow's plain convert would clip them); the range of an
    I/F image is read once from the whole source so every strip is scaled alike."""
    if src.mode in _SIXTEEN_BIT:
        return lambda im: im.convert("I").point(lambda v: v * (1 / 257)).convert("L")
    lo, hi = src.getextrema()
    assert isinstance(lo, int | float) and isinstance(hi, int | float)
    if src.mode == "F" and lo >= 0 and hi <= 1.0:  # normalised float data
        k, offset = 255.0, 0.0
    elif lo >= 0 and hi <= 255:
        return lambda im: im.convert("L")
    else:  # unknown range (12-bit sensors, signed data): stretch what is there
        k = 255 / ((hi - lo) or 1)
        offset = -lo * k
    return lambda im: im.point(lambda v: v * k + offset).convert("L")


def _to_srgb(image: Image.Image, icc: bytes, out_mode: str) -> Image.Image:
    """Convert pixels through their embedded ICC profile to sRGB (CMYK print files, Display P3 phones).

    Providers ignore embedded profiles, so without this a P3 photo looks washed out and a CMYK one
    garish. A profile Little CMS cannot read, or one that does not match the pixels (a grey profile on
    a palette image), leaves the pixels as they are.
    """
    try:
        transform = _srgb_transform(icc, image.mode, out_mode)
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return image
    if transform is None:
        return image
    try:
        return transform.apply(image)
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return image


@functools.lru_cache(maxsize=32)
def _srgb_transform(icc: bytes, in_mode: str, out_mode: str) -> ImageCms.ImageCmsTransform | None:
    """Little CMS transform from `icc` to sRGB, built once per profile and modes: uploads from one camera or
    phone carry the same few profiles, and building a transform cost more than applying it to a 2048 px
    image (~1.9 of 3.5 ms on a 451x300 photo, cProfile). A profile that cannot be read raises (not cached)."""
    return ImageCms.buildTransform(ImageCms.ImageCmsProfile(io.BytesIO(icc)), ImageCms.createProfile("sRGB"),
                                   in_mode, out_mode)
