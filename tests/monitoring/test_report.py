"""The beat health report built from recorded outcomes (real Redis, fake clock)."""

from __future__ import annotations

import redis

from monitoring.outcomes import OutcomeRecorder
from monitoring.report import HealthReporter
from shared.circuit import CircuitBreaker
from shared.clock import FakeClock
from shared.jobs.store import JobStore
from shared.limiter import FleetLimiter
from shared.liveness import WorkerRegistry
from shared.settings import Settings
from tests.workers.test_pipeline import StubProvider, make_ctx
from workers import maintenance


def make_reporter(r: redis.Redis, clock: FakeClock) -> HealthReporter:
    s = Settings(redis_prefix="t")
    return HealthReporter(r=r, prefix="t", clock=clock, jobs=JobStore(r, "t", clock),
                          liveness=WorkerRegistry(r, "t", clock, s.worker_heartbeat_s),
                          recorder=OutcomeRecorder(r, "t", clock),
                          limiter=FleetLimiter(r, "t", s.limit_config()),
                          breaker=CircuitBreaker(r, "t", s.circuit_config(), clock),
                          queue_depths=lambda: {"preprocess": 2, "generate": 5, "maintenance": 0})


def test_report_rates_percentiles_and_queues(redis_db: redis.Redis) -> None:
    clock = FakeClock(1_700_000_000)
    rep = make_reporter(redis_db, clock)
    # Given 40 finished jobs in the last minutes: 30 ok (5 of them after a retry), 6 timeouts, 3 other errors,
    # 1 canceled
    for i in range(30):
        attempts = [{"n": 1}, {"n": 2}] if i < 5 else [{"n": 1}]
        rep.recorder.job_finished(f"ok{i}", status="succeeded", error_code=None, latency_s=1.0 + i / 10,
                                  attempts=attempts)
    for i in range(6):
        rep.recorder.job_finished(f"to{i}", status="failed", error_code="upstream_timeout", latency_s=60.0,
                                  attempts=[{"n": 1}, {"n": 2}])
    for i in range(3):
        rep.recorder.job_finished(f"e{i}", status="failed", error_code="content_blocked", latency_s=2.0)
    rep.recorder.job_finished("c", status="canceled", error_code="canceled", latency_s=0.5)
    redis_db.zadd("t:waiting:generate", {"x": (clock.now() - 42) * 1000})
    redis_db.zadd("t:workers:generate", {"generate@h": clock.now()})
    # When beat builds the report
    report = rep.build()
    five = report["windows"]["5m"]
    # Then the figures are what happened
    assert five["jobs_finished"] == 40
    # canceled jobs and caller-caused failures (content_blocked) are neither the service's errors nor successes
    assert five["error_rate"] == round(6 / 36, 4) and five["judged"] == 36
    assert five["caller_error_rate"] == round(3 / 39, 4) and five["canceled"] == 1
    assert five["failures_by_blame"] == {"service": 6, "caller": 3}
    assert five["timeout_rate"] == round(6 / 36, 4)
    assert five["retry_success_rate"] == round(5 / 11, 4)
    assert five["errors_by_code"] == {"upstream_timeout": 6, "content_blocked": 3, "canceled": 1}
    assert five["job_latency_s"]["samples"] == 39 and five["job_latency_s"]["p99"] is not None
    assert five["provider_latency_s"]["p50"] is None  # no provider samples: null, not a noisy number
    assert report["queues"]["generate"] == {"depth": 5, "waiting_jobs": 1, "oldest_age_s": 42.0,
                                            "live_workers": 1}
    assert report["queues"]["preprocess"]["live_workers"] == 0
    assert report["circuit"]["state"] == "closed" and "config" in report["limiter"]
    # and it is stored as the latest and in the history
    rep.store(report)
    assert rep.latest() == report and len(rep.history()) == 1


def test_daily_summary(redis_db: redis.Redis) -> None:
    clock = FakeClock(1_700_000_000)
    rep = make_reporter(redis_db, clock)
    rep.recorder.job_finished("a", status="succeeded", error_code=None, latency_s=1.0)
    day = rep.daily()
    assert day["jobs_finished"] == 1 and day["complete"] is False


def test_two_beats_in_one_period_report_once(redis_db: redis.Redis) -> None:
    ctx = make_ctx(redis_db, FakeClock(1_700_000_000), StubProvider())
    ctx.enqueuer.queue_depths = lambda: {"preprocess": 0, "generate": 0}  # type: ignore[attr-defined]
    first = maintenance.health_report(ctx)
    second = maintenance.health_report(ctx)
    assert "generated_at" in first and "skipped" in second
