"""The web process's memory under the worst bodies the bad-input corpus has (tests/e2e/test_bad_input_corpus.py).

Measured, not assumed: the peak RSS (VmHWM, reset first) of every gunicorn worker of a real stack while the
largest accepted and refused requests go through it, one at a time. With the defaults (100 MiB requests, 32 MiB
JSON, 20 MiB per image, 64 M pixels per image) the bound is `WEB_PEAK_RSS_BOUND_MB` per worker; about 190 MB was
measured (idle worker ~70-100 MB). Before bounded intake, 7 × 8000×8000 images in a 1.7 MB request cost ~1.8 GB
and 3.5 s in one web worker: the web process now reads headers only. Run with `-s` to see the figures.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable

import pytest
import requests
from PIL import Image

from tests.e2e.test_bad_input_corpus import URLENCODED_8MB, Reply, body, chunked_json, doc, form
from tests.e2e.test_pipeline import wait_done
from tests.support import nasty as n
from tests.support.procs import children, reset_peak, status_kb
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e
WEB_PEAK_RSS_BOUND_MB = 300  # per gunicorn worker, with the default limits


def _noise_19mb() -> bytes:
    data = n.noise_png((2500, 2500))  # ≈ 18.8 MB of incompressible pixels
    assert 17 << 20 < len(data) < 20 << 20, len(data)
    return data


def _worst() -> list[tuple[str, Callable[[Stack], Reply], int]]:
    noise = _noise_19mb()
    huge = n.save(Image.new("RGB", (8000, 8000), "white"), "PNG")
    ztxt = n.chunk(b"zTXt", b"C\0\0" + zlib.compress(b"A" * (1 << 20), 9))
    return [
        ("7 × 8000×8000 PNGs (64 M pixels each) in one request",
         form(*[huge] * 7, instruction="grayscale", operation="compose"), 202),
        ("5 × 19 MB images: a 95 MB multipart body", form(*[noise] * 5, instruction="grayscale",
                                                          operation="compose"), 202),
        ("JSON just under 32 MB: one 19 MB image in base64", doc({"instruction": "grayscale",
                                                                  "images": [n.b64(noise)]}), 202),
        ("8 MB url-encoded body", body(URLENCODED_8MB, "application/x-www-form-urlencoded"), 415),
        ("chunked JSON of 33 MB", chunked_json(33 << 20), 413),
        ("JSON with a million empty arrays", body("[" + "[]," * 1_000_000 + "[]]"), 400),
        ("JSON base64 of a 21 MB image", doc({"instruction": "x", "images": [n.b64(b"\0" * (21 << 20))]}), 413),
        ("100 zTXt chunks of 1 MB each", form(n.png_with_chunks(*[ztxt] * 100), instruction="x"), 422),
    ]


def test_web_worker_peak_rss_stays_bounded_under_the_worst_bodies(stack: Stack) -> None:
    master = stack.procs["web"].popen.pid
    workers = sorted(children(master))
    assert workers, "no gunicorn worker processes found"
    for pid in workers:
        reset_peak(pid)
    start = max(status_kb(pid, "VmHWM") for pid in workers) / 1024
    jobs = []
    for name, send, expected in _worst():
        started = time.monotonic()
        status, answer = send(stack)
        assert status == expected, (name, status, answer)
        if status == 202:
            jobs.append(answer["id"])
        peaks = {pid: status_kb(pid, "VmHWM") // 1024 for pid in workers}
        print(f"[rss] {name}: {status} in {time.monotonic() - started:.2f} s; web worker peak RSS MB {peaks}")
    peak_mb = max(status_kb(pid, "VmHWM") for pid in workers) / 1024
    print(f"[rss] web worker peak RSS after the worst bodies: {peak_mb:.0f} MB (start {start:.0f} MB, bound "
          f"{WEB_PEAK_RSS_BOUND_MB} MB)")
    assert peak_mb < WEB_PEAK_RSS_BOUND_MB
    for job_id in jobs:  # the worst accepted requests are processed by the workers, which stay up
        assert wait_done(stack, job_id, timeout_s=240)["status"] == "succeeded"
    assert sorted(children(master)) == workers, "a gunicorn worker died and was replaced"
    for proc in stack.procs.values():
        assert proc.popen.poll() is None, f"{proc.name} died:\n{proc.log()[-3000:]}"
    assert requests.get(f"{stack.url}/readyz", timeout=10).status_code == 200
