"""The job object clients see (docs/api.md, "The job object"): built from the typed record, nothing else."""

from __future__ import annotations

from typing import Any

from shared.clock import rfc3339
from shared.jobs.model import Job, JobStage, OutputStatus, WebhookDelivery
from shared.jobs.options import Usage


def _ms(start: float | None, end: float | None) -> int | None:
    if start is None or end is None:
        return None
    return max(0, round((end - start) * 1000))


def _webhook_view(job: Job) -> dict[str, Any] | None:
    if not job.webhook_url:
        return None
    d = job.webhook_delivery or WebhookDelivery()
    return {"url": job.webhook_url, "state": d.state.value, "attempts": d.attempts,
            "last_status": d.last_status, "last_error": d.last_error or None}


def _usage_view(job: Job) -> dict[str, Any]:
    """Tokens summed over every provider call (retries and outputs included) and their estimated cost."""
    reported = [a.usage for a in job.attempts if a.usage is not None]
    costs = [a.cost_usd for a in job.attempts if a.cost_usd is not None]
    return {"usage": Usage.sum(reported).to_dict() if reported else None,
            "cost_usd": round(sum(costs), 6) if costs else None,
            "cost_is_estimate": True}


def _waiting_view(job: Job) -> dict[str, Any] | None:
    """Why a job in stage waiting_for_quota waits and until when (null in every other stage)."""
    if job.stage != JobStage.WAITING_FOR_QUOTA or not job.waiting_reason:
        return None
    return {"reason": job.waiting_reason, "until": rfc3339(job.waiting_until)}


def public_view(job: Job, *, base_url: str = "", queue_position: int | None = None,
                estimated_wait_s: float | None = None) -> dict[str, Any]:
    """The job as JSON: what GET /v1/jobs/{id} answers and what a webhook carries."""
    self_url = f"{base_url}/v1/jobs/{job.id}"
    outputs = []
    output_errors = []
    for index in sorted(job.outputs):
        o = job.outputs[index]
        if o.status == OutputStatus.SUCCEEDED:
            outputs.append({"index": index, "url": f"{self_url}/outputs/{index}", "mime_type": o.mime_type,
                            "width": o.width, "height": o.height, "bytes": o.bytes})
        elif o.error is not None:
            output_errors.append({"index": index, **o.error.to_dict()})
    return {
        "id": job.id,
        "status": job.status.value,
        "operation": job.operation,
        "num_images": job.num_images,
        "created_at": rfc3339(job.created_at),
        "started_at": rfc3339(job.started_at),
        "finished_at": rfc3339(job.finished_at),
        "expires_at": rfc3339(job.expires_at),
        "queue_position": queue_position,
        "estimated_wait_s": estimated_wait_s,
        "stage": job.stage.value,
        "waiting": _waiting_view(job),
        "progress": {"outputs_done": len(job.outputs), "outputs_total": job.num_images},
        "attempts": [a.to_dict() for a in job.attempts],
        "timings": {
            "queued_ms": _ms(job.created_at, job.started_at),
            "preprocess_ms": _ms(job.preprocess_started_at, job.preprocess_done_at),
            "generate_ms": _ms(job.preprocess_done_at, job.generate_done_at),
            "total_ms": _ms(job.created_at, job.finished_at),
        },
        "outputs": outputs,
        "output_errors": output_errors,
        "text": job.text,
        "error": job.error.to_dict() if job.error is not None else None,
        "provider": job.provider,
        "model": job.model or None,
        "model_requested": job.model_requested or None,
        "options": job.options.to_dict(),
        **_usage_view(job),
        "billed_provider_calls": job.billed_calls,
        "cached_from": job.cached_from or None,
        "parents": [{**p.to_dict(), "url": f"{base_url}/v1/jobs/{p.job_id}/outputs/{p.output}"} for p in job.parents],
        "webhook": _webhook_view(job),
        "links": {"self": self_url, "cancel": self_url},
    }
