"""The status read: a job, its place in line and the ETA in one Redis round trip (`GET /v1/jobs/{id}`, polls).

Part of `JobStore` (a mixin over its private Redis handle and key layout). One pipeline carries the record, its
outputs, attempts, webhook state, the expiry marker, the job's rank in both waiting lines (ZRANK, O(log n)) and the
fleet's finish rate; the rate is precomputed (`P:stats:throughput`, refreshed by the first reader after it lapses,
every RATE_TTL_S), so a poll never scans the recent finishes. The owner check runs on the record from the same
pipeline: a job of another key reads as unknown before its expiry is reported (no id probing).
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.errors import Gone
from shared.jobs.model import Job
from shared.jobs.waiting import WAITING_QUEUES, WaitingLines, eta_s


@dataclass(frozen=True, slots=True)
class JobRead:
    """A job as a status read sees it: the record, its 1-based place in line and the ETA (None when not waiting
    or unknown)."""

    job: Job
    queue_position: int | None
    estimated_wait_s: float | None


class StatusReads(WaitingLines):
    def read(self, job_id: str, owner: str | None = None, *, eta: bool = True) -> JobRead | None:
        """The job with its place in line, or None if unknown (or, with `owner`, not that owner's).

        Raises Gone if it expired (deleted or past expires_at) and is not someone else's. With `eta=False` the
        ETA is left out (None) rather than computed when the kept rate has lapsed.
        """
        k = self._keys
        pipe = self._r.pipeline(transaction=False)
        pipe.hgetall(k.job(job_id))
        pipe.hgetall(k.outputs(job_id))
        pipe.lrange(k.attempts(job_id), 0, -1)
        pipe.exists(k.gone(job_id))
        pipe.hgetall(k.webhook(job_id))
        for queue in WAITING_QUEUES:
            pipe.zrank(k.waiting(queue), job_id)
        pipe.get(k.throughput)
        h, outputs, attempts, gone, webhook, *ranks, rate = pipe.execute()
        if not h:
            if gone:
                raise Gone(f"job {job_id} expired and was deleted")
            return None
        if owner is not None and h.get("owner") != owner:
            return None
        job = Job.from_hash(h, outputs, attempts, webhook)
        if job.expires_at <= self.clock.now():
            raise Gone(f"job {job_id} expired at {job.expires_at:.0f}")
        position = None if job.terminal else next((int(r) + 1 for r in ranks if r is not None), None)
        if position is None or not eta:  # eta=False: never a second round trip for a lapsed rate
            return JobRead(job, position, None)
        return JobRead(job, position, eta_s(position, float(rate) if rate is not None else self.refresh_rate()))
