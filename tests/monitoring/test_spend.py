"""Spend rate (monitoring/spend.py): cost per model per minute, the health report's `cost_usd_per_hour`, and the
default `spend_rate` alert rule on it (real Redis, fake clock)."""

from __future__ import annotations

import redis

from monitoring.alerts.channels import RecordingChannel
from monitoring.alerts.rules import load_rules, parse_rules
from monitoring.spend import SpendRecorder
from shared.clock import FakeClock
from shared.jobs.options import Usage
from tests.monitoring.test_alert_engine import engine, run
from tests.monitoring.test_report import make_reporter
from tests.workers.test_pipeline import StubProvider, add_job, make_ctx, run_all
from workers.providers.base import NoImageGenerated

T0 = 1_700_000_000.0


def test_last_hour_sums_the_last_sixty_minutes_by_model(redis_db: redis.Redis) -> None:
    clock = FakeClock(T0)
    spend = SpendRecorder(redis_db, "t", clock)
    spend.record("gemini-3-pro-image", 1.25)
    clock.sleep(61 * 60)  # that one is now older than an hour
    spend.record("gemini-3-pro-image", 0.5)
    clock.sleep(30 * 60)
    spend.record("gemini-3.1-flash-image", 0.25)
    spend.record("gemini-3.1-flash-image", 0.125)
    spend.record("gemini-3.1-flash-image", 0.0)  # nothing billed: nothing recorded
    spend.record("gemini-3.1-flash-image", None)
    assert spend.last_hour() == {"total": 0.875, "by_model": {"gemini-3-pro-image": 0.5,
                                                              "gemini-3.1-flash-image": 0.375}}


def test_the_health_report_shows_cost_per_hour_from_the_generate_worker(redis_db: redis.Redis) -> None:
    clock = FakeClock(T0)
    rep = make_reporter(redis_db, clock)
    assert rep.build()["cost_usd_per_hour"] == {"total": 0.0, "by_model": {}}
    # Given a job on a priced model whose call was answered (billed: 1M prompt tokens) without an image
    answered = NoImageGenerated("text only")
    answered.usage = Usage(prompt_tokens=1_000_000)
    ctx = make_ctx(redis_db, clock, StubProvider(answered))
    job_id = add_job(ctx, clock)
    redis_db.hset(f"t:job:{job_id}", "model", "gemini-3.1-flash-image")
    run_all(ctx, job_id)
    job = ctx.store.get(job_id)
    assert job is not None and [a.get("cost_usd") for a in job.attempts] == [0.5]  # input 0.50 USD per M
    # When the report is built  Then its cost per hour is that cost, under the job's model
    assert rep.build()["cost_usd_per_hour"] == {"total": 0.5, "by_model": {"gemini-3.1-flash-image": 0.5}}


def test_default_spend_rate_rule_fires_over_its_threshold() -> None:
    rule = load_rules(None).rule("spend_rate")
    assert rule is not None and rule.severity == "high"
    assert [(c.metric, c.op, c.threshold) for c in rule.conditions] == [("cost_usd_per_hour.total", ">", 50)]


def test_spend_rate_alert_notifies_when_the_hour_costs_too_much(redis_db: redis.Redis) -> None:
    clock = FakeClock(T0)
    channel = RecordingChannel()
    rules = parse_rules("""
[[rules]]
name = "spend_rate"
group = "spend"
severity = "high"
metric = "cost_usd_per_hour.total"
op = ">"
threshold = 5
on_null = "ok"
for_s = 60
summary = "Estimated provider spend is {value:.2f} USD over the last hour (> {threshold:g} USD)"
""", "test.toml")
    eng = engine(redis_db, clock, rules, channel)
    run(eng, clock, {"cost_usd_per_hour": {"total": 1.0, "by_model": {}}}, until=T0 + 120)
    assert channel.messages == []
    run(eng, clock, {"cost_usd_per_hour": {"total": 7.5, "by_model": {"m": 7.5}}}, until=T0 + 300)
    assert channel.messages and "7.50 USD" in str(channel.messages[0])
