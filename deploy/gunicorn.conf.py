"""gunicorn settings for the `web` process, from the same `Settings` every process reads (`Settings.from_env`,
the only reader of the NANOEDIT_* environment): bind address, worker processes and threads, metrics directory."""

from gunicorn.glogging import Logger

from monitoring.multiproc import activate, mark_dead, raise_open_files, web_dir
from shared.redaction import secrets_of
from shared.settings import Settings, is_loopback_host

# A bad value fails here, in the master, before any worker forks; so does a non-loopback NANOEDIT_HOST with auth
# off unless NANOEDIT_ALLOW_INSECURE=1 (docs/operations.md, "Safe defaults").
_settings = Settings.from_env()
bind = f"{_settings.host}:{_settings.port}"
workers = _settings.web_workers
threads = _settings.web_threads  # gthread only
# gevent (default): each request is a greenlet, so clients held by `Prefer: wait` or an event stream cost a little
# memory each instead of a thread; gunicorn's gevent worker monkey-patches the worker process (sockets, threading,
# time) before it loads the app. gthread stays selectable (NANOEDIT_WEB_WORKER_CLASS; docs/operations.md).
worker_class = _settings.web_worker_class
worker_connections = _settings.web_worker_connections
timeout = 60
graceful_timeout = 20
control_socket_disable = True  # no gunicornc; a shared ~/.gunicorn/gunicorn.ctl would clash between instances
accesslog = None  # the app logs each request as JSON


class _NoAccessLog(Logger):
    """gunicorn's logger without the access log: with `logconfig_dict` set, gunicorn formats an access line for
    every request even when no handler takes it (~4 % of a status poll under py-spy); the app's own JSON
    request line (api/__init__.py) is the access log."""

    def access(self, resp, req, environ, request_time):
        return None


logger_class = _NoAccessLog
errorlog = "-"
# gunicorn's own lines (start, worker boot/exit) as JSON too, like every other nanoedit log line.
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "pythonjsonlogger.json.JsonFormatter",
                            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
                            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"}}},
    # gunicorn's lines are redacted like the app's (URL credentials, webhook tokens, keys: shared/redaction.py).
    "filters": {"redact": {"()": "shared.redaction.RedactingFilter", "secrets": list(secrets_of(_settings))}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr",
                            "filters": ["redact"]}},
    "root": {"level": "INFO", "handlers": []},  # the app installs its own JSON handler on the root logger
    "loggers": {"gunicorn.error": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
                "gunicorn.access": {"handlers": [], "level": "INFO", "propagate": False}},
}

# Prometheus multiprocess mode: set here, in the master, before any worker imports prometheus_client, so every
# worker writes into this instance's directory and GET /metrics (any worker) merges all of them.
_metrics_dir = web_dir(_settings)
activate(_metrics_dir, wipe=False)
# Each held connection is a file descriptor in its worker: raise the soft limit towards the hard one so
# worker_connections can be reached (inherited by every worker).
raise_open_files(worker_connections + 256)


def on_starting(server):  # master, once, before the first worker forks (not on HUP reloads)
    activate(_metrics_dir, wipe=True)
    if not _settings.auth_enabled and not is_loopback_host(_settings.host):
        server.log.critical("INSECURE: auth is off and the API binds %s, beyond loopback (NANOEDIT_ALLOW_INSECURE=1): "
                            "anyone who can reach it can use the service", _settings.host)


_sampling = None  # this worker's system sampler (api/system.py), set in the worker after it loaded the app


def post_worker_init(worker):  # each worker, app loaded: its CPU/RSS every NANOEDIT_WORKER_HEARTBEAT_S
    global _sampling
    from api.system import start_sampling

    _sampling = start_sampling(_settings)


def worker_exit(server, worker):  # the worker itself, on its way out: drop its system sample at once
    if _sampling is not None:
        _sampling.stop()


def child_exit(server, worker):  # master: a worker exited; drop its live gauges (in-flight requests)
    mark_dead(worker.pid, _metrics_dir)
