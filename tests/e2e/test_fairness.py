"""Fair scheduling between keys, end to end: gunicorn API → per-key fair lines → real Celery workers.

Key A queues 300 jobs as fast as it can, then key B submits one: B's job must finish before a tenth of A's
backlog is done (with one FIFO per stage it would wait for all 300). The local provider is slowed down
(NANOEDIT_LOCAL_DELAY_S) so the backlog is real: A's 300 jobs need minutes, B's one needs seconds.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
import requests
from PIL import Image

from shared.apikeys import hash_key, owner_for_hash
from shared.clock import SystemClock
from shared.jobs.store import JobStore
from tests.support.stack import RedisServer, Stack, start_stack

pytestmark = pytest.mark.e2e
FAIRNESS_DB = 20
SECRET = "fairness-test-secret"
KEY_A, KEY_B = "key-a-backlog-123", "key-b-single-456"
BACKLOG = 300
TERMINAL = {"succeeded", "partially_succeeded", "failed", "canceled"}


def tiny_png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 80, 40)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def fair_stack(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data = tmp_path_factory.mktemp("fairness")
    keys = data / "keys.toml"
    # A may queue its whole backlog at once (its own limits); B has the deployment defaults.
    keys.write_text(f'[[keys]]\nname = "a"\nkey_hash = "{hash_key(SECRET.encode(), KEY_A)}"\n'
                    f"submissions_per_minute = 1000\nmax_waiting_jobs = {BACKLOG}\n"
                    f'[[keys]]\nname = "b"\nkey_hash = "{hash_key(SECRET.encode(), KEY_B)}"\n')
    s = start_stack(redis_server.url(FAIRNESS_DB), data, preprocess=1, generate=(2,), beat=True,
                    NANOEDIT_API_KEYS_FILE=str(keys), NANOEDIT_KEY_HASH_SECRET=SECRET,
                    NANOEDIT_LOCAL_DELAY_S="2.0", NANOEDIT_FAIR_QUEUE_DEPTH="4", NANOEDIT_CACHE_TTL_S="0",
                    NANOEDIT_WEB_THREADS="8")
    yield s
    s.stop()


def submit(stack: Stack, key: str, png: bytes, n: int) -> requests.Response:
    return requests.post(f"{stack.url}/v1/jobs", headers={"X-API-Key": key}, timeout=60,
                         files=[("image", ("tiny.png", png, "image/png"))],
                         data={"instruction": f"grayscale ({n})"})


def test_a_single_job_is_not_stuck_behind_another_keys_backlog(fair_stack: Stack, redis_server: RedisServer) -> None:
    png = tiny_png()
    store = JobStore(redis.Redis.from_url(redis_server.url(FAIRNESS_DB), decode_responses=True), "nanoedit",
                     SystemClock())
    owner_a = owner_for_hash(hash_key(SECRET.encode(), KEY_A))

    def a_done() -> int:
        return BACKLOG - store.active_count(owner_a)

    # Given key A's backlog of 300 jobs, submitted as fast as it can
    started = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda n: submit(fair_stack, KEY_A, png, n), range(BACKLOG)))
    submit_s = time.monotonic() - started
    assert [r.status_code for r in answers] == [202] * BACKLOG, answers[0].text
    done_before_b = a_done()

    # When key B submits one job
    b_sent = time.monotonic()
    b = submit(fair_stack, KEY_B, png, 0)
    assert b.status_code == 202, b.text
    assert int(b.headers["RateLimit-Remaining"]) == int(b.headers["RateLimit-Limit"]) - 1
    job: dict[str, Any] = {}
    while time.monotonic() - b_sent < 60:
        job = requests.get(f"{fair_stack.url}/v1/jobs/{b.json()['id']}", headers={"X-API-Key": KEY_B},
                           timeout=10).json()
        if job["status"] in TERMINAL:
            break
        time.sleep(0.05)
    b_latency = time.monotonic() - b_sent
    done_at_b = a_done()

    print(f"\nfairness: A submitted {BACKLOG} jobs in {submit_s:.1f} s ({done_before_b} finished by then); "
          f"B's job finished {b_latency:.1f} s after submission, when {done_at_b} of A's {BACKLOG} had finished")
    # Then B's job finished, and before a tenth of A's backlog was done
    assert job.get("status") == "succeeded", f"{job}\n{fair_stack.logs()}"
    assert done_at_b < BACKLOG // 10, f"A had {done_at_b} jobs done when B's finished"
