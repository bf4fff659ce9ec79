"""End to end over real HTTP: gunicorn API → Redis → real Celery workers (local provider) → download."""

from __future__ import annotations

import base64
import io
import time
from typing import Any

import pytest
import requests
from PIL import Image, ImageStat

from tests.conftest import FIXTURES
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e
TERMINAL = {"succeeded", "partially_succeeded", "failed", "canceled"}


def submit(stack: Stack, files: list[str], instruction: str, **fields: Any) -> dict[str, Any]:
    multipart = [("image", (name, (FIXTURES / name).read_bytes(), "application/octet-stream"))
                 for name in files]
    data = {"instruction": instruction, **{k: str(v) for k, v in fields.items()}}
    # no-cache: these tests are about the pipeline, so never let an identical earlier request answer them
    resp = requests.post(f"{stack.url}/v1/jobs", files=multipart, data=data, timeout=30,
                         headers={"Cache-Control": "no-cache"})
    assert resp.status_code == 202, resp.text
    assert resp.headers["Location"] == f"/v1/jobs/{resp.json()['id']}"
    return dict(resp.json())


def wait_done(stack: Stack, job_id: str, timeout_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = requests.get(f"{stack.url}/v1/jobs/{job_id}", timeout=10).json()
        if job["status"] in TERMINAL:
            return dict(job)
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} not terminal after {timeout_s}s: {job}\n{stack.logs()}")


def download(stack: Stack, job: dict[str, Any], n: int = 0) -> Image.Image:
    resp = requests.get(f"{stack.url}{job['outputs'][n]['url']}", timeout=10)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == job["outputs"][n]["mime_type"]
    assert resp.headers["ETag"]
    im = Image.open(io.BytesIO(resp.content))
    im.load()
    return im


def test_grayscale_job_succeeds_with_equal_channels(stack: Stack) -> None:
    # Given a real photo and a plain instruction
    job = submit(stack, ["chelsea.png"], "make it black and white")
    assert job["status"] == "queued" and job["progress"] == {"outputs_done": 0, "outputs_total": 1}
    # When the pipeline runs it
    done = wait_done(stack, job["id"])
    # Then it succeeded and every pixel of the output has R == G == B
    assert done["status"] == "succeeded", done
    assert done["stage"] == "done" and done["error"] is None
    assert all(v is not None for v in done["timings"].values()), done["timings"]
    assert done["attempts"][0]["outcome"] == "succeeded"
    im = download(stack, done).convert("RGB")
    r, g, b = im.split()
    assert r.tobytes() == g.tobytes() == b.tobytes()
    assert im.size == (451, 300)


def test_rotate_90_swaps_dimensions(stack: Stack) -> None:
    done = wait_done(stack, submit(stack, ["rocket.jpg"], "rotate 90 degrees")["id"])
    assert done["status"] == "succeeded", done
    assert (done["outputs"][0]["width"], done["outputs"][0]["height"]) == (427, 640)
    assert download(stack, done).size == (427, 640)


def test_brighten_raises_mean_luminance(stack: Stack) -> None:
    done = wait_done(stack, submit(stack, ["coffee.png"], "make it brighter")["id"])
    assert done["status"] == "succeeded", done
    before = ImageStat.Stat(Image.open(FIXTURES / "coffee.png").convert("L")).mean[0]
    after = ImageStat.Stat(download(stack, done).convert("L")).mean[0]
    assert after > before + 5


def test_three_outputs(stack: Stack) -> None:
    done = wait_done(stack, submit(stack, ["chelsea.png"], "sepia", num_images=3)["id"])
    assert done["status"] == "succeeded", done
    assert [o["index"] for o in done["outputs"]] == [0, 1, 2]
    assert done["progress"] == {"outputs_done": 3, "outputs_total": 3}
    for n in range(3):
        assert download(stack, done, n).size == (451, 300)


def test_compose_places_images_side_by_side(stack: Stack) -> None:
    done = wait_done(stack, submit(stack, ["chelsea.png", "coffee.png"], "put them side by side",
                                   operation="compose")["id"])
    assert done["status"] == "succeeded", done
    out = download(stack, done)
    assert out.width > out.height and out.width >= 451 + 400


def test_style_transfer_keeps_content_size_and_moves_colour(stack: Stack) -> None:
    done = wait_done(stack, submit(stack, ["chelsea.png", "rocket.jpg"], "apply this style",
                                   operation="style_transfer")["id"])
    assert done["status"] == "succeeded", done
    out = download(stack, done).convert("RGB")
    assert out.size == (451, 300)
    content = ImageStat.Stat(Image.open(FIXTURES / "chelsea.png").convert("RGB")).mean
    style = ImageStat.Stat(Image.open(FIXTURES / "rocket.jpg").convert("RGB")).mean
    result = ImageStat.Stat(out).mean
    assert sum(abs(a - b) for a, b in zip(result, style, strict=True)) < sum(
        abs(a - b) for a, b in zip(content, style, strict=True))


def test_json_submission_with_base64(stack: Stack) -> None:
    data = base64.b64encode((FIXTURES / "chelsea.png").read_bytes()).decode()
    resp = requests.post(f"{stack.url}/v1/jobs", timeout=30, json={
        "instruction": "invert", "images": [{"data": data, "mime_type": "image/png"}]})
    assert resp.status_code == 202, resp.text
    assert wait_done(stack, resp.json()["id"])["status"] == "succeeded"


def test_instruction_the_local_provider_does_not_understand_fails_with_suggestion(stack: Stack) -> None:
    done = wait_done(stack, submit(stack, ["chelsea.png"], "paint a dragon in the sky")["id"])
    assert done["status"] == "failed"
    assert done["error"]["code"] == "no_image_generated"
    assert "grayscale" in done["error"]["suggestion"]
    assert done["outputs"] == []


def test_finished_job_cannot_be_canceled_and_listing_shows_it(stack: Stack) -> None:
    done = wait_done(stack, submit(stack, ["chelsea.png"], "blur")["id"])
    resp = requests.delete(f"{stack.url}/v1/jobs/{done['id']}", timeout=10)
    assert resp.status_code == 409 and resp.json()["code"] == "conflict" and resp.json()["suggestion"]
    listing = requests.get(f"{stack.url}/v1/jobs", params={"limit": 100}, timeout=10).json()
    assert done["id"] in [j["id"] for j in listing["jobs"]]
    succeeded = requests.get(f"{stack.url}/v1/jobs", params={"status": "succeeded", "limit": 2}, timeout=10)
    assert all(j["status"] == "succeeded" for j in succeeded.json()["jobs"])


def test_readiness_sees_workers_and_beat(stack: Stack) -> None:
    resp = requests.get(f"{stack.url}/readyz", params={"detailed": "true"}, timeout=10)
    assert resp.status_code == 200, resp.text
    checks = resp.json()["checks"]
    assert checks["workers_preprocess"]["live"] >= 1 and checks["workers_generate"]["live"] >= 1
    assert checks["beat"]["ok"]
    assert requests.get(f"{stack.url}/healthz", timeout=5).json() == {"status": "ok"}
