"""The OpenAPI 3.1 document of every route the API serves (docs/api.md), built from the live settings.

Hand-written rather than generated from the routes (e.g. apispec/flask-smorest): the routes are plain Flask
views and the contract is small, so a generator would add a framework for little gain. A test checks that
every rule in the app's url_map appears here with its methods, so the document cannot silently drift.
"""

from __future__ import annotations

from typing import Any

from api.intake import FROM_JOB_PATTERN
from api.jobs import CURSOR_PATTERN
from api.openapi_audit import audit_paths
from api.openapi_models import attempt_fields, job_fields, model_paths, model_schemas, option_fields
from api.openapi_ops import _admin_paths, _alert_paths, _metrics_paths
from api.openapi_parts import (
    _IMAGE_TYPES,
    _JOB_ID_PATTERN,
    _OUTPUT_TYPES,
    MAX_OUTPUTS,
    MAX_TEXT_CHARS,
    RATE_LIMIT_HEADER_DOCS,
    _headers,
    _json,
    _nullable,
    _obj,
    _op,
    _ref,
    _responses,
    with_rate_limit_headers,
)
from api.openapi_pools import pools_paths
from api.openapi_references import json_image_schema, multipart_counts, parent_schema
from api.openapi_series import series_paths
from api.openapi_waiting import with_waiting
from api.openapi_webhooks import webhook_paths
from api.version import VERSION
from shared.errors import all_codes
from shared.jobs.model import ATTEMPT_SUCCEEDED, OPERATIONS, STAGES, STATUSES, TERMINAL, WebhookState
from shared.limiter import REASONS as _LIMITER_REASONS
from shared.settings import Settings

WAIT_REASONS = [r for r in _LIMITER_REASONS if r != "granted"]


def _schemas(s: Settings) -> dict[str, Any]:
    job_error = _obj({"code": {"type": "string", "enum": all_codes()}, "message": {"type": "string"},
                      "details": {"type": "string"}, "suggestion": {"type": "string"},
                      "status_code": {"type": "integer", "description": "The HTTP status this code maps to."}},
                     description="A job's (or one output's) terminal error.")
    output = _obj({"index": {"type": "integer", "minimum": 0},
                   "url": {"type": "string", "description": "GET it for the image bytes."},
                   "mime_type": {"type": "string", "enum": list(_OUTPUT_TYPES)},
                   "width": {"type": "integer", "minimum": 1}, "height": {"type": "integer", "minimum": 1},
                   "bytes": {"type": "integer", "minimum": 0}})
    attempt = _obj({"output": {"type": "integer", "minimum": 0}, "n": {"type": "integer", "minimum": 1},
                    "outcome": {"type": "string", "examples": [ATTEMPT_SUCCEEDED, "rate_limited", "timeout"]},
                    "at": {"type": "string", "format": "date-time"},
                    "duration_ms": {"type": "integer", "minimum": 0},
                    "error_code": _nullable("string"), **attempt_fields()},
                   required=["output", "n", "outcome", "at", "duration_ms"],
                   description="One provider call for one output.")
    ms = _nullable("integer", minimum=0)
    job = _obj({
        "id": {"type": "string", "pattern": _JOB_ID_PATTERN},
        "status": {"type": "string", "enum": list(STATUSES),
                   "description": f"Terminal: {', '.join(sorted(TERMINAL))}. Clients must treat an unknown "
                                  "status as non-terminal (the list may grow)."},
        "operation": {"type": "string", "enum": list(OPERATIONS)},
        "num_images": {"type": "integer", "minimum": 1, "maximum": MAX_OUTPUTS},
        "created_at": {"type": "string", "format": "date-time"},
        "started_at": _nullable("string", format="date-time"),
        "finished_at": _nullable("string", format="date-time"),
        "expires_at": {"type": "string", "format": "date-time",
                       "description": f"Results are kept {s.job_ttl_s} s after submission; then 410."},
        "queue_position": _nullable("integer", minimum=1, description="1-based; null when not waiting."),
        "estimated_wait_s": _nullable("number", minimum=0, description="null when unknown."),
        "stage": {"type": "string", "enum": list(STAGES)},
        "waiting": {"anyOf": [_obj({
            "reason": {"type": "string", "enum": [*WAIT_REASONS, "circuit_open"],
                       "description": "model_hold: the model's per-day quota is used up until `until` (its reset, "
                                      "midnight Pacific); cooldown: the provider asked the fleet to pause; rpm, "
                                      "images_per_min, concurrency: our own limits; circuit_open: the provider "
                                      "is failing."},
            "until": _nullable("string", format="date-time",
                               description="When the wait is expected to end (a hint).")}), {"type": "null"}],
            "description": "Why the job waits; null unless stage is waiting_for_quota."},
        "progress": _obj({"outputs_done": {"type": "integer", "minimum": 0},
                          "outputs_total": {"type": "integer", "minimum": 1}}),
        "attempts": {"type": "array", "items": _ref("Attempt")},
        "timings": _obj({name: ms for name in ("queued_ms", "preprocess_ms", "generate_ms", "total_ms")}),
        "outputs": {"type": "array", "items": _ref("Output"), "description": "Outputs that succeeded."},
        "output_errors": {"type": "array", "description": "Outputs that failed, each with its error.",
                          "items": {"allOf": [_ref("JobError"),
                                              _obj({"index": {"type": "integer", "minimum": 0}})]}},
        "text": _nullable("string", description="Text the model returned alongside the image, if any."),
        "error": {"anyOf": [_ref("JobError"), {"type": "null"}]},
        "provider": {"type": "string", "examples": ["gemini", "local"]},
        "model": _nullable("string"),
        **job_fields(),
        "billed_provider_calls": {"type": "integer", "minimum": 0,
                                  "description": "Provider calls that were answered (and so billed)."},
        "cached_from": _nullable("string", description="Set when the outputs were reused from this earlier "
                                                       "identical job (no provider call)."),
        "webhook": {"anyOf": [_obj({"url": {"type": "string"},
                                    "state": {"type": "string", "enum": [s.value for s in WebhookState]},
                                    "attempts": {"type": "integer", "minimum": 0},
                                    "last_status": _nullable("integer"),
                                    "last_error": _nullable("string")}), {"type": "null"}],
                    "description": "Delivery state of the job's webhook; null without webhook_url."},
        "links": _obj({"self": {"type": "string"}, "cancel": {"type": "string"}}),
        "parents": {"type": "array", "items": _ref("ParentRef"),
                    "description": "Inputs taken from earlier outputs, in input order (empty: all uploaded)."},
        "lineage": {"type": "array", "items": parent_schema(lineage=True), "maxItems": 20,
                    "description": "Only on GET /v1/jobs/{job_id}: the ancestors, nearest first, following "
                                   "each job's first parent; at most 20, and it stops at an ancestor no longer "
                                   "available (expired)."},
    }, description="A job. New optional fields may be added; ignore unknown ones.")
    job["required"].remove("lineage")
    error = _obj({"error": {"type": "string", "description": "User-friendly message."},
                  "code": {"type": "string", "enum": all_codes(), "description": "Stable, machine-readable."},
                  "details": {"type": "string", "description": "Technical detail."},
                  "suggestion": {"type": "string", "description": "What the caller can do."},
                  "status_code": {"type": "integer", "minimum": 400, "maximum": 599}},
                 description="Every error from every route, including unknown routes and methods.")
    common = _submission_fields(s)
    json_image = json_image_schema(_obj({
        "data": {"type": "string", "contentEncoding": "base64", "pattern": _BASE64_PATTERN,
                 "description": "Standard base64 of the file bytes (a data: URL prefix is accepted)."},
        "mime_type": {"type": "string", "examples": list(_IMAGE_TYPES),
                      "description": "Informative; the type is detected from the bytes."}},
        required=["data"]))
    submission_json = {**_obj({**common, "images": {"type": "array", "items": _ref("JsonImage"), "minItems": 1,
                                                    "maxItems": s.max_images}},
                              required=["instruction", "images"], additionalProperties=False),
                       "allOf": _image_counts("images")}
    binary = {"type": "string", "contentMediaType": "application/octet-stream"}  # OpenAPI 3.1 file part
    submission_form = _obj({**common, "image": {
        "type": "array", "items": binary, "maxItems": s.max_images,
        "description": "Repeat the `image` file field once per image ('images' and 'image[]' are accepted "
                       "too). style_transfer: content first, then style. Images named by from_job come "
                       "first, then the uploaded ones."}, "from_job": {
        "type": "array", "items": {"type": "string", "pattern": FROM_JOB_PATTERN}, "maxItems": s.max_images,
        "description": "An earlier output of one of your jobs as an input, without re-uploading it: "
                       "`<job_id>` (its output 0) or `<job_id>:<n>`. Repeatable; these inputs come first, in "
                       "field order, then the `image` files. 422 invalid_reference when the job is unknown, "
                       "expired or another key's, or that output did not succeed."}},
        required=["instruction"], additionalProperties=False)
    submission_form["allOf"] = multipart_counts(s.max_images)
    readiness = _obj({"status": {"type": "string", "enum": ["ready"]},
                      "checks": {"type": "object", "additionalProperties": {"type": "object"},
                                 "description": "Only with ?detailed=true."}}, required=["status"])
    not_ready = {"allOf": [_ref("Error"), _obj(
        {"status": {"type": "string", "enum": ["not_ready"]},
         "failing": {"type": "array", "items": {"type": "string"}},
         "checks": {"type": "object", "additionalProperties": {"type": "object"}}},
        required=["status", "failing"])]}
    api_index = _obj({"name": {"type": "string"}, "version": {"type": "string"},
                      "description": {"type": "string"}, "provider": {"type": "string"},
                      "model": {"type": "string"}, "auth": {"type": "string", "enum": ["api_key", "off"]},
                      "operations": {"type": "array", "items": {"type": "string"}},
                      "statuses": {"type": "array", "items": {"type": "string"}},
                      "error_codes": {"type": "array", "items": {"type": "string"}},
                      "limits": {"type": "object"}, "links": {"type": "object"}})
    return {"Job": job, "JobList": _obj({"jobs": {"type": "array", "items": _ref("Job")},
                                         "next_cursor": _nullable("string", description="Pass as ?cursor= "
                                                                  "for the next page; null on the last.")}),
            "JobError": job_error, "Output": output, "Attempt": attempt, "Error": error,
            "JsonImage": json_image, "JobSubmissionJson": submission_json, "ParentRef": parent_schema(),
            "JobSubmissionMultipart": submission_form, "Readiness": readiness, "NotReady": not_ready,
            "ApiIndex": api_index, "Health": _obj({"status": {"type": "string", "enum": ["ok"]}}),
            **model_schemas()}


# Standard base64 in whole quanta (the last one may drop its padding), optionally behind a data: URL prefix: every
# string of this shape decodes (what it decodes to must then be an accepted image).
_BASE64_PATTERN = (r"^(data:[A-Za-z0-9.+-]+/[A-Za-z0-9.+-]+;base64,)?([A-Za-z0-9+/]{4})*"
                   r"([A-Za-z0-9+/]{2}(==)?|[A-Za-z0-9+/]{3}=?)?$")


# Text fields: no NUL or other C0 control (tab, newline and carriage return are fine), no U+FFFD (api/intake.py).
_CONTROLS = "\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f\\ufffd"
_TEXT = f"[^{_CONTROLS}]"


def _image_counts(field: str) -> list[dict[str, Any]]:
    """How many images each operation takes (api/intake.py `_check_counts`): compose ≥ 2, style_transfer = 2."""
    def when(operation: str, counts: dict[str, int]) -> dict[str, Any]:
        return {"if": {"properties": {"operation": {"const": operation}}, "required": ["operation"]},
                "then": {"properties": {field: counts}}}

    return [when("compose", {"minItems": 2}), when("style_transfer", {"minItems": 2, "maxItems": 2})]


def _submission_fields(s: Settings) -> dict[str, Any]:
    return {
        "instruction": {"type": "string", "minLength": 1, "maxLength": s.max_instruction_chars,
                        "pattern": f"^{_TEXT}*[^\\s{_CONTROLS}]{_TEXT}*$",
                        "description": "The edit to make, e.g. 'make it black and white'. Must not be blank."},
        "operation": {"type": "string", "enum": list(OPERATIONS), "default": "edit",
                      "description": "edit: 1..N images; compose: ≥ 2; style_transfer: exactly 2 "
                                     "(content, then style)."},
        "image_description": {"type": "string", "maxLength": MAX_TEXT_CHARS, "pattern": f"^{_TEXT}*$",
                              "description": "Optional description of the input image(s)."},
        "num_images": {"type": "integer", "minimum": 1, "maximum": MAX_OUTPUTS, "default": 1,
                       "description": "How many output images to generate."},
        "webhook_url": {"type": "string", "maxLength": 2048,
                        "anyOf": [{"format": "uri", "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://"}, {"maxLength": 0}],
                        "description": "Optional absolute http(s) URL called (signed) when the job finishes; "
                                       "empty means none. Only public addresses on port 80/443 (else 422 "
                                       "invalid_webhook_url)."},
        **option_fields(s),
    }


def _components(s: Settings) -> dict[str, Any]:
    return {
        "schemas": _schemas(s),
        "headers": {
            "X-Request-ID": {"description": "The request id (echoed from the request, or generated); quote it "
                                            "when reporting a problem.", "schema": {"type": "string"}},
            "Location": {"description": "The new job's URL.", "schema": {"type": "string"}},
            "Idempotent-Replayed": {"description": "`true` when the answer is the job an earlier request with "
                                                   "the same Idempotency-Key created.",
                                    "schema": {"type": "string", "enum": ["true"]}},
            "Retry-After": {"description": "Seconds to wait before retrying.",
                            "schema": {"type": "integer", "minimum": 0}},
            "ETag": {"description": "Strong validator of the output bytes (send as If-None-Match).",
                     "schema": {"type": "string"}},
            **RATE_LIMIT_HEADER_DOCS,
        },
        "parameters": {
            "XRequestIDHeader": {"name": "X-Request-ID", "in": "header", "required": False,
                                 "description": "Optional caller-chosen request id for logs: echoed only when "
                                                "it is 1-64 of A-Z a-z 0-9 . _ : - (any other value is "
                                                "accepted and replaced by a generated id).",
                                 "schema": {"type": "string"}},
            "JobId": {"name": "job_id", "in": "path", "required": True,
                      "description": "32 hex characters, as returned by POST /v1/jobs.",
                      "schema": {"type": "string", "pattern": _JOB_ID_PATTERN}},
        },
        "securitySchemes": {
            "bearerAuth": {"type": "http", "scheme": "bearer", "description": "`Authorization: Bearer <key>`."},
            "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key",
                             "description": "`X-API-Key: <key>` (alternative to the bearer header)."},
        },
    }


def _limits_text(s: Settings) -> str:
    return (f"Limits: at most {s.max_images} images per job, {s.max_image_bytes} bytes per image, "
            f"{s.max_image_pixels} pixels (width × height) per image, {s.max_request_bytes} bytes per request; "
            f"num_images 1..{MAX_OUTPUTS}; instruction ≤ {s.max_instruction_chars} and image_description ≤ "
            f"{MAX_TEXT_CHARS} characters; at most {s.max_frames} frames per image, {s.max_form_parts} multipart "
            f"parts, {s.max_json_bytes} bytes of JSON nested ≤ {s.max_json_depth} deep. "
            f"A job not finished within {s.job_deadline_s} s fails with deadline_exceeded; its results are kept "
            f"{s.job_ttl_s} s. Per API key (auth on; the keys file may set a key's own): "
            f"{s.key_submissions_per_min or 'unlimited'} submissions per minute (429 rate_limited) and "
            f"{s.key_max_waiting_jobs or 'unlimited'} jobs queued or running at once (429 too_many_jobs_waiting), "
            f"and a monthly budget of {f'{s.key_monthly_budget_usd:g} USD' if s.key_monthly_budget_usd else 'none'} "
            "of estimated spend (402 budget_exhausted before a job whose estimate would exceed it); "
            "jobs of different keys are scheduled round-robin.")


def _job_paths(s: Settings) -> dict[str, Any]:
    job_id = {"$ref": "#/components/parameters/JobId"}
    job_ok = _json("The job.", _ref("Job"))
    submit = _op(
        "submitJob", "jobs", "Submit an image-edit job",
        _responses({202: _json("Accepted: the job object.", _ref("Job"), "Location"),
                    200: _json("Idempotent replay: the job first created with this Idempotency-Key.", _ref("Job"),
                               "Location", "Idempotent-Replayed")},
                   400, 401, 402, 413, 415, 422, 429, 500, 503),
        description="Validates the request and every image, stores the inputs, writes the job and queues "
                    "it. Poll GET /v1/jobs/{job_id} until a terminal status, then download the outputs. "
                    + _limits_text(s),
        parameters=[{"name": "Idempotency-Key", "in": "header", "required": False,
                     "description": "Optional, 1-255 visible ASCII characters: retry-safe submission (same "
                                    "key and request: the original job, 200 with Idempotent-Replayed; same key, "
                                    "different request: 422 idempotency_key_reused).",
                     "schema": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,255}$"}}],
        requestBody={"required": True, "content": {
            "multipart/form-data": {"schema": _ref("JobSubmissionMultipart"),
                                    "encoding": {"image": {"contentType": ", ".join(_IMAGE_TYPES)}}},
            "application/json": {"schema": _ref("JobSubmissionJson")}}})
    listing = _op(
        "listJobs", "jobs", "List the caller's jobs, newest first",
        _responses({200: _json("A page of jobs.", _ref("JobList"))}, 400, 401, 500, 503),
        parameters=[
            {"name": "status", "in": "query", "required": False, "description": "Only jobs in this status.",
             "schema": {"type": "string", "enum": list(STATUSES)}},
            {"name": "limit", "in": "query", "required": False,
             "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}},
            {"name": "cursor", "in": "query", "required": False,
             "description": "next_cursor from the previous page, unchanged.",
             "schema": {"type": "string", "pattern": CURSOR_PATTERN}}])
    image_content = {t: {"schema": {"type": "string", "contentMediaType": t}} for t in _OUTPUT_TYPES}
    download = _op(
        "getJobOutput", "jobs", "Download one output image",
        _responses({200: {"description": "The image bytes.", "content": image_content,
                          "headers": _headers("ETag")},
                    304: {"description": "Not modified (If-None-Match matched the ETag).",
                          "headers": _headers("ETag")},
                    307: {"description": "Only when the operator set NANOEDIT_BLOB_REDIRECTS=1: fetch the image "
                                         "from the short-lived presigned object-store URL in Location (no API "
                                         "key needed there; it answers with the same type and file name).",
                          "headers": {**_headers("ETag"), "Location": {
                              "description": "Presigned URL of the image, valid NANOEDIT_BLOB_REDIRECT_TTL_S "
                                             "seconds (default 300).",
                              "schema": {"type": "string", "format": "uri"}}}}},
                   401, 404, 409, 410, 500, 503),
        description="409 while the output is not produced yet or when it failed (see output_errors). "
                    "503 storage_unavailable when the image storage cannot be reached.",
        parameters=[job_id,
                    {"name": "n", "in": "path", "required": True, "description": "Output index, 0-based.",
                     "schema": {"type": "integer", "minimum": 0, "maximum": MAX_OUTPUTS - 1}},
                    {"name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string"}}])
    return {
        "/v1/jobs": {"post": submit, "get": listing},
        "/v1/jobs/{job_id}": {
            "get": _op("getJob", "jobs", "Read a job: status, queue position, ETA, stage, outputs, error",
                       _responses({200: job_ok}, 401, 404, 410, 500, 503), parameters=[job_id]),
            "delete": _op("cancelJob", "jobs", "Cancel a job",
                          _responses({202: _json("Cancel accepted: the job, now canceled (it was queued) or "
                                                 "canceling (it was running).", _ref("Job"))},
                                     401, 404, 409, 410, 500, 503),
                          description="A canceled job never makes a provider call after the cancel is "
                                      "accepted. 409 when the job is already terminal.",
                          parameters=[job_id]),
        },
        "/v1/jobs/{job_id}/outputs/{n}": {"get": download},
    }


def _meta_paths() -> dict[str, Any]:
    ready_params = [{"name": "detailed", "in": "query", "required": False,
                     "description": "true adds each check's result.", "schema": {"type": "boolean"}},
                    {"name": "scope", "in": "query", "required": False,
                     "description": "service (default): Redis, a live worker per queue, beat. web: only what this "
                                    "web process needs to accept and answer (Redis): for load balancers.",
                     "schema": {"type": "string", "enum": ["service", "web"], "default": "service"}}]
    return {
        "/": {"get": _op("submitPage", "web", "The submit page (HTML): upload images, follow the job, download",
                         _responses({200: {"description": "The page.", "headers": _headers(),
                                           "content": {"text/html": {"schema": {"type": "string"}}}}}),
                         public=True)},
        "/dashboard": {"get": _op(
            "dashboardPage", "web", "The operator dashboard (HTML): queues, report, alerts, limits and circuit",
            _responses({200: {"description": "The page. It reads /v1/monitoring/*, /readyz and /v1/admin/*, which "
                                             "need the admin token when auth is on (the page asks for it).",
                              "headers": _headers(), "content": {"text/html": {"schema": {"type": "string"}}}}}),
            public=True)},
        "/v1": {"get": _op("apiIndex", "meta", "API metadata, limits and links",
                           _responses({200: _json("Metadata.", _ref("ApiIndex"))}, 500), public=True)},
        "/openapi.json": {"get": _op("openapi", "meta", "This OpenAPI 3.1 document",
                                     _responses({200: _json("The document.", {"type": "object"})}, 500),
                                     public=True)},
        "/healthz": {"get": _op("healthz", "health", "Liveness: the process answers",
                                _responses({200: _json("Alive.", _ref("Health"))}), public=True)},
        "/readyz": {"get": _op(
            "readyz", "health", "Readiness: Redis reachable, a live worker per queue, beat heartbeat",
            _responses({200: _json("Ready.", _ref("Readiness")),
                        503: _json("Not ready; `failing` names the failing checks.", _ref("NotReady"),
                                   "Retry-After")}, 400),
            parameters=ready_params, public=True)},
    }


def openapi_document(settings: Settings) -> dict[str, Any]:
    """The OpenAPI 3.1.0 document for this deployment (limits and auth reflect `settings`)."""
    auth_note = ("Auth is ON: send `Authorization: Bearer <key>` or `X-API-Key: <key>`."
                 if settings.auth_enabled else
                 "Auth is OFF on this deployment (NANOEDIT_API_KEYS unset): the key headers are optional and "
                 "every caller is 'anonymous'.")
    security: list[dict[str, list[str]]] = [{"bearerAuth": []}, {"apiKeyHeader": []}]
    if not settings.auth_enabled:
        security.append({})  # an empty requirement: no credentials needed
    return {
        "openapi": "3.1.0",
        "info": {"title": "nanoedit", "version": VERSION,
                 "description": "Queue-backed image editing with Gemini image models: submit a job, poll it, "
                                "download the outputs. Every error has the Error shape. " + auth_note},
        "servers": [{"url": settings.public_base_url or "/"}],
        "tags": [{"name": "jobs"}, {"name": "meta"}, {"name": "health"}],
        "security": security,
        "paths": with_rate_limit_headers({**with_waiting(_job_paths(settings)), **webhook_paths(), **_meta_paths(),
                                          **model_paths(), **_admin_paths(), **pools_paths(settings),
                                          **_metrics_paths(), **_alert_paths(), **audit_paths(),
                                          **series_paths()}),
        "components": _components(settings),
    }
