"""Outcome recording: one sample per finished job and per provider call, into per-minute Redis buckets.

Owns the keys `{prefix}:mon:m:{minute}:{counts|job_latency|provider_latency}` (hashes, kept for
RETENTION_S) and the de-duplication markers `{prefix}:mon:seen:...`: a redelivered task or a second terminal-hook
run records nothing twice (SET NX per job / per output attempt). Reports read windows of minutes and merge them.

Counters in `counts`: jobs_finished, status:<status>, error:<code>, blame:<service|caller|canceled> (failed jobs
only, by their code's class in shared/errors.py: who the failure is charged to), jobs_timed_out (upstream_timeout
or deadline_exceeded), jobs_retried (needed > 1 attempt for some output), retried_succeeded, provider_calls,
provider:<outcome>.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import redis

from monitoring.sketch import Histogram, bucket_of
from shared.clock import Clock
from shared.errors import blame_of
from shared.jobs.model import Attempt, JobStatus

RETENTION_S = 25 * 3600
TIMEOUT_CODES = frozenset({"upstream_timeout", "deadline_exceeded"})


@dataclass(frozen=True, slots=True)
class WindowStats:
    minutes: int
    counts: dict[str, int] = field(default_factory=dict)
    job_latency: Histogram = field(default_factory=lambda: Histogram({}))
    provider_latency: Histogram = field(default_factory=lambda: Histogram({}))

    def count(self, name: str) -> int:
        return self.counts.get(name, 0)

    def by_prefix(self, prefix: str) -> dict[str, int]:
        return {k[len(prefix):]: v for k, v in self.counts.items() if k.startswith(prefix)}


class OutcomeRecorder:
    def __init__(self, r: redis.Redis, prefix: str, clock: Clock) -> None:
        self.r = r
        self.p = f"{prefix}:mon"
        self.clock = clock

    def _key(self, minute: int, kind: str) -> str:
        return f"{self.p}:m:{minute}:{kind}"

    def _first_time(self, marker: str) -> bool:
        return bool(self.r.set(f"{self.p}:seen:{marker}", "1", nx=True, ex=RETENTION_S))

    def job_finished(self, job_id: str, *, status: str, error_code: str | None, latency_s: float | None,
                     attempts: Iterable[Attempt] = ()) -> bool:
        """Record a finished job once. Returns False if it was already recorded."""
        if not self._first_time(f"job:{job_id}"):
            return False
        minute = int(self.clock.now() // 60)
        counts = self._key(minute, "counts")
        retried = any(int(a.get("n", 1)) > 1 for a in attempts)
        pipe = self.r.pipeline(transaction=False)
        pipe.hincrby(counts, "jobs_finished", 1)
        pipe.hincrby(counts, f"status:{status}", 1)
        if error_code:
            pipe.hincrby(counts, f"error:{error_code}", 1)
        if status == JobStatus.FAILED:
            pipe.hincrby(counts, f"blame:{blame_of(error_code or 'internal_error')}", 1)
        if error_code in TIMEOUT_CODES:
            pipe.hincrby(counts, "jobs_timed_out", 1)
        if retried:
            pipe.hincrby(counts, "jobs_retried", 1)
            if status == JobStatus.SUCCEEDED:
                pipe.hincrby(counts, "retried_succeeded", 1)
        if latency_s is not None and status != JobStatus.CANCELED:
            pipe.hincrby(self._key(minute, "job_latency"), bucket_of(latency_s), 1)
            pipe.expire(self._key(minute, "job_latency"), RETENTION_S)
        pipe.expire(counts, RETENTION_S)
        pipe.execute()
        return True

    def provider_call(self, job_id: str, output: int, attempt: int, *, outcome: str, duration_s: float) -> bool:
        """Record one provider attempt once (a redelivered task repeating it is not counted twice)."""
        if not self._first_time(f"call:{job_id}:{output}:{attempt}"):
            return False
        minute = int(self.clock.now() // 60)
        counts = self._key(minute, "counts")
        pipe = self.r.pipeline(transaction=False)
        pipe.hincrby(counts, "provider_calls", 1)
        pipe.hincrby(counts, f"provider:{outcome}", 1)
        pipe.hincrby(self._key(minute, "provider_latency"), bucket_of(duration_s), 1)
        pipe.expire(counts, RETENTION_S)
        pipe.expire(self._key(minute, "provider_latency"), RETENTION_S)
        pipe.execute()
        return True

    def window(self, minutes: int) -> WindowStats:
        """Merge the last `minutes` minute buckets (the current, partial minute included)."""
        now_minute = int(self.clock.now() // 60)
        return self._merge(range(now_minute - minutes + 1, now_minute + 1))

    def window_between(self, start: float, end: float) -> WindowStats:
        """Merge the minute buckets from `start` to `end` (epoch seconds), e.g. one UTC day."""
        return self._merge(range(int(start // 60), int(end // 60) + 1))

    def _merge(self, span: range) -> WindowStats:
        minutes = len(span)
        pipe = self.r.pipeline(transaction=False)
        for m in span:
            pipe.hgetall(self._key(m, "counts"))
            pipe.hgetall(self._key(m, "job_latency"))
            pipe.hgetall(self._key(m, "provider_latency"))
        rows = pipe.execute()
        counts: dict[str, int] = {}
        for part in rows[0::3]:
            for k, v in part.items():
                counts[k] = counts.get(k, 0) + int(v)
        return WindowStats(minutes=minutes, counts=counts, job_latency=Histogram.merge(rows[1::3]),
                           provider_latency=Histogram.merge(rows[2::3]))
