"""OpenAPI paths of a job's webhook routes (api/webhooks.py): the delivery with its attempt log, and redelivery.
Split from `api.openapi` to keep each module small; the document is assembled there."""

from __future__ import annotations

from typing import Any

from api.openapi_parts import _json, _nullable, _obj, _op, _responses
from shared.jobs.model import WebhookState


def webhook_paths() -> dict[str, Any]:
    job_id = {"$ref": "#/components/parameters/JobId"}
    states = [s.value for s in WebhookState]
    attempt = _obj({"n": {"type": "integer", "minimum": 1, "description": "Attempt number (redeliveries keep "
                                                                          "counting)."},
                    "at": {"type": "string", "format": "date-time", "description": "When the attempt started."},
                    "http_status": _nullable("integer", description="The receiver's HTTP status; null when it "
                                                                    "did not answer."),
                    "duration_ms": {"type": "integer", "minimum": 0},
                    "error": _nullable("string", description="null on an HTTP answer; else timeout, "
                                                             "connection_error, tls_error, protocol_error, or why "
                                                             "the URL was refused."),
                    "state": {"type": "string", "enum": states, "description": "The delivery's state after this "
                                                                               "attempt."}},
                   description="One delivery attempt.")
    delivery = _obj({
        "job_id": {"type": "string"},
        "url": {"type": "string"},
        "webhook_id": _nullable("string", description="`webhook-id` of every attempt (msg_{job_id}_{status}); "
                                                      "null until the job finishes."),
        "state": {"type": "string", "enum": states},
        "attempts": {"type": "array", "items": attempt, "description": "Oldest first (the last 200)."},
        "next_attempt_at": _nullable("string", format="date-time",
                                     description="When the next attempt is due; null once delivered or failed."),
        "first_attempt_at": _nullable("string", format="date-time",
                                      description="Start of the retry window (NANOEDIT_WEBHOOK_RETRY_HOURS)."),
        "links": _obj({"self": {"type": "string"}, "redeliver": {"type": "string"}, "job": {"type": "string"}}),
    }, description="A job's webhook delivery.")
    return {
        "/v1/jobs/{job_id}/webhooks": {"get": _op(
            "getJobWebhook", "jobs", "A job's webhook delivery: state, every attempt, next attempt",
            _responses({200: _json("The delivery.", delivery)}, 401, 404, 410, 500, 503),
            description="404 also when the job was submitted without webhook_url.", parameters=[job_id])},
        "/v1/jobs/{job_id}/webhooks/redeliver": {"post": _op(
            "redeliverJobWebhook", "jobs", "Send a finished job's webhook again (same webhook-id)",
            _responses({202: _json("Redelivery queued: the delivery, now pending.", delivery)},
                       401, 404, 409, 410, 500, 503),
            description="Starts a new retry window. 409 when the job has not finished or has no webhook_url.",
            parameters=[job_id])},
    }
