"""The Redis key layout of jobs (docs/architecture.md, "Redis key layout"). Private to `shared.jobs`:
nothing outside this package builds a job key (tests/test_ownership.py enforces it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class JobKeys:
    p: str  # NANOEDIT_REDIS_PREFIX

    def job(self, job_id: str) -> str:
        return f"{self.p}:job:{job_id}"

    def outputs(self, job_id: str) -> str:
        return f"{self.p}:job:{job_id}:outputs"

    def attempts(self, job_id: str) -> str:
        return f"{self.p}:job:{job_id}:attempts"

    def webhook(self, job_id: str) -> str:
        return f"{self.p}:job:{job_id}:webhook"

    def webhook_log(self, job_id: str) -> str:
        return f"{self.p}:job:{job_id}:webhook:log"

    @property
    def generate_expected(self) -> str:
        """The ledger of expected generate work: `{job_id}:{index}` → by when its message must have started."""
        return f"{self.p}:generate:expected"

    @property
    def webhooks_due(self) -> str:
        return f"{self.p}:webhooks:due"

    @property
    def events(self) -> str:
        """Pub/sub channel (not a key): one small message per status or stage change (shared/jobs/events.py)."""
        return f"{self.p}:jobevents"

    def gone(self, job_id: str) -> str:
        return f"{self.p}:gone:{job_id}"

    def waiting(self, queue: str) -> str:
        return f"{self.p}:waiting:{queue}"

    def owner_jobs(self, owner: str) -> str:
        return f"{self.p}:owner:{owner}:jobs"

    def owner_active(self, owner: str) -> str:
        """The owner's accepted, not yet terminal jobs (per-key `max_waiting_jobs`)."""
        return f"{self.p}:owner:{owner}:active"

    @property
    def expiry(self) -> str:
        return f"{self.p}:expiry"

    @property
    def deadlines(self) -> str:
        return f"{self.p}:deadlines"

    @property
    def recent_finishes(self) -> str:
        return f"{self.p}:stats:recent_finishes"

    @property
    def throughput(self) -> str:
        """Finishes per second over the recent window, kept a few seconds for ETAs (shared/jobs/waiting.py)."""
        return f"{self.p}:stats:throughput"

    def deliveries(self, task_id: str) -> str:
        return f"{self.p}:deliveries:{task_id}"

    def idempotency(self, owner: str, key_hash: str) -> str:
        return f"{self.p}:idem:{owner}:{key_hash}"

    def result_cache(self, request_hash: str) -> str:
        return f"{self.p}:cache:{request_hash}"
