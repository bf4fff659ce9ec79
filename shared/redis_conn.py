"""Redis connections built from settings. Key layouts live with their owners (jobs: shared/jobs/keys.py;
heartbeats: shared/liveness.py; the health report: monitoring/report.py; limiter, circuit, outcomes, alerts: their
own modules)."""

from __future__ import annotations

import redis

from shared.settings import Settings

# Connections one process opens at most. Callers beyond it (a gevent web worker serving hundreds of requests at
# once) wait up to POOL_WAIT_S for a free one instead of failing at once (redis-py's plain pool raises
# MaxConnectionsError past 100); Redis commands take well under a millisecond, so the wait is short.
MAX_CONNECTIONS = 100
POOL_WAIT_S = 5


def redis_client(settings: Settings) -> redis.Redis:
    """A client with bounded timeouts: a dead Redis must surface as an error, never as a hang."""
    pool = redis.BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=MAX_CONNECTIONS,
        timeout=POOL_WAIT_S,
        decode_responses=True,
        socket_timeout=10,
        socket_connect_timeout=5,
        health_check_interval=30,
        retry_on_timeout=True,
    )
    return redis.Redis(connection_pool=pool)

