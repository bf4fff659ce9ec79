"""Redis connections built from settings, and the key layout helper every Redis user goes through."""

from __future__ import annotations

import redis

from shared.settings import Settings


def redis_client(settings: Settings) -> redis.Redis:
    """A client with bounded timeouts: a dead Redis must surface as an error, never as a hang."""
    return redis.Redis.from_url(
        settings.redis_url,
        decode_responses=True,
        socket_timeout=10,
        socket_connect_timeout=5,
        health_check_interval=30,
        retry_on_timeout=True,
    )


class Keys:
    """One place that knows the Redis key layout (besides Celery/kombu's own keys)."""

    def __init__(self, prefix: str) -> None:
        self.p = prefix

    def job(self, job_id: str) -> str:
        return f"{self.p}:job:{job_id}"

    def job_outputs(self, job_id: str) -> str:
        return f"{self.p}:job:{job_id}:outputs"

    def job_attempts(self, job_id: str) -> str:
        return f"{self.p}:job:{job_id}:attempts"

    def job_webhook(self, job_id: str) -> str:
        return f"{self.p}:job:{job_id}:webhook"

    def gone(self, job_id: str) -> str:
        return f"{self.p}:gone:{job_id}"

    def waiting(self, queue: str) -> str:
        return f"{self.p}:waiting:{queue}"

    def owner_jobs(self, owner: str) -> str:
        return f"{self.p}:owner:{owner}:jobs"

    @property
    def expiry(self) -> str:
        return f"{self.p}:expiry"

    @property
    def deadlines(self) -> str:
        return f"{self.p}:deadlines"

    @property
    def recent_finishes(self) -> str:
        return f"{self.p}:stats:recent_finishes"

    def deliveries(self, task_id: str) -> str:
        return f"{self.p}:deliveries:{task_id}"

    def workers(self, queue: str) -> str:
        return f"{self.p}:workers:{queue}"

    @property
    def beat_heartbeat(self) -> str:
        return f"{self.p}:beat:heartbeat"

    def idempotency(self, owner: str, key: str) -> str:
        return f"{self.p}:idem:{owner}:{key}"

    def result_cache(self, request_hash: str) -> str:
        return f"{self.p}:cache:{request_hash}"
