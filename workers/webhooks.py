"""Job webhooks: one signed POST per finished job (Standard Webhooks, via the `standardwebhooks` library).

Payload: `{"type": "job.finished", "timestamp": RFC 3339, "data": <the job object>}`. Headers `webhook-id`
(stable per job and status, so receivers de-duplicate retries), `webhook-timestamp`, `webhook-signature`.
Delivery is retried with backoff on network errors, timeouts, 408/429 and 5xx, up to
NANOEDIT_WEBHOOK_MAX_ATTEMPTS; other 4xx answers are final. The outcome is kept beside the job record (the record
itself never changes after its terminal write) and shown as `job.webhook`.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import requests
from standardwebhooks.webhooks import Webhook

from shared.clock import rfc3339
from shared.jobs.model import WebhookDelivery, WebhookState
from shared.jobs.view import public_view
from workers.context import WorkerContext
from workers.pipeline import RetryLater
from workers.retry import backoff_delay

log = logging.getLogger("nanoedit.webhooks")
USER_AGENT = "nanoedit-webhooks/1"


def deliver(ctx: WorkerContext, job_id: str, attempt: int,
            session: requests.Session | None = None) -> RetryLater | None:
    job = ctx.store.get(job_id)
    if job is None or not job.terminal or not job.webhook_url:
        return None
    if job.webhook_delivery is not None and job.webhook_delivery.state.final:
        return None
    now = ctx.clock.now()
    body = json.dumps({"type": "job.finished", "timestamp": rfc3339(now),
                       "data": public_view(job, base_url=ctx.settings.public_base_url)})
    msg_id = f"msg_{job_id}_{job.status}"
    ts = datetime.fromtimestamp(now, tz=UTC)
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, "webhook-id": msg_id,
               "webhook-timestamp": str(int(now)),
               "webhook-signature": Webhook(ctx.settings.webhook_secret).sign(msg_id, ts, body)}
    status: int | None = None
    error = ""
    try:
        resp = (session or requests).post(job.webhook_url, data=body.encode(), headers=headers,
                                          timeout=ctx.settings.webhook_timeout_s, allow_redirects=False)
        status = resp.status_code
    except requests.RequestException as exc:
        error = type(exc).__name__
    delivered = status is not None and 200 <= status < 300
    retryable = status is None or status in (408, 429) or status >= 500
    final = delivered or not retryable or attempt >= ctx.settings.webhook_max_attempts
    state = WebhookState.DELIVERED if delivered else (WebhookState.FAILED if final else WebhookState.RETRYING)
    ctx.store.record_webhook_attempt(job_id, WebhookDelivery(
        state=state, attempts=attempt, last_status=status,
        last_error=error or (f"HTTP {status}" if not delivered else ""), last_at=now), keep_until=job.expires_at)
    log.info("webhook attempt", extra={"job_id": job_id, "attempt": attempt, "http_status": status,
                                       "state": state, "error": error})
    if final:
        return None
    return RetryLater(countdown=backoff_delay(attempt, base_s=2.0, cap_s=float(ctx.settings.max_countdown_s)),
                      attempt=attempt + 1)
