"""System metrics: CPU and memory of every nanoedit process tree, and Redis's memory, clients and ops/s.

Owns `{prefix}:system:processes` (hash "host:pid" → the latest `ProcessSample` JSON). Each process reports
its own: worker instances and beat on their heartbeat (workers/heartbeat.py), web workers at most once per
heartbeat interval on a request (api/system.py). Readers (the health report's `system` section, the API's
/metrics) take the samples younger than 3 heartbeat intervals, the liveness rule's window; older ones are
pruned after an hour.

Decisions:
- A sample is a process *tree*: a Celery instance's main process plus its pool children (they are one unit of
  deployment and share one memory limit); a gunicorn worker is its own tree. `cpu_percent` is psutil's, over
  the time since the previous sample (100 = one core), so the first sample of a process says 0.
- The memory limit a tree is compared with is its cgroup's limit (v2 `memory.max`, v1
  `memory.limit_in_bytes`) when one is set and below the host's memory, else the host's total memory:
  `limit_source` says which. `memory_ratio` = rss / limit.
- Redis: `used_memory / maxmemory`; with maxmemory 0 (no limit) it is compared with the Redis host's
  `total_system_memory` from INFO instead (`limit_source` says so), because Redis then grows until the host
  runs out. Both absent: the ratio is null.
psutil does the per-process work (portable /proc reading); nothing here parses /proc by hand except the
cgroup limit files, which psutil does not read.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil
import redis
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from shared.clock import Clock

log = logging.getLogger("nanoedit.system")
LIVE_INTERVALS = 3  # as shared/liveness.py: a sample counts for three heartbeat intervals
PRUNE_AFTER_S = 3600.0
_CGROUP_FILES = (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
_UNLIMITED = 1 << 60  # cgroup v1 says "no limit" with a huge number


@dataclass(frozen=True, slots=True)
class ProcessSample:
    role: str  # web | beat | the worker's queues, e.g. "generate" or "preprocess+maintenance"
    pid: int
    host: str
    cpu_percent: float
    rss_bytes: int
    processes: int  # the tree: 1 + pool children
    memory_limit_bytes: int
    limit_source: str  # cgroup | host
    memory_ratio: float
    at: float

    def public(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "at"}


def memory_limit(cgroup_files: tuple[Path, ...] = _CGROUP_FILES) -> tuple[int, str]:
    """This process's memory ceiling: (bytes, "cgroup") when a cgroup limit below the host's memory is set,
    else (host total, "host")."""
    host = int(psutil.virtual_memory().total)
    for path in cgroup_files:
        try:
            raw = path.read_text().strip()
        except OSError:
            continue
        if raw.isdigit() and 0 < int(raw) < min(host, _UNLIMITED):
            return int(raw), "cgroup"
    return host, "host"


class ProcessSampler:
    """Samples one process tree (this process and its children) on a clock; keeps psutil's Process objects so
    each CPU percentage covers the time since the previous sample."""

    def __init__(self, role: str, clock: Clock, *, pid: int | None = None, host: str | None = None) -> None:
        self.role = role
        self.clock = clock
        self.root = psutil.Process(pid or os.getpid())
        self.host = host or socket.gethostname()
        self._procs: dict[int, psutil.Process] = {self.root.pid: self.root}
        self.limit = memory_limit()

    def sample(self) -> ProcessSample:
        try:
            children = self.root.children(recursive=True)
        except psutil.Error:
            children = []
        current = {self.root.pid: self.root} | {c.pid: self._procs.get(c.pid, c) for c in children}
        self._procs = current
        cpu, rss, alive = 0.0, 0, 0
        for proc in current.values():
            try:
                with proc.oneshot():
                    cpu += proc.cpu_percent(interval=None)
                    rss += int(proc.memory_info().rss)
                alive += 1
            except psutil.Error:  # a child that exited between the listing and the read
                continue
        limit, source = self.limit
        return ProcessSample(role=self.role, pid=self.root.pid, host=self.host, cpu_percent=round(cpu, 1),
                             rss_bytes=rss, processes=alive, memory_limit_bytes=limit, limit_source=source,
                             memory_ratio=round(rss / limit, 4) if limit else 0.0, at=self.clock.now())


class ProcessStats:
    """The fleet's latest samples in Redis (the key is in the module docstring)."""

    def __init__(self, r: redis.Redis, prefix: str, clock: Clock, heartbeat_s: float) -> None:
        self.r = r
        self.clock = clock
        self.key = f"{prefix}:system:processes"
        self.max_age_s = LIVE_INTERVALS * heartbeat_s

    def record(self, sample: ProcessSample) -> None:
        self.r.hset(self.key, f"{sample.host}:{sample.pid}", json.dumps(asdict(sample)))

    def remove(self, host: str, pid: int) -> None:
        self.r.hdel(self.key, f"{host}:{pid}")

    def live(self) -> list[ProcessSample]:
        """Samples younger than the liveness window, by role then host then pid; prunes hour-old ones."""
        now = self.clock.now()
        raw: dict[str, str] = self.r.hgetall(self.key)  # type: ignore[assignment]
        fresh, stale = [], []
        for field, body in raw.items():
            try:
                sample = ProcessSample(**json.loads(body))
            except (ValueError, TypeError):
                stale.append(field)
                continue
            if now - sample.at <= self.max_age_s:
                fresh.append(sample)
            elif now - sample.at > PRUNE_AFTER_S:
                stale.append(field)
        if stale:
            self.r.hdel(self.key, *stale)
        return sorted(fresh, key=lambda s: (s.role, s.host, s.pid))


@dataclass(frozen=True, slots=True)
class RedisStats:
    used_memory: int
    maxmemory: int
    memory_limit_bytes: int | None  # maxmemory, else the Redis host's total memory, else None
    limit_source: str | None  # maxmemory | total_system_memory | None
    memory_ratio: float | None
    connected_clients: int
    ops_per_sec: int

    def public(self) -> dict[str, Any]:
        return asdict(self)


def redis_stats(r: redis.Redis) -> RedisStats:
    """Memory, clients and stats from one INFO (its default sections)."""
    info: dict[str, Any] = r.info()  # the default sections hold all three
    used, maxmemory = int(info.get("used_memory", 0)), int(info.get("maxmemory", 0))
    total = int(info.get("total_system_memory", 0))
    limit, source = (maxmemory, "maxmemory") if maxmemory else ((total, "total_system_memory") if total
                                                                   else (None, None))
    return RedisStats(used_memory=used, maxmemory=maxmemory, memory_limit_bytes=limit, limit_source=source,
                      memory_ratio=round(used / limit, 4) if limit else None,
                      connected_clients=int(info.get("connected_clients", 0)),
                      ops_per_sec=int(info.get("instantaneous_ops_per_sec", 0)))


def system_section(stats: ProcessStats, r: redis.Redis) -> dict[str, Any]:
    """The health report's `system`: live process trees, Redis, and the worst memory ratio (the rules' input)."""
    processes = stats.live()
    try:
        redis_part: dict[str, Any] = redis_stats(r).public()
    except redis.RedisError:
        log.warning("system metrics: INFO failed", exc_info=True)
        redis_part = dict.fromkeys(RedisStats.__dataclass_fields__)  # nulls: the memory rules wait for data
    return {"processes": [p.public() for p in processes],
            "redis": redis_part,
            "process_memory_ratio_max": max((p.memory_ratio for p in processes), default=None)}


SYSTEM_METRICS: dict[str, str] = {
    "nanoedit_process_cpu_percent": "CPU of a nanoedit process tree since its previous sample (100 = one core).",
    "nanoedit_process_resident_memory_bytes": "Resident memory of a nanoedit process tree (main + children).",
    "nanoedit_process_memory_limit_bytes": "The memory a process tree is compared with (cgroup limit or host).",
    "nanoedit_process_memory_ratio": "Resident memory / memory limit of a process tree.",
    "nanoedit_redis_used_memory_bytes": "Redis INFO used_memory.",
    "nanoedit_redis_maxmemory_bytes": "Redis INFO maxmemory (0 = no limit).",
    "nanoedit_redis_memory_ratio": "Redis used memory / maxmemory (or / the Redis host's memory when no limit).",
    "nanoedit_redis_connected_clients": "Redis INFO connected_clients.",
    "nanoedit_redis_ops_per_second": "Redis INFO instantaneous_ops_per_sec.",
}


@dataclass(slots=True, eq=False)  # hashable by identity: registries key collectors in a dict
class SystemCollector:
    """The fleet's process trees and Redis at scrape time, for the API's /metrics only (shared fleet state, like
    monitoring/state_collector.py). A failing part is logged and left out."""

    stats: ProcessStats
    r: redis.Redis

    def collect(self) -> Iterator[Metric]:
        for part in (self._processes, self._redis):
            try:
                yield from list(part())
            except Exception:
                log.warning("metrics scrape: system section failed", extra={"section": part.__name__},
                            exc_info=True)

    @staticmethod
    def _gauge(name: str, labels: tuple[str, ...] = ()) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, SYSTEM_METRICS[name], labels=list(labels) if labels else None)

    def _processes(self) -> Iterator[Metric]:
        labels = ("role", "host", "pid")
        cpu = self._gauge("nanoedit_process_cpu_percent", labels)
        rss = self._gauge("nanoedit_process_resident_memory_bytes", labels)
        limit = self._gauge("nanoedit_process_memory_limit_bytes", labels)
        ratio = self._gauge("nanoedit_process_memory_ratio", labels)
        for p in self.stats.live():
            values = [p.role, p.host, str(p.pid)]
            cpu.add_metric(values, p.cpu_percent)
            rss.add_metric(values, p.rss_bytes)
            limit.add_metric(values, p.memory_limit_bytes)
            ratio.add_metric(values, p.memory_ratio)
        yield from (cpu, rss, limit, ratio)

    def _redis(self) -> Iterator[Metric]:
        s = redis_stats(self.r)
        for name, value in (("nanoedit_redis_used_memory_bytes", s.used_memory),
                            ("nanoedit_redis_maxmemory_bytes", s.maxmemory),
                            ("nanoedit_redis_memory_ratio", s.memory_ratio),
                            ("nanoedit_redis_connected_clients", s.connected_clients),
                            ("nanoedit_redis_ops_per_second", s.ops_per_sec)):
            if value is not None:
                g = self._gauge(name)
                g.add_metric([], value)
                yield g
