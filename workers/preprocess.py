"""Worker-side preprocessing: turn one accepted upload into the image a provider is sent.

Owns what happens to pixels between acceptance and the provider call: first frame/page only, EXIF
orientation applied, colour normalised to 8-bit sRGB RGB (or RGBA when the image really is transparent),
long edge capped at `max_long_edge` (never upscaled), re-encoded as PNG (alpha) or JPEG quality 92.
Metadata (EXIF, GPS, ICC, comments) is not carried over: orientation and colour are baked into the pixels.

Acceptance rules are not repeated here: `shared.imaging.inspect_image` runs first and its
`ClientInputError`s pass through unchanged (the task turns them into job errors). The web process only read
the headers (`inspect_header`), so this is where truncated or damaged pixel data is found: the job fails with
`image_corrupt` and its suggestion. Pure function, no I/O;
heavy Pillow work (resampling, colour management, encoding) lives here so the web process never loads it.
"""

from __future__ import annotations

import io
import math
import sys
from dataclasses import dataclass

from PIL import Image, ImageCms, ImageOps

from shared.errors import ClientInputError
from shared.imaging import inspect_image, load_strict, open_image

JPEG_QUALITY = 92
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


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
    info = inspect_image(data, max_bytes=max_bytes, max_pixels=max_pixels, max_frames=sys.maxsize)
    with open_image(data) as src:  # frame 0 of a GIF / page 0 of a TIFF is what open() positions on
        long_edge = max(info.width, info.height)
        if info.format == "JPEG" and long_edge > max_long_edge:
            # libjpeg scales by 1/2, 1/4 or 1/8 while decoding; draft picks the smallest scale whose
            # result is still ≥ the target, so the LANCZOS pass below only finishes the job.
            scale = max_long_edge / long_edge
            src.draft(None, (math.ceil(info.width * scale), math.ceil(info.height * scale)))
        load_strict(src)
        image = _oriented(src)
    icc = image.info.get("icc_profile")
    icc = icc if isinstance(icc, bytes) and icc else None
    if image.mode == "CMYK" and icc:  # ink values only mean something through their profile
        image = _to_srgb(image, icc, "RGB")
        icc = None
    image, has_alpha = _to_rgb_or_rgba(image)
    image = _downscale(image, max_long_edge)
    if icc:  # after downscaling: colour management is per pixel, so do it on the fewest pixels
        image = _to_srgb(image, icc, image.mode)
    out = io.BytesIO()
    if has_alpha:
        image.save(out, "PNG")
        mime = "image/png"
    else:
        image.save(out, "JPEG", quality=JPEG_QUALITY)
        mime = "image/jpeg"
    return PreparedImage(data=out.getvalue(), mime_type=mime, width=image.width, height=image.height,
                         source_format=info.format)


def _oriented(image: Image.Image) -> Image.Image:
    """Apply the EXIF Orientation tag; a malformed EXIF block is ignored rather than failing the job."""
    try:
        return ImageOps.exif_transpose(image)
    except (OSError, ValueError, KeyError, TypeError, SyntaxError):
        return image.copy()


def _to_srgb(image: Image.Image, icc: bytes, out_mode: str) -> Image.Image:
    """Convert pixels through their embedded ICC profile to sRGB (CMYK print files, Display P3 phones).

    Providers ignore embedded profiles, so without this a P3 photo looks washed out and a CMYK one
    garish. A profile Little CMS cannot read, or one that does not match the pixels (a grey profile on
    a palette image), leaves the pixels as they are.
    """
    try:
        converted = ImageCms.profileToProfile(
            image, ImageCms.ImageCmsProfile(io.BytesIO(icc)), ImageCms.createProfile("sRGB"),
            outputMode=out_mode)
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return image
    return converted if converted is not None else image


def _to_rgb_or_rgba(image: Image.Image) -> tuple[Image.Image, bool]:
    """8-bit RGB, or RGBA when at least one pixel is not fully opaque; returns (image, has_alpha)."""
    image = _to_8bit(image)
    may_have_alpha = (image.mode in _ALPHA_MODES or "transparency" in image.info
                      or (image.mode == "P" and image.palette is not None and image.palette.mode == "RGBA"))
    try:
        if may_have_alpha:
            rgba = image.convert("RGBA")
            alpha_min, _ = rgba.getchannel("A").getextrema()
            if isinstance(alpha_min, int | float) and alpha_min < 255:
                return rgba, True
            return rgba.convert("RGB"), False
        return image.convert("RGB"), False
    except ValueError as exc:
        raise ClientInputError(f"pixel mode {image.mode} cannot be converted to RGB",
                               code="unsupported_media_type") from exc


def _to_8bit(image: Image.Image) -> Image.Image:
    """Scale 16-bit and 32-bit grey images into 0..255 (Pillow's plain convert would clip them)."""
    if image.mode in _SIXTEEN_BIT:
        return image.convert("I").point(lambda v: v * (1 / 257)).convert("L")
    if image.mode in ("I", "F"):
        lo, hi = image.getextrema()
        assert isinstance(lo, int | float) and isinstance(hi, int | float)
        if image.mode == "F" and lo >= 0 and hi <= 1.0:  # normalised float data
            k, offset = 255.0, 0.0
        elif lo >= 0 and hi <= 255:
            return image.convert("L")
        else:  # unknown range (12-bit sensors, signed data): stretch what is there
            k = 255 / ((hi - lo) or 1)
            offset = -lo * k
        return image.point(lambda v: v * k + offset).convert("L")
    return image


def _downscale(image: Image.Image, max_long_edge: int) -> Image.Image:
    width, height = image.size
    long_edge = max(width, height)
    if long_edge <= max_long_edge:
        return image
    scale = max_long_edge / long_edge
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    # reducing_gap: a cheap box reduction first, then LANCZOS on the last ≥ 3× step (visually identical).
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
