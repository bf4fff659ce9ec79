"""A worker instance stopped with SIGTERM to its main process (what supervisord sends under `make up`,
deploy/supervise.py) drains: Celery's warm shutdown lets the task in flight finish on that instance, so the job
succeeds without the message being delivered again, and the instance then exits cleanly."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest
import redis
import requests

from tests.conftest import FIXTURES
from tests.support.stack import RedisServer, Stack, start_stack, submit_until_generating

pytestmark = pytest.mark.e2e

DB = 17  # a Redis database of its own


@pytest.fixture
def slow_stack(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A local provider that takes 4 s per call, one generate instance with one pool child."""
    s = start_stack(redis_server.url(DB), tmp_path_factory.mktemp("drain"), generate=(1,), webhooks=0,
                    NANOEDIT_LOCAL_DELAY_S="4")
    yield s
    s.stop()


def test_sigterm_to_the_generate_main_process_lets_the_running_task_finish(slow_stack: Stack) -> None:
    s = slow_stack
    r = redis.Redis.from_url(s.env["NANOEDIT_REDIS_URL"], decode_responses=True)
    # Given a job whose generate call (4 s) is in flight on instance "generate"
    job_id = submit_until_generating(s, (FIXTURES / "chelsea.png").read_bytes(), 60)

    # When the instance's main process (not its pool child) gets SIGTERM, as supervisord's stopsignal
    worker = s.procs["generate"].popen
    worker.send_signal(signal.SIGTERM)

    # Then the instance waits for its task and exits cleanly, and the job succeeded there, delivered once
    assert worker.wait(60) == 0, s.procs["generate"].log()[-3000:]
    job = requests.get(f"{s.url}/v1/jobs/{job_id}", timeout=10).json()
    assert job["status"] == "succeeded", (job, s.logs())
    assert int(r.get(f"nanoedit:deliveries:{job_id}.generate.0.1") or 0) == 1
    assert len(job["attempts"]) == 1 and len(job["outputs"]) == 1
