"""A worker instance SIGKILLed in the middle of a stage loses nothing: the unacked message comes back after the
(short, for the test) visibility timeout, another instance finishes the job, and it reaches a terminal state."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis
import requests

from tests.conftest import FIXTURES
from tests.support.stack import RedisServer, Stack, start_stack, submit_until_generating, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def slow_stack(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Own Redis database, a local provider that takes 4 s per call, a 6 s visibility timeout."""
    s = start_stack(redis_server.url(3), tmp_path_factory.mktemp("slow"), generate=(1,),
                    NANOEDIT_LOCAL_DELAY_S="4", NANOEDIT_VISIBILITY_TIMEOUT_S="6")
    yield s
    s.stop()


def test_sigkilled_generate_worker_job_still_finishes(slow_stack: Stack) -> None:
    s = slow_stack
    r = redis.Redis.from_url(s.env["NANOEDIT_REDIS_URL"], decode_responses=True)
    # Given a job whose generate call is in flight on worker instance "generate"
    job_id = submit_until_generating(s, (FIXTURES / "chelsea.png").read_bytes(), 30)
    time.sleep(1.0)  # inside the provider's 4 s call

    # When the whole worker instance (main process and pool children) is SIGKILLed
    s.procs["generate"].kill_group()
    s.procs["generate"].popen.wait(10)
    assert r.hget(f"nanoedit:job:{job_id}", "status") == "running"
    # and another instance comes up
    s.start_worker("generate", 1, name="gen2")

    # Then the message is redelivered after the visibility timeout and the job succeeds
    def terminal() -> dict[str, object] | None:
        job = requests.get(f"{s.url}/v1/jobs/{job_id}", timeout=10).json()
        return job if job["status"] in ("succeeded", "failed", "canceled", "partially_succeeded") else None

    job = wait_for(terminal, 90, "the job to finish after the kill", 0.2)
    assert job["status"] == "succeeded", (job, s.logs())
    # delivered twice: once to the killed worker, once after
    assert int(r.get(f"nanoedit:deliveries:{job_id}.generate.0.1") or 0) == 2
    assert len(job["outputs"]) == 1
