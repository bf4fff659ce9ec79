"""Routes under /v1/jobs/{id}/webhooks: a job's webhook delivery with every attempt, and redelivery.

Owner-only like every job route (another key's job, or an unknown one, is 404). The delivery and its attempt log
live in the job outbox (shared/jobs/outbox.py); the worker side is workers/webhooks.py.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, jsonify

from api.jobs import _owned_job
from api.services import Services, services
from shared.clock import rfc3339
from shared.errors import Conflict, NotFound
from shared.jobs.model import Job, WebhookDelivery

log = logging.getLogger("nanoedit.api.webhooks")
bp = Blueprint("webhooks", __name__)


def _delivery_view(svc: Services, job: Job) -> dict[str, Any]:
    outbox = svc.store.webhooks
    d = outbox.delivery(job.id) or WebhookDelivery()
    self_url = f"{svc.settings.public_base_url}/v1/jobs/{job.id}/webhooks"
    return {
        "job_id": job.id,
        "url": job.webhook_url,
        "webhook_id": d.webhook_id or None,
        "state": d.state.value,
        "attempts": [a.to_dict() for a in outbox.attempts(job.id)],
        "next_attempt_at": None if d.state.final else rfc3339(d.next_attempt_at),
        "first_attempt_at": rfc3339(d.first_attempt_at),
        "links": {"self": self_url, "redeliver": f"{self_url}/redeliver", "job": f"/v1/jobs/{job.id}"},
    }


def _job_with_webhook(svc: Services, job_id: str) -> Job:
    job = _owned_job(svc, job_id)
    if not job.webhook_url:
        raise NotFound(f"job {job_id} has no webhook_url",
                       suggestion="Submit a job with webhook_url to have it delivered; otherwise poll "
                                  "GET /v1/jobs/{id}.")
    return job


@bp.get("/v1/jobs/<job_id>/webhooks")
def webhook_log(job_id: str) -> Response:
    svc = services()
    return jsonify(_delivery_view(svc, _job_with_webhook(svc, job_id)))


@bp.post("/v1/jobs/<job_id>/webhooks/redeliver")
def redeliver(job_id: str) -> tuple[Response, int]:
    svc = services()
    job = _owned_job(svc, job_id)
    if not job.webhook_url:
        raise Conflict(f"job {job_id} has no webhook_url", suggestion="Only a job submitted with webhook_url "
                                                                      "has a webhook to redeliver.")
    if not job.terminal:
        raise Conflict(f"job {job_id} is {job.status.value}; its webhook is sent when it finishes",
                       suggestion="Wait for a terminal status (poll GET /v1/jobs/{id}); the webhook is sent then.")
    svc.store.webhooks.redeliver(job_id, keep_until=job.expires_at)
    # The answer is the delivery as this request left it (pending): read before the fast path below, whose worker
    # may claim and even finish it before a later read (a race the e2e test hit on a loaded machine).
    view = _delivery_view(svc, job)
    try:  # fast path; the outbox entry is due now and beat's dispatcher sends it anyway
        svc.enqueuer.webhook(job_id)
    except Exception:
        log.warning("redeliver: enqueue failed; the dispatcher will send it", exc_info=True,
                    extra={"job_id": job_id})
    log.info("webhook redelivery requested", extra={"job_id": job_id})
    return jsonify(view), 202
