"""Baseline rules: a metric against its own history (monitoring/baseline.py), evaluated by the real engine on
health reports a fake clock walks through a week, against a real Redis."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
import redis

from monitoring.alerts.channels import RecordingChannel
from monitoring.alerts.engine import AlertEngine
from monitoring.alerts.notifier import Notifier
from monitoring.alerts.rules import BaselineSpec, Rule, RulesError, load_rules, parse_rules
from monitoring.baseline import BaselineTracker, worse_by
from shared.clock import FakeClock
from tests.workers.test_pipeline import StubProvider, make_ctx
from workers import maintenance

MIDNIGHT = 1_699_920_000.0  # 2023-11-14 00:00 UTC
STEP_S = 300  # one health report every 5 minutes (beat's is 30 s; the medians do not care)
DAY_S = 86_400


def latency_report(p95: float | None, samples: int) -> dict[str, Any]:
    return {"windows": {"5m": {"job_latency_s": {"p95": p95, "samples": samples}}}}


def daily_cycle(t: float, rng: random.Random) -> float:
    """A normal day: p95 from ~6 s at night to ~14 s in the afternoon, with ±5 % noise report to report."""
    hour = (t % DAY_S) / 3600
    return (10 + 4 * math.sin(2 * math.pi * (hour - 9) / 24)) * rng.uniform(0.95, 1.05)


def default_rule() -> Rule:
    rule = load_rules(None).rule("job_latency_p95_regression")
    assert rule is not None and rule.baseline is not None
    return rule


class Week:
    """The health report task's part in baselines, plus the alert engine, on a fake clock."""

    def __init__(self, r: redis.Redis, rule: Rule) -> None:
        self.clock = FakeClock(MIDNIGHT)
        self.rules = replace(load_rules(None), rules=(rule,))
        self.tracker = BaselineTracker(r, "t", self.clock)
        self.channel = RecordingChannel()
        self.engine = AlertEngine(r, "t", self.clock, self.rules,
                                  Notifier([self.channel], timeout_s=2, clock=FakeClock()))
        self.changes: list[float] = []

    def run(self, until: float, p95: Callable[[float], float | None], samples: int = 200,
            evaluate: bool = False) -> None:
        while self.clock.now() < until:
            report = latency_report(p95(self.clock.now()), samples)
            self.tracker.annotate(report, self.rules)
            entry = report["baselines"]["job_latency_p95_regression"]
            if entry["change"] is not None:
                self.changes.append(entry["change"])
            if evaluate:
                self.engine.evaluate(report)
            self.clock.advance(STEP_S)

    def fired(self) -> list[str]:
        return [a.id for m in self.channel.messages if m.kind == "firing" for a in m.alerts]


def test_the_default_rule_is_a_20_percent_p95_regression_against_the_same_hour_over_7_days() -> None:
    rule = default_rule()

    assert rule.baseline == BaselineSpec(metric="windows.5m.job_latency_s.p95", compare="same_hour_last_7_days",
                                         worse_by=0.2, direction="higher", min_history=3, hours=24)
    assert rule.conditions[0].metric == "baselines.job_latency_p95_regression.change"
    assert rule.min_samples == 50 and rule.severity == "medium"


def test_a_30_percent_regression_fires_and_a_normal_day_stays_quiet(redis_db: redis.Redis) -> None:
    rng = random.Random(12)
    week = Week(redis_db, default_rule())
    # Given seven ordinary days of a daily cycle (±40 % from night to afternoon)
    week.run(MIDNIGHT + 7 * DAY_S, lambda t: daily_cycle(t, rng))
    # When the eighth day is just as ordinary, evaluated by the engine all day
    week.changes.clear()
    week.run(MIDNIGHT + 8 * DAY_S, lambda t: daily_cycle(t, rng), evaluate=True)
    # Then nothing fires: every hour is compared with the same hour on earlier days
    assert week.fired() == []
    quiet_max = max(week.changes)
    assert quiet_max < 0.2, quiet_max
    # When on the ninth day p95 turns 30 % worse from 14:00 on
    regression_at = MIDNIGHT + 8 * DAY_S + 14 * 3600
    week.run(regression_at, lambda t: daily_cycle(t, rng), evaluate=True)
    week.changes.clear()
    week.run(regression_at + 3600, lambda t: 1.3 * daily_cycle(t, rng), evaluate=True)
    # Then the regression fires (after for_s, 10 min), saying how much worse it is
    assert week.fired() == ["job_latency_p95_regression"]
    (message,) = [m for m in week.channel.messages if m.kind == "firing"]
    assert message.created_at - regression_at >= 600
    assert "above its baseline for this hour (> 20%)" in message.alerts[0].summary
    assert min(week.changes) > 0.2 and 0.2 < sum(week.changes) / len(week.changes) < 0.4


def test_a_moving_baseline_would_page_on_the_daily_cycle_that_same_hour_ignores(redis_db: redis.Redis) -> None:
    # Why the default compares the same hour: the same ordinary week, against the median of the last 24 hours
    rng = random.Random(5)
    moving = replace(default_rule(), baseline=BaselineSpec(metric="windows.5m.job_latency_s.p95", compare="moving",
                                                           hours=24, min_history=6))
    week = Week(redis_db, moving)
    week.run(MIDNIGHT + 3 * DAY_S, lambda t: daily_cycle(t, rng))
    assert max(week.changes) > 0.3  # every afternoon looks like a regression


def test_a_quiet_night_below_min_samples_never_pages(redis_db: redis.Redis) -> None:
    rng = random.Random(7)
    week = Week(redis_db, default_rule())
    week.run(MIDNIGHT + 7 * DAY_S, lambda t: daily_cycle(t, rng))
    # When at night 10 jobs in 5 minutes have a p95 three times the usual one, for two hours
    week.changes.clear()
    week.run(MIDNIGHT + 7 * DAY_S + 2 * 3600, lambda t: 3 * daily_cycle(t, rng), samples=10, evaluate=True)
    # Then the rule has insufficient data: no comparison, no page, and the outliers are not in the history
    assert week.fired() == [] and week.changes == []
    state = week.engine.store.get("job_latency_p95_regression")
    assert state is not None and state.data == "insufficient" and state.state == "inactive"
    hourly = week.tracker.hourly("windows.5m.job_latency_s.p95")
    assert max(hourly.values()) < 15


def test_without_enough_history_there_is_no_baseline(redis_db: redis.Redis) -> None:
    rng = random.Random(9)
    week = Week(redis_db, default_rule())
    # Given two days of history (min_history is 3 days)
    week.run(MIDNIGHT + 2 * DAY_S, lambda t: daily_cycle(t, rng))
    # When latency doubles on the third day
    week.run(MIDNIGHT + 2 * DAY_S + 3600, lambda t: 2 * daily_cycle(t, rng), evaluate=True)
    # Then the baseline is unknown and the rule insufficient, never firing
    report = latency_report(20.0, 200)
    week.tracker.annotate(report, week.rules)
    entry = report["baselines"]["job_latency_p95_regression"]
    assert entry["baseline"] is None and entry["change"] is None and entry["history"] == 2
    assert week.fired() == []


def test_lower_is_worse_and_factor_forms() -> None:
    assert worse_by(8.0, 10.0, "lower") == 0.2 and worse_by(13.0, 10.0, "higher") == 0.3
    assert worse_by(5.0, 0.0, "higher") is None
    rules = parse_rules("""
[[rules]]
name = "throughput_drop"
severity = "high"
baseline = { metric = "windows.1h.throughput_per_min", compare = "moving", hours = 48, factor = 2, direction = "lower" }
summary = "Throughput is {value:.0%} below its baseline"
""", "t.toml")
    (rule,) = rules.rules
    assert rule.baseline is not None and rule.baseline.worse_by == 0.5  # half the baseline
    assert rules.baseline_rules() == (rule,)


@pytest.mark.parametrize(("body", "message"), [
    ('baseline = { metric = "windows.5m.error_rate", compare = "weekly" }', "compare"),
    ('baseline = { metric = "windows.5m.error_rate", worse_by = 0.2, factor = 2 }', "not both"),
    ('baseline = { metric = "queues.{queue}.depth" }', "plain report metric"),
    ('baseline = { metric = "windows.5m.error_rate", direction = "lower", worse_by = 1.5 }', "below 1"),
    ('baseline = { metric = "windows.5m.error_rate", min_history = 9 }', "at most 7"),
    ('baseline = { metric = "windows.5m.error_rate" }\nop = ">"\nthreshold = 1', "no op/threshold"),
    ('baseline = { metric = "windows.5m.error_rate", span = 3 }', "baseline takes"),
])
def test_a_bad_baseline_rule_fails_loudly(body: str, message: str) -> None:
    text = f'[[rules]]\nname = "b"\nseverity = "low"\nsummary = "s"\n{body}\n'

    with pytest.raises(RulesError, match=message):
        parse_rules(text, "t.toml")


def test_the_beat_health_report_carries_the_baselines_section(redis_db: redis.Redis) -> None:
    # Given the health report task with the default rules and no traffic yet
    clock = FakeClock(MIDNIGHT)
    ctx = make_ctx(redis_db, clock, StubProvider())
    ctx.enqueuer.queue_depths = lambda: {"preprocess": 0, "generate": 0}  # type: ignore[attr-defined]
    # When it runs
    maintenance.health_report(ctx)
    # Then the stored report compares the regression rule's metric with a baseline it does not have yet
    stored = maintenance.reporter(ctx).latest()
    assert stored is not None
    assert stored["baselines"]["job_latency_p95_regression"] == {
        "metric": "windows.5m.job_latency_s.p95", "compare": "same_hour_last_7_days", "direction": "higher",
        "value": None, "baseline": None, "change": None, "history": 0}
