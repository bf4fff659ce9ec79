"""The three kinds of Gemini 429 (docs/providers.md#429-kinds): per-minute, per-day, spend cap.

Classification from the QuotaFailure details, the next midnight Pacific (DST-aware), the per-model hold in the
fleet limiter (real Redis: the Lua needs one), and what the generate stage does with each kind (FakeClock).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import redis

from shared.clock import FakeClock
from shared.jobs.view import public_view
from shared.limiter import FleetLimiter, LimitConfig
from shared.quota_reset import next_pacific_midnight, seconds_until_pacific_midnight
from tests.workers.test_pipeline import StubProvider, add_job, make_ctx, run_all
from workers import pipeline
from workers.providers.base import (
    ProviderRateLimited,
    QuotaExhaustedForDay,
    SpendCapReached,
)
from workers.providers.gemini import quota_kind

RPC = "type.googleapis.com/google.rpc."


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def failure(quota_id: str, metric: str = "generativelanguage.googleapis.com/generate_content_requests",
            retry: str | None = "7s") -> list[dict[str, Any]]:
    details: list[dict[str, Any]] = [
        {"@type": RPC + "QuotaFailure", "violations": [{"quotaMetric": metric, "quotaId": quota_id}]}]
    if retry is not None:
        details.append({"@type": RPC + "RetryInfo", "retryDelay": retry})
    return details


# --- classification ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("details", "kind"), [
    (failure("GenerateRequestsPerMinutePerProjectPerModel"), "per_minute"),
    (failure("GenerateContentInputTokensPerModelPerMinute"), "per_minute"),
    (failure("GenerateRequestsPerDayPerProjectPerModel"), "per_day"),
    (failure("GenerateContentSpendCapPerBillingAccount", "generativelanguage.googleapis.com/billing_spend"),
     "spend_cap"),
    (failure("SomeQuota", "generativelanguage.googleapis.com/monthly_budget_usd"), "spend_cap"),
    ([], "per_minute"),  # a bare 429: treated as the per-minute kind (fleet cooldown), as before
    ([{"@type": RPC + "QuotaFailure", "violations": "garbage"}], "per_minute"),
])
def test_quota_kind_reads_the_quota_failure(details: list[dict[str, Any]], kind: str) -> None:
    assert quota_kind(details) == kind


# --- midnight Pacific -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("now", "reset"), [
    ("2026-11-30T16:00:00", "2026-12-01T08:00:00"),  # PST: midnight is 08:00 UTC
    ("2026-07-01T06:59:59", "2026-07-01T07:00:00"),  # PDT: midnight is 07:00 UTC, one second away
    ("2026-07-01T07:00:00", "2026-07-02T07:00:00"),  # exactly midnight: the next one
    ("2026-03-07T12:00:00", "2026-03-08T08:00:00"),  # the night before DST starts (still PST)
    ("2026-03-08T09:00:00", "2026-03-09T07:00:00"),  # DST day (23 h): next midnight is PDT
    ("2026-11-01T08:30:00", "2026-11-02T08:00:00"),  # DST ends (25 h day): next midnight is PST
])
def test_next_pacific_midnight_is_dst_aware(now: str, reset: str) -> None:
    assert next_pacific_midnight(at(now)) == at(reset)
    assert seconds_until_pacific_midnight(at(now)) == at(reset) - at(now)


# --- per-model hold in the limiter ------------------------------------------------------------------------

def test_a_model_hold_refuses_that_model_only(redis_db: redis.Redis) -> None:
    limiter = FleetLimiter(redis_db, "t", LimitConfig(concurrency=4))
    remaining = limiter.hold_model("gemini-2.5-flash-image", 3600)
    assert 3599 < remaining <= 3600
    held = limiter.try_acquire("a:0", model="gemini-2.5-flash-image")
    assert not held.granted and held.reason == "model_hold" and 3599 < held.wait_s <= 3600
    assert limiter.try_acquire("b:0", model="gemini-3-pro-image-preview").granted
    assert limiter.try_acquire("c:0").granted  # no model named: only the fleet-wide limits apply
    assert set(limiter.holds()) == {"gemini-2.5-flash-image"}
    # A shorter hold never shortens a longer one
    assert limiter.hold_model("gemini-2.5-flash-image", 10) > 3500
    assert limiter.hold_remaining_s("gemini-2.5-flash-image") > 3500
    assert limiter.hold_remaining_s("gemini-3-pro-image-preview") == 0.0


def test_a_live_lease_is_renewed_even_under_a_hold(redis_db: redis.Redis) -> None:
    limiter = FleetLimiter(redis_db, "t", LimitConfig(concurrency=1))
    assert limiter.try_acquire("a:0", model="m").granted
    limiter.hold_model("m", 60)
    assert limiter.try_acquire("a:0", model="m").granted  # idempotent for the holder already admitted


# --- the generate stage ------------------------------------------------------------------------------------

def test_per_minute_429_cools_the_fleet_for_retry_info(redis_db: redis.Redis) -> None:
    clock = FakeClock(at("2026-11-30T16:00:00"))
    ctx = make_ctx(redis_db, clock, StubProvider(ProviderRateLimited("429", retry_after_s=7), "ok"))
    job_id = add_job(ctx, clock)
    pipeline.run_preprocess(ctx, job_id)
    retry = pipeline.run_generate(ctx, job_id, 0, 1)
    assert retry is not None and retry.attempt == 2 and retry.countdown >= 7
    assert 5 < ctx.limiter.cooldown_remaining_s() <= 7
    assert ctx.limiter.holds() == {}


def test_per_day_429_holds_the_model_until_midnight_pacific_and_the_job_waits(redis_db: redis.Redis) -> None:
    # Given 23:58 Pacific (PST) and a job whose deadline (600 s) outlives the reset two minutes away
    clock = FakeClock(at("2026-12-01T07:58:00"))
    provider = StubProvider(QuotaExhaustedForDay("429 per day", retry_after_s=3600), "ok")
    ctx = make_ctx(redis_db, clock, provider, quota_wait_s=0.0)
    job_id = add_job(ctx, clock)
    pipeline.run_preprocess(ctx, job_id)
    # When the call answers 429 on the per-day quota
    retry = pipeline.run_generate(ctx, job_id, 0, 1)
    # Then that model is held until midnight Pacific, the fleet is not cooled, and the job waits (the call after
    # the reset is attempt 2)
    assert retry is not None and retry.attempt == 2 and retry.wait == 1
    assert 115 < ctx.limiter.hold_remaining_s("") <= 120
    assert ctx.limiter.cooldown_remaining_s() == 0.0
    job = ctx.store.get(job_id)
    assert job is not None and job.status == "running" and job.stage == "waiting_for_quota"
    # and the job says why and until when (the reset: midnight Pacific = 08:00 UTC in December)
    assert public_view(job)["waiting"] == {"reason": "model_hold", "until": "2026-12-01T08:00:00.000Z"}
    # and a later poll before the reset waits again without calling the provider
    again = pipeline.run_generate(ctx, job_id, 0, retry.attempt, retry.wait)
    assert again is not None and again.wait == 2 and len(provider.calls) == 1
    # and once the quota has reset (the hold's key expires on Redis's clock: dropped here), the job finishes
    redis_db.delete("t:limiter:hold:-")
    clock.sleep(again.countdown)
    assert pipeline.run_generate(ctx, job_id, 0, again.attempt, again.wait) is None
    done = ctx.store.get(job_id)
    assert done is not None and done.status == "succeeded" and public_view(done)["waiting"] is None
    assert [(a["n"], a["outcome"]) for a in done.attempts] == [(1, "quota_exhausted_day"), (2, "succeeded")]


def test_per_day_429_past_the_deadline_fails_now_saying_when_it_resets(redis_db: redis.Redis) -> None:
    # Given noon Pacific: the reset is 12 h away, the job's deadline 10 min
    clock = FakeClock(at("2026-11-30T20:00:00"))
    ctx = make_ctx(redis_db, clock, StubProvider(QuotaExhaustedForDay("429 per day"), "ok"), quota_wait_s=0.0)
    job_id = add_job(ctx, clock)
    results = run_all(ctx, job_id)
    job = ctx.store.get(job_id)
    assert results == [None]
    assert job is not None and job.status == "failed" and job.error is not None
    assert job.error["code"] == "upstream_rate_limited" and job.error["suggestion"]
    assert [a["outcome"] for a in job.attempts] == ["quota_exhausted_day"]
    assert 43190 < ctx.limiter.hold_remaining_s("") <= 43200
    # and the next job for the same model fails at once without a call, naming the reset time
    second = add_job(ctx, clock, job_id="b" * 32)
    pipeline.run_preprocess(ctx, second)
    assert pipeline.run_generate(ctx, second, 0, 1) is None
    failed = ctx.store.get(second)
    assert failed is not None and failed.status == "failed" and failed.error is not None
    assert "2026-12-01T08:00:00" in failed.error["details"] and "midnight Pacific" in failed.error["details"]


def test_spend_cap_429_pauses_the_fleet_for_its_window(redis_db: redis.Redis) -> None:
    clock = FakeClock(at("2026-11-30T16:00:00"))
    ctx = make_ctx(redis_db, clock, StubProvider(SpendCapReached("429 spend cap", retry_after_s=30), "ok"))
    job_id = add_job(ctx, clock)
    pipeline.run_preprocess(ctx, job_id)
    retry = pipeline.run_generate(ctx, job_id, 0, 1)
    assert retry is not None and retry.attempt == 2 and retry.countdown >= 30
    assert 28 < ctx.limiter.cooldown_remaining_s() <= 30
    assert ctx.limiter.holds() == {}
    job = ctx.store.get(job_id)
    assert job is not None and [a["outcome"] for a in job.attempts] == ["spend_cap"]


def test_spend_cap_without_retry_info_pauses_for_the_configured_default(redis_db: redis.Redis) -> None:
    clock = FakeClock(at("2026-11-30T16:00:00"))
    ctx = make_ctx(redis_db, clock, StubProvider(SpendCapReached("429 spend cap"), "ok"),
                   rate_limit_cooldown_s=45.0)
    job_id = add_job(ctx, clock)
    pipeline.run_preprocess(ctx, job_id)
    assert pipeline.run_generate(ctx, job_id, 0, 1) is not None
    assert 43 < ctx.limiter.cooldown_remaining_s() <= 45
