"""Workers admit work through the owners' fair lines: first generate attempts carry the owner, retries do not,
reconcile pumps both job queues and re-admits a lost job through its owner's line; the per-owner active set
(`too_many_jobs_waiting`) follows the job to its terminal write and its expiry. Plus the real CeleryEnqueuer on a
real broker: `queue_depths` counts the fair lines."""

from __future__ import annotations

import redis

from shared.clock import FakeClock
from shared.fairqueue import FairQueue
from shared.jobs.model import JobStatus
from shared.queueing import GENERATE_QUEUE, PREPROCESS_QUEUE, CeleryEnqueuer, RecordingEnqueuer, make_celery
from shared.settings import Settings
from tests.support.stack import RedisServer
from tests.workers.test_pipeline import StubProvider, add_job, make_ctx, run_all
from workers import maintenance, pipeline
from workers.providers.base import ProviderUnavailable


def test_first_generate_attempts_go_through_the_owners_line_and_retries_do_not(redis_db: redis.Redis) -> None:
    clock = FakeClock()
    ctx = make_ctx(redis_db, clock, StubProvider(ProviderUnavailable("503"), "ok"))
    job_id = add_job(ctx, clock, num_images=1)
    enq: RecordingEnqueuer = ctx.enqueuer  # type: ignore[assignment]

    pipeline.run_preprocess(ctx, job_id)

    assert enq.owners == {job_id: "anonymous"}
    enq.owners.clear()
    run_all(ctx, job_id)  # one 503, then a retry with a countdown (straight to Celery)
    assert enq.owners == {}
    job = ctx.store.get(job_id)
    assert job is not None and job.status == JobStatus.SUCCEEDED


def test_reconcile_pumps_both_job_queues_and_readmits_a_lost_job_through_its_line(redis_db: redis.Redis) -> None:
    clock = FakeClock()
    ctx = make_ctx(redis_db, clock, StubProvider())
    job_id = add_job(ctx, clock)
    clock.advance(ctx.settings.effective_visibility_timeout_s + 61)
    enq: RecordingEnqueuer = ctx.enqueuer  # type: ignore[assignment]

    result = maintenance.reconcile(ctx)

    assert result["requeued"] == 1 and enq.owners[job_id] == "anonymous"
    assert enq.pumped == [PREPROCESS_QUEUE, GENERATE_QUEUE]


def test_the_active_set_follows_a_job_to_its_end_and_its_expiry(redis_db: redis.Redis) -> None:
    clock = FakeClock()
    ctx = make_ctx(redis_db, clock, StubProvider())
    done, canceled, _still_queued = (add_job(ctx, clock, job_id=c * 32) for c in "abc")
    assert ctx.store.active_count("anonymous") == 3
    run_all(ctx, done)
    assert ctx.store.request_cancel(canceled).ok
    assert ctx.store.active_count("anonymous") == 1
    clock.advance(3601)  # past expires_at while still queued
    ctx.store.expire_due(ctx.blobs)
    assert ctx.store.active_count("anonymous") == 0


def test_queue_depths_count_the_fair_lines_and_the_broker(redis_server: RedisServer) -> None:
    url = redis_server.url(2)
    r = redis.Redis.from_url(url, decode_responses=True)
    r.flushdb()
    try:
        enq = CeleryEnqueuer(make_celery(Settings(redis_url=url)), fair=FairQueue(r, "t"), ready=2)
        for i in range(5):
            enq.preprocess(f"{i:032x}", owner="key-a")
        enq.preprocess("f" * 32, owner="key-b")
        # Two real messages in the broker list, four jobs still in the lines: depth is all six
        assert r.llen(PREPROCESS_QUEUE) == 2
        assert enq.queue_depths()[PREPROCESS_QUEUE] == 6
    finally:
        r.flushdb()

