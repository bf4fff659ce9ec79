"""The health report on-call reads: built by beat every NANOEDIT_REPORT_INTERVAL_S, stored in Redis.

Over 5-minute and 1-hour windows: p50/p95/p99 of job latency and provider latency (null below
NANOEDIT_REPORT_MIN_SAMPLES samples), throughput, error rate (the service's failures only), caller error rate and
cancels beside it, timeout rate and retry-success rate, errors by code; plus, right now: queue depth, oldest
queued age and live workers per queue, the circuit breaker and the fleet limiter, beat's heartbeat and the
estimated provider cost over the last hour by model (`cost_usd_per_hour`). Owns the report's keys (`ReportKeys`,
the only place they are spelled): `{prefix}:report:latest` (JSON), `{prefix}:report:history` (sorted set by time, 24 h),
`{prefix}:report:daily:{YYYY-MM-DD}` (the daily summary, kept 70 days: the monthly review in monitoring/periodic.py
compares a month with the one before) and `{prefix}:report:lock` (one report per period, `HealthReporter.try_lock`).
A daily summary carries what the weekly and monthly reviews add up: its raw counters and latency histogram buckets
(`raw`), jobs per UTC hour (`jobs_by_hour_utc`) and the day's estimated cost from the usage ledger (`cost_usd`).
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
from monitoring.system_metrics import ProcessStats, system_section
from shared.circuit import CircuitBreaker
from shared.clock import Clock, rfc3339
from shared.jobs.model import JobStatus
from shared.jobs.store import JobStore
from shared.limiter import FleetLimiter
from shared.liveness import WorkerRegistry
from shared.model_availability import load as load_model_availability
from shared.queueing import WORKER_QUEUES
from shared.usage_ledger import UsageLedger

WINDOWS = {"5m": 5, "1h": 60}
HISTORY_S = 24 * 3600
DAILY_KEEP_S = 70 * 24 * 3600  # two calendar months and a margin (monthly review vs the month before)


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
    failed = stats.count("status:failed")
    # The error budget counts the service's failures only (shared/errors.py Blame; docs/alerts.md, "Whose failure:
    # the honest error budget"): a canceled job and a caller-caused failure are neither a success nor a service
    # error, so neither is judged (a burst of bad requests can neither inflate nor dilute the rate); they are
    # reported beside it.
    # Subtracting them (rather than counting blame:service) keeps a minute recorded before the blame counters
    # existed meaning what it meant: every failure the service's.
    caller_failed = stats.count("blame:caller")
    withdrawn = stats.count("blame:canceled")  # failed with the code `canceled`
    service_failed = failed - caller_failed - withdrawn
    judged = finished - canceled - caller_failed - withdrawn
    return {
        "minutes": stats.minutes,
        "jobs_finished": finished,
        "throughput_per_min": round(finished / stats.minutes, 3),
        "by_status": stats.by_prefix("status:"),
        "errors_by_code": stats.by_prefix("error:"),
        "judged": judged,
        "failures_by_blame": {"service": service_failed, "caller": caller_failed},
        "error_rate": _ratio(service_failed, judged),
        "caller_error_rate": _ratio(caller_failed, finished - canceled - withdrawn),
        JobStatus.CANCELED.value: canceled,  # "canceled": beside the error rate, never in it
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
        """Whether the complete daily summary of `day` (UTC, YYYY-MM-DD) is stored."""
        return self.stored_daily(day) is not None

    def stored_daily(self, day: str) -> dict[str, Any] | None:
        """The stored summary of a finished `day`, or None (never stored, expired, or written while the day ran)."""
        raw = self.r.get(self.keys.daily(day))
        summary = json.loads(str(raw)) if raw else None
        return dict(summary) if summary and summary.get("complete") else None

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
            # CPU/RSS of every live process tree, Redis memory and clients (monitoring/system_metrics.py).
            "system": system_section(ProcessStats(self.r, self.prefix, self.clock, self.liveness.heartbeat_s),
                                     self.r),
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

    def sampled(self, since_s: float, step_s: float) -> list[dict[str, Any]]:
        """The newest report in each `step_s` bucket of the last `since_s`, oldest first (empty buckets skipped).

        Bounded history for the dashboard charts (monitoring/series.py): at most since_s / step_s reports are
        read, one ZREVRANGEBYSCORE each in one pipeline, however often beat reports."""
        now = self.clock.now()
        buckets = max(1, int(since_s // step_s))
        pipe = self.r.pipeline(transaction=False)
        for i in range(buckets, 0, -1):
            end = now - (i - 1) * step_s
            pipe.zrevrangebyscore(self.keys.history, end, f"({end - step_s}", start=0, num=1)
        return [json.loads(str(rows[0])) for rows in pipe.execute() if rows]

    def daily(self, day: str | None = None) -> dict[str, Any]:
        """The daily summary for `day` (UTC, YYYY-MM-DD; default today so far); a finished day's is stored."""
        now = self.clock.now()
        today = datetime.fromtimestamp(now, tz=UTC).strftime("%Y-%m-%d")
        day = day or today
        complete = day < today
        if complete and (cached := self.stored_daily(day)) is not None:
            return cached
        start = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()
        end = min(now, start + 86400 - 1)  # the day's own minutes: the next day's first minute is not in it
        minutes = max(1, int((end - start) // 60) + 1)
        stats, by_hour = self._day_stats(start, end, minutes)
        summary = {"day": day, "generated_at": rfc3339(now), "complete": complete,
                   **summarize(stats, self.min_samples),
                   "jobs_by_hour_utc": by_hour, "cost_usd": self._day_cost(day),
                   "raw": {"counts": stats.counts, "job_latency": dict(stats.job_latency.counts),
                           "provider_latency": dict(stats.provider_latency.counts)}}
        if complete:  # today's figures change every minute: only a finished day is kept
            self.r.set(self.keys.daily(day), json.dumps(summary), ex=DAILY_KEEP_S)
        return summary

    def _day_stats(self, start: float, end: float, minutes: int) -> tuple[WindowStats, list[int]]:
        """The day's minute buckets merged hour by hour (same reads as one merge), and jobs finished per hour."""
        hours = [self.recorder.window_between(h, min(end, h + 3599)) for h in range(int(start), int(end) + 1, 3600)]
        by_hour = [h.count("jobs_finished") for h in hours] + [0] * (24 - len(hours))
        counts: dict[str, int] = {}
        for h in hours:
            for name, n in h.counts.items():
                counts[name] = counts.get(name, 0) + n
        return (WindowStats(minutes=minutes, counts=counts,
                            job_latency=Histogram.merge(h.job_latency.counts for h in hours),
                            provider_latency=Histogram.merge(h.provider_latency.counts for h in hours)),
                by_hour)

    def _day_cost(self, day: str) -> float:
        """Estimated provider cost of the day (USD, catalogue prices): the usage ledger's totals over its owners."""
        ledger = UsageLedger(self.r, self.prefix, self.clock)
        date = datetime.strptime(day, "%Y-%m-%d").date()
        return round(sum(ledger.totals(owner, [date]).cost_usd for owner in ledger.owners([date])), 6)
