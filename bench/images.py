"""Deterministic test images for the benches, generated (never checked in): a noise PNG of a given byte size for
uploads, and photo-like pictures (smooth gradients + blurred blobs + fine grain) so JPEG/PNG sizes are realistic.
Seeded `random.Random`, so every run measures the same bytes."""

from __future__ import annotations

import io
import random

from PIL import Image, ImageFilter


def noise_png(approx_bytes: int = 240_000, seed: int = 11) -> bytes:
    """An RGB PNG of random pixels (incompressible, so its size is ≈ 3 bytes per pixel)."""
    side = int((approx_bytes / 3) ** 0.5)
    rng = random.Random(seed)
    im = Image.frombytes("RGB", (side, side), rng.randbytes(side * side * 3))
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def photo_like(width: int, height: int, seed: int = 7, grain: float = 0.08) -> Image.Image:
    """Gradients with soft blobs (low frequencies) plus per-pixel grain (high frequencies), like a photo."""
    rng = random.Random(seed)
    small = (max(8, width // 64), max(8, height // 64))
    blobs = Image.frombytes("RGB", small, rng.randbytes(small[0] * small[1] * 3))
    blobs = blobs.filter(ImageFilter.GaussianBlur(2)).resize((width, height), Image.Resampling.BICUBIC)
    ramp_x = Image.linear_gradient("L").rotate(90).resize((width, height))
    ramp_y = Image.linear_gradient("L").resize((width, height))
    base = Image.blend(blobs, Image.merge("RGB", (ramp_x, ramp_y, ramp_x.transpose(Image.Transpose.FLIP_LEFT_RIGHT))),
                       0.5)
    if grain <= 0:
        return base
    noise = Image.frombytes("L", (width, height), rng.randbytes(width * height)).convert("RGB")
    return Image.blend(base, noise, grain)


def encode(im: Image.Image, fmt: str, **params: int) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **params)
    return buf.getvalue()
