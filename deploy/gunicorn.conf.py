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
control_socket_disable = True  # no gunicornc; a shared ~/.gunicorn/gunicorn.ctl would clash between instances
accesslog = None  # the app logs each request as JSON
errorlog = "-"
# gunicorn's own lines (start, worker boot/exit) as JSON too, like every other nanoedit log line.
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "pythonjsonlogger.json.JsonFormatter",
                            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
                            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"}}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
    "root": {"level": "INFO", "handlers": []},  # the app installs its own JSON handler on the root logger
    "loggers": {"gunicorn.error": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
                "gunicorn.access": {"handlers": [], "level": "INFO", "propagate": False}},
}

# Prometheus multiprocess mode: set here, in the master, before any worker imports prometheus_client, so every
# worker writes into this instance's directory and GET /metrics (any worker) merges all of them.
_metrics_dir = web_dir(Settings.from_env())
activate(_metrics_dir, wipe=False)


def on_starting(server):  # master, once, before the first worker forks (not on HUP reloads)
    activate(_metrics_dir, wipe=True)


def child_exit(server, worker):  # master: a worker exited; drop its live gauges (in-flight requests)
    mark_dead(worker.pid, _metrics_dir)
