"""Outcome recording and percentiles against a real Redis, with a fake clock."""

from __future__ import annotations

import math
import random

import pytest
import redis

from monitoring.outcomes import OutcomeRecorder
from monitoring.sketch import RELATIVE_ACCURACY, Histogram, bucket_of
from shared.clock import FakeClock


def exact_quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[math.floor(q * (len(ordered) - 1))]


@pytest.fixture
def recorder(redis_db: redis.Redis) -> OutcomeRecorder:
    return OutcomeRecorder(redis_db, "t", FakeClock(1_700_000_000))


def test_heavy_tailed_latencies_give_percentiles_within_2_percent(recorder: OutcomeRecorder) -> None:
    # Given 12,000 job latencies from a heavy-tailed (Pareto) distribution, spread over 5 minutes
    rng = random.Random(7)
    values = [0.5 * rng.paretovariate(1.5) for _ in range(12_000)]
    clock: FakeClock = recorder.clock  # type: ignore[assignment]
    for i, v in enumerate(values):
        recorder.job_finished(f"job{i}", status="succeeded", error_code=None, latency_s=v)
        if i % 2400 == 2399:
            clock.advance(60)
    # When a report merges the minute buckets
    stats = recorder.window(6)
    # Then p50/p95/p99 are within 2 % (the mapping guarantees 1 %) of the exact sample quantiles
    assert stats.job_latency.count == 12_000
    for q in (0.5, 0.95, 0.99):
        got = stats.job_latency.quantile(q)
        assert got is not None
        assert abs(got - exact_quantile(values, q)) / exact_quantile(values, q) <= 0.02, q
    assert RELATIVE_ACCURACY <= 0.01


def test_quantiles_are_null_below_the_minimum_count() -> None:
    h = Histogram({bucket_of(1.0): 5})
    assert h.quantile(0.95, min_count=20) is None
    assert h.quantile(0.95, min_count=5) == pytest.approx(1.0, rel=0.01)
    assert Histogram({}).quantile(0.5) is None


def test_redelivery_does_not_double_count(recorder: OutcomeRecorder) -> None:
    assert recorder.job_finished("j1", status="failed", error_code="upstream_timeout", latency_s=3.0)
    assert not recorder.job_finished("j1", status="failed", error_code="upstream_timeout", latency_s=3.0)
    assert recorder.provider_call("j1", 0, 1, outcome="timeout", duration_s=2.0)
    assert not recorder.provider_call("j1", 0, 1, outcome="timeout", duration_s=2.0)
    assert recorder.provider_call("j1", 0, 2, outcome="succeeded", duration_s=1.0)
    stats = recorder.window(5)
    assert stats.count("jobs_finished") == 1 and stats.count("jobs_timed_out") == 1
    assert stats.count("error:upstream_timeout") == 1
    assert stats.by_prefix("provider:") == {"timeout": 1, "succeeded": 1}
    assert stats.provider_latency.count == 2


def test_retried_then_succeeded_is_counted(recorder: OutcomeRecorder) -> None:
    attempts = [{"output": 0, "n": 1, "outcome": "unavailable"}, {"output": 0, "n": 2, "outcome": "succeeded"}]
    recorder.job_finished("j1", status="succeeded", error_code=None, latency_s=1.0, attempts=attempts)
    recorder.job_finished("j2", status="succeeded", error_code=None, latency_s=1.0,
                          attempts=[{"output": 0, "n": 1, "outcome": "succeeded"}])
    stats = recorder.window(1)
    assert stats.count("jobs_retried") == 1 and stats.count("retried_succeeded") == 1
    assert stats.count("status:succeeded") == 2


def test_old_minutes_fall_out_of_the_window(recorder: OutcomeRecorder) -> None:
    recorder.job_finished("old", status="succeeded", error_code=None, latency_s=1.0)
    recorder.clock.advance(10 * 60)  # type: ignore[attr-defined]
    recorder.job_finished("new", status="succeeded", error_code=None, latency_s=1.0)
    assert recorder.window(5).count("jobs_finished") == 1
    assert recorder.window(60).count("jobs_finished") == 2
