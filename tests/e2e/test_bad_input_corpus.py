"""The bad-input corpus, over real HTTP against a real stack (gunicorn + Celery workers + Redis).

Every refused request answers its documented status and code with a non-empty suggestion and the full error body,
leaves no job record and no blob behind, and no request in the corpus gets a 5xx. Valid but unusual images
(CMYK, 16-bit, palette + alpha, 1,000 frames, a PNG with a ZIP appended, …) are accepted and processed; damaged
pixel data is accepted by the web (which reads headers only) and fails the job with `image_corrupt` in the
preprocess worker. Every process is alive at the end, the web workers being the ones that started. The web
worker's peak RSS under the worst bodies is measured by tests/e2e/test_web_memory.py.
"""

from __future__ import annotations

import base64
import json
import os
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
import requests
from PIL import Image

from tests.e2e.test_pipeline import wait_done
from tests.support import nasty as n
from tests.support.procs import children
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e
Reply = tuple[int, dict[str, Any]]
SEEN: list[tuple[str, int]] = []  # every status the corpus got, for the 5xx count
WEB_PIDS: list[int] = []  # the gunicorn workers when the corpus started: the same ones must still serve at the end


# --- senders --------------------------------------------------------------------------------------------------

def _reply(resp: requests.Response) -> Reply:
    try:
        body = resp.json()
    except ValueError:
        body = {"raw": resp.text[:200]}
    return resp.status_code, body if isinstance(body, dict) else {"raw": body}


def form(*images: bytes, **fields: Any) -> Callable[[Stack], Reply]:
    def send(stack: Stack) -> Reply:
        files = [("image", (f"{i}.png", data, "image/png")) for i, data in enumerate(images)]
        return _reply(requests.post(f"{stack.url}/v1/jobs", files=files or None, timeout=120,
                                    data={k: str(v) for k, v in fields.items()}, headers={"Cache-Control": "no-cache"}))
    return send


def parts(*items: tuple[str, bytes, str | None]) -> Callable[[Stack], Reply]:
    def send(stack: Stack) -> Reply:
        body, ctype = n.multipart(list(items))
        return _reply(requests.post(f"{stack.url}/v1/jobs", data=body, headers={"Content-Type": ctype}, timeout=60))
    return send


def body(raw: bytes | str, ctype: str | None = "application/json", path: str = "/v1/jobs",
         method: str = "POST", headers: dict[str, str] | None = None) -> Callable[[Stack], Reply]:
    def send(stack: Stack) -> Reply:
        hdrs = {**({"Content-Type": ctype} if ctype else {}), **(headers or {})}
        data = raw.encode() if isinstance(raw, str) else raw
        return _reply(requests.request(method, f"{stack.url}{path}", data=data, headers=hdrs, timeout=60))
    return send


def doc(value: Any, **kw: Any) -> Callable[[Stack], Reply]:
    return body(json.dumps(value), **kw)


def get(path: str, headers: dict[str, str] | None = None, **params: str) -> Callable[[Stack], Reply]:
    return lambda stack: _reply(requests.get(f"{stack.url}{path}", params=params, headers=headers, timeout=30))


def raw(head: str, payload: bytes = b"", half_close: bool = False) -> Callable[[Stack], Reply]:
    return lambda stack: n.raw_http(stack.port, head.format(port=stack.port), payload, half_close=half_close)


def chunked_json(size: int) -> Callable[[Stack], Reply]:
    def gen() -> Iterator[bytes]:
        yield b'{"instruction": "x", "images": ["'
        for _ in range(size // (1 << 20)):
            yield b"A" * (1 << 20)
        yield b'"]}'
    return lambda stack: _reply(requests.post(f"{stack.url}/v1/jobs", data=gen(), timeout=60,
                                              headers={"Content-Type": "application/json"}))


def cursor(value: Any) -> Callable[[Stack], Reply]:
    encoded = value if isinstance(value, bytes) else json.dumps(value, allow_nan=True).encode()
    return get("/v1/jobs", cursor=base64.urlsafe_b64encode(encoded).decode().rstrip("="))


def silence(raw_json: str) -> Callable[[Stack], Reply]:
    return body(raw_json, path="/v1/monitoring/silences")


SILENCE = '{"matchers": {"group": "g"}, "comment": "corpus", %s}'
ONE = n.save(n.photo(), "PNG")


# --- the corpus -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Bad:
    name: str
    send: Callable[[Stack], Reply]
    status: int
    code: str


URLENCODED_8MB = "instruction=" + "x" * (8 << 20)
BAD: list[Bad] = [
    # fields
    Bad("missing instruction", form(ONE), 400, "missing_instruction"),
    Bad("blank instruction", form(ONE, instruction="  \t "), 400, "missing_instruction"),
    Bad("no image", parts(("instruction", b"grayscale", None)), 400, "not_enough_images"),
    Bad("instruction of 10,001 characters", form(ONE, instruction="x" * 10_001), 400, "invalid_request"),
    Bad("NUL byte in instruction", form(ONE, instruction="gray\x00scale"), 400, "invalid_request"),
    Bad("escape character in instruction", form(ONE, instruction="gray\x1b[31mscale"), 400, "invalid_request"),
    Bad("NUL byte in image_description", form(ONE, instruction="x", image_description="a\x00b"), 400,
        "invalid_request"),
    Bad("invalid UTF-8 in instruction", parts(("instruction", b"gray\xff\xfe\xc3(", None), ("image", ONE, "a.png")),
        400, "invalid_request"),
    Bad("duplicate instruction fields", parts(("instruction", b"a", None), ("instruction", b"b", None),
                                              ("image", ONE, "a.png")), 400, "invalid_request"),
    Bad("duplicate operation fields", parts(("instruction", b"a", None), ("operation", b"edit", None),
                                            ("operation", b"compose", None), ("image", ONE, "a.png")), 400,
        "invalid_request"),
    Bad("unknown operation", form(ONE, instruction="x", operation="paint"), 400, "invalid_request"),
    Bad("num_images 0", form(ONE, instruction="x", num_images=0), 400, "invalid_request"),
    Bad("num_images 5", form(ONE, instruction="x", num_images=5), 400, "invalid_request"),
    Bad("num_images abc", form(ONE, instruction="x", num_images="abc"), 400, "invalid_request"),
    Bad("num_images 1e3", form(ONE, instruction="x", num_images="1e3"), 400, "invalid_request"),
    Bad("num_images with 400 digits", form(ONE, instruction="x", num_images="9" * 400), 400, "invalid_request"),
    Bad("compose with 1 image", form(ONE, instruction="x", operation="compose"), 400, "not_enough_images"),
    Bad("style_transfer with 3 images", form(ONE, ONE, ONE, instruction="x", operation="style_transfer"), 400,
        "too_many_images"),
    Bad("9 images", form(*[ONE] * 9, instruction="x"), 400, "too_many_images"),
    Bad("50 image parts", form(*[ONE] * 50, instruction="x"), 400, "too_many_images"),
    Bad("100 form parts", parts(("instruction", b"x", None), *[(f"f{i}", b"y", None) for i in range(99)]), 413,
        "payload_too_large"),
    Bad("300 KB text field", form(ONE, instruction="x" * 300_000), 413, "payload_too_large"),
    Bad("multipart without a boundary", body(b"x", "multipart/form-data"), 400, "invalid_request"),
    # content types and framing
    Bad("8 MB url-encoded body", body(URLENCODED_8MB, "application/x-www-form-urlencoded"), 415,
        "unsupported_media_type"),
    Bad("text/plain body", body("instruction=x", "text/plain"), 415, "unsupported_media_type"),
    Bad("no Content-Type", body(b"instruction=x", None), 415, "unsupported_media_type"),
    Bad("application/xml body", body("<job/>", "application/xml"), 415, "unsupported_media_type"),
    Bad("Content-Length of 200 MB, nothing sent",
        raw("POST /v1/jobs HTTP/1.1\nHost: 127.0.0.1:{port}\nContent-Type: multipart/form-data; boundary=b\n"
            "Content-Length: 209715200\nConnection: close\n"), 413, "payload_too_large"),
    Bad("Content-Length larger than the body (client half-closes)",
        raw("POST /v1/jobs HTTP/1.1\nHost: 127.0.0.1:{port}\nContent-Type: multipart/form-data; boundary=b\n"
            "Content-Length: 100000\nConnection: close\n", b"--b\r\nContent-Disposition: form-data; name=\"in",
            half_close=True), 400, "invalid_request"),
    Bad("Content-Length smaller than the body (image cut off)",
        lambda stack: _short_length(stack), 400, "invalid_request"),
    Bad("JSON Content-Length over the JSON cap",
        raw("POST /v1/jobs HTTP/1.1\nHost: 127.0.0.1:{port}\nContent-Type: application/json\n"
            "Content-Length: 40000000\nConnection: close\n"), 413, "payload_too_large"),
    Bad("chunked JSON over the JSON cap", chunked_json(33 << 20), 413, "payload_too_large"),
    # JSON
    Bad("malformed JSON", body('{"instruction": "x", "images": ['), 400, "invalid_request"),
    Bad("JSON array body", body("[1, 2]"), 400, "invalid_request"),
    Bad("JSON string body", body('"grayscale"'), 400, "invalid_request"),
    Bad("JSON nested 100,000 deep", body("[" * 100_000 + "]" * 100_000), 400, "invalid_request"),
    Bad("JSON objects nested 40 deep", body('{"a": ' * 40 + "1" + "}" * 40), 400, "invalid_request"),
    Bad("JSON with a million empty arrays", body("[" + "[]," * 1_000_000 + "[]]"), 400, "invalid_request"),
    Bad("JSON NaN", body('{"instruction": "x", "num_images": NaN}'), 400, "invalid_request"),
    Bad("JSON Infinity", body('{"instruction": "x", "num_images": -Infinity}'), 400, "invalid_request"),
    Bad("JSON 1e999", body('{"instruction": "x", "num_images": 1e999}'), 400, "invalid_request"),
    Bad("JSON duplicate keys", body('{"instruction": "a", "instruction": "b"}'), 400, "invalid_request"),
    Bad("JSON lone surrogate", body('{"instruction": "\\ud800", "images": []}'), 400, "invalid_request"),
    Bad("JSON invalid UTF-8", body(b'{"instruction": "\xff\xfe"}'), 400, "invalid_request"),
    Bad("JSON 5,000-digit number", body('{"instruction": "x", "num_images": ' + "7" * 5000 + "}"), 400,
        "invalid_request"),
    Bad("JSON invalid base64", doc({"instruction": "x", "images": [{"data": "!!!not base64!!!"}]}), 400,
        "invalid_request"),
    Bad("JSON images not a list", doc({"instruction": "x", "images": "abc"}), 400, "invalid_request"),
    Bad("JSON image data a number", doc({"instruction": "x", "images": [{"data": 5}]}), 400, "invalid_request"),
    Bad("JSON instruction a number", doc({"instruction": 5, "images": [n.b64(ONE)]}), 400, "invalid_request"),
    Bad("JSON 9 images", doc({"instruction": "x", "images": ["AAAA"] * 9}), 400, "too_many_images"),
    Bad("JSON no images", doc({"instruction": "x", "images": []}), 400, "not_enough_images"),
    Bad("JSON base64 of a 21 MB image", doc({"instruction": "x", "images": [n.b64(b"\0" * (21 << 20))]}), 413,
        "image_too_large"),
    # image bytes
    Bad("0-byte file", form(b"", instruction="x"), 422, "image_corrupt"),
    Bad("PNG cut after 20 bytes", form(n.PNG[:20], instruction="x"), 422, "image_corrupt"),
    Bad("text named .png", form(b"hello, not an image\n" * 20, instruction="x"), 415, "unsupported_media_type"),
    Bad("HTML named .png", form(b"<!doctype html><html><body>hi</body></html>", instruction="x"), 415,
        "unsupported_media_type"),
    Bad("SVG", form(b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>', instruction="x"), 415,
        "unsupported_media_type"),
    Bad("PDF", form(b"%PDF-1.7\n1 0 obj <<>> endobj\n%%EOF\n", instruction="x"), 415, "unsupported_media_type"),
    Bad("ZIP", form(n.zip_bytes(), instruction="x"), 415, "unsupported_media_type"),
    Bad("ICO", form(n.save(Image.new("RGB", (16, 16)), "ICO"), instruction="x"), 415, "unsupported_media_type"),
    Bad("PPM", form(n.save(Image.new("RGB", (16, 16)), "PPM"), instruction="x"), 415, "unsupported_media_type"),
    Bad("polyglot: PNG signature then HTML", form(b"\x89PNG\r\n\x1a\n<html><script>alert(1)</script></html>",
                                                  instruction="x"), 422, "image_corrupt"),
    Bad("polyglot: HTML carrying a PNG", form(b"<html><!--" + ONE + b"--></html>", instruction="x"), 415,
        "unsupported_media_type"),
    Bad("polyglot: GIF/JavaScript", form(b"GIF89a/*\0\0\0\0*/=alert(1);" + b"\0" * 64, instruction="x"), 422,
        "image_corrupt"),
    Bad("image over the byte limit", form(n.PNG[:64] + b"\0" * (21 << 20), instruction="x"), 413,
        "image_too_large"),
    Bad("PNG header claiming 100000x100000", form(n.png_header_bomb(100_000, 100_000), instruction="x"), 422,
        "image_too_many_pixels"),
    Bad("PNG header claiming 9000x9000", form(n.png_header_bomb(9000, 9000), instruction="x"), 422,
        "image_too_many_pixels"),
    Bad("JPEG header claiming 65000x65000", form(n.jpeg_claiming(65000, 65000), instruction="x"), 422,
        "image_too_many_pixels"),
    Bad("BMP header claiming 60000x60000", form(n.bmp_claiming(60000, 60000), instruction="x"), 422,
        "image_too_many_pixels"),
    Bad("WebP canvas of 16383x16383", form(n.webp_canvas(16383, 16383), instruction="x"), 422,
        "image_too_many_pixels"),
    Bad("iCCP chunk inflating past 1 MB", form(n.png_with_chunks(n.chunk(b"iCCP", b"p\0\0" + zlib.compress(
        b"\0" * (5 << 20)))), instruction="x"), 422, "image_corrupt"),
    Bad("zTXt chunk inflating past 1 MB", form(n.png_with_chunks(n.chunk(b"zTXt", b"C\0\0" + zlib.compress(
        b"A" * (5 << 20)))), instruction="x"), 422, "image_corrupt"),
    Bad("100 zTXt chunks of 1 MB each", form(n.png_with_chunks(*[n.chunk(b"zTXt", b"C\0\0" + zlib.compress(
        b"A" * (1 << 20), 9))] * 100), instruction="x"), 422, "image_corrupt"),
    Bad("GIF of 2,000 frames", form(n.gif_frames(2000), instruction="x"), 422, "image_too_many_frames"),
    Bad("APNG claiming 5,000 frames", form(n.apng_claiming(5000), instruction="x"), 422, "image_too_many_frames"),
    Bad("TIFF of 3,000 pages", form(n.tiff_chain(3000), instruction="x"), 422, "image_too_many_frames"),
    # cursors, numbers, durations
    Bad("cursor NaN", cursor([float("nan"), "a" * 32]), 400, "invalid_request"),
    Bad("cursor Infinity", cursor([float("inf"), "a" * 32]), 400, "invalid_request"),
    Bad("cursor 400-digit number", cursor([int("9" * 400), "a" * 32]), 400, "invalid_request"),
    Bad("cursor nested JSON", cursor([[[[1]]], {"a": "b"}]), 400, "invalid_request"),
    Bad("cursor deeply nested", cursor(b"[" * 70 + b"]" * 70), 400, "invalid_request"),
    Bad("cursor longer than any we issue", get("/v1/jobs", cursor="A" * 1000), 400, "invalid_request"),
    Bad("cursor garbage", get("/v1/jobs", cursor="%%%not-base64"), 400, "invalid_request"),
    Bad("list limit 1e3", get("/v1/jobs", limit="1e3"), 400, "invalid_request"),
    Bad("report day 2024-13-45", get("/v1/monitoring/report", period="daily", day="2024-13-45"), 400,
        "invalid_request"),
    Bad("silence duration NaN", silence(SILENCE % '"duration_s": NaN'), 400, "invalid_request"),
    Bad("silence duration 1e999", silence(SILENCE % '"duration_s": 1e999'), 400, "invalid_request"),
    Bad("silence duration negative", silence(SILENCE % '"duration_s": -60'), 400, "invalid_request"),
    Bad("silence duration of 100 years", silence(SILENCE % '"duration_s": 3153600000'), 400, "invalid_request"),
    Bad("silence ends_at year 0001", silence(SILENCE % '"ends_at": "0001-01-01T00:00:00+14:00"'), 400,
        "invalid_request"),
    Bad("silence ends_at without a zone", silence(SILENCE % '"ends_at": "2031-01-01T00:00:00"'), 400,
        "invalid_request"),
    Bad("admin limit with 400 digits", body('{"rpm": ' + "9" * 400 + "}", path="/v1/admin/limits",
                                            method="PATCH"), 400, "invalid_request"),
    Bad("admin limit NaN", body('{"rpm": NaN}', path="/v1/admin/limits", method="PATCH"), 400, "invalid_request"),
    Bad("admin circuit body nested 10,000 deep", body("[" * 10_000 + "]" * 10_000, path="/v1/admin/circuit"), 400,
        "invalid_request"),
    # request hygiene
    Bad("foreign Host (DNS rebinding)", get("/v1/jobs", headers={"Host": "attacker.example"}), 421,
        "misdirected_request"),
    Bad("foreign Origin submitting with auth off", body(b"{}", headers={"Origin": "https://attacker.example"}), 403,
        "forbidden"),
    Bad("Origin null cancelling with auth off", body(b"", None, path=f"/v1/jobs/{'a' * 32}", method="DELETE",
                                                    headers={"Origin": "null"}), 403, "forbidden"),
]


def _short_length(stack: Stack) -> Reply:
    """Content-Length covers the instruction but stops inside the image part; the rest follows on the wire."""
    payload, ctype = n.multipart([("instruction", b"grayscale", None), ("image", ONE, "a.png")])
    cut = payload.index(b"\x89PNG") + 100
    head = (f"POST /v1/jobs HTTP/1.1\nHost: 127.0.0.1:{stack.port}\nContent-Type: {ctype}\n"
            f"Content-Length: {cut}\nConnection: close\n")
    return n.raw_http(stack.port, head, payload)


@pytest.fixture
def snapshot(stack: Stack) -> Callable[[], tuple[int, int]]:
    if not WEB_PIDS:
        WEB_PIDS.extend(sorted(children(stack.procs["web"].popen.pid)))
    r = redis.Redis.from_url(stack.env["NANOEDIT_REDIS_URL"], decode_responses=True)
    blobs = stack.data_dir / "blobs" / "jobs"

    def take() -> tuple[int, int]:
        jobs = sum(1 for _ in r.scan_iter("nanoedit:job:*", count=1000))
        return jobs, (len(list(blobs.iterdir())) if blobs.exists() else 0)

    return take


@pytest.mark.parametrize("case", BAD, ids=[c.name for c in BAD])
def test_refused(stack: Stack, snapshot: Callable[[], tuple[int, int]], case: Bad) -> None:
    before = snapshot()
    status, answer = case.send(stack)
    SEEN.append((case.name, status))
    assert status == case.status, (status, answer)
    assert answer.get("code") == case.code, answer
    assert answer.get("status_code") == status and answer.get("error") and answer.get("suggestion"), answer
    assert set(answer) >= {"error", "code", "details", "suggestion", "status_code"}
    assert "Traceback" not in json.dumps(answer)
    assert snapshot() == before, "a refused request left a job record or blobs behind"


def test_corpus_is_large_enough() -> None:
    assert len(BAD) + len(ACCEPTED) + len(CORRUPT) >= 60


# --- accepted: valid but unusual images are processed ----------------------------------------------------------

def _palette_alpha() -> bytes:
    image = n.photo().convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return n.save(image, "PNG", transparency=0)


ACCEPTED: list[tuple[str, Callable[[Stack], Reply]]] = [
    ("CMYK JPEG", form(n.save(n.photo().convert("CMYK"), "JPEG"), instruction="grayscale")),
    ("16-bit grey PNG", form(n.save(n.photo().convert("I").point(lambda v: v * 257).convert("I;16"), "PNG"),
                             instruction="invert")),
    ("palette + alpha PNG", form(_palette_alpha(), instruction="grayscale")),
    ("grey + alpha PNG", form(n.save(n.photo().convert("LA"), "PNG"), instruction="sepia")),
    ("1-bit PNG", form(n.save(n.photo().convert("1"), "PNG"), instruction="invert")),
    ("GIF of 1,000 frames", form(n.gif_frames(1000), instruction="invert")),
    ("multi-page TIFF", form(n.save(n.photo(), "TIFF", save_all=True, append_images=[n.photo()]),
                             instruction="rotate 90 degrees")),
    ("MPO (multi-picture JPEG)", form(n.save(n.photo(), "MPO", save_all=True, append_images=[n.photo()]),
                                      instruction="grayscale")),
    ("polyglot: PNG with a ZIP appended", form(ONE + n.zip_bytes(), instruction="grayscale")),
    ("PNG with a 5 MB tEXt chunk", form(n.png_with_chunks(n.chunk(b"tEXt", b"Comment\0" + b"A" * (5 << 20))),
                                        instruction="grayscale")),
    ("PNG with a 500 KB garbage iCCP profile", form(n.png_with_chunks(n.chunk(b"iCCP", b"p\0\0" + zlib.compress(
        b"\x07" * 500_000))), instruction="grayscale")),
    ("instruction of exactly 10,000 characters", form(ONE, instruction="grayscale " + "." * 9990)),
    ("Unicode instruction", form(ONE, instruction="make it black and white 🎨 — s'il vous plaît, 谢谢")),
    ("JSON with a data: URL and wrapped base64", doc({"instruction": "sepia", "images": [
        "data:image/png;base64," + "\n".join(n.b64(ONE)[i:i + 76] for i in range(0, len(n.b64(ONE)), 76))]})),
    ("X-Request-ID that is not safe to echo", lambda stack: _reply(requests.post(
        f"{stack.url}/v1/jobs", files=[("image", ("a.png", ONE, "image/png"))], data={"instruction": "invert"},
        headers={"X-Request-ID": "x" * 65, "Cache-Control": "no-cache"}, timeout=30))),
]

def _cut(data: bytes, fraction: float) -> bytes:
    return data[: int(len(data) * fraction)]


CORRUPT: list[tuple[str, bytes]] = [
    ("truncated PNG", n.PNG[: len(n.PNG) // 2]),
    ("truncated JPEG", n.JPEG[: len(n.JPEG) // 2]),
    ("PNG with damaged pixel data", n.damaged_idat()),
    ("GIF cut inside its first frame", _cut(n.save(n.photo(), "GIF"), 0.6)),
]


@pytest.mark.parametrize(("name", "send"), ACCEPTED, ids=[a[0] for a in ACCEPTED])
def test_valid_but_unusual_input_is_accepted_and_processed(stack: Stack, name: str,
                                                           send: Callable[[Stack], Reply]) -> None:
    status, job = send(stack)
    SEEN.append((name, status))
    assert status == 202, job
    done = wait_done(stack, job["id"])
    assert done["status"] == "succeeded", done
    assert done["outputs"][0]["width"] <= 2048 and done["outputs"][0]["height"] <= 2048


@pytest.mark.parametrize(("name", "data"), CORRUPT, ids=[c[0] for c in CORRUPT])
def test_damaged_pixel_data_fails_the_job_in_the_worker(stack: Stack, name: str, data: bytes) -> None:
    # The web read the header only and accepted it; the preprocess worker's decode finds the damage
    status, job = form(data, instruction="grayscale")(stack)
    SEEN.append((name, status))
    assert status == 202, job
    done = wait_done(stack, job["id"])
    assert done["status"] == "failed" and done["error"]["code"] == "image_corrupt", done
    assert done["error"]["suggestion"] and done["error"]["status_code"] == 422
    assert done["billed_provider_calls"] == 0


def test_unsafe_request_id_is_replaced_safe_one_echoed(stack: Stack) -> None:
    for sent, echoed in (("corpus-1:a.b_c", True), ("x" * 65, False), ("<script>", False), ("a b", False)):
        got = requests.get(f"{stack.url}/healthz", headers={"X-Request-ID": sent}, timeout=10).headers["X-Request-ID"]
        assert (got == sent) is echoed and 1 <= len(got) <= 64


def test_zz_no_5xx_and_every_process_alive(stack: Stack) -> None:
    assert SEEN, "run with the rest of the module"
    five = [(name, status) for name, status in SEEN if status >= 500]
    print(f"[corpus] {len(SEEN)} requests, {len(five)} answered 5xx")
    assert not five
    for proc in stack.procs.values():
        assert proc.popen.poll() is None, f"{proc.name} died:\n{proc.log()[-3000:]}"
    workers = sorted(children(stack.procs["web"].popen.pid))
    assert len(workers) == int(stack.env.get("NANOEDIT_WEB_WORKERS", "2"))
    assert workers == WEB_PIDS, "a gunicorn worker died and was replaced during the corpus"
    assert all(os.path.exists(f"/proc/{pid}") for pid in workers)
    assert requests.get(f"{stack.url}/readyz", timeout=10).status_code == 200
