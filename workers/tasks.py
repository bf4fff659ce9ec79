"""Celery tasks: thin wrappers that add the poison guard, time limits and the never-die rule to the pipeline.

Each task body: count this delivery (a message redelivered more than NANOEDIT_MAX_DELIVERIES times fails its
job instead of looping), run the stage, and turn anything unexpected into a failed job with `internal_error`
(the traceback goes to the log, never to the client). A hard time limit kills the child; the message is then
rejected and redelivered (task_reject_on_worker_lost), and the poison guard bounds how often that happens.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from celery import Task
from celery.exceptions import Reject, SoftTimeLimitExceeded

from shared.errors import BlobStoreUnavailable, job_error
from shared.logging_setup import log_context
from shared.queueing import (
    GENERATE_QUEUE,
    PREPROCESS_QUEUE,
    TASK_EXPIRE,
    TASK_GENERATE,
    TASK_HEALTH_REPORT,
    TASK_PREPROCESS,
    TASK_PUMP,
    TASK_RECONCILE,
    TASK_REVIEWS,
    TASK_WEBHOOK,
    TASK_WEBHOOK_DISPATCH,
)
from workers import maintenance, pipeline, webhooks
from workers.celery_app import app, settings
from workers.context import WorkerContext, build_context

log = logging.getLogger("nanoedit.tasks")

_ctx: WorkerContext | None = None


def context() -> WorkerContext:
    """Per-process context, built on first use inside the pool child (after the fork)."""
    global _ctx
    if _ctx is None:
        _ctx = build_context(settings)
    return _ctx


def _poisoned(ctx: WorkerContext, task: Task, job_id: str) -> bool:
    task_id = str(task.request.id)
    ttl = ctx.settings.effective_visibility_timeout_s * (ctx.settings.max_deliveries + 2)
    n = ctx.store.count_delivery(task_id, ttl)
    if n > ctx.settings.max_deliveries:
        log.error("poison message: failing job", extra={"job_id": job_id, "task_id": task_id, "deliveries": n})
        pipeline.fail_job(ctx, job_id, "internal_error",
                          f"task {task_id} was delivered {n} times without finishing")
        return True
    return False


def _refill(ctx: WorkerContext, queue: str) -> None:
    """A stage task is done, so a slot frees up: pump the next job from the per-key fair lines into `queue`
    (shared/fairqueue.py). Best effort: beat's pump and the next push retry whatever this one could not move."""
    try:
        ctx.enqueuer.pump(queue)
    except Exception:
        log.warning("pump after a task failed", exc_info=True, extra={"queue": queue})


def _crash(ctx: WorkerContext, job_id: str, stage: str, exc: BaseException) -> None:
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        # Redis (store and broker) is unreachable: nothing can be recorded, and failing the job would be wrong.
        # Reject with requeue: the message stays unacked in Redis and comes back (visibility timeout) when Redis
        # does; the stages are idempotent, and the poison guard bounds how often this can repeat.
        log.warning("Redis unreachable during a stage; leaving the message for redelivery",
                    extra={"job_id": job_id, "stage": stage})
        raise Reject(reason="redis unavailable", requeue=True) from None
    log.exception("stage crashed; failing job", extra={"job_id": job_id, "stage": stage})
    try:
        pipeline.fail_job(ctx, job_id, "internal_error", f"{stage} failed unexpectedly ({type(exc).__name__})")
    except Exception:  # Redis itself is down: the deadline reconciler will end the job later
        log.exception("could not record the failure", extra={"job_id": job_id})


@app.task(name=TASK_PREPROCESS, bind=True, soft_time_limit=settings.preprocess_soft_limit_s,
          time_limit=settings.preprocess_hard_limit_s)
def preprocess(self: Task, job_id: str) -> None:
    ctx = context()
    with log_context(job_id=job_id, task_id=self.request.id, stage="preprocessing"):
        try:
            if _poisoned(ctx, self, job_id):
                return
            pipeline.run_preprocess(ctx, job_id)
        except BlobStoreUnavailable as exc:
            # Inputs cannot be read or prepared ones stored (NANOEDIT_BLOB_URL unreachable): nothing expensive
            # has happened yet, so the job ends at once with a retryable, coded error instead of waiting.
            log.warning("blob store unavailable during preprocessing; failing job", extra={"job_id": job_id})
            pipeline.fail_job(ctx, job_id, "storage_unavailable", f"preprocessing: {exc.details}")
        except SoftTimeLimitExceeded:
            pipeline.fail_job(ctx, job_id, "internal_error",
                              f"preprocessing exceeded {ctx.settings.preprocess_soft_limit_s}s")
        except Exception as exc:
            _crash(ctx, job_id, "preprocess", exc)
        finally:
            _refill(ctx, PREPROCESS_QUEUE)


@app.task(name=TASK_GENERATE, bind=True, soft_time_limit=settings.generate_soft_limit_s,
          time_limit=settings.generate_hard_limit_s)
def generate(self: Task, job_id: str, index: int, attempt: int = 1, wait: int = 0) -> None:
    ctx = context()
    with log_context(job_id=job_id, task_id=self.request.id, stage="generating"):
        try:
            if _poisoned(ctx, self, job_id):
                return
            retry = pipeline.run_generate(ctx, job_id, index, attempt, wait)
        except BlobStoreUnavailable:  # transient: back to the queue after a backoff (pipeline.storage_wait)
            retry = pipeline.storage_wait(ctx, job_id, attempt, wait)
        except SoftTimeLimitExceeded:
            # The provider call outlived its timeout by a wide margin: treat it as an upstream timeout.
            ctx.store.fail_output(job_id, index, job_error(
                "upstream_timeout", f"output {index} exceeded the task time limit"))
            pipeline.finalize(ctx, job_id)
            return
        except Exception as exc:
            _crash(ctx, job_id, "generate", exc)
            return
        finally:
            _refill(ctx, GENERATE_QUEUE)
        if retry is not None:
            try:  # a retry or quota wait: straight to Celery with its countdown, not through the fair line
                ctx.store.expect_generate(job_id, [index], countdown_s=retry.countdown)  # lost-message ledger
                ctx.enqueuer.generate(job_id, index, attempt=retry.attempt, countdown=retry.countdown,
                                      wait=retry.wait)
            except Exception as exc:  # the broker is down: keep this message instead (redelivered later)
                _crash(ctx, job_id, "generate", exc)


@app.task(name=TASK_RECONCILE, bind=True, soft_time_limit=60, time_limit=90)
def reconcile(self: Task) -> dict[str, Any]:
    return maintenance.reconcile(context())


@app.task(name=TASK_PUMP, bind=True, soft_time_limit=20, time_limit=30)
def pump(self: Task) -> dict[str, Any]:
    return {"pumped": maintenance.pump(context())}


@app.task(name=TASK_HEALTH_REPORT, bind=True, soft_time_limit=60, time_limit=90)
def health_report(self: Task) -> dict[str, Any]:
    return maintenance.health_report(context())


@app.task(name=TASK_REVIEWS, bind=True, soft_time_limit=120, time_limit=150)
def reviews(self: Task) -> dict[str, Any]:
    return maintenance.reviews(context())


@app.task(name=TASK_EXPIRE, bind=True, soft_time_limit=120, time_limit=150)
def expire(self: Task) -> dict[str, Any]:
    return maintenance.expire(context())


# Webhook tasks run on the `webhooks` pool (threads: they only wait on the network). Each attempt bounds itself
# (resolve + NANOEDIT_WEBHOOK_TIMEOUT_S); the limits below only matter under a prefork pool.
_WEBHOOK_SOFT_S = int(settings.webhook_resolve_timeout_s + settings.webhook_timeout_s) + 30


@app.task(name=TASK_WEBHOOK, bind=True, soft_time_limit=_WEBHOOK_SOFT_S, time_limit=_WEBHOOK_SOFT_S + 30)
def webhook(self: Task, job_id: str, attempt: int = 0) -> None:
    """One due attempt of the job's webhook, if any (the outbox numbers it; `attempt` only names the task)."""
    ctx = context()
    with log_context(job_id=job_id, task_id=self.request.id, stage="webhook"):
        try:
            again_in = webhooks.deliver(ctx, job_id)
        except Exception:  # never crash-loop a worker: the attempt's lease ends and the dispatcher sends it again
            log.exception("webhook delivery crashed", extra={"job_id": job_id})
            return
        if again_in is not None:
            try:  # fast path for a short backoff; the outbox due time (dispatcher) is the source of truth
                ctx.enqueuer.webhook(job_id, countdown=again_in)
            except Exception:
                log.warning("could not enqueue the next webhook attempt; the dispatcher will", exc_info=True)


@app.task(name=TASK_WEBHOOK_DISPATCH, bind=True, soft_time_limit=30, time_limit=60)
def webhook_dispatch(self: Task) -> dict[str, Any]:
    return webhooks.dispatch(context())
