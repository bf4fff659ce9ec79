"""The web process's own system sample: each gunicorn worker records its CPU and RSS (monitoring/system_metrics.py)
every NANOEDIT_WORKER_HEARTBEAT_S on a background thread (a greenlet under the gevent worker), started by
gunicorn's `post_worker_init` hook (deploy/gunicorn.conf.py) and stopped by `worker_exit`, which also removes the
worker's sample at once. Started by the server, not by `create_app`: an app built in a test or a CLI never writes.
A failed write is logged and retried at the next interval, never raised.
"""

from __future__ import annotations

import logging
import threading

import psutil
import redis

from monitoring.system_metrics import ProcessSampler, ProcessStats
from shared.clock import Clock, SystemClock
from shared.redis_conn import redis_client
from shared.settings import Settings

log = logging.getLogger("nanoedit.system")
ROLE = "web"


class WebSampling:
    """One per gunicorn worker process."""

    def __init__(self, settings: Settings, clock: Clock, r: redis.Redis) -> None:
        self.interval_s = settings.worker_heartbeat_s
        self.stats = ProcessStats(r, settings.redis_prefix, clock, settings.worker_heartbeat_s)
        self.sampler = ProcessSampler(ROLE, clock)
        self._stop = threading.Event()

    def record_once(self) -> None:
        try:
            self.stats.record(self.sampler.sample())
        except (redis.RedisError, OSError, psutil.Error):
            log.warning("web system sample not recorded", exc_info=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.record_once()
            self._stop.wait(self.interval_s)

    def start(self) -> None:
        threading.Thread(target=self._loop, name="nanoedit-system-sample", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        try:
            self.stats.remove(self.sampler.host, self.sampler.root.pid)
        except redis.RedisError:
            log.warning("web system sample not removed at exit", exc_info=True)


def start_sampling(settings: Settings) -> WebSampling:
    """Called in each gunicorn worker once the app is loaded (deploy/gunicorn.conf.py)."""
    sampling = WebSampling(settings, SystemClock(), redis_client(settings))
    sampling.start()
    return sampling
