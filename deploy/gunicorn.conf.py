"""gunicorn settings for the `web` process (read from the same NANOEDIT_* environment)."""

import os

from monitoring.multiproc import activate, mark_dead, web_dir
from shared.settings import Settings

bind = f"{os.environ.get('NANOEDIT_HOST', '127.0.0.1')}:{os.environ.get('NANOEDIT_PORT', '8000')}"
workers = int(os.environ.get("NANOEDIT_WEB_WORKERS", "2"))
threads = int(os.environ.get("NANOEDIT_WEB_THREADS", "4"))
worker_class = "gthread"
timeout = 60
graceful_timeout = 20
accesslog = None  # the app logs each request as JSON
errorlog = "-"

# Prometheus multiprocess mode: set here, in the master, before any worker imports prometheus_client, so every
# worker writes into this instance's directory and GET /metrics (any worker) merges all of them.
_metrics_dir = web_dir(Settings.from_env())
activate(_metrics_dir, wipe=False)


def on_starting(server):  # master, once, before the first worker forks (not on HUP reloads)
    activate(_metrics_dir, wipe=True)


def child_exit(server, worker):  # master: a worker exited; drop its live gauges (in-flight requests)
    mark_dead(worker.pid, _metrics_dir)
