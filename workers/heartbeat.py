"""Liveness signals /readyz and the health report read: one heartbeat per worker instance, one for beat.

Each worker instance (the main process, not each prefork child) records `hostname → now` in a sorted set per
queue it consumes, every NANOEDIT_WORKER_HEARTBEAT_S; a worker counts as live while its entry is younger than 3
intervals. Hand-written instead of Celery's `inspect ping` because that is a broadcast round trip per probe,
too slow and too noisy for a readiness check polled every few seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from celery.signals import beat_init, worker_ready, worker_shutdown

from shared.queueing import ALL_QUEUES
from shared.redis_conn import Keys, redis_client
from shared.settings import Settings

log = logging.getLogger("nanoedit.heartbeat")
_stop = threading.Event()


def _settings() -> Settings:
    from workers.celery_app import settings

    return settings


def _loop(beat: Any, interval: float) -> None:
    while not _stop.is_set():
        try:
            beat()
        except Exception:
            log.warning("heartbeat write failed", exc_info=True)
        _stop.wait(interval)


def _start(name: str, beat: Any, interval: float) -> None:
    threading.Thread(target=_loop, args=(beat, interval), name=name, daemon=True).start()


@worker_ready.connect
def _on_worker_ready(sender: Any = None, **_: Any) -> None:
    settings = _settings()
    keys, r = Keys(settings.redis_prefix), redis_client(settings)
    queues = [q.name for q in sender.task_consumer.queues] if sender is not None else []
    hostname = str(getattr(sender, "hostname", "unknown"))

    def beat() -> None:
        now = time.time()
        pipe = r.pipeline(transaction=False)
        for q in queues:
            pipe.zadd(keys.workers(q), {hostname: now})
            pipe.zremrangebyscore(keys.workers(q), "-inf", now - 3600)
        pipe.execute()

    log.info("worker ready", extra={"queues": queues, "hostname": hostname})
    _start("nanoedit-heartbeat", beat, settings.worker_heartbeat_s)


@worker_shutdown.connect
def _on_worker_shutdown(sender: Any = None, **_: Any) -> None:
    _stop.set()
    settings = _settings()
    keys, r = Keys(settings.redis_prefix), redis_client(settings)
    hostname = str(getattr(sender, "hostname", "unknown"))
    try:
        for q in ALL_QUEUES:
            r.zrem(keys.workers(q), hostname)
    except Exception:
        log.warning("could not remove heartbeat at shutdown", exc_info=True)


@beat_init.connect
def _on_beat_init(sender: Any = None, **_: Any) -> None:
    settings = _settings()
    keys, r = Keys(settings.redis_prefix), redis_client(settings)
    _start("nanoedit-beat-heartbeat", lambda: r.set(keys.beat_heartbeat, repr(time.time())),
           settings.worker_heartbeat_s)
