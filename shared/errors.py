"""The error family: every failure that reaches a client carries its public code, HTTP status and suggestion.

One root (`NanoeditError`) with three families under it: `ClientInputError` (4xx, raised while validating a
request), `JobFailure` (a job's terminal error, stored in `job.error` as a `JobError` record) and
`ConfigError` (a bad configuration value or file, raised at start-up). The API's single error handler turns any
of them into the error body (docs/api.md#errors); nothing else builds that body. `details` is technical but never
`str(exception)` of a third-party error (it could carry keys or internals).

Each row also says who an outcome with that code is charged to (`Blame`; docs/alerts.md, "Whose failure: the
honest error budget"): the error budget and the error-rate alerts count `service` failures only, never `caller`
ones or cancels. The column is required, so a new code cannot be added without deciding.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from shared.jobs.model import JobError


class Blame(StrEnum):
    """Whose failure an outcome with this code is (docs/alerts.md, "Whose failure: the honest error budget")."""

    SERVICE = "service"  # the service or its provider failed: counts against the error budget
    CALLER = "caller"  # the request could not succeed as sent (input, content, limits): reported beside it
    CANCELED = "canceled"  # the client withdrew the job: neither a success nor a failure


SERVICE, CALLER, CANCELED = Blame.SERVICE, Blame.CALLER, Blame.CANCELED


@dataclass(frozen=True, slots=True)
class ErrorSpec:
    """Public facts about one error code."""

    code: str
    status: int
    blame: Blame
    message: str
    suggestion: str
    retry_after_s: int | None = None


_SPECS: dict[str, ErrorSpec] = {
    spec.code: spec
    for spec in (
        ErrorSpec("invalid_request", 400, CALLER, "The request is not valid.",
                  "Check the request against GET /openapi.json and try again."),
        ErrorSpec("missing_instruction", 400, CALLER, "An instruction is required.",
                  "Send a non-blank 'instruction' field describing the edit, e.g. 'make it black and white'."),
        ErrorSpec("too_many_images", 400, CALLER, "Too many images for this operation.",
                  "Send 1..N images for 'edit', ≥ 2 for 'compose' and exactly 2 (content, style) for "
                  "'style_transfer'."),
        ErrorSpec("not_enough_images", 400, CALLER, "Not enough images for this operation.",
                  "Attach at least one image ('image' file field or JSON 'images'); 'compose' needs ≥ 2 and "
                  "'style_transfer' exactly 2 (content first, then style)."),
        ErrorSpec("unsupported_media_type", 415, CALLER, "This file is not an image format we accept.",
                  "Send PNG, JPEG, WebP, GIF, BMP, TIFF or HEIC/HEIF; the type is detected from the bytes, "
                  "not the file name."),
        ErrorSpec("image_corrupt", 422, CALLER, "The image could not be decoded.",
                  "The file looks truncated or damaged: re-export or re-upload the original image."),
        ErrorSpec("image_too_large", 413, CALLER, "The image file is too large.",
                  "Compress or downscale the image below the byte limit and retry."),
        ErrorSpec("image_too_many_pixels", 422, CALLER, "The image has too many pixels.",
                  "Downscale the image below the pixel limit (width × height) and retry."),
        ErrorSpec("image_too_many_frames", 422, CALLER, "The image has too many frames or pages.",
                  "Send a still image, or an animation/multi-page file with fewer frames; only the first frame "
                  "is edited."),
        ErrorSpec("payload_too_large", 413, CALLER, "The request body is too large.",
                  "Send fewer or smaller images in one request."),
        ErrorSpec("misdirected_request", 421, CALLER, "This server does not answer for that host name.",
                  "Call the service by a name it is configured for (NANOEDIT_ALLOWED_HOSTS or "
                  "NANOEDIT_PUBLIC_BASE_URL), e.g. http://127.0.0.1:8000."),
        ErrorSpec("unauthorized", 401, CALLER, "A valid API key is required.",
                  "Send 'Authorization: Bearer <key>' or 'X-API-Key: <key>' with a key issued to you."),
        ErrorSpec("forbidden", 403, CALLER, "You may not access this resource.",
                  "Use the key that created the job, or the admin token for monitoring routes."),
        ErrorSpec("not_found", 404, CALLER, "Not found.",
                  "Check the URL and the job id; GET /v1 lists the routes."),
        ErrorSpec("gone", 410, CALLER, "This job has expired and its data was deleted.",
                  "Submit the job again; results are kept until the job's expires_at."),
        ErrorSpec("conflict", 409, CALLER, "The request conflicts with the job's current state.",
                  "GET the job to see its status; a finished job cannot be canceled."),
        ErrorSpec("rate_limited", 429, CALLER, "Too many requests.", "Wait for Retry-After seconds and retry.",
                  retry_after_s=5),
        ErrorSpec("too_many_jobs_waiting", 429, CALLER, "Too many of your jobs are waiting.",
                  "Wait for some of your jobs to finish (poll them, or retry after Retry-After seconds), or cancel "
                  "jobs you no longer need, then submit again.", retry_after_s=5),
        ErrorSpec("budget_exhausted", 402, CALLER, "This key's monthly budget would be exceeded.",
                  "Wait for the next month (UTC), ask the operator to raise the key's monthly_budget_usd, or submit "
                  "a cheaper job (fewer images, a smaller image_size or a cheaper model; see GET /v1/usage and "
                  "GET /v1/models)."),
        ErrorSpec("invalid_webhook_url", 422, CALLER, "This webhook_url cannot be called.",
                  "Use an http(s) URL on port 80 or 443 whose host resolves only to public internet addresses "
                  "(no user:password@); operators allow internal receivers with NANOEDIT_WEBHOOK_ALLOW_HOSTS."),
        ErrorSpec("unknown_field", 422, CALLER, "The request has a field this API does not accept.",
                  "Send only the documented fields (listed in this error's suggestion and GET /openapi.json)."),
        ErrorSpec("invalid_reference", 422, CALLER, "An input refers to an earlier output that cannot be used.",
                  "Refer to a succeeded output of one of your own jobs that has not expired "
                  "(GET /v1/jobs/{id} lists its outputs), or upload the image instead."),
        ErrorSpec("invalid_option", 422, CALLER, "This option is not accepted by the chosen model.",
                  "Use a value GET /v1/models lists for the model (model, aspect_ratio, image_size, "
                  "thinking_level)."),
        ErrorSpec("model_retired", 422, CALLER, "This model was shut down and has no replacement.",
                  "Choose a current model from GET /v1/models, or leave 'model' out for the default."),
        ErrorSpec("idempotency_key_reused", 422, CALLER, "This Idempotency-Key was used for a different request.",
                  "Use a new Idempotency-Key for a new request, or resend exactly the original request."),
        # Worker pools (operators: GET /v1/admin/workers, POST /v1/admin/workers/scale; monitoring/pools.py).
        ErrorSpec("unknown_queue", 422, CALLER, "There is no such queue.",
                  "Use one of: preprocess, generate, maintenance, webhooks (GET /v1/admin/workers lists them)."),
        ErrorSpec("invalid_scale", 422, CALLER, "The pool change is out of range.",
                  'Send a whole number delta from -32 to 32, not 0, e.g. {"queue": "generate", "delta": 2}; '
                  "repeat for more."),
        ErrorSpec("no_live_workers", 409, SERVICE, "No worker instance consuming this queue answered.",
                  "Start an instance of the queue's Procfile line (or check the workers are up: nanoedit "
                  "workers), then retry."),
        ErrorSpec("pool_not_resizable", 409, CALLER, "This queue's worker pool cannot grow or shrink at run time.",
                  "A threads or solo pool has a fixed size: change its -c (e.g. NANOEDIT_WEBHOOK_CONCURRENCY) and "
                  "restart it, or start another instance."),
        ErrorSpec("pool_limit", 409, CALLER, "The pools cannot change that far.",
                  "Every instance keeps 1 to NANOEDIT_POOL_MAX_PROCESSES (64) processes: change by less, or start "
                  "or stop an instance instead."),
        ErrorSpec("service_unavailable", 503, SERVICE, "The service is temporarily unavailable.",
                  "Retry after Retry-After seconds; if it persists, contact the operators.", retry_after_s=5),
        ErrorSpec("storage_unavailable", 503, SERVICE, "The image storage is temporarily unavailable.",
                  "Retry after Retry-After seconds; if it persists, contact the operators (the blob store, "
                  "NANOEDIT_BLOB_URL, is unreachable or refuses access).", retry_after_s=5),
        # Job errors (job.error); status is what the job endpoint would answer if surfaced directly.
        # Blame: the model answered a blocked or imageless reply to what was asked (the local provider's "no
        # instruction it understands" is one), so those are the caller's; the model's quota is the service's
        # capacity, so upstream_rate_limited is the service's, like every timeout, outage and bug of ours.
        ErrorSpec("content_blocked", 422, CALLER, "The model declined this request for safety reasons.",
                  "Rephrase the instruction or use a different image; blocked requests are not retried."),
        ErrorSpec("no_image_generated", 422, CALLER, "The model did not return an image.",
                  "Make the instruction more explicit about the image you want and retry."),
        ErrorSpec("upstream_rate_limited", 429, SERVICE, "The image model's quota was exhausted.",
                  "Retry later; the service already retried within its deadline.", retry_after_s=60),
        ErrorSpec("upstream_timeout", 504, SERVICE, "The image model did not answer in time.",
                  "Retry the job; simpler instructions and smaller images answer faster."),
        ErrorSpec("upstream_unavailable", 503, SERVICE, "The image model is unavailable.",
                  "Retry the job in a few minutes.", retry_after_s=30),
        ErrorSpec("upstream_auth_error", 502, SERVICE, "The service could not authenticate with the image model.",
                  "This is a service configuration problem: contact the operators."),
        ErrorSpec("model_unavailable", 502, SERVICE, "The configured image model is not available.",
                  "This is a service configuration problem: contact the operators."),
        ErrorSpec("deadline_exceeded", 504, SERVICE, "The job did not finish before its deadline.",
                  "Retry the job; if it keeps happening the service is overloaded."),
        ErrorSpec("canceled", 409, CANCELED, "The job was canceled.", "Submit a new job if you still need the result."),
        ErrorSpec("output_too_large", 502, SERVICE,
                  "The image model returned an image over this service's output limits.",
                  "Retry the job, or ask for a smaller result; the limits are in GET /v1 (limits)."),
        ErrorSpec("internal_error", 500, SERVICE, "Something went wrong on our side.",
                  "Retry; if it persists, contact the operators with the request id."),
    )
}

def spec_for(code: str) -> ErrorSpec:
    """The spec of a code; unknown codes fall back to internal_error so a typo never leaks a 200."""
    return _SPECS.get(code, _SPECS["internal_error"])


def all_codes() -> list[str]:
    return sorted(_SPECS)


def blame_of(code: str) -> Blame:
    """Who a job that ended with `code` is charged to; a code missing from the table is ours (internal_error)."""
    return spec_for(code).blame


class NanoeditError(Exception):
    """Root of every error we raise on purpose."""

    code = "internal_error"

    def __init__(self, details: str = "", *, code: str | None = None, message: str | None = None,
                 suggestion: str | None = None, status: int | None = None,
                 retry_after_s: int | None = None) -> None:
        if code is not None:
            self.code = code
        spec = spec_for(self.code)
        self.details = details
        self.message = message or spec.message
        self.suggestion = suggestion or spec.suggestion
        self.status = status or spec.status
        self.retry_after_s = retry_after_s if retry_after_s is not None else spec.retry_after_s
        super().__init__(f"{self.code}: {details or self.message}")

    def body(self) -> dict[str, Any]:
        """The error body (docs/api.md#errors)."""
        return {"error": self.message, "code": self.code, "details": self.details,
                "suggestion": self.suggestion, "status_code": self.status}


class ClientInputError(NanoeditError):
    """A request we refuse (4xx); nothing was stored or enqueued."""

    code = "invalid_request"


class NotFound(NanoeditError):
    code = "not_found"


class Gone(NanoeditError):
    code = "gone"


class Conflict(NanoeditError):
    code = "conflict"


class BlobStoreUnavailable(NanoeditError):
    """The blob store could not be reached or refused the request (endpoint down, timeout, access denied).

    Raised by a blob store backend in place of its library's errors, so the API answers 503 with the error body
    and a worker treats it as transient (workers/tasks.py); a missing key is `FileNotFoundError`, not this.
    """

    code = "storage_unavailable"


class ConfigError(NanoeditError, ValueError):
    """A configuration value or file is malformed; raised at start-up (or when an operator changes it) so a bad
    deploy fails loudly. The root of every config error: settings, alert rules and channels, the fake Gemini.

    Also a `ValueError` (what these errors were before the family existed), so `except ValueError` callers keep
    working. `str()` is the bare details, written for the operator reading start-up output; a config error that
    reaches a client is an `internal_error`."""

    code = "internal_error"

    def __str__(self) -> str:
        return self.details


class JobFailure(NanoeditError):
    """A job's terminal error raised as an exception; `as_job_error()` is the record stored in job.error."""

    def as_job_error(self) -> JobError:
        return JobError(code=self.code, message=self.message, details=self.details,
                        suggestion=self.suggestion, status_code=self.status)


def job_error(code: str, details: str = "", suggestion: str | None = None) -> JobError:
    """Build a job.error record for `code` without raising."""
    return JobFailure(details, code=code, suggestion=suggestion).as_job_error()
