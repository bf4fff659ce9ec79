"""The job's stages as plain functions: preprocess → generate (one per output) → finalize.

No Celery here (tasks.py wraps these), so the rules read top to bottom and unit tests call them directly.
Every stage is idempotent: a redelivered task finds what it already stored and does not redo it (in particular
it never calls the provider again for an output that is stored). A stage never raises for bad data: it ends
the job with an error that has a code and a suggestion.
"""

from __future__ import annotations

import hashlib
import io
import logging
import random
from dataclasses import dataclass

from monitoring import metrics
from monitoring.spend import SpendRecorder
from shared.blobs import input_key, output_key, prepared_key
from shared.catalogue import estimate_cost_usd, load_catalogue
from shared.clock import rfc3339
from shared.errors import ClientInputError, NanoeditError, job_error
from shared.jobs.model import (
    ATTEMPT_SUCCEEDED,
    Attempt,
    Job,
    JobError,
    JobStage,
    JobStatus,
    OutputResult,
    OutputStatus,
    PreparedInput,
)
from shared.jobs.options import JobOptions, Usage
from shared.queueing import GENERATE_QUEUE, PREPROCESS_QUEUE
from shared.quota_reset import seconds_until_pacific_midnight
from shared.settings import Settings
from shared.usage_ledger import UsageLedger
from workers.concurrency import call_with_deadline, offload
from workers.context import WorkerContext
from workers.output_bounds import bound_output
from workers.output_format import convert_output
from workers.providers.base import EditRequest, InputImage, NoImageGenerated, OutputImage, ProviderError, Retry
from workers.retry import backoff_delay

log = logging.getLogger("nanoedit.pipeline")


@dataclass(frozen=True, slots=True)
class RetryLater:
    """Control flow: the generate task should be re-enqueued after `countdown` seconds."""

    countdown: float
    attempt: int
    wait: int = 0


def _load(ctx: WorkerContext, job_id: str) -> Job | None:
    try:
        return ctx.store.get(job_id)
    except NanoeditError:  # Gone: expired while queued; nothing to do
        return None


# -- preprocess -------------------------------------------------------------------------------------------
def run_preprocess(ctx: WorkerContext, job_id: str) -> None:
    from workers.preprocess import prepare_image  # Pillow-heavy; imported where used

    job = _load(ctx, job_id)
    if job is None or job.terminal:
        return
    store = ctx.store
    store.unmark_waiting(PREPROCESS_QUEUE, job_id)
    if job.status == JobStatus.QUEUED:
        if not store.start_preprocessing(job_id).ok:  # canceled (or failed) between our read and the write
            return
    elif job.status == JobStatus.CANCELING:
        if not store.generate_enqueued(job_id):
            finalize(ctx, job_id, force=True)
        return
    elif store.generate_enqueued(job_id):
        return  # a redelivery after generate tasks went out: the rest of the job is already on its way

    prepared: list[PreparedInput] = []
    for meta in job.inputs:
        key = prepared_key(job_id, meta.index)
        try:
            image = prepare_image(ctx.blobs.get(input_key(job_id, meta.index)),
                                  max_bytes=ctx.settings.max_image_bytes,
                                  max_pixels=ctx.settings.max_image_pixels,
                                  max_long_edge=ctx.settings.max_long_edge)
        except ClientInputError as exc:
            store.fail(job_id, exc.code, f"input {meta.index}: {exc.details}")
            return
        ctx.blobs.put(key, image.data)
        prepared.append(PreparedInput(index=meta.index, mime_type=image.mime_type, width=image.width,
                                      height=image.height, bytes=len(image.data)))

    if store.cancel_requested(job_id):
        finalize(ctx, job_id, force=True)
        return
    if not store.mark_prepared(job_id, prepared):
        return
    # Joins the generate line and records each output's message as expected (the lost-message ledger).
    store.expect_first_generate(job_id, job.num_images, job.created_at * 1000)
    for index in range(job.num_images):  # through the owner's fair line (shared/fairqueue.py)
        ctx.enqueuer.generate(job_id, index, attempt=1, owner=job.owner)
    store.mark_generate_enqueued(job_id)


# -- generate ---------------------------------------------------------------------------------------------
def run_generate(ctx: WorkerContext, job_id: str, index: int, attempt: int, wait: int = 0) -> RetryLater | None:
    """Produce output `index`. Returns RetryLater to be re-queued: a transient failure worth another attempt,
    or (same attempt, wait + 1) a wait for quota or for an open circuit, which burns no retry."""
    job = _load(ctx, job_id)
    if job is None or job.terminal:
        return None
    store = ctx.store
    store.unmark_waiting(GENERATE_QUEUE, job_id)
    if index in job.outputs:
        _maybe_finalize(ctx, job_id, len(job.outputs), job.num_images)
        return None
    if job.canceling:
        return _resolve(ctx, job, index, OutputResult.canceled())
    if ctx.clock.now() >= job.deadline_at:
        return _resolve(ctx, job, index, OutputResult.failed(job_error(
            "deadline_exceeded", f"output {index} not produced before the job deadline")))
    if ctx.blobs.exists(output_key(job_id, index)):
        # Stored by an earlier delivery that died before recording it: record, never call the provider again.
        return _resolve(ctx, job, index, _output_meta(ctx.blobs.get(output_key(job_id, index))))

    # Build the provider (SDK import, client) before taking quota: otherwise a process's first call reaches the
    # provider ~1 s after its admission and bunches up with later ones, breaking the rpm spacing upstream.
    _ = ctx.provider
    gate = ctx.breaker.allow()
    if not gate.allowed:  # the provider is failing: wait without burning a retry, until the deadline
        store.set_waiting(job_id, "circuit_open", ctx.clock.now() + gate.retry_in_s)
        return _wait(ctx, job, attempt, wait, gate.retry_in_s, "circuit_open")
    holder = f"{job_id}:{index}"
    asked_at = ctx.clock.now()
    granted = ctx.limiter.acquire_blocking(holder, 1, max_wait_s=0.0, clock=ctx.clock, model=job.model)
    if not granted.granted:
        store.set_waiting(job_id, granted.reason, ctx.clock.now() + granted.wait_s)
        granted = ctx.limiter.acquire_blocking(holder, 1, max_wait_s=ctx.settings.quota_wait_s,
                                               clock=ctx.clock, model=job.model)
    metrics.LIMITER_WAIT.labels("granted" if granted.granted else "requeued").observe(ctx.clock.now() - asked_at)
    if not granted.granted:
        if granted.reason in ("cooldown", "model_hold") and ctx.clock.now() + granted.wait_s >= job.deadline_at:
            # The provider said our quota is gone for longer than this job may wait (e.g. a per-day quota):
            # say so now instead of parking the job until it fails with deadline_exceeded.
            return _resolve(ctx, job, index, OutputResult.failed(_quota_error(ctx, job, granted.reason,
                                                                              granted.wait_s)))
        return _wait(ctx, job, attempt, wait, granted.wait_s, granted.reason)
    try:
        if store.cancel_requested(job_id):  # canceled while we waited: no provider call
            return _resolve(ctx, job, index, OutputResult.canceled())
        return _call_provider(ctx, job, index, attempt, gate.probe)
    finally:
        ctx.limiter.release(holder, model=job.model)


def storage_wait(ctx: WorkerContext, job_id: str, attempt: int, wait: int) -> RetryLater:
    """The blob store was unreachable during generate (`BlobStoreUnavailable`): come back after a backoff like
    any transient failure, but as a wait (no provider retry burned). The job's deadline bounds the waits: the
    next delivery past it ends the output with deadline_exceeded. Redoing the stage is safe: a stored output
    is found and recorded; only an output whose upload failed is asked for again."""
    countdown = backoff_delay(wait + 1, base_s=max(1.0, ctx.settings.retry_base_s),
                              cap_s=float(ctx.settings.max_countdown_s))
    metrics.GENERATE_REQUEUES.labels("storage_unavailable").inc()
    log.warning("blob store unavailable; generate comes back later",
                extra={"job_id": job_id, "countdown_s": round(countdown, 2)})
    return RetryLater(countdown=max(0.5, countdown), attempt=attempt, wait=wait + 1)


def _quota_error(ctx: WorkerContext, job: Job, reason: str, wait_s: float) -> JobError:
    """upstream_rate_limited for a quota that outlasts the job's deadline, saying which one and until when."""
    if reason == "model_hold":
        resets_at = rfc3339(round(ctx.clock.now() + wait_s))  # a midnight: whole seconds (hides clock skew)
        return job_error("upstream_rate_limited", f"the per-day quota of model {job.model} is used up until it "
                         f"resets at {resets_at} (midnight Pacific), beyond this job's deadline")
    return job_error("upstream_rate_limited", f"provider quota exhausted for another {wait_s:.0f} s, "
                     "beyond this job's deadline")


def _wait(ctx: WorkerContext, job: Job, attempt: int, wait: int, wait_s: float, reason: str) -> RetryLater:
    countdown = min(float(ctx.settings.max_countdown_s), max(0.05, wait_s) * (1 + 0.2 * random.random()))
    metrics.GENERATE_REQUEUES.labels(reason).inc()
    log.info("waiting for quota", extra={"job_id": job.id, "reason": reason, "countdown_s": round(countdown, 2)})
    return RetryLater(countdown=countdown, attempt=attempt, wait=wait + 1)


def _call_provider(ctx: WorkerContext, job: Job, index: int, attempt: int, probe: bool) -> RetryLater | None:
    store, job_id = ctx.store, job.id
    store.set_stage(job_id, JobStage.GENERATING)
    request = _edit_request(ctx, job, index)
    started = ctx.clock.now()
    # The whole call is bounded (workers/concurrency.py): the soft time limit does it under prefork only.
    budget_s = min(float(ctx.settings.generate_soft_limit_s), max(0.0, job.deadline_at - started))
    try:
        if ctx.provider.cpu_bound:  # the local provider: Pillow work, bounded by itself, on a native thread
            result = offload(ctx.provider.edit, request)
        else:
            result = call_with_deadline(lambda: ctx.provider.edit(request), budget_s)
    except ProviderError as exc:
        duration_ms = round((ctx.clock.now() - started) * 1000)
        cost = _cost(ctx, job, exc.usage, 0)  # an answer without an image still bills its tokens
        rule = exc.rule
        _attempt(ctx, job_id, index, attempt, exc.outcome, duration_ms, started, exc.code, usage=exc.usage,
                 cost_usd=cost, billed=rule.billed)
        _count_usage(ctx, job, exc.usage, cost)
        if rule.fleet_cooldown:  # our quota is spent: the whole fleet pauses, not just this task
            metrics.PROVIDER_RATE_LIMITED.labels(exc.outcome).inc()
            ctx.limiter.cooldown(exc.retry_after_hint_s or ctx.settings.rate_limit_cooldown_s)
        if rule.transient:
            ctx.breaker.record_failure(probe=probe)
        elif not rule.fleet_cooldown:  # a definite answer (4xx, safety): the provider itself is up
            ctx.breaker.record_success(probe=probe)
        if rule.model_hold:  # a per-day quota: only this model's calls wait, until midnight Pacific
            metrics.PROVIDER_RATE_LIMITED.labels(exc.outcome).inc()
            hold_s = ctx.limiter.hold_model(job.model, seconds_until_pacific_midnight(ctx.clock.now()))
            if hold_s and ctx.clock.now() + hold_s < job.deadline_at:  # the job may outlive the hold: wait
                store.set_waiting(job_id, "model_hold", round(ctx.clock.now() + hold_s))
                return _wait(ctx, job, attempt + 1, 0, hold_s, "model_hold")  # the call after the reset: n+1
        return _after_failure(ctx, job, index, attempt, exc)
    duration_ms = round((ctx.clock.now() - started) * 1000)
    ctx.breaker.record_success(probe=probe)
    cost = _cost(ctx, job, result.usage, len(result.images))
    canceled = _attempt(ctx, job_id, index, attempt, ATTEMPT_SUCCEEDED, duration_ms, started, None,
                        usage=result.usage, cost_usd=cost, billed=True)
    _count_usage(ctx, job, result.usage, cost)
    if canceled:
        # Honest cancel: the call finished (and was billed) but its result is discarded.
        return _resolve(ctx, job, index, OutputResult.canceled(billed=True))
    if not result.images:
        return _after_failure(ctx, job, index, attempt, NoImageGenerated("provider returned no image"))
    store.set_stage(job_id, JobStage.STORING)
    # Decoding and converting pixels is CPU work: off the generate pool's event loop (workers/concurrency.py),
    # in one hand-off to a native thread.
    image, meta, refused = offload(_checked_output, result.images[0], ctx.settings, job.options)
    if refused is not None or meta is None:
        return _resolve(ctx, job, index, OutputResult.failed(refused or job_error(
            "internal_error", "the output was checked but not described")))
    ctx.blobs.put(output_key(job_id, index), image.data)
    if result.text:
        store.set_text(job_id, result.text)
    return _resolve(ctx, job, index, meta)


def _after_failure(ctx: WorkerContext, job: Job, index: int, attempt: int,
                   exc: ProviderError) -> RetryLater | None:
    """Retry or fail one output, as the error table (workers.providers.base.ERROR_TABLE) says."""
    rule = exc.rule
    allowed = {Retry.NEVER: 0, Retry.ONCE: 1, Retry.BACKOFF: ctx.settings.max_retries}[rule.retry]
    if attempt - 1 < allowed:
        delay = backoff_delay(attempt, base_s=ctx.settings.retry_base_s, cap_s=float(ctx.settings.max_countdown_s),
                              hint_s=exc.retry_after_hint_s)
        if ctx.clock.now() + delay < job.deadline_at:
            log.info("retrying output", extra={"job_id": job.id, "output": index, "attempt": attempt,
                                               "outcome": rule.outcome, "countdown_s": round(delay, 2)})
            metrics.PROVIDER_RETRIES.labels(rule.outcome).inc()
            return RetryLater(countdown=delay, attempt=attempt + 1)
    return _resolve(ctx, job, index, OutputResult.failed(exc.as_job_error()))


def _edit_request(ctx: WorkerContext, job: Job, index: int) -> EditRequest:
    prepared = ctx.store.prepared_inputs(job.id)
    images = tuple(
        InputImage(data=ctx.blobs.get(prepared_key(job.id, meta.index)),
                   mime_type=p.mime_type if (p := prepared.get(meta.index)) else "image/png")
        for meta in job.inputs
    )
    return EditRequest(operation=job.operation, instruction=job.instruction, images=images,
                       image_description=job.image_description, output_index=index, model=job.model,
                       options=job.options)


def _count_usage(ctx: WorkerContext, job: Job, usage: Usage | None, cost: float | None) -> None:
    """Add the call to the owner's daily totals (GET /v1/usage); best effort: never fails the output."""
    if usage is None:
        return
    try:
        UsageLedger(ctx.redis, ctx.settings.redis_prefix, ctx.clock).record(job.owner, usage, cost)
    except Exception:
        log.warning("usage counters not updated", extra={"job_id": job.id}, exc_info=True)


def _cost(ctx: WorkerContext, job: Job, usage: Usage | None, images: int) -> float | None:
    """The call's estimated cost at the catalogue's prices (None without usage or for an unpriced model)."""
    if usage is None:
        return None
    spec = load_catalogue(ctx.settings.models_file).get(job.model)
    cost = estimate_cost_usd(spec, usage, images, job.options.image_size)
    for kind, tokens in (("prompt", usage.prompt_tokens), ("prompt_image", usage.prompt_image_tokens),
                         ("output", usage.output_tokens), ("output_image", usage.output_image_tokens),
                         ("thinking", usage.thinking_tokens)):
        if tokens:
            metrics.PROVIDER_TOKENS.labels(job.model, kind).inc(tokens)
    if cost:
        metrics.PROVIDER_COST_USD.labels(job.model).inc(cost)
        try:  # the health report's cost per hour (monitoring/spend.py); best effort
            SpendRecorder(ctx.redis, ctx.settings.redis_prefix, ctx.clock).record(job.model, cost)
        except Exception:
            log.warning("spend counters not updated", extra={"job_id": job.id}, exc_info=True)
    return cost


def _checked_output(raw: OutputImage, settings: Settings,
                    options: JobOptions) -> tuple[OutputImage, OutputResult | None, JobError | None]:
    """The provider's image bounded (bytes, pixels, long edge), converted when output_format asks for it and
    described: (image, its result, None), or (image, None, the output's error)."""
    image, refused = bound_output(raw, settings)
    if refused is None:
        image, refused = convert_output(image, options)
    if refused is not None:
        return image, None, refused
    return image, _output_meta(image.data, image.mime_type), None


def _output_meta(data: bytes, mime_type: str | None = None) -> OutputResult:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        width, height = im.size
        mime = mime_type or Image.MIME.get(im.format or "", "application/octet-stream")
    return OutputResult.succeeded(mime_type=mime, width=width, height=height, size=len(data),
                                  sha256=hashlib.sha256(data).hexdigest())


def _attempt(ctx: WorkerContext, job_id: str, index: int, n: int, outcome: str, duration_ms: int,
             at: float, code: str | None, *, usage: Usage | None = None, cost_usd: float | None = None,
             billed: bool = False) -> bool:
    """Record one provider call (attempts, billed count, monitoring); True if the client asked to cancel."""
    canceled = ctx.store.add_attempt(job_id, Attempt(output=index, n=n, outcome=outcome, at=rfc3339(at),
                                                     duration_ms=duration_ms, error_code=code, usage=usage,
                                                     cost_usd=cost_usd), billed=billed)
    ctx.recorder.provider_call(job_id, index, n, outcome=outcome, duration_s=duration_ms / 1000)
    metrics.PROVIDER_CALL_DURATION.labels(outcome).observe(duration_ms / 1000)
    return canceled


def _resolve(ctx: WorkerContext, job: Job, index: int, result: OutputResult) -> RetryLater | None:
    """Record output `index`'s final result; the caller that resolves the last output finalizes the job."""
    resolved = ctx.store.record_output(job.id, index, result)
    _maybe_finalize(ctx, job.id, resolved, job.num_images)
    return None


def _maybe_finalize(ctx: WorkerContext, job_id: str, resolved: int, total: int) -> None:
    if resolved >= total:
        finalize(ctx, job_id)


# -- finalize ---------------------------------------------------------------------------------------------
def finalize(ctx: WorkerContext, job_id: str, *, force: bool = False) -> bool:
    """The one terminal write from the outputs' results, once every output is resolved (or `force`, when no
    further output can arrive: canceled before generation, deadline passed). True if this call made it."""
    job = _load(ctx, job_id)
    if job is None or job.terminal:
        return False
    if not force and len(job.outputs) < job.num_images:
        return False
    now = ctx.clock.now()
    succeeded = job.outputs_with(OutputStatus.SUCCEEDED)
    failed = job.outputs_with(OutputStatus.FAILED)
    if job.canceling:
        status = JobStatus.CANCELED
        result = ctx.store.finish_canceled(job_id, generate_done_at=now)
    elif len(succeeded) == job.num_images:
        status = JobStatus.SUCCEEDED
        result = ctx.store.finish(job_id, status, generate_done_at=now)
        if result.ok:
            ctx.store.remember_result(job.request_hash, job_id, ctx.settings.cache_ttl_s)
    elif succeeded:
        status = JobStatus.PARTIALLY_SUCCEEDED
        result = ctx.store.finish(job_id, status, generate_done_at=now, error=failed[0].error if failed else None)
    else:
        status = JobStatus.FAILED
        error = (failed[0].error if failed else None) or job_error("internal_error", "no output was produced")
        result = ctx.store.finish(job_id, status, generate_done_at=now, error=error)
    if result.ok:  # ok: this call wrote `status`
        log.info("job finished", extra={"job_id": job_id, "status": status.value})
    return result.ok


def fail_job(ctx: WorkerContext, job_id: str, code: str, details: str) -> bool:
    """End a job with an error from outside the normal flow (poison message, time limit, crash)."""
    return ctx.store.fail(job_id, code, details)
