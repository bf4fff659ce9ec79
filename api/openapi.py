"""The OpenAPI 3.1 document of every route the API serves (design §4), built from the live settings.

Hand-written rather than generated from the routes (e.g. apispec/flask-smorest): the routes are plain Flask
views and the contract is small, so a generator would add a framework for little gain. A test checks that
every rule in the app's url_map appears here with its methods, so the document cannot silently drift.
"""

from __future__ import annotations

from typing import Any

from shared.errors import all_codes
from shared.jobs.model import OPERATIONS, STAGES, STATUSES, TERMINAL
from shared.settings import Settings

MAX_OUTPUTS = 4
MAX_TEXT_CHARS = 4000
_JOB_ID_PATTERN = "^[0-9a-f]{32}$"
_IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif", "image/bmp", "image/tiff", "image/heic",
                "image/heif")
_OUTPUT_TYPES = ("image/png", "image/jpeg", "image/webp")

# What each status code means on our routes; the body is always the Error schema.
_ERROR_TEXT = {
    400: "Invalid request (code invalid_request, missing_instruction, too_many_images, not_enough_images).",
    401: "Auth is on and no valid API key was presented (code unauthorized).",
    403: "A key was presented but may not use this route, e.g. not the admin token (code forbidden).",
    404: "Unknown job (or another key's job) or unknown output index (code not_found).",
    409: "Conflicts with the job's state (code conflict).",
    410: "The job expired and its data was deleted (code gone).",
    413: "Body or an image is over the byte limit (code payload_too_large or image_too_large).",
    415: "Not multipart/form-data or JSON, or an image format we do not accept (code unsupported_media_type).",
    422: "An image is corrupt or has too many pixels (image_corrupt, image_too_many_pixels), or the "
         "Idempotency-Key was used for a different request (idempotency_key_reused).",
    429: "Too many requests (code rate_limited); retry after Retry-After seconds.",
    500: "Unexpected failure (code internal_error); details name the request id.",
    503: "Redis or the queue is unreachable (code service_unavailable); retry after Retry-After seconds.",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(kind: str, **extra: Any) -> dict[str, Any]:
    return {"type": [kind, "null"], **extra}


def _obj(properties: dict[str, Any], required: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties, **extra}
    schema["required"] = list(properties) if required is None else required
    return schema


def _headers(*names: str) -> dict[str, Any]:
    return {name: {"$ref": f"#/components/headers/{name}"} for name in ("X-Request-ID", *names)}


def _json(description: str, schema: dict[str, Any], *headers: str) -> dict[str, Any]:
    return {"description": description, "headers": _headers(*headers),
            "content": {"application/json": {"schema": schema}}}


def _error(status: int) -> dict[str, Any]:
    headers = ("Retry-After",) if status in (429, 503) else ()
    return _json(_ERROR_TEXT[status], _ref("Error"), *headers)


def _responses(ok: dict[int, dict[str, Any]], *errors: int) -> dict[str, Any]:
    out: dict[str, Any] = {str(code): body for code, body in ok.items()}
    out.update({str(code): _error(code) for code in errors})
    out["default"] = _json("Any other failure (e.g. 405 on a method this route does not serve).", _ref("Error"))
    return out


def _op(op_id: str, tag: str, summary: str, responses: dict[str, Any], *, description: str = "",
        parameters: list[dict[str, Any]] | None = None, public: bool = False, **extra: Any) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": op_id, "tags": [tag], "summary": summary}
    if description:
        op["description"] = description
    op["parameters"] = [{"$ref": "#/components/parameters/XRequestIDHeader"}, *(parameters or [])]
    op.update(extra)
    op["responses"] = responses
    if public:
        op["security"] = []  # no API key needed, even when auth is on
    return op


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
                    "outcome": {"type": "string", "examples": ["succeeded", "rate_limited", "timeout"]},
                    "at": {"type": "string", "format": "date-time"},
                    "duration_ms": {"type": "integer", "minimum": 0},
                    "error_code": _nullable("string")},
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
        "billed_provider_calls": {"type": "integer", "minimum": 0,
                                  "description": "Provider calls that were answered (and so billed)."},
        "cached_from": _nullable("string", description="Set when the outputs were reused from this earlier "
                                                       "identical job (no provider call)."),
        "webhook": {"anyOf": [_obj({"url": {"type": "string"},
                                    "state": {"type": "string", "enum": ["pending", "retrying", "delivered",
                                                                         "failed"]},
                                    "attempts": {"type": "integer", "minimum": 0},
                                    "last_status": _nullable("integer"),
                                    "last_error": _nullable("string")}), {"type": "null"}],
                    "description": "Delivery state of the job's webhook; null without webhook_url."},
        "links": _obj({"self": {"type": "string"}, "cancel": {"type": "string"}}),
    }, description="A job (design §4). New optional fields may be added; ignore unknown ones.")
    error = _obj({"error": {"type": "string", "description": "User-friendly message."},
                  "code": {"type": "string", "enum": all_codes(), "description": "Stable, machine-readable."},
                  "details": {"type": "string", "description": "Technical detail."},
                  "suggestion": {"type": "string", "description": "What the caller can do."},
                  "status_code": {"type": "integer", "minimum": 400, "maximum": 599}},
                 description="Every error from every route, including unknown routes and methods.")
    common = _submission_fields()
    json_image = _obj({"data": {"type": "string", "contentEncoding": "base64",
                                "description": "Standard base64 of the file bytes (a data: URL prefix is "
                                               "accepted)."},
                       "mime_type": {"type": "string", "examples": list(_IMAGE_TYPES),
                                     "description": "Informative; the type is detected from the bytes."}},
                      required=["data"])
    submission_json = _obj({**common, "images": {"type": "array", "items": _ref("JsonImage"), "minItems": 1,
                                                 "maxItems": s.max_images}},
                           required=["instruction", "images"])
    binary = {"type": "string", "format": "binary", "contentMediaType": "application/octet-stream"}
    submission_form = _obj({**common, "image": {
        "type": "array", "items": binary, "minItems": 1, "maxItems": s.max_images,
        "description": "Repeat the `image` file field once per image ('images' and 'image[]' are accepted "
                       "too). style_transfer: content first, then style."}},
        required=["instruction", "image"])
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
            "JsonImage": json_image, "JobSubmissionJson": submission_json,
            "JobSubmissionMultipart": submission_form, "Readiness": readiness, "NotReady": not_ready,
            "ApiIndex": api_index, "Health": _obj({"status": {"type": "string", "enum": ["ok"]}})}


def _submission_fields() -> dict[str, Any]:
    return {
        "instruction": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT_CHARS,
                        "description": "The edit to make, e.g. 'make it black and white'. Must not be blank."},
        "operation": {"type": "string", "enum": list(OPERATIONS), "default": "edit",
                      "description": "edit: 1..N images; compose: ≥ 2; style_transfer: exactly 2 "
                                     "(content, then style)."},
        "image_description": {"type": "string", "maxLength": MAX_TEXT_CHARS,
                              "description": "Optional description of the input image(s)."},
        "num_images": {"type": "integer", "minimum": 1, "maximum": MAX_OUTPUTS, "default": 1,
                       "description": "How many output images to generate."},
        "webhook_url": {"type": "string", "format": "uri", "maxLength": 2048,
                        "description": "Optional absolute http(s) URL called (signed) when the job finishes."},
    }


def _components(s: Settings) -> dict[str, Any]:
    return {
        "schemas": _schemas(s),
        "headers": {
            "X-Request-ID": {"description": "The request id (echoed from the request, or generated); quote it "
                                            "when reporting a problem.", "schema": {"type": "string"}},
            "Location": {"description": "The new job's URL.", "schema": {"type": "string"}},
            "Retry-After": {"description": "Seconds to wait before retrying.",
                            "schema": {"type": "integer", "minimum": 0}},
            "ETag": {"description": "Strong validator of the output bytes (send as If-None-Match).",
                     "schema": {"type": "string"}},
        },
        "parameters": {
            "XRequestIDHeader": {"name": "X-Request-ID", "in": "header", "required": False,
                                 "description": "Optional caller-chosen request id (≤ 64 chars) for logs.",
                                 "schema": {"type": "string", "maxLength": 64}},
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
            f"num_images 1..{MAX_OUTPUTS}; instruction and image_description ≤ {MAX_TEXT_CHARS} characters. "
            f"A job not finished within {s.job_deadline_s} s fails with deadline_exceeded; its results are kept "
            f"{s.job_ttl_s} s.")


def _job_paths(s: Settings) -> dict[str, Any]:
    job_id = {"$ref": "#/components/parameters/JobId"}
    job_ok = _json("The job.", _ref("Job"))
    submit = _op(
        "submitJob", "jobs", "Submit an image-edit job",
        _responses({202: _json("Accepted: the job object.", _ref("Job"), "Location")},
                   400, 401, 413, 415, 422, 429, 500, 503),
        description="Validates the request and every image, stores the inputs, writes the job and queues "
                    "it. Poll GET /v1/jobs/{job_id} until a terminal status, then download the outputs. "
                    + _limits_text(s),
        parameters=[{"name": "Idempotency-Key", "in": "header", "required": False,
                     "description": "Optional. Accepted but currently without effect; reserved for "
                                    "retry-safe submission (same key and request: the original job; same "
                                    "key, different request: 422 idempotency_key_reused).",
                     "schema": {"type": "string", "maxLength": 255}}],
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
             "description": "next_cursor from the previous page, unchanged.", "schema": {"type": "string"}}])
    image_content = {t: {"schema": {"type": "string", "contentMediaType": t}} for t in _OUTPUT_TYPES}
    download = _op(
        "getJobOutput", "jobs", "Download one output image",
        _responses({200: {"description": "The image bytes.", "content": image_content,
                          "headers": _headers("ETag")},
                    304: {"description": "Not modified (If-None-Match matched the ETag).",
                          "headers": _headers("ETag")}},
                   401, 404, 409, 410, 500),
        description="409 while the output is not produced yet or when it failed (see output_errors).",
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
                     "description": "true adds each check's result.", "schema": {"type": "boolean"}}]
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
                                   "Retry-After")}),
            parameters=ready_params, public=True)},
    }


def _admin_paths() -> dict[str, Any]:
    admin = ("Operator route: needs the admin token (`Authorization: Bearer <NANOEDIT_ADMIN_TOKEN>` or "
             "`X-Admin-Token`) when auth is on.")
    state = {"type": "object", "additionalProperties": True}
    limits_body = {"type": "object", "additionalProperties": False, "properties": {
        name: {"type": ["number", "null"], "description": "null restores the env default"}
        for name in ("concurrency", "rpm", "images_per_min", "lease_s")}}
    circuit_body = {"type": "object", "required": ["state"],
                    "properties": {"state": {"type": "string", "enum": ["open", "closed"]}}}
    limits_ok = _responses({200: _json("Effective limits, overrides, leases, cooldown.", state)}, 400, 401, 403)
    circuit_ok = _responses({200: _json("Circuit state and recent transitions.", state)}, 400, 401, 403)
    return {
        "/v1/admin/limits": {
            "get": _op("getLimits", "admin", "Fleet limiter: effective limits and live state", limits_ok,
                       description=admin),
            "patch": _op("setLimits", "admin", "Change limits fleet-wide at run time (stored in Redis)",
                         limits_ok, description=admin,
                         requestBody={"required": True,
                                      "content": {"application/json": {"schema": limits_body}}}),
            "delete": _op("resetLimits", "admin", "Drop all overrides: env defaults apply again", limits_ok,
                          description=admin),
        },
        "/v1/monitoring/report": {
            "get": _op("getReport", "monitoring", "Beat health report: latest, history or a daily summary",
                       _responses({200: _json("The report (p50/p95/p99 are null below the minimum sample count).",
                                              state)}, 400, 401, 403, 404),
                       description=admin, parameters=[
                           {"name": "period", "in": "query", "required": False,
                            "schema": {"type": "string", "enum": ["latest", "daily", "history"]}},
                           {"name": "day", "in": "query", "required": False,
                            "schema": {"type": "string", "format": "date"}},
                           {"name": "since_s", "in": "query", "required": False,
                            "schema": {"type": "integer", "minimum": 0, "maximum": 86400}}])},
        "/v1/admin/circuit": {
            "get": _op("getCircuit", "admin", "Provider circuit breaker state and history", circuit_ok,
                       description=admin),
            "post": _op("forceCircuit", "admin", "Force the circuit open (stop provider calls) or closed",
                        circuit_ok, description=admin,
                        requestBody={"required": True,
                                     "content": {"application/json": {"schema": circuit_body}}}),
        },
    }


def _metrics_paths() -> dict[str, Any]:
    text = {"description": "Prometheus text exposition format 0.0.4.", "headers": _headers(),
            "content": {"text/plain": {"schema": {"type": "string"}}}}
    return {"/metrics": {"get": _op(
        "metrics", "monitoring", "Prometheus metrics: every web worker of this instance, plus fleet state",
        _responses({200: text}, 401, 403),
        description="HTTP, job and provider samples of this web instance's gunicorn workers (multiprocess "
                    "mode), plus queue depth and oldest age, live workers, limiter, circuit, beat heartbeat "
                    "and alerts read from Redis at scrape time. Worker instances serve their own samples on "
                    "NANOEDIT_METRICS_PORT. Operator route: needs the admin token when auth is on.")}}


def _alert_paths() -> dict[str, Any]:
    admin = ("Operator route: needs the admin token (`Authorization: Bearer <NANOEDIT_ADMIN_TOKEN>` or "
             "`X-Admin-Token`) when auth is on.")
    time = {"type": ["string", "null"], "format": "date-time"}
    alert = _obj({"id": {"type": "string", "description": "Rule name, or rule:queue for per-queue rules."},
                  "rule": {"type": "string"}, "group": {"type": "string"},
                  "severity": {"type": "string", "enum": ["low", "medium", "high", "critical"]},
                  "state": {"type": "string", "enum": ["pending", "firing", "resolved"]},
                  "episode": {"type": "string"}, "value": {}, "summary": {"type": "string"},
                  "fired_at": time, "resolved_at": time,
                  "acknowledged": {"type": ["object", "null"]}, "silenced_by": {"type": ["string", "null"]}},
                 required=["id", "rule", "group", "severity", "state"], additionalProperties=True)
    listing = _obj({"state": {"type": "string"}, "evaluated_at": time,
                    "evaluation_age_s": {"type": ["number", "null"],
                                         "description": "Seconds since the engine last evaluated: the "
                                                        "dead-man's signal (alert on it from outside)."},
                    "alerts": {"type": "array", "items": alert},
                    "events": {"type": "array", "items": {"type": "object"}}},
                   required=["state", "evaluated_at", "evaluation_age_s"])
    matchers = {"type": "object", "additionalProperties": {"type": "string"},
                "description": "Shell-style patterns; keys: alert, rule, group, severity, queue."}
    silence = _obj({"id": {"type": "string"}, "state": {"type": "string", "enum": ["pending", "active", "expired"]},
                    "matchers": matchers, "starts_at": time, "ends_at": time, "comment": {"type": "string"},
                    "created_by": {"type": "string"}, "created_at": time, "updated_at": time},
                   required=["id", "state", "matchers", "starts_at", "ends_at", "comment"],
                   additionalProperties=True)
    silence_body = {"type": "object", "properties": {
        "matchers": matchers, "comment": {"type": "string", "minLength": 1},
        "created_by": {"type": "string"}, "starts_at": {"type": "string", "format": "date-time"},
        "ends_at": {"type": "string", "format": "date-time"},
        "duration_s": {"type": "number", "exclusiveMinimum": 0, "description": "Instead of ends_at."}}}
    silence_id = [{"name": "silence_id", "in": "path", "required": True, "schema": {"type": "string"}}]
    silence_ok = _responses({200: _json("The silence.", silence)}, 400, 401, 403, 404)

    def body(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
        return {"required": required, "content": {"application/json": {"schema": schema}}}

    return {
        "/v1/monitoring/alerts": {"get": _op(
            "listAlerts", "monitoring", "Alerts firing now (or pending, all, or the history of events)",
            _responses({200: _json("Alerts, or history events (newest first) with every delivery attempt.",
                                   listing)}, 400, 401, 403),
            description=admin, parameters=[
                {"name": "state", "in": "query", "required": False,
                 "schema": {"type": "string", "enum": ["firing", "pending", "all", "history"],
                            "default": "firing"}},
                {"name": "limit", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}},
                {"name": "alert", "in": "query", "required": False, "description": "history of one alert id",
                 "schema": {"type": "string"}}])},
        "/v1/monitoring/alerts/{alert_id}/ack": {"post": _op(
            "ackAlert", "monitoring", "Acknowledge a firing alert: no more repeats this episode",
            _responses({200: _json("The alert with its acknowledgement.", alert)}, 400, 401, 403, 404, 409),
            description="The resolved message is still sent. A new firing episode needs a new ack. " + admin,
            parameters=[{"name": "alert_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            requestBody=body({"type": "object", "properties": {"by": {"type": "string"},
                                                               "comment": {"type": "string"}}}, False))},
        "/v1/monitoring/alerts/test": {"post": _op(
            "testAlertChannels", "monitoring", "Send a test notification to every configured channel",
            _responses({200: _json("The test notification and every delivery attempt per channel.",
                                   {"type": "object", "additionalProperties": True})}, 401, 403),
            description=admin)},
        "/v1/monitoring/silences": {
            "get": _op("listSilences", "monitoring", "Silences (pending, active and recently expired)",
                       _responses({200: _json("Silences, newest first.",
                                              _obj({"silences": {"type": "array", "items": silence}}))},
                                  401, 403), description=admin),
            "post": _op("createSilence", "monitoring", "Mute matching alerts for a while",
                        _responses({201: _json("The new silence.", silence, "Location")}, 400, 401, 403),
                        description="Silenced alerts still change state; nothing is sent for them. " + admin,
                        requestBody=body({**silence_body, "required": ["matchers", "comment"]})),
        },
        "/v1/monitoring/silences/{silence_id}": {
            "get": _op("getSilence", "monitoring", "One silence", silence_ok, description=admin,
                       parameters=silence_id),
            "patch": _op("updateSilence", "monitoring", "Extend, shorten or edit a silence", silence_ok,
                         description=admin, parameters=silence_id, requestBody=body(silence_body)),
            "delete": _op("deleteSilence", "monitoring", "Delete a silence (alerts notify again)", silence_ok,
                          description=admin, parameters=silence_id),
        },
    }


def openapi_document(settings: Settings) -> dict[str, Any]:
    """The OpenAPI 3.1.0 document for this deployment (limits and auth reflect `settings`)."""
    from api.meta import VERSION  # lazy: api.meta imports this module

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
        "paths": {**_job_paths(settings), **_meta_paths(), **_admin_paths(), **_metrics_paths(),
                  **_alert_paths()},
        "components": _components(settings),
    }
