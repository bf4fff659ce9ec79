"""Bounded output: every provider result within the output limits; the local provider within max_long_edge."""

from __future__ import annotations

import io
import random
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from shared.settings import Settings
from workers.output_bounds import bound_output
from workers.providers import build_provider
from workers.providers.base import EditRequest, InputImage, OutputImage
from workers.providers.local import LocalProvider

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
SETTINGS = Settings(max_output_bytes=2 * 1024 * 1024, max_output_pixels=1024 * 1024, max_output_long_edge=1024)


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def _size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as im:
        return im.size


def test_output_within_the_limits_is_stored_unchanged() -> None:
    image = OutputImage(data=_png(Image.new("RGB", (800, 600), "red")), mime_type="image/png")
    assert bound_output(image, SETTINGS) == (image, None)


@pytest.mark.parametrize(("size", "fmt", "expected"), [
    ((3000, 1000), "PNG", (1024, 341)),  # long edge
    ((1024, 1024 + 200), "JPEG", (856, 1024)),  # long edge
    ((1000, 1000 * 3 // 2), "WEBP", (682, 1024)),
])
def test_output_over_the_long_edge_or_pixels_is_downscaled_in_its_format(
        size: tuple[int, int], fmt: str, expected: tuple[int, int]) -> None:
    out = io.BytesIO()
    Image.new("RGB", size, "blue").save(out, fmt)
    image, refused = bound_output(OutputImage(data=out.getvalue(), mime_type=f"image/{fmt.lower()}"), SETTINGS)
    assert refused is None
    with Image.open(io.BytesIO(image.data)) as im:
        assert im.format == fmt and im.size == expected
        assert im.width * im.height <= SETTINGS.max_output_pixels
    assert image.mime_type == f"image/{fmt.lower()}"


def test_output_over_the_pixel_limit_only_is_downscaled() -> None:
    settings = SETTINGS.with_(max_output_long_edge=4096)
    data = _png(Image.new("RGB", (2000, 2000), "green"))
    image, refused = bound_output(OutputImage(data=data, mime_type="image/png"), settings)
    assert refused is None
    w, h = _size(image.data)
    assert w * h <= settings.max_output_pixels and w == h == 1024


def test_output_over_the_byte_limit_fails_with_output_too_large() -> None:
    noise = Image.frombytes("RGB", (1000, 1000), random.Random(1).randbytes(3_000_000))
    _, refused = bound_output(OutputImage(data=_png(noise), mime_type="image/png"), SETTINGS)
    assert refused is not None and refused.code == "output_too_large" and refused.status_code == 502
    assert refused.suggestion and "2097152" in refused.details


def test_output_claiming_a_huge_size_is_refused_without_decoding() -> None:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", 60_000, 60_000, 8, 2, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(
        b"IEND", b"")
    _, refused = bound_output(OutputImage(data=bomb, mime_type="image/png"), SETTINGS)
    assert refused is not None and refused.code == "output_too_large"


def test_undecodable_output_is_an_internal_error_with_a_suggestion() -> None:
    _, refused = bound_output(OutputImage(data=b"<html>oops</html>", mime_type="image/png"), SETTINGS)
    assert refused is not None and refused.code == "internal_error" and refused.suggestion


# --- the local provider ----------------------------------------------------------------------------------------

def _edit(provider: LocalProvider, instruction: str, *images: bytes, operation: str = "edit") -> Image.Image:
    result = provider.edit(EditRequest(operation=operation, instruction=instruction,
                                       images=tuple(InputImage(data=d, mime_type="image/png") for d in images)))
    return Image.open(io.BytesIO(result.images[0].data))


def test_chained_45_degree_rotations_stay_within_max_long_edge() -> None:
    # Given the provider as the workers build it (NANOEDIT_MAX_LONG_EDGE = 256 here) and a 64×64 input
    provider = build_provider(Settings(max_long_edge=256), clock=None)  # type: ignore[arg-type]
    assert isinstance(provider, LocalProvider)
    data = _png(Image.new("RGB", (64, 64), "red"))
    # When rotated by 45° twelve times (the canvas would grow ×√2 each time: 64 → 4096)
    result = provider.edit(EditRequest(operation="edit", instruction=" and ".join(["rotate 45 degrees"] * 12),
                                       images=(InputImage(data=data, mime_type="image/png"),)))
    # Then the result never exceeds the long-edge limit, and the text says it was fitted
    assert max(_size(result.images[0].data)) <= 256
    assert result.text is not None and result.text.endswith("fitted to 256 px")


def test_compose_and_resize_stay_within_max_long_edge() -> None:
    provider = LocalProvider(max_long_edge=300)
    wide = _png(Image.new("RGB", (400, 100), "blue"))
    assert max(_edit(provider, "", wide, wide, wide, operation="compose").size) <= 300
    assert max(_edit(provider, "resize to 5000 px", wide).size) == 300


def test_without_growth_nothing_is_fitted() -> None:
    provider = LocalProvider(max_long_edge=2048)
    result = provider.edit(EditRequest(operation="edit", instruction="rotate 90 degrees",
                                       images=(InputImage(data=(FIXTURES / "chelsea.png").read_bytes(),
                                                          mime_type="image/png"),)))
    assert result.text == "Applied: rotate 90°"


# --- in the pipeline: the one call in _call_provider ----------------------------------------------------------

def test_pipeline_stores_a_downscaled_output_and_fails_one_over_the_byte_limit(redis_db: Any) -> None:
    from shared.blobs import output_key
    from shared.clock import FakeClock
    from tests.workers.test_pipeline import add_job, make_ctx, run_all
    from workers.providers.stub import ScriptedProvider

    # Given a provider that returns a 3000×1000 PNG and an output long-edge limit of 1024
    clock = FakeClock()
    big = _png(Image.new("RGB", (3000, 1000), "red"))
    ctx = make_ctx(redis_db, clock, ScriptedProvider(image=big), max_output_long_edge=1024,
                   max_output_pixels=1024 * 1024)
    job_id = add_job(ctx, clock)
    run_all(ctx, job_id)
    # Then the job succeeds with the output downscaled to the limit, as stored and as recorded
    job = ctx.store.get(job_id)
    assert job is not None and job.status == "succeeded"
    assert _size(ctx.blobs.get(output_key(job_id, 0))) == (1024, 341)
    assert (job.outputs[0].width, job.outputs[0].height) == (1024, 341)

    # Given the same provider and a 10 KB byte limit  Then the output fails with output_too_large, nothing stored
    ctx = make_ctx(redis_db, clock, ScriptedProvider(image=big), max_output_bytes=10_000)
    job_id = add_job(ctx, clock, job_id="b" * 32)
    run_all(ctx, job_id)
    job = ctx.store.get(job_id)
    assert job is not None and job.status == "failed" and job.error is not None
    assert job.error.code == "output_too_large" and job.error.suggestion
    assert not ctx.blobs.exists(output_key(job_id, 0))
