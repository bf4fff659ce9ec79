"""The lost-generate reconciler (workers/maintenance.py `_requeue_lost_generate`) with a real Redis, a stub
enqueuer (what is in flight is given) and a fake clock: who gets a message again, with which attempt, and who
does not (still in flight, recorded, finished, not yet overdue, a broker backlog too long to read)."""

from __future__ import annotations

import pytest
import redis

from monitoring.outcomes import OutcomeRecorder
from shared.blobs import MemoryBlobStore
from shared.circuit import CircuitBreaker
from shared.clock import FakeClock
from shared.errors import job_error
from shared.jobs.model import Attempt, Job, JobStage, JobStatus
from shared.jobs.store import JobStore
from shared.limiter import FleetLimiter
from shared.queueing import RecordingEnqueuer
from shared.settings import Settings
from workers import maintenance
from workers.context import WorkerContext

A, B = "a" * 32, "b" * 32


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def ctx(redis_db: redis.Redis, clock: FakeClock) -> WorkerContext:
    s = Settings(redis_prefix="t", job_deadline_s=3600)
    return WorkerContext(settings=s, store=JobStore(redis_db, "t", clock), redis=redis_db,
                         blobs=MemoryBlobStore(), enqueuer=RecordingEnqueuer(), clock=clock,
                         provider_factory=lambda: None,  # type: ignore[arg-type,return-value]
                         limiter=FleetLimiter(redis_db, "t", s.limit_config()),
                         breaker=CircuitBreaker(redis_db, "t", s.circuit_config(), clock),
                         recorder=OutcomeRecorder(redis_db, "t", clock))


def generating(ctx: WorkerContext, clock: FakeClock, job_id: str, num_images: int = 1) -> str:
    """A job past preprocessing whose first generate messages were sent now."""
    now = clock.now()
    ctx.store.create(Job(id=job_id, owner="anonymous", status=JobStatus.QUEUED, stage=JobStage.QUEUED, operation="edit",
                         num_images=num_images, instruction="grayscale", image_description="", created_at=now,
                         expires_at=now + 7200, deadline_at=now + 3600))
    assert ctx.store.start_preprocessing(job_id).ok
    ctx.store.expect_first_generate(job_id, num_images, now * 1000)
    return job_id


def enqueuer(ctx: WorkerContext) -> RecordingEnqueuer:
    assert isinstance(ctx.enqueuer, RecordingEnqueuer)
    return ctx.enqueuer


def generates(ctx: WorkerContext) -> list[tuple[object, ...]]:
    return [s for s in enqueuer(ctx).sent if s[0] == "generate"]


def test_a_lost_message_is_sent_again_once_overdue_and_only_then(ctx: WorkerContext, clock: FakeClock) -> None:
    # Given a job whose generate message is nowhere in flight (taken by a worker that died before recording it)
    generating(ctx, clock, A)
    grace = maintenance.lost_generate_grace_s(ctx.settings)
    # When the reconciler looks before the grace has passed, it sends nothing
    clock.advance(grace - 1)
    assert maintenance.reconcile(ctx)["requeued_generate"] == 0
    # Then once the message is overdue by more than the grace, it is sent again as attempt 1, straight to Celery
    clock.advance(2)
    assert maintenance.reconcile(ctx)["requeued_generate"] == 1
    assert generates(ctx) == [("generate", A, 0, 1, None, 0)]
    assert A not in enqueuer(ctx).owners
    # and the ledger entry is refreshed: the next run does not send it a second time
    assert maintenance.reconcile(ctx)["requeued_generate"] == 0
    assert len(generates(ctx)) == 1


def test_the_resend_repeats_the_provider_attempt_that_was_lost(ctx: WorkerContext, clock: FakeClock) -> None:
    # Given output 1 of a job had two provider calls, and its retry message (attempt 3, 10 s countdown) was lost
    generating(ctx, clock, A, num_images=2)
    for n in (1, 2):
        ctx.store.add_attempt(A, Attempt(output=1, n=n, outcome="upstream_unavailable", at="t", duration_ms=1,
                                         error_code="upstream_unavailable"))
    ctx.store.add_attempt(A, Attempt(output=0, n=1, outcome="succeeded", at="t", duration_ms=1, error_code=None))
    ctx.store.expect_generate(A, [1], countdown_s=10)
    enqueuer(ctx).in_flight = frozenset({(A, 0)})  # output 0's message is still on its way
    # When the reconciler runs after the grace
    clock.advance(maintenance.lost_generate_grace_s(ctx.settings) + 11)
    maintenance.reconcile(ctx)
    # Then only output 1 is sent again, as attempt 3
    assert generates(ctx) == [("generate", A, 1, 3, None, 0)]


def test_nothing_is_sent_for_messages_in_flight_or_outputs_and_jobs_that_are_done(
        ctx: WorkerContext, clock: FakeClock) -> None:
    # Given three jobs with overdue entries: A's message in flight, B ended, C's output recorded
    c = "c" * 32
    for job_id in (A, B, c):
        generating(ctx, clock, job_id)
    enqueuer(ctx).in_flight = frozenset({(A, 0)})
    assert ctx.store.finish(B, JobStatus.FAILED, error=job_error("internal_error", "x")).ok
    ctx.store.expect_generate(B, [0])  # a stale entry (written after the terminal write)
    ctx.store.fail_output(c, 0, job_error("upstream_error", "x"))
    ctx.store.expect_generate(c, [0])  # a stale entry (a late write after the output was recorded)
    clock.advance(maintenance.lost_generate_grace_s(ctx.settings) + 1)
    # When the reconciler runs
    assert maintenance.reconcile(ctx)["requeued_generate"] == 0
    # Then nothing is sent; the stale entries are dropped, the one in flight is kept
    assert generates(ctx) == []
    assert [e.job_id for e in ctx.store.overdue_generate(clock.now())] == [A]


def test_a_broker_backlog_too_long_to_read_sends_nothing(ctx: WorkerContext, clock: FakeClock) -> None:
    # Given an overdue entry but a generate backlog the enqueuer cannot read in full
    generating(ctx, clock, A)
    enqueuer(ctx).in_flight = None
    clock.advance(maintenance.lost_generate_grace_s(ctx.settings) + 1)
    # Then nothing is sent and the entry waits for the next run
    assert maintenance.reconcile(ctx)["requeued_generate"] == 0
    assert generates(ctx) == []
    assert len(ctx.store.overdue_generate(clock.now())) == 1
