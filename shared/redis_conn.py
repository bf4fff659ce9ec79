"""Redis connections built from settings. Key layouts live with their owners (jobs: shared/jobs/keys.py;
heartbeats: shared/liveness.py; the health report: monitoring/report.py; limiter, circuit, outcomes, alerts: their
own modules)."""

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

