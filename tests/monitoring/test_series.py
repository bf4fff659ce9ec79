"""Chart series from the stored health reports (monitoring/series.py, HealthReporter.sampled): real Redis,
fake clock."""

from __future__ import annotations

import copy
import dataclasses

import redis

from monitoring.report import HealthReporter
from monitoring.series import RANGES, chart_series, point
from shared.clock import FakeClock
from tests.monitoring.test_report import make_reporter


def stored_every(rep: HealthReporter, clock: FakeClock, every_s: float, count: int) -> list[float]:
    """`count` reports, one every `every_s` up to now (a real built report, re-stamped), oldest first."""
    base = rep.build()
    end = clock.now()
    stamps = [end - (count - 1 - i) * every_s for i in range(count)]
    for n, ts in enumerate(stamps):
        body = copy.deepcopy(base)
        body["generated_at_ts"] = ts
        body["windows"]["5m"]["throughput_per_min"] = float(n)  # which report a point came from
        rep.store(body)
    return stamps


def test_a_point_carries_the_reports_latency_rates_and_queue_depths(redis_db: redis.Redis) -> None:
    clock = FakeClock(1_700_000_000)
    rep = make_reporter(redis_db, clock)
    # Given a built report over 25 finished jobs, 2 of them failed by a provider timeout
    for i in range(25):
        failed = i < 2
        rep.recorder.job_finished(f"j{i}", status="failed" if failed else "succeeded",
                                  error_code="upstream_timeout" if failed else None, latency_s=1.0 + i / 10)
    report = rep.build()
    # When it becomes a chart point
    p = point(report)
    # Then it has the 5-minute window's figures and each queue's depth
    five = report["windows"]["5m"]
    assert (p.p50, p.p95, p.p99) == (five["job_latency_s"]["p50"], five["job_latency_s"]["p95"],
                                     five["job_latency_s"]["p99"])
    assert p.p95 is not None and p.samples == 25
    assert p.throughput_per_min == five["throughput_per_min"] and p.error_rate == five["error_rate"] == 0.08
    assert p.queue_depth["generate"] == 5 and p.queue_depth["preprocess"] == 2


def test_an_older_report_shape_gives_empty_values_not_an_error() -> None:
    p = point({"generated_at_ts": 5.0, "windows": {"1h": {}}})

    assert (p.p50, p.throughput_per_min, p.error_rate, p.queue_depth, p.samples) == (None, None, None, {}, 0)


def test_hour_has_every_report_and_day_the_newest_per_five_minutes(redis_db: redis.Redis) -> None:
    clock = FakeClock(1_700_000_000)
    rep = make_reporter(redis_db, clock)
    # Given 24 h of reports every 30 s (the history keeps 24 h)
    stamps = stored_every(rep, clock, 30, 2880)
    # When the charts read the hour and the day
    hour = chart_series(rep, RANGES["1h"]).as_json()
    day = chart_series(rep, RANGES["24h"]).as_json()
    # Then the hour is its 120 reports, and the day 288 points 5 minutes apart ending at the newest report
    assert hour["step_s"] == 30 and [p["ts"] for p in hour["points"]] == stamps[-120:]
    assert [p["throughput_per_min"] for p in hour["points"]] == [float(n) for n in range(2760, 2880)]
    assert day["step_s"] == 300 and len(day["points"]) == 288
    assert [p["ts"] for p in day["points"]] == stamps[9::10]
    assert day["generated_at_ts"] == clock.now() and day["queues"] == sorted(hour["queues"])


def test_the_hour_stays_bounded_however_often_beat_reports(redis_db: redis.Redis) -> None:
    clock = FakeClock(1_700_000_000)
    rep = dataclasses.replace(make_reporter(redis_db, clock), interval_s=2)
    # Given a report every 2 s for the last hour
    stamps = stored_every(rep, clock, 2, 1800)
    # When the hour is read
    hour = chart_series(rep, RANGES["1h"])
    # Then it has one point per 10 s (the newest of each), not 1800
    assert hour.step_s == 10 and len(hour.points) == 360
    assert [p.ts for p in hour.points] == stamps[4::5]


def test_no_report_no_points_and_gaps_stay_gaps(redis_db: redis.Redis) -> None:
    clock = FakeClock(1_700_000_000)
    rep = make_reporter(redis_db, clock)
    assert chart_series(rep, RANGES["1h"]).points == ()
    # Given reports for 10 minutes, then none for 20 minutes (beat down), then 5 more minutes
    first = stored_every(rep, clock, 30, 20)
    clock.advance(20 * 60)
    second = stored_every(rep, clock, 30, 10)
    # When the hour is read
    hour = chart_series(rep, RANGES["1h"])
    # Then the silent steps have no point (nothing is invented for them)
    assert [p.ts for p in hour.points] == first + second
