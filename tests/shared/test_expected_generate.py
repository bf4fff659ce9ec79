"""The ledger of expected generate messages (shared/jobs/expected.py) on a real Redis with a fake clock: written
when a message is sent, gone when the output is recorded, the job ends or expires; overdue entries listed."""

from __future__ import annotations

import pytest
import redis

from shared.blobs import MemoryBlobStore
from shared.clock import FakeClock
from shared.errors import job_error
from shared.fairqueue import FairQueue
from shared.jobs.expected import ExpectedOutput
from shared.jobs.model import Job, JobStage, JobStatus, OutputResult
from shared.jobs.store import JobStore

A, B = "a" * 32, "b" * 32


def make_job(clock: FakeClock, job_id: str, num_images: int = 1) -> Job:
    now = clock.now()
    return Job(id=job_id, owner="anonymous", status=JobStatus.QUEUED, stage=JobStage.QUEUED, operation="edit",
               num_images=num_images, instruction="grayscale", image_description="", created_at=now,
               expires_at=now + 3600, deadline_at=now + 600)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(redis_db: redis.Redis, clock: FakeClock) -> JobStore:
    return JobStore(redis_db, "t", clock)


def running(store: JobStore, clock: FakeClock, job_id: str, num_images: int = 1) -> str:
    store.create(make_job(clock, job_id, num_images))
    assert store.start_preprocessing(job_id).ok
    return job_id


def test_first_sends_are_expected_now_and_a_retry_after_its_countdown(store: JobStore, clock: FakeClock) -> None:
    # Given a job with two outputs whose first generate messages are sent at t0
    t0 = clock.now()
    running(store, clock, A, num_images=2)
    store.expect_first_generate(A, 2, t0 * 1000)
    # When output 1 fails and its retry goes out with a 30 s countdown 5 s later
    clock.advance(5)
    store.expect_generate(A, [1], countdown_s=30)
    # Then both are in the ledger: output 0 due at t0, output 1 due at t0 + 35; and the job waits for generate
    assert store.overdue_generate(t0 + 1) == [ExpectedOutput(A, 0, t0)]
    assert store.overdue_generate(t0 + 36) == [ExpectedOutput(A, 0, t0), ExpectedOutput(A, 1, t0 + 35)]
    assert store.queue_position(A) == 1


def test_recording_an_output_removes_its_entry_only(store: JobStore, clock: FakeClock) -> None:
    # Given a two-output job expecting both messages
    running(store, clock, A, num_images=2)
    store.expect_first_generate(A, 2, clock.now() * 1000)
    # When output 0 is stored and output 1 fails for good
    store.record_output(A, 0, OutputResult.succeeded(mime_type="image/png", width=1, height=1, size=1,
                                                     sha256="0"))
    assert [e.index for e in store.overdue_generate(clock.now() + 1)] == [1]
    store.fail_output(A, 1, job_error("upstream_error", "no"))
    # Then nothing is expected any more
    assert store.overdue_generate(clock.now() + 1) == []


def test_the_terminal_write_and_expiry_remove_every_entry_of_the_job(store: JobStore, clock: FakeClock) -> None:
    # Given two running jobs, each expecting the messages of its three outputs
    for job_id in (A, B):
        running(store, clock, job_id, num_images=3)
        store.expect_first_generate(job_id, 3, clock.now() * 1000)
    # When A ends (the deadline, a cancel: any terminal write) without recording its outputs
    assert store.finish(A, JobStatus.FAILED, error=job_error("deadline_exceeded", "late")).ok
    # Then only B's entries are left
    assert {e.job_id for e in store.overdue_generate(clock.now() + 1)} == {B}
    # And when B expires while still running, its entries go with it
    clock.advance(3601)
    assert store.expire_due(MemoryBlobStore()) == 2
    assert store.overdue_generate(clock.now()) == []


def test_forget_and_a_foreign_member_are_dropped(store: JobStore, clock: FakeClock, redis_db: redis.Redis) -> None:
    # Given an expected output and a member this module never writes
    store.expect_generate(A, [0])
    redis_db.zadd("t:generate:expected", {"garbage": 0})
    # When the overdue entries are listed and the output forgotten
    assert store.overdue_generate(clock.now() + 1) == [ExpectedOutput(A, 0, clock.now())]
    store.forget_expected(A, 0)
    # Then nothing is listed and the foreign member is gone too
    assert store.overdue_generate(clock.now() + 1) == []
    assert redis_db.zcard("t:generate:expected") == 0


def test_pending_fair_items_include_taken_ones_and_stop_at_the_limit(redis_db: redis.Redis) -> None:
    # Given items waiting in two owners' generate lines, one of them taken by a pump and not yet confirmed
    fq = FairQueue(redis_db, "t")
    fq.push("generate", "key-a", f"{A}.0", f"{A}.1")
    fq.push("generate", "key-b", f"{B}.0")
    taken = fq.take("generate", ready=1)
    assert len(taken) == 1
    # Then every item is pending, taken or not; more than the limit answers "cannot tell"
    assert fq.pending("generate", 10) == {f"{A}.0", f"{A}.1", f"{B}.0"}
    assert fq.pending("generate", 2) is None
    assert fq.pending("preprocess", 10) == frozenset()
