"""Pipeline stages with a real Redis, in-memory blobs, a stub provider, a stub enqueuer and a fake clock."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from monitoring.outcomes import OutcomeRecorder
from shared.blobs import MemoryBlobStore, input_key, output_key
from shared.circuit import CircuitBreaker
from shared.clock import FakeClock
from shared.jobs.model import InputMeta, Job
from shared.jobs.store import JobStore
from shared.limiter import FleetLimiter
from shared.queueing import RecordingEnqueuer
from shared.settings import Settings
from tests.conftest import FIXTURES
from workers import maintenance, pipeline
from workers.context import WorkerContext
from workers.providers.base import (
    ContentBlocked,
    ProviderUnavailable,
)
from workers.providers.stub import ScriptedProvider

PNG = (FIXTURES / "chelsea.png").read_bytes()


def StubProvider(*outcomes: Any) -> ScriptedProvider:
    return ScriptedProvider(*outcomes, image=PNG)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_ctx(r: redis.Redis, clock: FakeClock, provider: ScriptedProvider, **settings: Any) -> WorkerContext:
    s = Settings(redis_prefix="t", **settings)
    return WorkerContext(settings=s, store=JobStore(r, "t", clock), redis=r,
                         blobs=MemoryBlobStore(), enqueuer=RecordingEnqueuer(), clock=clock,
                         provider_factory=lambda: provider, limiter=FleetLimiter(r, "t", s.limit_config()),
                         breaker=CircuitBreaker(r, "t", s.circuit_config(), clock),
                         recorder=OutcomeRecorder(r, "t", clock))


def add_job(ctx: WorkerContext, clock: FakeClock, job_id: str = "a" * 32, num_images: int = 1,
            data: bytes = PNG) -> str:
    now = clock.now()
    ctx.blobs.put(input_key(job_id, 0), data)
    ctx.store.create(Job(id=job_id, owner="anonymous", status="queued", stage="queued", operation="edit",
                         num_images=num_images, instruction="grayscale", image_description="", created_at=now,
                         expires_at=now + 3600, deadline_at=now + 600,
                         inputs=[InputMeta(0, "image/png", len(data), 451, 300, "x")]))
    return job_id


def run_all(ctx: WorkerContext, job_id: str) -> list[Any]:
    """Preprocess, then run every generate task the stub enqueuer captured (retries included)."""
    pipeline.run_preprocess(ctx, job_id)
    results = []
    enqueuer: RecordingEnqueuer = ctx.enqueuer  # type: ignore[assignment]
    while any(s[0] == "generate" for s in enqueuer.sent):
        item = next(s for s in enqueuer.sent if s[0] == "generate")
        enqueuer.sent.remove(item)
        retry = pipeline.run_generate(ctx, item[1], item[2], item[3], item[5])
        results.append(retry)
        if retry is not None:
            ctx.clock.sleep(retry.countdown)
            enqueuer.generate(item[1], item[2], retry.attempt, retry.countdown, retry.wait)
    return results


def test_transient_failures_are_retried_then_succeed(redis_db: redis.Redis, clock: FakeClock) -> None:
    provider = StubProvider(ProviderUnavailable("503"), ProviderUnavailable("503"), "ok")
    ctx = make_ctx(redis_db, clock, provider)
    job_id = add_job(ctx, clock)
    retries = run_all(ctx, job_id)
    job = ctx.store.get(job_id)
    assert job is not None and job.status == "succeeded"
    assert [a["outcome"] for a in job.attempts] == ["unavailable", "unavailable", "succeeded"]
    assert [r.attempt for r in retries if r] == [2, 3]
    assert all(0 <= r.countdown <= ctx.settings.max_countdown_s for r in retries if r)


def test_retries_are_bounded_by_max_retries(redis_db: redis.Redis, clock: FakeClock) -> None:
    provider = StubProvider(*[ProviderUnavailable("503") for _ in range(10)])
    ctx = make_ctx(redis_db, clock, provider, max_retries=2)
    job_id = add_job(ctx, clock)
    run_all(ctx, job_id)
    job = ctx.store.get(job_id)
    assert job is not None and job.status == "failed"
    assert job.error is not None and job.error["code"] == "upstream_unavailable" and job.error["suggestion"]
    assert len(provider.calls) == 3


def test_permanent_failure_is_not_retried(redis_db: redis.Redis, clock: FakeClock) -> None:
    provider = StubProvider(ContentBlocked("SAFETY"))
    ctx = make_ctx(redis_db, clock, provider)
    job_id = add_job(ctx, clock)
    run_all(ctx, job_id)
    job = ctx.store.get(job_id)
    assert job is not None and job.status == "failed" and job.error is not None
    assert job.error["code"] == "content_blocked" and len(provider.calls) == 1


def test_partial_success_keeps_the_outputs_that_worked(redis_db: redis.Redis, clock: FakeClock) -> None:
    provider = StubProvider("ok", ContentBlocked("SAFETY"))
    ctx = make_ctx(redis_db, clock, provider)
    job_id = add_job(ctx, clock, num_images=2)
    run_all(ctx, job_id)
    job = ctx.store.get(job_id)
    assert job is not None and job.status == "partially_succeeded"
    assert job.outputs[0]["status"] == "succeeded" and job.outputs[1]["status"] == "failed"


def test_cancel_during_the_call_discards_the_result_and_reports_billing(redis_db: redis.Redis,
                                                                        clock: FakeClock) -> None:
    provider = StubProvider("ok")
    ctx = make_ctx(redis_db, clock, provider)
    job_id = add_job(ctx, clock)
    provider.during_call = lambda: ctx.store.request_cancel(job_id)
    run_all(ctx, job_id)
    job = ctx.store.get(job_id)
    assert job is not None and job.status == "canceled"
    assert job.billed_calls == 1 and not ctx.blobs.exists(output_key(job_id, 0))
    assert job.error is not None and "billed provider calls: 1" in job.error["details"]


def test_canceled_before_generate_makes_no_provider_call(redis_db: redis.Redis, clock: FakeClock) -> None:
    provider = StubProvider("ok")
    ctx = make_ctx(redis_db, clock, provider)
    job_id = add_job(ctx, clock, num_images=2)
    pipeline.run_preprocess(ctx, job_id)
    ctx.store.request_cancel(job_id)
    for index in range(2):
        pipeline.run_generate(ctx, job_id, index, 1)
    job = ctx.store.get(job_id)
    assert job is not None and job.status == "canceled" and provider.calls == []


def test_redelivered_generate_with_stored_output_never_calls_provider(redis_db: redis.Redis,
                                                                      clock: FakeClock) -> None:
    provider = StubProvider("ok")
    ctx = make_ctx(redis_db, clock, provider)
    job_id = add_job(ctx, clock)
    pipeline.run_preprocess(ctx, job_id)
    ctx.blobs.put(output_key(job_id, 0), PNG)  # stored by a delivery that died before recording it
    pipeline.run_generate(ctx, job_id, 0, 1)
    job = ctx.store.get(job_id)
    assert job is not None and job.status == "succeeded" and provider.calls == []


def test_corrupt_input_fails_the_job_without_raising(redis_db: redis.Redis, clock: FakeClock) -> None:
    ctx = make_ctx(redis_db, clock, StubProvider())
    job_id = add_job(ctx, clock, data=PNG[: len(PNG) // 3])
    pipeline.run_preprocess(ctx, job_id)
    job = ctx.store.get(job_id)
    assert job is not None and job.status == "failed" and job.error is not None
    assert job.error["code"] == "image_corrupt" and job.error["suggestion"]


def test_reconciler_ends_jobs_past_their_deadline(redis_db: redis.Redis, clock: FakeClock) -> None:
    ctx = make_ctx(redis_db, clock, StubProvider())
    job_id = add_job(ctx, clock, num_images=2)
    pipeline.run_preprocess(ctx, job_id)
    pipeline.run_generate(ctx, job_id, 0, 1)  # one output done, the other's message "lost"
    clock.advance(601)
    assert maintenance.reconcile(ctx)["ended_by_deadline"] == 1
    job = ctx.store.get(job_id)
    assert job is not None and job.status == "partially_succeeded"
    assert job.outputs[1]["error"]["code"] == "deadline_exceeded"


def test_reconciler_requeues_a_queued_job_whose_message_was_lost(redis_db: redis.Redis, clock: FakeClock) -> None:
    ctx = make_ctx(redis_db, clock, StubProvider())
    job_id = add_job(ctx, clock)
    clock.advance(ctx.settings.effective_visibility_timeout_s + 61)
    ctx.enqueuer.depths["preprocess"] = 5  # type: ignore[attr-defined]
    assert maintenance.reconcile(ctx)["requeued"] == 0  # a backlog: its message may still be waiting
    ctx.enqueuer.depths["preprocess"] = 0  # type: ignore[attr-defined]
    assert maintenance.reconcile(ctx)["requeued"] == 1
    assert ("preprocess", job_id) in ctx.enqueuer.sent  # type: ignore[attr-defined]


def test_empty_answer_is_retried_exactly_once(redis_db: redis.Redis, clock: FakeClock) -> None:
    from workers.providers.base import EmptyResponse

    provider = StubProvider(EmptyResponse("no candidates"), EmptyResponse("no candidates"), "ok")
    ctx = make_ctx(redis_db, clock, provider)
    job_id = add_job(ctx, clock)
    run_all(ctx, job_id)
    job = ctx.store.get(job_id)
    assert job is not None and job.status == "failed" and job.error is not None
    assert job.error["code"] == "no_image_generated" and len(provider.calls) == 2


def test_cancel_while_waiting_for_quota_makes_no_provider_call(redis_db: redis.Redis, clock: FakeClock) -> None:
    # Given every slot of the fleet limiter is taken by someone else
    provider = StubProvider("ok")
    ctx = make_ctx(redis_db, clock, provider, gemini_concurrency=1, quota_wait_s=0.0)
    assert ctx.limiter.try_acquire("someone-else").granted
    job_id = add_job(ctx, clock)
    pipeline.run_preprocess(ctx, job_id)
    # When the generate task runs it waits for quota (re-queued, no retry burned)
    retry = pipeline.run_generate(ctx, job_id, 0, 1)
    assert retry is not None and retry.attempt == 1 and retry.wait == 1
    job = ctx.store.get(job_id)
    assert job is not None and job.stage == "waiting_for_quota"
    # and the client cancels meanwhile; then the quota frees up and the task comes back
    ctx.store.request_cancel(job_id)
    ctx.limiter.release("someone-else")
    assert pipeline.run_generate(ctx, job_id, 0, 1, retry.wait) is None
    # Then the job is canceled and the provider was never called
    job = ctx.store.get(job_id)
    assert job is not None and job.status == "canceled" and provider.calls == [] and job.billed_calls == 0


def test_rate_limit_answer_cools_down_the_whole_fleet(redis_db: redis.Redis, clock: FakeClock) -> None:
    from workers.providers.base import ProviderRateLimited

    ctx = make_ctx(redis_db, clock, StubProvider(ProviderRateLimited("429", retry_after_s=7)))
    job_id = add_job(ctx, clock)
    pipeline.run_preprocess(ctx, job_id)
    retry = pipeline.run_generate(ctx, job_id, 0, 1)
    assert retry is not None and retry.attempt == 2 and retry.countdown >= 7  # honours RetryInfo
    assert 5 < ctx.limiter.cooldown_remaining_s() <= 7
    assert not ctx.limiter.try_acquire("another-worker").granted
    assert ctx.breaker.state()["state"] == "closed"  # a 429 is our quota, not a provider failure


def test_open_circuit_makes_jobs_wait_without_burning_retries(redis_db: redis.Redis, clock: FakeClock) -> None:
    provider = StubProvider(*[ProviderUnavailable("503") for _ in range(5)], "ok")
    ctx = make_ctx(redis_db, clock, provider, circuit_failures=3, max_retries=10)
    job_id = add_job(ctx, clock)
    results = run_all(ctx, job_id)
    job = ctx.store.get(job_id)
    assert job is not None and job.status == "succeeded"
    waits = [r for r in results if r is not None and r.wait > 0]
    assert waits, "the circuit should have opened after 3 failures and made the task wait"
    assert len(provider.calls) == 6  # no call while the circuit was open
    assert [a["n"] for a in job.attempts] == [1, 2, 3, 4, 5, 6]  # waiting burned no attempt number


def test_quota_gone_past_the_deadline_fails_fast_with_rate_limited(redis_db: redis.Redis,
                                                                   clock: FakeClock) -> None:
    provider = StubProvider("ok")
    ctx = make_ctx(redis_db, clock, provider, quota_wait_s=0.0)
    job_id = add_job(ctx, clock)
    pipeline.run_preprocess(ctx, job_id)
    ctx.limiter.cooldown(3600)  # e.g. a per-day quota 429 seen by another worker
    assert pipeline.run_generate(ctx, job_id, 0, 1) is None
    job = ctx.store.get(job_id)
    assert job is not None and job.status == "failed" and provider.calls == []
    assert job.error is not None and job.error["code"] == "upstream_rate_limited"
