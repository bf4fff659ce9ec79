"""Waiting lines of jobs: queue position (O(log n) ZRANK by creation time), per-owner active counts and the ETA
from recent finishes. Part of `JobStore` (a mixin over its private Redis handle and key layout)."""

from __future__ import annotations

import math

import redis

from shared.clock import Clock
from shared.jobs.keys import JobKeys

# The stages a job waits in line for (the Celery queues of the same names).
WAITING_QUEUES = ("preprocess", "generate")


def eta_s(position: int | None, rate_per_s: float) -> float | None:
    """Seconds until a job at `position` starts, at `rate_per_s` finishes per second; None when unknown."""
    if position is None or rate_per_s <= 0:
        return None
    return round(math.ceil(position) / rate_per_s, 1)


class WaitingLines:
    _r: redis.Redis
    _keys: JobKeys
    clock: Clock

    THROUGHPUT_WINDOW_S = 300
    THROUGHPUT_MAX_SAMPLES = 2000
    RATE_TTL_S = 5  # how long a computed finish rate is reused for ETAs

    def mark_waiting(self, queue: str, job_id: str, score_ms: float) -> None:
        self._r.zadd(self._keys.waiting(queue), {job_id: score_ms})

    def unmark_waiting(self, queue: str, job_id: str) -> None:
        self._r.zrem(self._keys.waiting(queue), job_id)

    def queue_position(self, job_id: str) -> int | None:
        """1-based position among jobs waiting in the same queue (O(log n) ZRANK), None when not waiting."""
        pipe = self._r.pipeline(transaction=False)
        for queue in WAITING_QUEUES:
            pipe.zrank(self._keys.waiting(queue), job_id)
        for rank in pipe.execute():
            if rank is not None:
                return int(rank) + 1
        return None

    def waiting_summary(self, queue: str) -> tuple[int, float | None]:
        """(jobs waiting in `queue`, created-at of the oldest in epoch seconds or None)."""
        pipe = self._r.pipeline(transaction=False)
        pipe.zcard(self._keys.waiting(queue))
        pipe.zrange(self._keys.waiting(queue), 0, 0, withscores=True)
        count, first = pipe.execute()
        return int(count), (float(first[0][1]) / 1000 if first else None)

    def throughput_per_s(self) -> float:
        """Jobs finished per second, measured over the span the recent finishes actually cover (at most 5 min),
        so a service that just started or was idle is not judged by minutes in which it had nothing to do."""
        now = self.clock.now()
        since = now - self.THROUGHPUT_WINDOW_S
        pipe = self._r.pipeline(transaction=False)  # a count and the oldest score: O(log n), nothing else sent
        pipe.zcount(self._keys.recent_finishes, since, "+inf")
        pipe.zrangebyscore(self._keys.recent_finishes, since, "+inf", start=0, num=1, withscores=True)
        count, first = pipe.execute()
        if not first:
            return 0.0
        span = max(now - float(first[0][1]), 1.0)
        # n finishes spread over `span`: (n) / span; a single finish alone says little, so damp it.
        return int(count) / span if int(count) > 1 else 1.0 / max(span, 10.0)

    def estimated_wait_s(self, position: int | None) -> float | None:
        if position is None:
            return None
        rate = self._r.get(self._keys.throughput)
        return eta_s(position, float(rate) if rate is not None else self.refresh_rate())

    def refresh_rate(self) -> float:
        """The fleet's finishes per second, computed now and kept for RATE_TTL_S: status reads use the kept value.
        Beat's pump refreshes it every second (workers/maintenance.py), so a poll computes it only when beat is
        away and the kept value has lapsed."""
        rate = self.throughput_per_s()
        self._r.set(self._keys.throughput, repr(rate), ex=self.RATE_TTL_S)
        return rate

    def active_count(self, owner: str) -> int:
        """How many of `owner`'s jobs are accepted and not yet terminal (O(1)); per-key `max_waiting_jobs`."""
        return int(self._r.zcard(self._keys.owner_active(owner)))
