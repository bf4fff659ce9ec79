"""One Prometheus endpoint per worker *instance*, served by the Celery main process for all its pool children.

Children record into the instance's multiprocess directory (set before the pool forked: monitoring/multiproc.py);
the main process merges every child's files per scrape on NANOEDIT_METRICS_PORT (0 = off), bound to
NANOEDIT_HOST. One port per instance, never one per prefork child: a child-local registry would show a third of
the work with -c 3, and children come and go. A child that exits cleanly drops its live gauges here; one killed
by a hard time limit is pruned at the next scrape.
"""

from __future__ import annotations

import functools
import logging
import os
from typing import Any

from celery.signals import task_postrun, task_prerun, worker_process_shutdown, worker_ready, worker_shutdown

from monitoring import metrics
from monitoring.exposition import registry
from monitoring.multiproc import current_dir, mark_dead
from shared.settings import Settings

log = logging.getLogger("nanoedit.metrics")
_server: Any = None


def install(settings: Settings) -> None:
    """Serve this worker instance's metrics once it is ready; called once by workers/celery_app.py. The
    task and child-exit handlers below need no settings and are connected when this module is imported."""
    worker_ready.connect(functools.partial(_start, settings), weak=False, dispatch_uid="nanoedit.metrics.start")


def _start(settings: Settings, sender: Any = None, **_: Any) -> None:
    global _server
    from prometheus_client import start_http_server

    if not settings.metrics_port or _server is not None:
        return
    try:
        _server, _thread = start_http_server(settings.metrics_port, addr=settings.host, registry=registry())
    except OSError:
        log.error("could not serve worker metrics", extra={"port": settings.metrics_port}, exc_info=True)
        return
    log.info("worker metrics served", extra={"url": f"http://{settings.host}:{settings.metrics_port}/metrics",
                                             "hostname": str(getattr(sender, "hostname", "")),
                                             "dir": str(current_dir() or "")})


@worker_shutdown.connect
def _stop(**_: Any) -> None:
    global _server
    if _server is not None:
        _server.shutdown()
        _server.server_close()
        _server = None


@worker_process_shutdown.connect
def _child_exit(pid: int | None = None, **_: Any) -> None:
    mark_dead(pid or os.getpid())


@task_prerun.connect
def _task_started(task: Any = None, **_: Any) -> None:
    metrics.TASKS_IN_PROGRESS.labels(str(getattr(task, "name", "unknown"))).inc()


@task_postrun.connect
def _task_done(task: Any = None, **_: Any) -> None:
    metrics.TASKS_IN_PROGRESS.labels(str(getattr(task, "name", "unknown"))).dec()
