"""The worker-side Celery app: `celery -A workers.celery_app worker|beat`.

Settings are read once here, logging is configured as JSON, and the app lists `workers.tasks` in `include`:
Celery imports it when a worker starts (`loader.import_default_modules`), and the tasks module imports this one,
never the other way round. `install` calls connect the signal handlers that start the worker and beat heartbeats
/readyz reads (workers/heartbeat.py) and the worker instance's metrics endpoint (workers/metrics_server.py).
Prometheus multiprocess mode is set up before anything imports prometheus_client (monitoring/multiproc.py): keep
`setup_celery_process` above the metrics_server import and let Celery import the tasks.
"""

from __future__ import annotations

import sys
from typing import Any

from celery.signals import setup_logging

from monitoring.alerts import check_config as check_alert_config
from monitoring.multiproc import setup_celery_process
from shared.clock import SystemClock
from shared.logging_setup import configure_logging
from shared.queueing import make_celery
from shared.settings import Settings

settings = Settings.from_env()
clock = SystemClock()
setup_celery_process(settings, sys.argv)
check_alert_config(settings)  # a bad alert rules file or channel setting fails worker and beat start-up loudly
configure_logging(settings, process="worker")
app = make_celery(settings)
app.conf.include = ["workers.tasks"]  # task registration, imported by Celery at worker start


@setup_logging.connect
def _keep_json_logging(**_: Any) -> None:
    """Connecting this signal stops Celery from installing its own (plain-text) log handlers."""
    configure_logging(settings, process="worker")


# Below setup_celery_process on purpose: metrics_server imports prometheus_client.
from workers import heartbeat, metrics_server, model_check  # noqa: E402

heartbeat.install(settings, clock)
metrics_server.install(settings)
model_check.install(settings, clock)  # the configured models against the API's list, in the background
