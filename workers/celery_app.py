"""The worker-side Celery app: `celery -A workers.celery_app worker|beat`.

Settings are read once here, logging is configured as JSON, and tasks are registered by importing
`workers.tasks`. Signals start the worker and beat heartbeats that /readyz reads, and the worker instance's
metrics endpoint. Prometheus multiprocess mode is set up before anything imports prometheus_client
(monitoring/multiproc.py): keep `setup_celery_process` above the task imports.
"""

from __future__ import annotations

import sys
from typing import Any

from celery.signals import setup_logging

from monitoring.alerts import check_config as check_alert_config
from monitoring.multiproc import setup_celery_process
from shared.logging_setup import configure_logging
from shared.queueing import make_celery
from shared.settings import Settings

settings = Settings.from_env()
setup_celery_process(settings, sys.argv)
check_alert_config(settings)  # a bad alert rules file or channel setting fails worker and beat start-up loudly
configure_logging(settings, process="worker")
app = make_celery(settings)


@setup_logging.connect
def _keep_json_logging(**_: Any) -> None:
    """Connecting this signal stops Celery from installing its own (plain-text) log handlers."""
    configure_logging(settings, process="worker")


import workers.heartbeat  # noqa: E402  (signal handlers)
import workers.metrics_server  # noqa: E402  (signal handlers)
import workers.tasks  # noqa: E402,F401  (task registration)
