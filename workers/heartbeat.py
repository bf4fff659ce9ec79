"""The writer side of liveness: worker and beat heartbeats, started by Celery signals.

`install(settings, clock)` (called once by workers/celery_app.py) connects the signal handlers: on
`worker_ready` a thread records this worker instance (the main process, not each prefork child) in every queue
it consumes, every NANOEDIT_WORKER_HEARTBEAT_S; on `worker_shutdown` it removes the instance at once; on
`beat_init` a thread records beat's heartbeat. The keys and the liveness rule belong to shared/liveness.py.
Beside each heartbeat, a second thread records the process tree's CPU and RSS on the same interval
(monitoring/system_metrics.py).
Hand-written instead of Celery's `inspect ping` because that is a broadcast round trip per probe, too slow and
too noisy for a readiness check polled every few seconds.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from celery.signals import beat_init, worker_ready, worker_shutdown

from monitoring.system_metrics import ProcessSampler, ProcessStats
from shared.clock import Clock
from shared.liveness import WorkerRegistry
from shared.queueing import ALL_QUEUES
from shared.redis_conn import redis_client
from shared.settings import Settings

log = logging.getLogger("nanoedit.heartbeat")


class Heartbeats:
    """The signal handlers, bound to one settings object and clock."""

    def __init__(self, settings: Settings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock
        self._stop = threading.Event()
        self._sampler: ProcessSampler | None = None

    def registry(self) -> WorkerRegistry:
        """A registry on a fresh connection (handlers run in the process that fires the signal)."""
        s = self.settings
        return WorkerRegistry(redis_client(s), s.redis_prefix, self.clock, s.worker_heartbeat_s)

    def _loop(self, beat: Callable[[], object]) -> None:
        while not self._stop.is_set():
            try:
                beat()
            except Exception:
                log.warning("heartbeat write failed", exc_info=True)
            self._stop.wait(self.settings.worker_heartbeat_s)

    def _start(self, name: str, beat: Callable[[], object]) -> None:
        threading.Thread(target=self._loop, args=(beat,), name=name, daemon=True).start()

    def on_worker_ready(self, sender: Any = None, **_: Any) -> None:
        registry = self.registry()
        queues = [q.name for q in sender.task_consumer.queues] if sender is not None else []
        hostname = str(getattr(sender, "hostname", "unknown"))
        log.info("worker ready", extra={"queues": queues, "hostname": hostname})
        self._start("nanoedit-heartbeat", lambda: registry.record_worker(hostname, queues))
        self._start_sampling("+".join(queues) or "worker")

    def on_worker_shutdown(self, sender: Any = None, **_: Any) -> None:
        self._stop.set()
        hostname = str(getattr(sender, "hostname", "unknown"))
        try:
            self.registry().remove_worker(hostname, ALL_QUEUES)
            if self._sampler is not None:
                s = self.settings
                ProcessStats(redis_client(s), s.redis_prefix, self.clock, s.worker_heartbeat_s).remove(
                    self._sampler.host, self._sampler.root.pid)
        except Exception:
            log.warning("could not remove heartbeat at shutdown", exc_info=True)

    def on_beat_init(self, sender: Any = None, **_: Any) -> None:
        registry = self.registry()
        self._start("nanoedit-beat-heartbeat", registry.record_beat)
        self._start_sampling("beat")

    def _start_sampling(self, role: str) -> None:
        """This process tree's CPU/RSS every heartbeat interval (monitoring/system_metrics.py), on its own thread
        so a slow psutil read never delays the liveness heartbeat."""
        s = self.settings
        stats = ProcessStats(redis_client(s), s.redis_prefix, self.clock, s.worker_heartbeat_s)
        sampler = ProcessSampler(role, self.clock)
        self._sampler = sampler
        self._start("nanoedit-system-sample", lambda: stats.record(sampler.sample()))


def install(settings: Settings, clock: Clock) -> Heartbeats:
    """Connect the heartbeat handlers to Celery's signals (strong references: they live as long as the app).
    Idempotent per process: a second call replaces nothing (the dispatch ids are fixed)."""
    hb = Heartbeats(settings, clock)
    worker_ready.connect(hb.on_worker_ready, weak=False, dispatch_uid="nanoedit.heartbeat.worker_ready")
    worker_shutdown.connect(hb.on_worker_shutdown, weak=False, dispatch_uid="nanoedit.heartbeat.worker_shutdown")
    beat_init.connect(hb.on_beat_init, weak=False, dispatch_uid="nanoedit.heartbeat.beat_init")
    return hb
