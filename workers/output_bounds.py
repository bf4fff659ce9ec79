"""Every provider output, local or Gemini, is bounded before it is stored (docs/api.md, "Limits and accepted
formats"): bytes, pixels and long edge, from `NANOEDIT_MAX_OUTPUT_BYTES` / `_PIXELS` / `_LONG_EDGE`.

- Over the byte limit as delivered → the output fails with `output_too_large` (a job error: nothing stored).
- Over the pixel or long-edge limit → downscaled here, in the generate worker (LANCZOS, aspect kept), and
  re-encoded in its own format (PNG, JPEG q92, WebP q92); still over the byte limit after that → `output_too_large`.
- A header claiming more than `DECODE_FACTOR` × the pixel limit is not decoded at all (`output_too_large`):
  a provider bug or a hostile endpoint must not make the worker allocate gigabytes.
- Not a decodable PNG/JPEG/WebP → `internal_error` (the provider's answer was unusable).

The checks never raise: `bound_output` returns the image to store, or the job error for that output.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image

from shared.errors import job_error
from shared.jobs.model import JobError
from shared.settings import Settings
from workers.providers.base import OutputImage

DECODE_FACTOR = 4
_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError)


@dataclass(frozen=True, slots=True)
class OutputLimits:
    max_bytes: int
    max_pixels: int
    max_long_edge: int

    @classmethod
    def of(cls, settings: Settings) -> OutputLimits:
        return cls(max_bytes=settings.max_output_bytes, max_pixels=settings.max_output_pixels,
                   max_long_edge=settings.max_output_long_edge)


def bound_output(image: OutputImage, settings: Settings) -> tuple[OutputImage, JobError | None]:
    """(the image to store, None), or (the image, the output's job error) when it cannot be stored."""
    limits = OutputLimits.of(settings)
    if len(image.data) > limits.max_bytes:
        return image, _too_large(f"the provider returned {len(image.data)} bytes; the limit is {limits.max_bytes}")
    try:
        with Image.open(io.BytesIO(image.data), formats=tuple(_FORMATS)) as im:
            width, height = im.size
            fmt = im.format or "PNG"
            if width * height > DECODE_FACTOR * limits.max_pixels:
                return image, _too_large(f"the provider returned {width}x{height}; the limit is "
                                         f"{limits.max_pixels} pixels")
            scale = _scale(width, height, limits)
            if scale >= 1.0:
                return image, None
            im.load()
            size = (max(1, int(width * scale)), max(1, int(height * scale)))  # floor: never above a limit
            source = im.convert("RGBA") if im.mode in ("P", "1") else im  # resize would fall back to NEAREST
            resized = source.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    except Image.DecompressionBombError:  # Pillow's own guard, above twice Image.MAX_IMAGE_PIXELS
        return image, _too_large("the provider's image claims more pixels than Pillow will decode")
    except _DECODE_ERRORS as exc:
        return image, job_error("internal_error", f"the provider's image could not be decoded "
                                f"({type(exc).__name__})", suggestion="Retry the job.")
    data = _encode(resized, fmt)
    if len(data) > limits.max_bytes:
        return image, _too_large(f"{len(data)} bytes after downscaling; the limit is {limits.max_bytes}")
    return OutputImage(data=data, mime_type=_FORMATS[fmt]), None


def _scale(width: int, height: int, limits: OutputLimits) -> float:
    """The factor (≤ 1) that brings the image within the long-edge and pixel limits."""
    by_edge = limits.max_long_edge / max(width, height)
    by_pixels = (limits.max_pixels / (width * height)) ** 0.5
    return min(1.0, by_edge, by_pixels)


def _encode(im: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    if fmt == "JPEG":
        im.convert("RGB").save(out, "JPEG", quality=92)
    elif fmt == "WEBP":
        im.save(out, "WEBP", quality=92)
    else:
        im.save(out, "PNG", compress_level=1)
    return out.getvalue()


def _too_large(details: str) -> JobError:
    return job_error("output_too_large", details)
