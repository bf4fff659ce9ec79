"""A generate message lost between kombu's BRPOP and its unacked record is sent again; one still in flight is not.

Real redis-server, gunicorn API, a preprocess worker (which runs reconcile), beat (reconcile every 2 s) and
generate workers started by each test. The loss is reproduced deterministically: with no generate worker
running, the job's message waits in the Celery `generate` list, and the test removes it as the lost BRPOP would
have. The reconciler's grace (minutes: shared settings cannot make a generate hard limit shorter than 60 s) is
skipped by writing the ledger entry as if the message had been sent that long ago, through the job store.
These tests also check kombu's broker layout (`generate_in_flight` in shared/queueing.py) on a real broker.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import redis
import requests

from monitoring.runtime import build_runtime
from shared.clock import FakeClock
from shared.jobs.store import JobStore
from shared.queueing import Enqueuer
from shared.settings import Settings
from tests.conftest import FIXTURES
from tests.support.stack import RedisServer, Stack, make_stack, starting, wait_for
from workers.maintenance import lost_generate_grace_s

pytestmark = pytest.mark.e2e
LOST_DB = 27
TERMINAL = {"succeeded", "partially_succeeded", "failed", "canceled"}
RECONCILE_S = 2


@pytest.fixture(scope="module")
def lost_stack(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """API, preprocess worker and beat; no generate worker (each test starts its own)."""
    url = redis_server.url(LOST_DB)
    redis.Redis.from_url(url).flushdb()
    s = make_stack(url, tmp_path_factory.mktemp("lost-generate"), NANOEDIT_CACHE_TTL_S="0",
                   NANOEDIT_RECONCILE_INTERVAL_S=str(RECONCILE_S))
    with starting(s):
        s.start_worker("preprocess", 1)
        s.start_beat()
        s.start_api()
        s.wait_api()
        s.wait_live(("preprocess",))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def enqueuer(lost_stack: Stack) -> Enqueuer:
    return build_runtime(Settings.from_env(lost_stack.env)).enqueuer


def r(stack: Stack) -> redis.Redis:
    return redis.Redis.from_url(stack.env["NANOEDIT_REDIS_URL"], decode_responses=True)


def submit(stack: Stack, instruction: str) -> str:
    resp = requests.post(f"{stack.url}/v1/jobs", timeout=30, data={"instruction": instruction},
                         files=[("image", ("a.png", (FIXTURES / "chelsea.png").read_bytes()))])
    assert resp.status_code == 202, resp.text
    return str(resp.json()["id"])


def queued_message(stack: Stack, job_id: str) -> str | None:
    """The raw broker payload of the job's first generate message while it waits in the Celery list."""
    for raw in r(stack).lrange("generate", 0, -1):
        if json.loads(raw)["headers"]["id"] == f"{job_id}.generate.0.1":
            return str(raw)
    return None


def sent_long_ago(stack: Stack, job_id: str) -> None:
    """Write the job's ledger entry as if its message had been due longer ago than the reconciler's grace."""
    settings = Settings.from_env(stack.env)
    clock = FakeClock(time.time() - lost_generate_grace_s(settings) - 5)
    JobStore(r(stack), settings.redis_prefix, clock).expect_generate(job_id, [0])


def generate_deliveries(stack: Stack, job_id: str) -> dict[str, int]:
    """Every generate task id of the job that started, with how many times (the poison guard's counters)."""
    client = r(stack)
    return {k.rpartition(":")[2]: int(client.get(k) or 0)
            for k in client.scan_iter(f"nanoedit:deliveries:{job_id}.generate.*")}


def finished(stack: Stack, job_id: str) -> dict[str, object] | None:
    job = requests.get(f"{stack.url}/v1/jobs/{job_id}", timeout=10).json()
    return job if job["status"] in TERMINAL else None


def test_a_message_still_in_flight_is_never_sent_twice(lost_stack: Stack, enqueuer: Enqueuer) -> None:
    s = lost_stack
    # Given a job whose generate message waits in the Celery list (no generate worker yet), long overdue
    job_id = submit(s, "grayscale (in flight)")
    wait_for(lambda: queued_message(s, job_id), 30, "the generate message in the Celery list", 0.1)
    assert (job_id, 0) in (enqueuer.generate_in_flight() or set())
    sent_long_ago(s, job_id)
    # When the reconciler runs a few times
    time.sleep(3 * RECONCILE_S)
    # Then the message is still the only one
    assert [m for m in r(s).lrange("generate", 0, -1) if job_id in m] == [queued_message(s, job_id)]
    # And when a slow generate worker takes it (delivered, unacked, provider call in progress)
    worker = s.start_worker("generate", 1, name="gen-slow", extra_env={"NANOEDIT_LOCAL_DELAY_S": "6"})
    try:
        wait_for(lambda: generate_deliveries(s, job_id), 60, "the generate task to start", 0.1)
        # Then kombu's unacked hash shows it in flight, and reconcile runs do not send it again
        assert queued_message(s, job_id) is None
        assert (job_id, 0) in (enqueuer.generate_in_flight() or set())
        job = wait_for(lambda: finished(s, job_id), 60, "the job to finish", 0.2)
        assert job["status"] == "succeeded", s.logs()
        time.sleep(2 * RECONCILE_S)  # a re-send, had there been one, would have started by now
        assert generate_deliveries(s, job_id) == {f"{job_id}.generate.0.1": 1}
        assert (job_id, 0) not in (enqueuer.generate_in_flight() or set())
    finally:
        worker.stop()


def test_a_message_lost_after_brpop_is_sent_again_and_the_job_succeeds(lost_stack: Stack,
                                                                       enqueuer: Enqueuer) -> None:
    s = lost_stack
    # Given a job whose generate message a worker took off the list and never recorded as unacked (lost)
    job_id = submit(s, "grayscale (lost)")
    raw = wait_for(lambda: queued_message(s, job_id), 30, "the generate message in the Celery list", 0.1)
    assert r(s).lrem("generate", 1, raw) == 1
    assert (job_id, 0) not in (enqueuer.generate_in_flight() or set())
    # and a generate worker that is up but has nothing to run
    worker = s.start_worker("generate", 1, name="gen-lost")
    try:
        s.wait_live(("generate",))
        time.sleep(RECONCILE_S)
        assert r(s).hget(f"nanoedit:job:{job_id}", "status") == "running"
        # When its ledger entry is older than the reconciler's grace
        sent_long_ago(s, job_id)
        # Then the reconciler sends it again (same attempt), and the job succeeds long before its deadline
        job = wait_for(lambda: finished(s, job_id), 45, "the job to finish after the re-send", 0.2)
        assert job["status"] == "succeeded", s.logs()
        assert generate_deliveries(s, job_id) == {f"{job_id}.generate.0.1": 1}
        assert "re-sent a generate message that looks lost" in s.procs["preprocess"].log()
    finally:
        worker.stop()
