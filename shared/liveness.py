"""Worker and beat liveness: the heartbeat keys, who writes them, and the rule that says who is alive.

Owns the one liveness rule every reader applies (/readyz in api/health.py, the /metrics state gauges in
monitoring/state_collector.py, the health report in monitoring/report.py) and the keys the writer
(workers/heartbeat.py) records into:

- `{prefix}:workers:{queue}`: a sorted set per queue, worker hostname → its last heartbeat (epoch seconds). Each
  worker instance (the main process, not each prefork child) records itself in every queue it consumes, every
  NANOEDIT_WORKER_HEARTBEAT_S. A worker is live while its entry is younger than 3 intervals; entries older
  than an hour are pruned by the writers.
- `{prefix}:beat:heartbeat`: beat's last heartbeat (epoch seconds), written on the same interval. Beat counts
  as alive while it is at most max(60 s, 3 intervals) old.
"""

from __future__ import annotations

from collections.abc import Iterable

import redis

from shared.clock import Clock

LIVE_INTERVALS = 3  # a heartbeat counts for this many intervals
BEAT_MIN_WINDOW_S = 60.0  # beat's own tick can lag a short heartbeat interval: never call it dead sooner
PRUNE_AFTER_S = 3600.0


class WorkerRegistry:
    """Heartbeats in Redis under `prefix`, judged on `clock` with a `heartbeat_s` interval."""

    def __init__(self, r: redis.Redis, prefix: str, clock: Clock, heartbeat_s: float) -> None:
        self.r = r
        self.prefix = prefix
        self.clock = clock
        self.heartbeat_s = heartbeat_s

    # -- keys ---------------------------------------------------------------------------------------
    def key(self, queue: str) -> str:
        """The sorted set of worker heartbeats for `queue`."""
        return f"{self.prefix}:workers:{queue}"

    @property
    def beat_key(self) -> str:
        return f"{self.prefix}:beat:heartbeat"

    # -- the rule -----------------------------------------------------------------------------------
    @property
    def live_window_s(self) -> float:
        """A worker heartbeat younger than this means a live worker."""
        return LIVE_INTERVALS * self.heartbeat_s

    @property
    def beat_window_s(self) -> float:
        """A beat heartbeat at most this old means beat is alive."""
        return max(BEAT_MIN_WINDOW_S, LIVE_INTERVALS * self.heartbeat_s)

    def beat_alive(self, age_s: float | None) -> bool:
        return age_s is not None and age_s <= self.beat_window_s

    # -- writers (workers/heartbeat.py) -------------------------------------------------------------
    def record_worker(self, hostname: str, queues: Iterable[str]) -> None:
        """One heartbeat of `hostname` in every queue it consumes; prunes entries older than an hour."""
        now = self.clock.now()
        pipe = self.r.pipeline(transaction=False)
        for q in queues:
            pipe.zadd(self.key(q), {hostname: now})
            pipe.zremrangebyscore(self.key(q), "-inf", now - PRUNE_AFTER_S)
        pipe.execute()

    def remove_worker(self, hostname: str, queues: Iterable[str]) -> None:
        """Forget `hostname` at once (clean shutdown) instead of waiting for its heartbeat to age out."""
        pipe = self.r.pipeline(transaction=False)
        for q in queues:
            pipe.zrem(self.key(q), hostname)
        pipe.execute()

    def record_beat(self) -> None:
        self.r.set(self.beat_key, repr(self.clock.now()))

    # -- readers ------------------------------------------------------------------------------------
    def live_workers(self, queue: str) -> list[str]:
        """Hostnames of the live workers consuming `queue`."""
        since = self.clock.now() - self.live_window_s
        return [str(h) for h in self.r.zrangebyscore(self.key(queue), since, "+inf")]

    def live_counts(self, queues: Iterable[str]) -> dict[str, int]:
        """Live workers per queue, in one round trip."""
        names = list(queues)
        since = self.clock.now() - self.live_window_s
        pipe = self.r.pipeline(transaction=False)
        for q in names:
            pipe.zcount(self.key(q), since, "+inf")
        return {q: int(n) for q, n in zip(names, pipe.execute(), strict=True)}

    def last_heartbeats(self, queues: Iterable[str]) -> dict[str, float]:
        """Every recorded worker hostname → its latest heartbeat (epoch seconds) over `queues`, live or not
        (entries are pruned after an hour), in one round trip. For the worker pools view (monitoring/pools.py)."""
        pipe = self.r.pipeline(transaction=False)
        for q in queues:
            pipe.zrange(self.key(q), 0, -1, withscores=True)
        latest: dict[str, float] = {}
        for entries in pipe.execute():
            for raw, at in entries:
                name = raw.decode() if isinstance(raw, bytes) else str(raw)
                latest[name] = max(float(at), latest.get(name, 0.0))
        return latest

    def beat_age_s(self) -> float | None:
        """Seconds since beat's last heartbeat, or None when beat never wrote one."""
        raw = self.r.get(self.beat_key)
        return max(0.0, self.clock.now() - float(raw)) if raw else None
