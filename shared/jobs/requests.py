"""What the store remembers about requests: Idempotency-Key claims per owner and the result cache (request hash →
a succeeded job). Part of `JobStore` (a mixin over its private Redis handle and key layout)."""

from __future__ import annotations

import hashlib

import redis

from shared.errors import Gone
from shared.jobs.keys import JobKeys
from shared.jobs.model import Job, JobStatus


class RequestMemory:
    _r: redis.Redis
    _keys: JobKeys

    def get(self, job_id: str) -> Job | None:  # implemented by JobStore
        raise NotImplementedError

    def claim_idempotency(self, owner: str, key: str, job_id: str, fingerprint: str,
                          ttl_s: int) -> tuple[str, str] | None:
        """Claim `key` for a new job. Returns None when claimed, else (existing job id, its fingerprint)."""
        k = self._keys.idempotency(owner, hashlib.sha256(key.encode()).hexdigest())
        if self._r.set(k, f"{job_id}:{fingerprint}", nx=True, ex=ttl_s):
            return None
        existing = str(self._r.get(k) or ":")
        job, _, fp = existing.partition(":")
        return job, fp

    def release_idempotency(self, owner: str, key: str) -> None:
        self._r.delete(self._keys.idempotency(owner, hashlib.sha256(key.encode()).hexdigest()))

    def remember_result(self, request_hash: str, job_id: str, ttl_s: int) -> None:
        if request_hash and ttl_s > 0:
            self._r.set(self._keys.result_cache(request_hash), job_id, ex=ttl_s)

    def cached_result(self, request_hash: str) -> Job | None:
        """A succeeded, unexpired job with the same request hash, if the cache still points at one."""
        job_id = self._r.get(self._keys.result_cache(request_hash))
        if not job_id:
            return None
        try:
            job = self.get(str(job_id))
        except Gone:
            return None
        return job if job is not None and job.status == JobStatus.SUCCEEDED else None
