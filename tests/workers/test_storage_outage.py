"""The blob store down during a stage (workers/tasks.py): generate comes back later without burning a retry,
preprocess fails the job with storage_unavailable; the task never raises (real Redis, stub enqueuer, the real
task functions called in-process with a hand-built context)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from shared.blobs import MemoryBlobStore, output_key
from shared.clock import FakeClock
from shared.errors import BlobStoreUnavailable
from shared.jobs.model import JobStatus
from shared.queueing import RecordingEnqueuer
from tests.workers.test_pipeline import StubProvider, add_job, make_ctx
from workers import pipeline, tasks
from workers.context import WorkerContext


class FlakyBlobStore(MemoryBlobStore):
    """In-memory blobs that raise the storage error while `down`."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise BlobStoreUnavailable("object store: test outage")

    def put(self, key: str, data: bytes) -> None:
        self._check()
        super().put(key, data)

    def get(self, key: str) -> bytes:
        self._check()
        return super().get(key)

    def exists(self, key: str) -> bool:
        self._check()
        return super().exists(key)


@pytest.fixture
def ctx(redis_db: redis.Redis) -> Iterator[WorkerContext]:
    context = make_ctx(redis_db, FakeClock(), StubProvider("ok"))
    context.blobs = FlakyBlobStore()
    tasks._ctx = context  # what tasks.context() returns in a worker process
    yield context
    tasks._ctx = None


def test_generate_waits_out_a_storage_outage_then_succeeds(ctx: WorkerContext) -> None:
    # Given a prepared job and a blob store that goes down before generation
    job_id = add_job(ctx, ctx.clock)  # type: ignore[arg-type]
    pipeline.run_preprocess(ctx, job_id)
    enqueuer: RecordingEnqueuer = ctx.enqueuer  # type: ignore[assignment]
    enqueuer.sent.clear()
    blobs: FlakyBlobStore = ctx.blobs  # type: ignore[assignment]
    blobs.down = True
    # When the generate task runs
    tasks.generate(job_id, 0, 1, 0)
    # Then it does not raise or fail the job: it sends itself again later, same attempt, one more wait
    ((kind, jid, index, attempt, countdown, wait),) = enqueuer.sent
    assert (kind, jid, index, attempt, wait) == ("generate", job_id, 0, 1, 1) and countdown > 0
    assert ctx.store.status_of(job_id) == JobStatus.RUNNING
    # And once the store is back, that delivery finishes the job
    blobs.down = False
    tasks.generate(job_id, 0, attempt, wait)
    assert ctx.store.status_of(job_id) == JobStatus.SUCCEEDED
    assert blobs.exists(output_key(job_id, 0))


def test_preprocess_fails_the_job_with_storage_unavailable(ctx: WorkerContext) -> None:
    # Given a queued job and a blob store that is down
    job_id = add_job(ctx, ctx.clock)  # type: ignore[arg-type]
    ctx.blobs.down = True  # type: ignore[attr-defined]
    # When the preprocess task runs
    tasks.preprocess(job_id)
    # Then the job ends failed with the coded, retryable error (and the task itself did not raise)
    job = ctx.store.get(job_id)
    assert job is not None and job.status == JobStatus.FAILED
    assert job.error is not None and job.error.code == "storage_unavailable"
