"""Every bad input gets the error body of docs/api.md#errors (right status, stable code, a suggestion) and leaves
nothing behind: no job record, no stored blob."""

from __future__ import annotations

import base64
import io
import struct
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import requests
from PIL import Image

from tests.conftest import FIXTURES
from tests.e2e.test_pipeline import submit, wait_done
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e
PNG = (FIXTURES / "chelsea.png").read_bytes()
JPEG = (FIXTURES / "rocket.jpg").read_bytes()


def png_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A small, valid-looking PNG whose header claims width × height pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (width + 1) * 4, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def assert_error(resp: requests.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, (resp.status_code, resp.text)
    body = resp.json()
    assert body["code"] == code, body
    assert body["status_code"] == status
    assert body["error"] and body["suggestion"], body
    assert "Traceback" not in resp.text
    return dict(body)


@pytest.fixture
def nothing_written(stack: Stack) -> Iterator[None]:
    r = redis.Redis.from_url(stack.env["NANOEDIT_REDIS_URL"], decode_responses=True)
    blobs = stack.data_dir / "blobs" / "jobs"

    def snapshot() -> tuple[int, int]:
        jobs = sum(1 for _ in r.scan_iter("nanoedit:job:*", count=1000))
        return jobs, (len(list(blobs.iterdir())) if blobs.exists() else 0)

    before = snapshot()
    yield
    assert snapshot() == before, "a rejected request left a job record or blobs behind"


def post(stack: Stack, images: list[tuple[str, bytes]], **fields: Any) -> requests.Response:
    # Always multipart, fields as parts too: a url-encoded body (what requests sends without files) is a 415.
    files = [("image", (name, data, "image/png")) for name, data in images]
    files += [(k, (None, str(v))) for k, v in fields.items()]  # type: ignore[misc]
    return requests.post(f"{stack.url}/v1/jobs", files=files or None, timeout=60)


CASES: list[tuple[str, list[tuple[str, bytes]], dict[str, Any], int, str]] = [
    ("missing instruction", [("a.png", PNG)], {}, 400, "missing_instruction"),
    ("blank instruction", [("a.png", PNG)], {"instruction": "   "}, 400, "missing_instruction"),
    ("no image", [], {"instruction": "grayscale"}, 400, "not_enough_images"),
    ("0-byte file", [("a.png", b"")], {"instruction": "grayscale"}, 422, "image_corrupt"),
    ("text named .png", [("a.png", b"hello, this is not an image\n" * 20)], {"instruction": "x"}, 415,
     "unsupported_media_type"),
    ("HTML named .png", [("a.png", b"<!doctype html><html><body>hi</body></html>")], {"instruction": "x"}, 415,
     "unsupported_media_type"),
    ("SVG named .png", [("a.png", b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>')],
     {"instruction": "x"}, 415, "unsupported_media_type"),
    ("image over the byte limit", [("a.png", PNG[:64] + b"\0" * (21 * 1024 * 1024))], {"instruction": "x"},
     413, "image_too_large"),
    ("30000x30000 PNG bomb", [("bomb.png", png_bomb())], {"instruction": "x"}, 422, "image_too_many_pixels"),
    ("num_images 0", [("a.png", PNG)], {"instruction": "x", "num_images": 0}, 400, "invalid_request"),
    ("num_images 5", [("a.png", PNG)], {"instruction": "x", "num_images": 5}, 400, "invalid_request"),
    ("num_images abc", [("a.png", PNG)], {"instruction": "x", "num_images": "abc"}, 400, "invalid_request"),
    ("unknown operation", [("a.png", PNG)], {"instruction": "x", "operation": "paint"}, 400, "invalid_request"),
    ("compose with 1 image", [("a.png", PNG)], {"instruction": "x", "operation": "compose"}, 400,
     "not_enough_images"),
    ("style_transfer with 3", [("a.png", PNG)] * 3, {"instruction": "x", "operation": "style_transfer"}, 400,
     "too_many_images"),
]


@pytest.mark.parametrize(("name", "images", "fields", "status", "code"), CASES, ids=[c[0] for c in CASES])
def test_bad_multipart_submission(stack: Stack, nothing_written: None, name: str, images: list[tuple[str, bytes]],
                                  fields: dict[str, Any], status: int, code: str) -> None:
    assert_error(post(stack, images, **fields), status, code)


@pytest.mark.parametrize("data", [PNG[: len(PNG) // 2], JPEG[: len(JPEG) // 2]], ids=["png", "jpeg"])
def test_truncated_image_is_accepted_then_fails_the_job_as_image_corrupt(stack: Stack, data: bytes) -> None:
    # The web process reads headers only (no pixel decoded there); the preprocess worker's full decode finds the
    # truncation and fails the job with image_corrupt and its suggestion (docs/api.md, "Limits and accepted formats").
    resp = post(stack, [("a.png", data)], instruction="grayscale")
    assert resp.status_code == 202, resp.text
    done = wait_done(stack, resp.json()["id"])
    assert done["status"] == "failed" and done["error"]["code"] == "image_corrupt", done
    assert done["error"]["suggestion"]


def test_malformed_json(stack: Stack, nothing_written: None) -> None:
    resp = requests.post(f"{stack.url}/v1/jobs", data=b'{"instruction": "x", "images": [', timeout=10,
                         headers={"Content-Type": "application/json"})
    assert_error(resp, 400, "invalid_request")


def test_base64_that_does_not_decode(stack: Stack, nothing_written: None) -> None:
    resp = requests.post(f"{stack.url}/v1/jobs", timeout=10, json={
        "instruction": "x", "images": [{"data": "!!!not base64!!!", "mime_type": "image/png"}]})
    assert_error(resp, 400, "invalid_request")


def test_json_num_images_and_image_count(stack: Stack, nothing_written: None) -> None:
    good = {"data": base64.b64encode(PNG).decode(), "mime_type": "image/png"}
    assert_error(requests.post(f"{stack.url}/v1/jobs", timeout=10, json={
        "instruction": "x", "images": [good], "num_images": 5}), 400, "invalid_request")
    assert_error(requests.post(f"{stack.url}/v1/jobs", timeout=10, json={
        "instruction": "x", "images": []}), 400, "not_enough_images")


def test_unknown_job_id(stack: Stack) -> None:
    assert_error(requests.get(f"{stack.url}/v1/jobs/{'0' * 32}", timeout=10), 404, "not_found")


@pytest.mark.parametrize("bad_id", ["..%2F..%2Fetc%2Fpasswd", "abc", "../../etc/passwd", "%00", "a" * 300])
def test_non_uuid_ids_with_path_characters(stack: Stack, bad_id: str) -> None:
    for method in ("GET", "DELETE"):
        resp = requests.request(method, f"{stack.url}/v1/jobs/{bad_id}", timeout=10)
        assert_error(resp, 404, "not_found")


def test_output_index_out_of_range(stack: Stack) -> None:
    done = wait_done(stack, submit(stack, ["chelsea.png"], "grayscale")["id"])
    for n in ("1", "7", "-1", "abc"):
        assert_error(requests.get(f"{stack.url}/v1/jobs/{done['id']}/outputs/{n}", timeout=10), 404, "not_found")


def test_unknown_route_and_method(stack: Stack) -> None:
    assert_error(requests.get(f"{stack.url}/nope", timeout=10), 404, "not_found")
    resp = requests.put(f"{stack.url}/v1/jobs", timeout=10)
    assert_error(resp, 405, "invalid_request")
    assert "POST" in resp.headers["Allow"]


def test_wrong_content_type(stack: Stack, nothing_written: None) -> None:
    resp = requests.post(f"{stack.url}/v1/jobs", data=b"instruction=x", timeout=10,
                         headers={"Content-Type": "text/plain"})
    assert_error(resp, 415, "unsupported_media_type")


def test_accepted_formats_are_identified_by_content(stack: Stack) -> None:
    # A WebP sent with a misleading name and type is accepted: the bytes decide.
    buf = io.BytesIO()
    Image.open(FIXTURES / "chelsea.png").save(buf, "WEBP")
    resp = post(stack, [("photo.gif", buf.getvalue())], instruction="grayscale")
    assert resp.status_code == 202, resp.text
    assert wait_done(stack, resp.json()["id"])["status"] == "succeeded"
