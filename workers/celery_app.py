"""The worker-side Celery app: `celery -A workers.celery_app worker|beat`.

Settings are read once here, logging is configured as JSON, and tasks are registered by importing
`workers.tasks`. Signals start the worker and beat heartbeats that /readyz reads.
"""

from __future__ import annotations

from typing import Any

from celery.signals import setup_logging

from shared.logging_setup import configure_logging
from shared.queueing import make_celery
from shared.settings import Settings

settings = Settings.from_env()
configure_logging(settings, process="worker")
app = make_celery(settings)


@setup_logging.connect
def _keep_json_logging(**_: Any) -> None:
    """Connecting this signal stops Celery from installing its own (plain-text) log handlers."""
    configure_logging(settings, process="worker")


import workers.heartbeat  # noqa: E402  (signal handlers)
import workers.tasks  # noqa: E402,F401  (task registration)
