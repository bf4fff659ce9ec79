"""Beat-scheduled upkeep: end jobs past their deadline, re-send preprocess and generate messages that were
lost, expire data.

This is what makes "an accepted job always reaches a terminal state" hold even when a message is lost (Redis
failover, the ≤ 1 s AOF window, a worker main process killed between kombu's BRPOP and its unacked record) or
a worker keeps dying: lost messages are sent again, and the deadline index is the backstop.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from monitoring import metrics
from monitoring.alerts import build_engine
from monitoring.baseline import annotate_report as annotate_baselines
from monitoring.periodic import ReviewBuilder
from monitoring.report import HealthReporter
from monitoring.review_delivery import ReviewDelivery, review_channels
from shared.apikeys import ANONYMOUS
from shared.errors import BlobStoreUnavailable, NanoeditError, job_error
from shared.queueing import FAIR_QUEUES, PREPROCESS_QUEUE
from shared.settings import Settings
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

    return {"ended_by_deadline": ended, "requeued": _requeue_lost(ctx),
            "requeued_generate": _requeue_lost_generate(ctx), "pumped": pump(ctx)}


def pump(ctx: WorkerContext) -> int:
    """Move work from the per-key fair lines into the Celery job queues (beat's safety net; every push and
    every stage task's end pump too). Also returns stale taken-but-unsent work to its lines, and keeps the finish
    rate behind every status read's ETA fresh (beat runs this every second)."""
    ctx.store.refresh_rate()
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


def lost_generate_grace_s(settings: Settings) -> int:
    """How long past its due time an expected generate message must be nowhere in flight to count as lost.

    `generate_in_flight` sees a message everywhere but in the instant between a worker's BRPOP and its unacked
    write, so the grace only has to outlast that instant and any task that slipped past the read: a generate
    task's hard limit + 60 s (180 s by default). The visibility timeout is not part of it: a message held by a
    dead worker sits in `unacked` until kombu restores it, and is seen there; adding it (420 s by default) would
    put recovery past the default job deadline (600 s), so the deadline would end the job first.
    """
    return settings.generate_hard_limit_s + 60


def _requeue_lost_generate(ctx: WorkerContext) -> int:
    """Re-send generate for outputs whose message should have started long ago and is nowhere in flight.

    The ledger (JobStore.overdue_generate, shared/jobs/expected.py) says which outputs expect a message and by
    when; `generate_in_flight` (shared/queueing.py) says which messages still exist (fair line, Celery list,
    kombu's unacked hash). An overdue output of a live job with no message anywhere lost it (docs/operations.md,
    "A worker dies"): send it again, straight to Celery, as the same provider attempt (attempts recorded for the
    output + 1). When the broker holds too many messages to read, nothing is re-sent this run. A duplicate
    anyway (a message taken in the very instant of the read) is harmless: the first recorded output wins.
    """
    overdue = ctx.store.overdue_generate(ctx.clock.now() - lost_generate_grace_s(ctx.settings))
    if not overdue:
        return 0
    in_flight = ctx.enqueuer.generate_in_flight()
    if in_flight is None:
        log.info("generate backlog too long to check for lost messages; next run", extra={"count": len(overdue)})
        return 0
    requeued = 0
    for entry in overdue:
        job_id, index = entry.job_id, entry.index
        if (job_id, index) in in_flight:
            continue
        try:
            job = ctx.store.get(job_id)
        except NanoeditError:  # expired
            job = None
        if job is None or job.terminal or index in job.outputs:
            ctx.store.forget_expected(job_id, index)
            continue
        attempt = sum(1 for a in job.attempts if a.output == index) + 1
        ctx.store.expect_generate(job_id, [index])  # before the send: a failed send is found again next run
        ctx.enqueuer.generate(job_id, index, attempt=attempt)
        metrics.GENERATE_REQUEUES.labels("lost").inc()
        requeued += 1
        log.warning("re-sent a generate message that looks lost", extra={
            "job_id": job_id, "output": index, "attempt": attempt,
            "overdue_s": round(ctx.clock.now() - entry.due_at, 1)})
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
    annotate_baselines(ctx.settings, ctx.redis, ctx.clock, report)  # baseline rules' section (monitoring/baseline.py)
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


def reviews(ctx: WorkerContext) -> dict[str, Any]:
    """Send the weekly and monthly reviews that are due to the Slack and email channels, once per period
    (monitoring/review_delivery.py decides what is due with the injected clock)."""
    channels = review_channels(ctx.settings, ctx.clock)
    if not channels:
        return {"skipped": "no Slack or email channel configured"}
    builder = ReviewBuilder(reporter(ctx), ctx.clock)
    return ReviewDelivery(ctx.redis, ctx.settings.redis_prefix, ctx.clock, builder, channels).deliver_due()


def expire(ctx: WorkerContext) -> dict[str, Any]:
    deleted = 0
    for _ in range(40):  # up to 20,000 a run; the rest next minute
        try:
            batch = ctx.store.expire_due(ctx.blobs)
        except BlobStoreUnavailable:  # a job's blobs stay, and so does its record: the next run tries again
            log.warning("blob store unavailable; expiry resumes next run", extra={"count": deleted})
            break
        deleted += batch
        if batch < 500:
            break
    if deleted:
        log.info("expired jobs deleted", extra={"count": deleted})
    return {"expired": deleted}
