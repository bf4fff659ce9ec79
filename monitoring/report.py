"""The health report on-call reads: built by beat every NANOEDIT_REPORT_INTERVAL_S, stored in Redis.

Over 5-minute and 1-hour windows: p50/p95/p99 of job latency and provider latency (null below
NANOEDIT_REPORT_MIN_SAMPLES samples), throughput, error rate, timeout rate and retry-success rate, errors by
code; plus, right now: queue depth, oldest queued age and live workers per queue, the circuit breaker and the
fleet limiter, beat's heartbeat and the estimated provider cost over the last hour by model
(`cost_usd_per_hour`). Owns the report's keys (`ReportKeys`, the only place they are spelled):
`{prefix}:report:latest` (JSON), `{prefix}:report:history` (sorted set by time, 24 h),
`{prefix}:report:daily:{YYYY-MM-DD}` (the daily summary, kept 8 days) and `{prefix}:report:lock` (one report
per period, `HealthReporter.try_lock`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis

from monitoring.outcomes import OutcomeRecorder, WindowStats
from monitoring.sketch import Histogram
from monitoring.spend import SpendRecorder
from shared.circuit import CircuitBreaker
from shared.clock import Clock, rfc3339
from shared.jobs.store import JobStore
from shared.limiter import FleetLimiter
from shared.liveness import WorkerRegistry
from shared.model_availability import load as load_model_availability
from shared.queueing import WORKER_QUEUES

WINDOWS = {"5m": 5, "1h": 60}
HISTORY_S = 24 * 3600
DAILY_KEEP_S = 8 * 24 * 3600


@dataclass(frozen=True, slots=True)
class ReportKeys:
    """The health report's Redis keys under NANOEDIT_REDIS_PREFIX."""

    prefix: str

    @property
    def latest(self) -> str:
        return f"{self.prefix}:report:latest"

    @property
    def history(self) -> str:
        return f"{self.prefix}:report:history"

    @property
    def lock(self) -> str:
        return f"{self.prefix}:report:lock"

    def daily(self, day: str) -> str:
        return f"{self.prefix}:report:daily:{day}"


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def _percentiles(h: Histogram, min_samples: int) -> dict[str, Any]:
    def q(x: float) -> float | None:
        v = h.quantile(x, min_count=min_samples)
        return None if v is None else round(v, 3)

    return {"p50": q(0.5), "p95": q(0.95), "p99": q(0.99), "samples": h.count}


def summarize(stats: WindowStats, min_samples: int) -> dict[str, Any]:
    finished = stats.count("jobs_finished")
    canceled = stats.count("status:canceled")
    judged = finished - canceled  # a canceled job is neither an error nor a success
    failed = stats.count("status:failed")
    return {
        "minutes": stats.minutes,
        "jobs_finished": finished,
        "throughput_per_min": round(finished / stats.minutes, 3),
        "by_status": stats.by_prefix("status:"),
        "errors_by_code": stats.by_prefix("error:"),
        "error_rate": _ratio(failed, judged),
        "timeout_rate": _ratio(stats.count("jobs_timed_out"), judged),
        "retry_success_rate": _ratio(stats.count("retried_succeeded"), stats.count("jobs_retried")),
        "jobs_retried": stats.count("jobs_retried"),
        "job_latency_s": _percentiles(stats.job_latency, min_samples),
        "provider_calls": stats.count("provider_calls"),
        "provider_outcomes": stats.by_prefix("provider:"),
        "provider_latency_s": _percentiles(stats.provider_latency, min_samples),
    }


@dataclass(slots=True)
class HealthReporter:
    r: redis.Redis
    prefix: str
    clock: Clock
    jobs: JobStore  # the waiting sets (queue position) belong to the job record
    liveness: WorkerRegistry  # live workers and beat's heartbeat, by the one liveness rule
    recorder: OutcomeRecorder
    limiter: FleetLimiter
    breaker: CircuitBreaker
    queue_depths: Callable[[], dict[str, int]]
    interval_s: int = 30
    min_samples: int = 20

    @property
    def keys(self) -> ReportKeys:
        return ReportKeys(self.prefix)

    def try_lock(self, period_ms: int) -> bool:
        """Take this period's report lock (at least 500 ms); False when another report already holds it."""
        return bool(self.r.set(self.keys.lock, "1", nx=True, px=max(500, period_ms)))

    def has_daily(self, day: str) -> bool:
        """Whether the daily summary of `day` (UTC, YYYY-MM-DD) is stored."""
        return bool(self.r.exists(self.keys.daily(day)))

    def build(self) -> dict[str, Any]:
        now = self.clock.now()
        depths = self.queue_depths()
        live = self.liveness.live_counts(WORKER_QUEUES)
        queues: dict[str, Any] = {}
        for q in WORKER_QUEUES:
            waiting, oldest_at = self.jobs.waiting_summary(q)
            queues[q] = {"depth": depths.get(q, 0),
                         "waiting_jobs": waiting,
                         "oldest_age_s": round(now - oldest_at, 1) if oldest_at is not None else None,
                         "live_workers": live[q]}
        beat_age = self.liveness.beat_age_s()
        return {
            "generated_at": rfc3339(now),
            "generated_at_ts": now,
            "interval_s": self.interval_s,
            "min_samples": self.min_samples,
            "windows": {name: summarize(self.recorder.window(m), self.min_samples) for name, m in WINDOWS.items()},
            "queues": queues,
            "circuit": self.breaker.state(),
            "limiter": {k: v for k, v in self.limiter.state().items() if k != "leases"},
            "beat": {"heartbeat_age_s": round(beat_age, 1) if beat_age is not None else None},
            "models": self._models(),
            # Estimated provider spend over the last hour (catalogue prices), by model (monitoring/spend.py).
            "cost_usd_per_hour": SpendRecorder(self.r, self.prefix, self.clock).last_hour(),
        }

    def _models(self) -> dict[str, Any]:
        """The start-up model check (workers/model_check.py): how many configured models the API lacks."""
        found = load_model_availability(self.r, self.prefix)
        if found is None:
            return {"checked": False, "missing": None, "missing_names": []}
        return {"checked": True, "missing": len(found.missing), "missing_names": list(found.missing)}

    def store(self, report: dict[str, Any]) -> None:
        now = float(report["generated_at_ts"])
        body = json.dumps(report)
        history = self.keys.history
        pipe = self.r.pipeline(transaction=False)
        pipe.set(self.keys.latest, body)
        pipe.zadd(history, {body: now})
        pipe.zremrangebyscore(history, "-inf", now - HISTORY_S)
        pipe.execute()

    def latest(self) -> dict[str, Any] | None:
        raw = self.r.get(self.keys.latest)
        return json.loads(str(raw)) if raw else None

    def history(self, since_s: float = 3600, limit: int = 500) -> list[dict[str, Any]]:
        rows = self.r.zrangebyscore(self.keys.history, self.clock.now() - since_s, "+inf",
                                    start=0, num=limit)
        return [json.loads(str(row)) for row in rows]

    def daily(self, day: str | None = None) -> dict[str, Any]:
        """The daily summary for `day` (UTC, YYYY-MM-DD; default today so far), built and cached."""
        now = self.clock.now()
        today = datetime.fromtimestamp(now, tz=UTC).strftime("%Y-%m-%d")
        day = day or today
        key = self.keys.daily(day)
        if day != today:
            cached = self.r.get(key)
            if cached:
                return dict(json.loads(str(cached)))
        start = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()
        end = min(now, start + 86400)
        minutes = max(1, int((end - start) // 60) + 1)
        stats = self.recorder.window_between(start, end) if end > start else self.recorder.window(minutes)
        summary = {"day": day, "generated_at": rfc3339(now), "complete": day != today,
                   **summarize(stats, self.min_samples)}
        self.r.set(key, json.dumps(summary), ex=DAILY_KEEP_S)
        return summary
