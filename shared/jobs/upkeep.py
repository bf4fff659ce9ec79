"""Upkeep of the job record for beat and the poison guard: deadlines due, jobs stuck in `queued`, expiry (records
and blobs, leaving a tombstone so GET answers 410) and the delivery counter of a task id. Part of `JobStore` (a
mixin over its private Redis handle and key layout), split out by concept."""

from __future__ import annotations

import redis

from shared.blobs import BlobStore, job_prefix
from shared.clock import Clock
from shared.jobs.expected import expected_members
from shared.jobs.keys import JobKeys
from shared.jobs.model import JobStatus
from shared.jobs.waiting import WAITING_QUEUES


class Upkeep:
    _r: redis.Redis
    _keys: JobKeys
    clock: Clock

    GONE_TTL_S = 7 * 24 * 3600  # how long an expired job answers 410 instead of 404

    def status_of(self, job_id: str) -> JobStatus | None:
        value = self._r.hget(self._keys.job(job_id), "status")
        return JobStatus(str(value)) if value is not None else None

    def overdue(self, limit: int = 500) -> list[str]:
        return [str(m) for m in self._r.zrangebyscore(self._keys.deadlines, "-inf", self.clock.now(),
                                                      start=0, num=limit)]

    def clear_deadline(self, job_id: str) -> None:
        """Drop a job that is finished or gone from the deadline index."""
        self._r.zrem(self._keys.deadlines, job_id)

    def stale_queued(self, queue: str, before: float, limit: int = 200) -> list[str]:
        """Jobs still `queued` that entered `queue`'s waiting line before `before` (epoch seconds)."""
        ids = [str(m) for m in self._r.zrangebyscore(self._keys.waiting(queue), "-inf", before * 1000,
                                                     start=0, num=limit)]
        return [job_id for job_id in ids if self.status_of(job_id) == JobStatus.QUEUED]

    def expire_due(self, blobs: BlobStore, limit: int = 500) -> int:
        """Delete records and blobs past expires_at; leave a tombstone so GET answers 410."""
        k = self._keys
        ids = [str(m) for m in self._r.zrangebyscore(k.expiry, "-inf", self.clock.now(), start=0, num=limit)]
        for job_id in ids:
            owner, num_images = self._r.hmget(k.job(job_id), ["owner", "num_images"])
            blobs.delete_prefix(job_prefix(job_id))
            pipe = self._r.pipeline(transaction=True)
            pipe.delete(k.job(job_id), k.outputs(job_id), k.attempts(job_id), k.webhook(job_id),
                        k.webhook_log(job_id))
            pipe.zrem(k.webhooks_due, job_id)
            pipe.zrem(k.generate_expected, *expected_members(job_id, int(num_images or 1)))
            pipe.set(k.gone(job_id), "1", ex=self.GONE_TTL_S)
            pipe.zrem(k.expiry, job_id)
            pipe.zrem(k.deadlines, job_id)
            for queue in WAITING_QUEUES:
                pipe.zrem(k.waiting(queue), job_id)
            if owner:
                pipe.zrem(k.owner_jobs(str(owner)), job_id)
                pipe.zrem(k.owner_active(str(owner)), job_id)
            pipe.execute()
        return len(ids)

    def count_delivery(self, task_id: str, ttl_s: int) -> int:
        """How many times this task id has started (poison guard)."""
        key = self._keys.deliveries(task_id)
        pipe = self._r.pipeline(transaction=True)
        pipe.incr(key)
        pipe.expire(key, ttl_s)
        return int(pipe.execute()[0])

