"""Beat-scheduled upkeep: end jobs past their deadline, re-enqueue jobs whose message was lost, expire data.

This is what makes "an accepted job always reaches a terminal state" hold even when a message is lost (Redis
failover, the ≤ 1 s AOF window) or a worker keeps dying: the deadline index is the backstop.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from monitoring.alerts import build_engine
from monitoring.report import HealthReporter
from shared.apikeys import ANONYMOUS
from shared.errors import NanoeditError, job_error
from shared.queueing import FAIR_QUEUES, PREPROCESS_QUEUE
from workers import pipeline
from workers.context import WorkerContext

log = logging.getLogger("nanoedit.maintenance")


def reconcile(ctx: WorkerContext) -> dict[str, Any]:
    ended = 0
    for job_id in ctx.store.overdue():
        try:
            job = ctx.store.get(job_id)
        except NanoeditError:
            job = None
        if job is None or job.terminal:
            ctx.store.clear_deadline(job_id)
            continue
        for index in range(job.num_images):
            if index not in job.outputs:
                ctx.store.fail_output(job_id, index, job_error(
                    "deadline_exceeded", f"output {index} not produced within {ctx.settings.job_deadline_s}s"))
        if pipeline.finalize(ctx, job_id, force=True):
            ended += 1
            log.warning("job ended by deadline", extra={"job_id": job_id})

    return {"ended_by_deadline": ended, "requeued": _requeue_lost(ctx), "pumped": pump(ctx)}


def pump(ctx: WorkerContext) -> int:
    """Move work from the per-key fair lines into the Celery job queues (beat's safety net; every push and
    every stage task's end pump too). Also returns stale taken-but-unsent work to its lines."""
    return sum(ctx.enqueuer.pump(queue) for queue in FAIR_QUEUES)


def _requeue_lost(ctx: WorkerContext) -> int:
    """Re-send preprocess for jobs still `queued` long after any message of theirs could be in flight.

    Only when the preprocess queue is empty (its Celery messages and the fair lines in front of it, which
    `queue_depths` counts together): then a job queued for longer than the visibility timeout has no message
    waiting (an unacked one would have been restored into the queue by now), so its message was lost. With a
    backlog we do nothing — duplicating a long queue would be worse than the deadline ending a job. A lost job
    goes back through its owner's fair line like a new one.
    """
    if ctx.enqueuer.queue_depths().get(PREPROCESS_QUEUE, 0) > 0:
        return 0
    requeued = 0
    stale_before = ctx.clock.now() - ctx.settings.effective_visibility_timeout_s - 60
    for job_id in ctx.store.stale_queued(PREPROCESS_QUEUE, stale_before):
        # Its message should have been delivered (or restored) by now: send it again, same task id.
        ctx.enqueuer.preprocess(job_id, owner=ctx.store.owner_of(job_id) or ANONYMOUS)
        ctx.store.mark_waiting(PREPROCESS_QUEUE, job_id, ctx.clock.now() * 1000)
        requeued += 1
        log.warning("re-enqueued a queued job whose message looks lost", extra={"job_id": job_id})
    return requeued


def reporter(ctx: WorkerContext) -> HealthReporter:
    s = ctx.settings
    return HealthReporter(r=ctx.redis, prefix=s.redis_prefix, clock=ctx.clock, jobs=ctx.store,
                          liveness=ctx.liveness(),
                          recorder=ctx.recorder, limiter=ctx.limiter, breaker=ctx.breaker,
                          queue_depths=ctx.enqueuer.queue_depths, interval_s=s.report_interval_s,
                          min_samples=s.report_min_samples)


def health_report(ctx: WorkerContext) -> dict[str, Any]:
    """Build and store the health report, then evaluate alerts on it. Two beats (or a late duplicate) in the
    same period: a Redis lock lets only the first run, so nothing is reported or notified twice."""
    rep = reporter(ctx)
    if not rep.try_lock(int(ctx.settings.report_interval_s * 1000 * 0.8)):
        return {"skipped": "another health report ran in this period"}
    report = rep.build()
    rep.store(report)
    notified: int | str = 0
    try:  # a broken rule or channel must never cost the report; the engine logs and records its own failures
        notified = len(build_engine(ctx.settings, ctx.redis, ctx.clock).evaluate(report))
    except Exception:
        log.exception("alert evaluation failed")
        notified = "error"
    yesterday = datetime.fromtimestamp(ctx.clock.now() - 86400, tz=UTC).strftime("%Y-%m-%d")
    if not rep.has_daily(yesterday):
        rep.daily(yesterday)
    return {"generated_at": report["generated_at"], "notifications": notified}


def expire(ctx: WorkerContext) -> dict[str, Any]:
    deleted = 0
    for _ in range(40):  # up to 20,000 a run; the rest next minute
        batch = ctx.store.expire_due(ctx.blobs)
        deleted += batch
        if batch < 500:
            break
    if deleted:
        log.info("expired jobs deleted", extra={"count": deleted})
    return {"expired": deleted}
