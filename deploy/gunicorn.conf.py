"""gunicorn settings for the `web` process, from the same `Settings` every process reads (`Settings.from_env`,
the only reader of the NANOEDIT_* environment): bind address, worker processes and threads, metrics directory."""

from monitoring.multiproc import activate, mark_dead, web_dir
from shared.settings import Settings

_settings = Settings.from_env()  # a bad value fails here, in the master, before any worker forks
bind = f"{_settings.host}:{_settings.port}"
workers = _settings.web_workers
threads = _settings.web_threads
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
_metrics_dir = web_dir(_settings)
activate(_metrics_dir, wipe=False)


def on_starting(server):  # master, once, before the first worker forks (not on HUP reloads)
    activate(_metrics_dir, wipe=True)


def child_exit(server, worker):  # master: a worker exited; drop its live gauges (in-flight requests)
    mark_dead(worker.pid, _metrics_dir)
