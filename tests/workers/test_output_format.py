"""output_format / quality: the worker converts only when asked; the intake refuses what cannot apply."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from shared.jobs.options import JobOptions
from workers.output_format import convert_output
from workers.providers.base import OutputImage


def rgba_png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGBA", (32, 20), (10, 200, 30, 128)).save(buf, format="PNG")
    return buf.getvalue()


def test_no_format_leaves_the_providers_bytes_untouched() -> None:
    image = OutputImage(rgba_png(), "image/png")
    out, error = convert_output(image, JobOptions())
    assert out is image and error is None


@pytest.mark.parametrize(("fmt", "pil", "mime"), [("jpeg", "JPEG", "image/jpeg"), ("webp", "WEBP", "image/webp")])
def test_conversion_gives_the_asked_format_and_quality_matters(fmt: str, pil: str, mime: str) -> None:
    image = OutputImage(rgba_png(), "image/png")
    low, error = convert_output(image, JobOptions(output_format=fmt, quality=5))
    high, _ = convert_output(image, JobOptions(output_format=fmt, quality=100))
    assert error is None and low.mime_type == mime
    with Image.open(io.BytesIO(low.data)) as im:
        assert im.format == pil and im.size == (32, 20)
    assert len(low.data) <= len(high.data)


def test_png_to_png_is_untouched_and_garbage_is_an_output_error() -> None:
    image = OutputImage(rgba_png(), "image/png")
    assert convert_output(image, JobOptions(output_format="png"))[0] is image
    _, error = convert_output(OutputImage(b"not an image", "image/jpeg"), JobOptions(output_format="png"))
    assert error is not None and error.code == "internal_error"
