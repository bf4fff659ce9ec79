"""The Celery app configuration and the `Enqueuer`: how anything (the API, workers, beat) puts work on queues.

The web process imports only this module, never worker code: it enqueues by task *name*, so Pillow-heavy
preprocessing and google-genai stay out of the API process. The reliability settings (docs/architecture.md,
"Celery reliability settings") are configured here once: late acks, reject on worker loss, prefetch 1, per-stage
time limits, a visibility timeout derived from them (> 2 × longest hard limit + longest countdown).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from celery import Celery
from kombu import Exchange, Queue

from shared.settings import Settings

PREPROCESS_QUEUE = "preprocess"
GENERATE_QUEUE = "generate"
QUEUES = (PREPROCESS_QUEUE, GENERATE_QUEUE)
# Upkeep (reconcile, expire, health report + alerts, webhooks) has its own queue, consumed by the preprocess
# instances too (Procfile: -Q preprocess,maintenance; kombu rotates between a worker's queues), so a job
# backlog never delays alerts or the deadline reconciler by more than one task.
MAINTENANCE_QUEUE = "maintenance"
ALL_QUEUES = (*QUEUES, MAINTENANCE_QUEUE)

TASK_PREPROCESS = "nanoedit.preprocess"
TASK_GENERATE = "nanoedit.generate"
TASK_RECONCILE = "nanoedit.reconcile"
TASK_EXPIRE = "nanoedit.expire"
TASK_WEBHOOK = "nanoedit.webhook"
TASK_HEALTH_REPORT = "nanoedit.health_report"


def celery_config(settings: Settings) -> dict[str, Any]:
    vt = settings.effective_visibility_timeout_s
    exchange = Exchange("nanoedit", type="direct")
    return {
        "broker_url": settings.redis_url,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {
            "visibility_timeout": vt,
            # Sweep for messages of dead workers often enough that recovery takes ~ the visibility timeout.
            "unacked_restore_interval": max(1, min(10, vt // 10)),
            "unacked_restore_throttle": 1,
            "socket_timeout": 30,
            "socket_connect_timeout": 5,
        },
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # An exception we did not handle: ack (the task already failed the job). A hard time limit (the child
        # was killed): requeue, and the poison guard fails the job if that keeps happening.
        "task_acks_on_failure": True,
        "task_acks_on_timeout": False,
        "worker_prefetch_multiplier": 1,
        "worker_hijack_root_logger": False,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "worker_send_task_events": False,
        "task_queues": [Queue(q, exchange, routing_key=q) for q in ALL_QUEUES],
        "task_default_queue": PREPROCESS_QUEUE,
        "task_default_exchange": "nanoedit",
        "task_default_routing_key": PREPROCESS_QUEUE,
        "task_routes": {
            TASK_PREPROCESS: {"queue": PREPROCESS_QUEUE, "routing_key": PREPROCESS_QUEUE},
            TASK_GENERATE: {"queue": GENERATE_QUEUE, "routing_key": GENERATE_QUEUE},
            TASK_RECONCILE: {"queue": MAINTENANCE_QUEUE, "routing_key": MAINTENANCE_QUEUE},
            TASK_EXPIRE: {"queue": MAINTENANCE_QUEUE, "routing_key": MAINTENANCE_QUEUE},
            TASK_WEBHOOK: {"queue": MAINTENANCE_QUEUE, "routing_key": MAINTENANCE_QUEUE},
            TASK_HEALTH_REPORT: {"queue": MAINTENANCE_QUEUE, "routing_key": MAINTENANCE_QUEUE},
        },
        "beat_schedule": {
            "reconcile": {"task": TASK_RECONCILE, "schedule": float(settings.reconcile_interval_s),
                          "options": {"expires": float(settings.reconcile_interval_s)}},
            "expire": {"task": TASK_EXPIRE, "schedule": 60.0, "options": {"expires": 60.0}},
            "health_report": {"task": TASK_HEALTH_REPORT, "schedule": float(settings.report_interval_s),
                              "options": {"expires": float(settings.report_interval_s)}},
        },
        "timezone": "UTC",
        # Baseline for benchmarks only: Celery's own rate limit is per worker instance, so N instances send N×.
        "task_annotations": ({TASK_GENERATE: {"rate_limit": settings.celery_rate_limit}}
                             if settings.celery_rate_limit else {}),
    }


def make_celery(settings: Settings) -> Celery:
    app = Celery("nanoedit", set_as_current=False)
    app.conf.update(celery_config(settings))
    return app


class Enqueuer(Protocol):
    """The port through which anything puts work on the queues (the API, workers, beat)."""

    def preprocess(self, job_id: str) -> None: ...

    def generate(self, job_id: str, index: int, attempt: int = 1, countdown: float | None = None,
                 wait: int = 0) -> None: ...

    def webhook(self, job_id: str, attempt: int = 1, countdown: float | None = None) -> None: ...

    def queue_depths(self) -> dict[str, int]: ...


@dataclass
class RecordingEnqueuer:
    """The in-package stub of `Enqueuer` for tests: records what would be sent, sends nothing.

    `sent` holds ("preprocess", job_id), ("generate", job_id, index, attempt, countdown, wait) and
    ("webhook", job_id, attempt, countdown) in order; `depths` is what `queue_depths()` answers.
    """

    sent: list[tuple[Any, ...]] = field(default_factory=list)
    depths: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ALL_QUEUES, 0))

    @property
    def preprocessed(self) -> list[str]:
        return [str(s[1]) for s in self.sent if s[0] == "preprocess"]

    def preprocess(self, job_id: str) -> None:
        self.sent.append(("preprocess", job_id))

    def generate(self, job_id: str, index: int, attempt: int = 1, countdown: float | None = None,
                 wait: int = 0) -> None:
        self.sent.append(("generate", job_id, index, attempt, countdown, wait))

    def webhook(self, job_id: str, attempt: int = 1, countdown: float | None = None) -> None:
        self.sent.append(("webhook", job_id, attempt, countdown))

    def queue_depths(self) -> dict[str, int]:
        return self.depths


class CeleryEnqueuer:
    """Sends stage tasks by name. Task ids are rooted at the job id so logs and brokers tie back to the job."""

    def __init__(self, app: Celery) -> None:
        self.app = app

    def preprocess(self, job_id: str) -> None:
        self.app.send_task(TASK_PREPROCESS, args=[job_id], task_id=f"{job_id}.preprocess",
                           queue=PREPROCESS_QUEUE, routing_key=PREPROCESS_QUEUE)

    def generate(self, job_id: str, index: int, attempt: int = 1, countdown: float | None = None,
                 wait: int = 0) -> None:
        """`attempt` counts provider attempts (retries); `wait` counts re-queues while waiting for quota or
        an open circuit, which burn no retry. Both are in the task id, so each delivery is counted apart."""
        suffix = f"w{wait}" if wait else ""
        self.app.send_task(TASK_GENERATE, args=[job_id, index, attempt, wait],
                           task_id=f"{job_id}.generate.{index}.{attempt}{suffix}", queue=GENERATE_QUEUE,
                           routing_key=GENERATE_QUEUE, countdown=countdown)

    def webhook(self, job_id: str, attempt: int = 1, countdown: float | None = None) -> None:
        self.app.send_task(TASK_WEBHOOK, args=[job_id, attempt], task_id=f"{job_id}.webhook.{attempt}",
                           queue=MAINTENANCE_QUEUE, routing_key=MAINTENANCE_QUEUE, countdown=countdown)

    def queue_depths(self) -> dict[str, int]:
        """Messages waiting in each queue (kombu's Redis transport keeps a list per queue)."""
        with self.app.connection_for_write() as conn:
            client = conn.default_channel.client
            return {q: int(client.llen(q)) for q in ALL_QUEUES}
