"""The Celery app configuration and the `Enqueuer`: how anything (the API, workers, beat) puts work on queues.

The web process imports only this module, never worker code: it enqueues by task *name*, so Pillow-heavy
preprocessing and google-genai stay out of the API process. The reliability settings (docs/architecture.md,
"Celery reliability settings") are configured here once: late acks, reject on worker loss, prefetch 1, per-stage
time limits, a visibility timeout derived from them (> 2 × longest hard limit + longest countdown).

Fair scheduling between keys (docs/architecture.md, "Fair scheduling between keys") sits behind the same port:
`CeleryEnqueuer` puts a job's first preprocess and generate tasks into the owner's line of a `FairQueue`
(shared/fairqueue.py) and `pump` moves them into the Celery queues round-robin between owners while those are
short. Pumps run on every push, at the end of every preprocess and generate task (workers/tasks.py), in reconcile,
and every `PUMP_INTERVAL_S` from beat as a safety net. Retries and quota waits (`generate` without `owner`, with a
countdown) go straight to Celery: the job was already admitted, and holding its retry back would only make it
slower, not anyone else faster.

`CeleryEnqueuer.generate_in_flight` tells the lost-message reconciler (workers/maintenance.py) which outputs still
have a generate message somewhere: in a fair line or taken from one, in the Celery `generate` list, or in kombu's
`unacked` hash (delivered to a worker, not yet acknowledged). The last two are kombu's internal layout of its
Redis transport (list of JSON payloads; hash of delivery tag → JSON `[payload, exchange, routing_key]`, task id in
`payload["headers"]["id"]`). Reading it is acceptable here: kombu is pinned (kombu==5.7.0), this module already
owns the broker configuration, and tests/e2e/test_lost_generate.py checks the layout against a real broker, so
an upgrade that changes it fails a test instead of silently re-sending work.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis
from celery import Celery
from kombu import Exchange, Queue

from shared.fairqueue import FairQueue
from shared.redis_conn import broker_connection
from shared.settings import Settings

log = logging.getLogger("nanoedit.queueing")

PREPROCESS_QUEUE = "preprocess"
GENERATE_QUEUE = "generate"
QUEUES = (PREPROCESS_QUEUE, GENERATE_QUEUE)
# Upkeep (reconcile, expire, health report + alerts) has its own queue, consumed by the preprocess
# instances too (Procfile: -Q preprocess,maintenance; kombu rotates between a worker's queues), so a job
# backlog never delays alerts or the deadline reconciler by more than one task.
MAINTENANCE_QUEUE = "maintenance"
# Job webhooks (delivery attempts and the outbox dispatcher) have their own queue and pool (Procfile `webhooks`),
# so a slow or trickling receiver never holds a preprocess or maintenance slot.
WEBHOOKS_QUEUE = "webhooks"
ALL_QUEUES = (*QUEUES, MAINTENANCE_QUEUE, WEBHOOKS_QUEUE)
# The queues that need a worker pool of their own to be live (maintenance rides on the preprocess pool):
# /readyz, the health report's `queues.*.live_workers` and `nanoedit_workers_live` cover each.
WORKER_QUEUES = (*QUEUES, WEBHOOKS_QUEUE)

TASK_PREPROCESS = "nanoedit.preprocess"
TASK_GENERATE = "nanoedit.generate"
TASK_RECONCILE = "nanoedit.reconcile"
TASK_EXPIRE = "nanoedit.expire"
TASK_WEBHOOK = "nanoedit.webhook"
TASK_WEBHOOK_DISPATCH = "nanoedit.webhook_dispatch"
TASK_HEALTH_REPORT = "nanoedit.health_report"
TASK_PUMP = "nanoedit.pump"
TASK_REVIEWS = "nanoedit.reviews"
# How often beat checks whether a weekly or monthly review is due (workers/maintenance.py `reviews`).
REVIEWS_INTERVAL_S = 300.0

# The job queues with a fair line per owner in front of them, and how often beat pumps them (safety net).
FAIR_QUEUES = (PREPROCESS_QUEUE, GENERATE_QUEUE)
PUMP_INTERVAL_S = 1.0
# How many waiting generate messages (and fair-line items) `generate_in_flight` reads at most; beyond that it
# answers None ("cannot tell") and the reconciler re-sends nothing.
IN_FLIGHT_READ_LIMIT = 1000


def celery_config(settings: Settings) -> dict[str, Any]:
    vt = settings.effective_visibility_timeout_s
    exchange = Exchange("nanoedit", type="direct")
    broker = broker_connection(settings)  # plain, TLS or Sentinel (shared/redis_conn.py)
    return {
        "broker_url": broker.url,
        "broker_use_ssl": broker.use_ssl,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {
            "visibility_timeout": vt,
            # Sweep for messages of dead workers often enough that recovery takes ~ the visibility timeout.
            "unacked_restore_interval": max(1, min(10, vt // 10)),
            "unacked_restore_throttle": 1,
            "socket_timeout": 30,
            "socket_connect_timeout": 5,
            **broker.transport_options,
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
            TASK_WEBHOOK: {"queue": WEBHOOKS_QUEUE, "routing_key": WEBHOOKS_QUEUE},
            TASK_WEBHOOK_DISPATCH: {"queue": WEBHOOKS_QUEUE, "routing_key": WEBHOOKS_QUEUE},
            TASK_HEALTH_REPORT: {"queue": MAINTENANCE_QUEUE, "routing_key": MAINTENANCE_QUEUE},
            TASK_PUMP: {"queue": MAINTENANCE_QUEUE, "routing_key": MAINTENANCE_QUEUE},
            TASK_REVIEWS: {"queue": MAINTENANCE_QUEUE, "routing_key": MAINTENANCE_QUEUE},
        },
        "beat_schedule": {
            "reconcile": {"task": TASK_RECONCILE, "schedule": float(settings.reconcile_interval_s),
                          "options": {"expires": float(settings.reconcile_interval_s)}},
            "expire": {"task": TASK_EXPIRE, "schedule": 60.0, "options": {"expires": 60.0}},
            "health_report": {"task": TASK_HEALTH_REPORT, "schedule": float(settings.report_interval_s),
                              "options": {"expires": float(settings.report_interval_s)}},
            "webhook_dispatch": {"task": TASK_WEBHOOK_DISPATCH, "schedule": settings.webhook_dispatch_interval_s,
                                 "options": {"expires": settings.webhook_dispatch_interval_s}},
            "pump": {"task": TASK_PUMP, "schedule": PUMP_INTERVAL_S, "options": {"expires": PUMP_INTERVAL_S}},
            "reviews": {"task": TASK_REVIEWS, "schedule": REVIEWS_INTERVAL_S,
                        "options": {"expires": REVIEWS_INTERVAL_S}},
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


# What `admit_preprocess` hands back: called with the reply of the command it queued (None if it queued none)
# once the transaction ran; it finishes the admission (a pump when there is room) and raises if the job was not
# admitted after all.
Admission = Callable[[object], None]


class Enqueuer(Protocol):
    """The port through which anything puts work on the queues (the API, workers, beat).

    `preprocess` and `generate(..., owner=...)` admit a job's work through `owner`'s fair line;
    `admit_preprocess` does what `preprocess` does inside the caller's transaction (the job record's: one round
    trip for the record and its admission) and returns what finishes it after the transaction; `generate`
    without `owner` (retries, quota waits) sends at once. `pump(queue)` moves waiting work into the Celery queue
    and returns how many tasks it sent. `queue_depths` counts, per job queue, the Celery messages plus the work
    waiting in the fair lines in front of it. `generate_in_flight` names the outputs that still have a generate
    message on its way (None: too many to read), for the lost-message reconciler.
    """

    def preprocess(self, job_id: str, owner: str) -> None: ...

    def admit_preprocess(self, pipe: redis.client.Pipeline, job_id: str, owner: str) -> Admission: ...

    def generate(self, job_id: str, index: int, attempt: int = 1, countdown: float | None = None,
                 wait: int = 0, *, owner: str | None = None) -> None: ...

    def pump(self, queue: str) -> int: ...

    def webhook(self, job_id: str, attempt: int = 1, countdown: float | None = None) -> None: ...

    def queue_depths(self) -> dict[str, int]: ...

    def generate_in_flight(self, limit: int = IN_FLIGHT_READ_LIMIT) -> frozenset[tuple[str, int]] | None: ...


def generate_output_of(task_id: str) -> tuple[str, int] | None:
    """(job id, output index) of a generate task id `{job_id}.generate.{index}.{attempt}[w{wait}]`."""
    job_id, sep, rest = task_id.partition(".generate.")
    index = rest.split(".", 1)[0]
    return (job_id, int(index)) if sep and job_id and index.isdigit() else None


def _generate_output_in(payload: Any) -> tuple[str, int] | None:
    headers = payload.get("headers") if isinstance(payload, dict) else None
    if not isinstance(headers, dict) or headers.get("task") != TASK_GENERATE:
        return None
    return generate_output_of(str(headers.get("id") or ""))


@dataclass
class RecordingEnqueuer:
    """The in-package stub of `Enqueuer` for tests: records what would be sent, sends nothing.

    `sent` holds ("preprocess", job_id), ("generate", job_id, index, attempt, countdown, wait) and
    ("webhook", job_id, attempt, countdown) in order; `owners` maps a job id to the owner whose fair line it was
    admitted through; `pumped` lists the queues `pump` was asked for; `depths` is what `queue_depths()` answers.
    """

    sent: list[tuple[Any, ...]] = field(default_factory=list)
    depths: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ALL_QUEUES, 0))
    owners: dict[str, str] = field(default_factory=dict)
    pumped: list[str] = field(default_factory=list)
    in_flight: frozenset[tuple[str, int]] | None = frozenset()  # what `generate_in_flight()` answers

    @property
    def preprocessed(self) -> list[str]:
        return [str(s[1]) for s in self.sent if s[0] == "preprocess"]

    def preprocess(self, job_id: str, owner: str) -> None:
        self.sent.append(("preprocess", job_id))
        self.owners[job_id] = owner

    def admit_preprocess(self, pipe: redis.client.Pipeline, job_id: str, owner: str) -> Admission:
        return lambda _reply: self.preprocess(job_id, owner)

    def generate(self, job_id: str, index: int, attempt: int = 1, countdown: float | None = None,
                 wait: int = 0, *, owner: str | None = None) -> None:
        self.sent.append(("generate", job_id, index, attempt, countdown, wait))
        if owner is not None:
            self.owners[job_id] = owner

    def pump(self, queue: str) -> int:
        self.pumped.append(queue)
        return 0

    def webhook(self, job_id: str, attempt: int = 1, countdown: float | None = None) -> None:
        self.sent.append(("webhook", job_id, attempt, countdown))

    def queue_depths(self) -> dict[str, int]:
        return self.depths

    def generate_in_flight(self, limit: int = IN_FLIGHT_READ_LIMIT) -> frozenset[tuple[str, int]] | None:
        return self.in_flight


class CeleryEnqueuer:
    """Sends stage tasks by name. Task ids are rooted at the job id so logs and brokers tie back to the job.

    With a `fair` queue (what `build_runtime` wires), first admissions go through the owner's fair line and
    `pump` keeps `ready` messages in each job queue; without one, everything is sent at once (plain FIFO).
    """

    def __init__(self, app: Celery, fair: FairQueue | None = None, ready: int = 8) -> None:
        self.app = app
        self.fair = fair
        self.ready = ready

    def preprocess(self, job_id: str, owner: str) -> None:
        """Admit the job: into `owner`'s preprocess line (raises if Redis refuses), then pump."""
        if self.fair is None:
            self._send_preprocess(job_id)
            return
        self.fair.push(PREPROCESS_QUEUE, owner, job_id)
        self._pump_quietly(PREPROCESS_QUEUE)

    def admit_preprocess(self, pipe: redis.client.Pipeline, job_id: str, owner: str) -> Admission:
        """`preprocess` in the caller's transaction: the push is queued on `pipe`; after it ran, the returned
        call pumps if the Celery queue had room, or pushes again if Redis had lost the script (a restart)."""
        fair = self.fair
        if fair is None:
            return lambda _reply: self._send_preprocess(job_id)
        fair.push_in(pipe, PREPROCESS_QUEUE, owner, job_id, ready=self.ready)

        def finish(reply: object) -> None:
            if isinstance(reply, redis.exceptions.NoScriptError):
                fair.load_scripts()
                self.preprocess(job_id, owner)
            elif isinstance(reply, Exception):
                raise reply
            elif reply:
                self._pump_quietly(PREPROCESS_QUEUE)

        return finish

    def _send_preprocess(self, job_id: str) -> None:
        self.app.send_task(TASK_PREPROCESS, args=[job_id], task_id=f"{job_id}.preprocess",
                           queue=PREPROCESS_QUEUE, routing_key=PREPROCESS_QUEUE)

    def generate(self, job_id: str, index: int, attempt: int = 1, countdown: float | None = None,
                 wait: int = 0, *, owner: str | None = None) -> None:
        """`attempt` counts provider attempts (retries); `wait` counts re-queues while waiting for quota or
        an open circuit, which burn no retry. Both are in the task id, so each delivery is counted apart.
        With `owner` (the first attempt, sent by preprocessing) the task goes through the owner's fair line."""
        if owner is not None and self.fair is not None and attempt == 1 and not wait and countdown is None:
            self.fair.push(GENERATE_QUEUE, owner, f"{job_id}.{index}")
            self._pump_quietly(GENERATE_QUEUE)
            return
        suffix = f"w{wait}" if wait else ""
        self.app.send_task(TASK_GENERATE, args=[job_id, index, attempt, wait],
                           task_id=f"{job_id}.generate.{index}.{attempt}{suffix}", queue=GENERATE_QUEUE,
                           routing_key=GENERATE_QUEUE, countdown=countdown)

    def webhook(self, job_id: str, attempt: int = 1, countdown: float | None = None) -> None:
        """Ask a webhooks worker to try the job's delivery (the outbox decides whether one is due and numbers
        the attempt; `attempt` only names the task). Duplicates are harmless: only one claims an attempt."""
        self.app.send_task(TASK_WEBHOOK, args=[job_id, attempt],
                           task_id=f"{job_id}.webhook.{attempt}.{secrets.token_hex(3)}",
                           queue=WEBHOOKS_QUEUE, routing_key=WEBHOOKS_QUEUE, countdown=countdown)

    def pump(self, queue: str) -> int:
        """Move work from the fair lines into `queue`, round-robin between owners, while fewer than `ready`
        messages wait there. A send that fails gives the rest back to the head of their lines and raises."""
        if self.fair is None or queue not in FAIR_QUEUES:
            return 0
        taken = self.fair.take(queue, ready=self.ready)
        for i, t in enumerate(taken):
            try:
                if queue == PREPROCESS_QUEUE:
                    self._send_preprocess(t.item)
                else:
                    job_id, _, index = t.item.rpartition(".")
                    self.generate(job_id, int(index))
            except Exception:
                self.fair.ack(queue, taken[:i])
                self.fair.give_back(queue, taken[i:])
                raise
        self.fair.ack(queue, taken)
        return len(taken)

    def _pump_quietly(self, queue: str) -> None:
        """Pump after a push; the work is already safe in its line, so a failure here only delays it until the
        next pump (another push, a task's end, reconcile, or beat's pump every PUMP_INTERVAL_S)."""
        try:
            self.pump(queue)
        except Exception:
            log.warning("pump failed; the work stays in its fair line for the next pump", exc_info=True,
                        extra={"queue": queue})

    def queue_depths(self) -> dict[str, int]:
        """Work waiting for each queue: Celery messages (kombu's Redis transport keeps a list per queue) plus,
        for the job queues, what waits in the fair lines in front of them."""
        with self.app.connection_for_write() as conn:
            client = conn.default_channel.client
            depths = {q: int(client.llen(q)) for q in ALL_QUEUES}
        if self.fair is not None:
            for q in FAIR_QUEUES:
                depths[q] = depths.get(q, 0) + self.fair.backlog(q).items
        return depths

    def generate_in_flight(self, limit: int = IN_FLIGHT_READ_LIMIT) -> frozenset[tuple[str, int]] | None:
        """(job id, output index) of every generate message still somewhere on its way (module docstring), or
        None when more than `limit` wait in a fair line or in the Celery list (too many to read every run).

        Read in the order work moves (fair lines, then the broker), so an item moving on between two reads is
        seen at its next place; the Celery list and `unacked` are read in one MULTI, so kombu's restore of an
        unacked message (one transaction) cannot hide it. The only moment a message is invisible is between a
        worker's BRPOP and its unacked write: the loss window itself, which the reconciler's grace covers.
        """
        found: set[tuple[str, int]] = set()
        if self.fair is not None:
            items = self.fair.pending(GENERATE_QUEUE, limit)
            if items is None:
                return None
            for item in items:
                job_id, _, index = item.rpartition(".")
                if job_id and index.isdigit():
                    found.add((job_id, int(index)))
        options = self.app.conf.broker_transport_options or {}
        unacked_key = str(options.get("unacked_key") or "unacked")
        with self.app.connection_for_write() as conn:
            pipe = conn.default_channel.client.pipeline(transaction=True)
            pipe.lrange(GENERATE_QUEUE, 0, limit)  # one past the limit: tells "too many" without LLEN
            pipe.hvals(unacked_key)
            waiting, unacked = pipe.execute()
        if len(waiting) > limit:
            return None
        payloads = [json.loads(raw) for raw in waiting]
        for raw in unacked:
            value = json.loads(raw)
            if isinstance(value, list) and value:
                payloads.append(value[0])
        found.update(out for p in payloads if (out := _generate_output_in(p)) is not None)
        return frozenset(found)
