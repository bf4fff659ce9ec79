"""Learned baselines for baseline alert rules: a compact per-hour history of the metrics they watch, and the
comparison of each metric now with its own history (docs/alerts.md#baseline-rules).

Owns the keys `{prefix}:baseline:obs:{metric}:{hour}` (this hour's observations, one per health report, kept
2 h) and `{prefix}:baseline:hourly:{metric}` (hash: epoch hour → the median of that hour's observations, kept
HISTORY_S = 8 days). The health report task calls `BaselineTracker.annotate` before storing the report: it records
the watched metrics and adds the report's `baselines` section, `{rule name: {value, baseline, change, history,
...}}`, which the baseline rules' conditions read (`baselines.<name>.change > worse_by`, monitoring/alerts/rules.py).

Robust on purpose: an hour's value is the median of its observations (one slow report does not move it), and the
baseline is the median of the same UTC hour over the last 7 days (`same_hour_last_7_days`: a daily cycle is its
own baseline) or of the last `hours` hourly values (`moving`). Only observations whose rule had at least
`min_samples` samples are recorded, so a quiet night's noisy percentile never becomes a baseline; and fewer than
`min_history` days/hours with a value leaves the baseline null, so the rule has insufficient data rather than
firing. Hand-written: a median over at most 168 numbers (stdlib `statistics`) needs no time-series library.
It must not evaluate or notify alerts (the engine does, on the section written here).
"""

from __future__ import annotations

import logging
import statistics
from dataclasses import dataclass
from typing import Any

import redis

from monitoring.alerts.rules import BaselineSpec, Rule, RuleSet, load_rules
from shared.clock import Clock
from shared.settings import Settings

log = logging.getLogger("nanoedit.baseline")
HOUR_S = 3600
HISTORY_S = 8 * 24 * HOUR_S
OBS_KEEP_S = 2 * HOUR_S


@dataclass(frozen=True, slots=True)
class Comparison:
    """One baseline rule's entry in the report's `baselines` section."""

    metric: str
    compare: str
    direction: str
    value: float | None  # the metric now (null: no value or below the rule's min_samples)
    baseline: float | None  # null: fewer than min_history hours/days with a value
    change: float | None  # how much worse than the baseline, as a fraction of it (negative: better)
    history: int  # hours (moving) or days (same hour) the baseline is the median of

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "compare": self.compare, "direction": self.direction, "value": self.value,
                "baseline": self.baseline, "change": self.change, "history": self.history}


def worse_by(value: float, baseline: float, direction: str) -> float | None:
    """How much worse `value` is than `baseline`, as a fraction of the baseline; None when the baseline is 0."""
    if baseline <= 0:
        return None
    diff = value - baseline if direction == "higher" else baseline - value
    return round(diff / baseline, 4)


class BaselineTracker:
    def __init__(self, r: redis.Redis, prefix: str, clock: Clock) -> None:
        self.r = r
        self.p = f"{prefix}:baseline"
        self.clock = clock

    def _obs_key(self, metric: str, hour: int) -> str:
        return f"{self.p}:obs:{metric}:{hour}"

    def _hourly_key(self, metric: str) -> str:
        return f"{self.p}:hourly:{metric}"

    def observe(self, metric: str, value: float) -> None:
        """Record one observation of `metric` now and refresh this hour's median."""
        now = self.clock.now()
        hour = int(now // HOUR_S)
        obs = self._obs_key(metric, hour)
        pipe = self.r.pipeline(transaction=False)
        pipe.rpush(obs, repr(float(value)))
        pipe.expire(obs, OBS_KEEP_S)
        pipe.lrange(obs, 0, -1)
        seen = pipe.execute()[2]
        hourly = self._hourly_key(metric)
        median = statistics.median(float(v) for v in seen)
        stale = [f for f in self.r.hkeys(hourly) if int(f) < hour - HISTORY_S // HOUR_S]
        pipe = self.r.pipeline(transaction=False)
        pipe.hset(hourly, str(hour), repr(median))
        if stale:
            pipe.hdel(hourly, *stale)
        pipe.expire(hourly, HISTORY_S)
        pipe.execute()

    def hourly(self, metric: str) -> dict[int, float]:
        """The stored hourly medians of `metric`, by epoch hour."""
        return {int(h): float(v) for h, v in self.r.hgetall(self._hourly_key(metric)).items()}

    def baseline(self, spec: BaselineSpec) -> tuple[float | None, int]:
        """(the baseline of `spec.metric` for the current hour, how many hours/days it is the median of)."""
        hour = int(self.clock.now() // HOUR_S)
        history = self.hourly(spec.metric)
        # moving: the last `hours` hours; same_hour_last_7_days: this UTC hour on each of the last 7 days
        wanted = range(hour - spec.hours, hour) if spec.compare == "moving" else range(hour - 7 * 24, hour, 24)
        values = [history[h] for h in wanted if h in history]
        if len(values) < spec.min_history:
            return None, len(values)
        return statistics.median(values), len(values)

    def compare(self, rule: Rule, report: dict[str, Any]) -> Comparison:
        """Record the rule's metric (when it has enough samples) and compare it with its baseline."""
        spec = rule.baseline
        assert spec is not None, rule.name
        value = _number_at(report, spec.metric)
        if value is not None and rule.samples:
            count = _number_at(report, rule.samples)
            if count is None or count < rule.min_samples:
                value = None  # too few samples: neither history nor a verdict (the rule is insufficient)
        base, n = self.baseline(spec)
        change = worse_by(value, base, spec.direction) if value is not None and base is not None else None
        return Comparison(metric=spec.metric, compare=spec.compare, direction=spec.direction, value=value,
                          baseline=None if base is None else round(base, 4), change=change, history=n)

    def annotate(self, report: dict[str, Any], rules: RuleSet) -> None:
        """Add the `baselines` section to `report` and record this report's observations. The comparison uses
        the history before this report, so the current hour never compares with itself."""
        section: dict[str, Any] = {}
        observed: dict[str, float] = {}
        for rule in rules.baseline_rules():
            found = self.compare(rule, report)
            section[rule.name] = found.to_dict()
            if found.value is not None:
                observed.setdefault(found.metric, found.value)  # two rules on one metric: one observation
        for metric, value in observed.items():
            self.observe(metric, value)
        report["baselines"] = section


def annotate_report(settings: Settings, r: redis.Redis, clock: Clock, report: dict[str, Any]) -> None:
    """The health report task's call: the deployment's baseline rules (NANOEDIT_ALERT_RULES or the defaults) on
    `report`. Never costs the report: a failure leaves `baselines` empty (the rules are then insufficient)."""
    try:
        BaselineTracker(r, settings.redis_prefix, clock).annotate(report, load_rules(settings.alert_rules))
    except Exception:
        log.exception("baseline comparison failed")
        report["baselines"] = {}


def _number_at(report: dict[str, Any], path: str) -> float | None:
    node: Any = report
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    if isinstance(node, bool) or not isinstance(node, int | float):
        return None
    return float(node)
