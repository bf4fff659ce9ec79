"""Job webhooks: signed POSTs of finished jobs, sent from the outbox (shared/jobs/outbox.py) by the `webhooks` pool.

Payload: `{"type": "job.finished", "timestamp": RFC 3339, "data": <the job object>}`. Headers `webhook-id`
(`msg_{job_id}_{status}`: the same on every attempt and redelivery, so receivers de-duplicate), `webhook-timestamp`,
`webhook-signature` (Standard Webhooks, via the `standardwebhooks` library) with the **job owner's key's**
`webhook_secret` (NANOEDIT_API_KEYS_FILE), else NANOEDIT_WEBHOOK_SECRET: a receiver verifies with its own key's
secret, and another tenant's secret cannot sign (or verify) its events.

`deliver` makes at most one attempt: it claims the attempt in the outbox (none due, or another worker has it:
nothing to do), re-checks the URL with the outbound guard (shared/outbound.py: public addresses only, unless
allowed), POSTs to the checked address within NANOEDIT_WEBHOOK_TIMEOUT_S in all (shared/outbound_http.py), then
records the attempt and the next due time. Retried: no answer (timeout, connection or TLS error), a host that does
not resolve, 408, 429 and 5xx; anything else (3xx — redirects are not followed — and other 4xx, a refused
address) is final. Backoff: NANOEDIT_WEBHOOK_RETRY_BASE_S doubling per attempt, capped at
NANOEDIT_WEBHOOK_RETRY_CAP_S, with "equal jitter" (½..1 × that), until NANOEDIT_WEBHOOK_RETRY_HOURS after the first
attempt (and NANOEDIT_WEBHOOK_MAX_ATTEMPTS, when set). `dispatch` (beat, every NANOEDIT_WEBHOOK_DISPATCH_INTERVAL_S)
sends a task for every due delivery; the terminal hook's enqueue and a short retry's countdown are fast paths.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from standardwebhooks.webhooks import Webhook

from shared.clock import rfc3339
from shared.errors import NanoeditError
from shared.jobs.model import Job, WebhookAttempt, WebhookState
from shared.jobs.view import public_view
from shared.outbound import OutboundPolicy, Target, UrlRefused, check_url
from shared.outbound_http import HttpOutcome, post
from shared.queueing import WEBHOOKS_QUEUE
from workers.context import WorkerContext

log = logging.getLogger("nanoedit.webhooks")
USER_AGENT = "nanoedit-webhooks/1"
FAST_RETRY_MAX_S = 60.0  # a retry due within this is also sent as a Celery countdown (far below the visibility timeout)
LEASE_MARGIN_S = 10.0  # an attempt's lease: resolve + send timeout + this; then a dead sender's attempt is due again
DISPATCH_BATCH = 500

Sender = Callable[[Target, bytes, Mapping[str, str]], HttpOutcome]


def retry_delay(n: int, *, base_s: float, cap_s: float, rng: random.Random | None = None) -> float:
    """Seconds before the attempt after failed attempt `n` (1-based): base·2^(n−1) capped, times ½..1."""
    ceiling = min(cap_s, base_s * 2 ** min(max(0, n - 1), 60))
    return (rng or random).uniform(ceiling / 2, ceiling)


def signing_secret(ctx: WorkerContext, owner: str) -> str:
    """The job owner's key's webhook secret, else the deployment's (env-list keys and anonymous callers)."""
    key = ctx.keyring.by_owner(owner)
    return (key.webhook_secret if key is not None else "") or ctx.settings.webhook_secret


def lease_s(ctx: WorkerContext) -> float:
    s = ctx.settings
    return s.webhook_resolve_timeout_s + s.webhook_timeout_s + LEASE_MARGIN_S


def _payload(ctx: WorkerContext, job: Job, webhook_id: str, now: float) -> tuple[bytes, dict[str, str]] | None:
    secret = signing_secret(ctx, job.owner)
    if not secret:
        return None
    body = json.dumps({"type": "job.finished", "timestamp": rfc3339(now),
                       "data": public_view(job, base_url=ctx.settings.public_base_url)})
    signature = Webhook(secret).sign(webhook_id, datetime.fromtimestamp(now, tz=UTC), body)
    return body.encode(), {"Content-Type": "application/json", "User-Agent": USER_AGENT, "webhook-id": webhook_id,
                           "webhook-timestamp": str(int(now)), "webhook-signature": signature}


def deliver(ctx: WorkerContext, job_id: str, *, send: Sender | None = None, policy: OutboundPolicy | None = None,
            rng: random.Random | None = None) -> float | None:
    """Make the job's next webhook attempt if one is due. Returns seconds until the following attempt when that is
    soon (≤ FAST_RETRY_MAX_S: the caller may enqueue it with a countdown), else None."""
    s = ctx.settings
    outbox = ctx.store.webhooks
    claim = outbox.claim(job_id, lease_s(ctx))
    if claim is None:
        return None
    try:
        job = ctx.store.get(job_id)
    except NanoeditError:  # expired: nothing is owed any more
        job = None
    if job is None or not job.terminal or not job.webhook_url:
        outbox.forget(job_id)
        return None
    now = ctx.clock.now()
    started = ctx.clock.monotonic()
    status: int | None = None
    error = ""
    retryable = True
    duration_ms: int | None = None
    signed = _payload(ctx, job, claim.webhook_id, now)
    if signed is None:
        error, retryable = "no signing secret (set webhook_secret for the key or NANOEDIT_WEBHOOK_SECRET)", False
    else:
        try:
            target = check_url(job.webhook_url, policy or s.outbound_policy())
        except UrlRefused as exc:
            error, retryable = f"refused: {exc.details}", exc.retryable
        else:
            sender = send or (lambda t, b, h: post(t, b, h, timeout_s=s.webhook_timeout_s, clock=ctx.clock))
            outcome = sender(target, *signed)
            status, error, duration_ms = outcome.status, outcome.error, outcome.duration_ms
    delivered = status is not None and 200 <= status < 300
    if status is not None and not delivered:
        retryable = status in (408, 429) or status >= 500
        error = error or f"HTTP {status}"
    next_at: float | None = None
    if not delivered and retryable:
        next_at = now + retry_delay(claim.n, base_s=s.webhook_retry_base_s, cap_s=s.webhook_retry_cap_s, rng=rng)
        out_of_time = next_at > claim.first_attempt_at + s.webhook_retry_hours * 3600
        if out_of_time or (s.webhook_max_attempts and claim.n >= s.webhook_max_attempts):
            next_at = None
    state = WebhookState.DELIVERED if delivered else (
        WebhookState.RETRYING if next_at is not None else WebhookState.FAILED)
    if duration_ms is None:
        duration_ms = max(0, round((ctx.clock.monotonic() - started) * 1000))
    attempt = WebhookAttempt(n=claim.n, at=rfc3339(now), http_status=status, duration_ms=duration_ms, error=error,
                             state=state)
    outbox.record(claim, attempt, next_at)
    log.info("webhook attempt", extra={"job_id": job_id, "attempt": claim.n, "http_status": status,
                                       "state": state, "error": error, "duration_ms": duration_ms,
                                       "next_attempt_in_s": None if next_at is None else round(next_at - now, 1)})
    if next_at is not None and next_at - now <= FAST_RETRY_MAX_S:
        return max(0.0, next_at - now)
    return None


def dispatch(ctx: WorkerContext) -> dict[str, Any]:
    """Beat: one webhook task per due delivery in the outbox (the source of truth). Skipped while the webhooks
    queue already holds a full batch, so a stopped pool does not make the queue grow without bound."""
    if ctx.enqueuer.queue_depths().get(WEBHOOKS_QUEUE, 0) >= DISPATCH_BATCH:
        return {"dispatched": 0, "skipped": "backlog"}
    ids = ctx.store.webhooks.take_due(DISPATCH_BATCH, look_again_s=max(60.0, 2 * lease_s(ctx)))
    for job_id in ids:
        ctx.enqueuer.webhook(job_id, attempt=0)
    return {"dispatched": len(ids), "owed": ctx.store.webhooks.owed()}
