"""Building blocks of the OpenAPI document: shared constants, schema and response helpers.

Used by `api.openapi` (jobs, meta, schemas, the document) and `api.openapi_ops` (operator routes).
"""

from __future__ import annotations

from typing import Any

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
    402: "The job's estimated cost would take the key over its monthly budget (code budget_exhausted).",
    403: "A key was presented but may not use this route, e.g. not the admin token (code forbidden).",
    404: "Unknown job (or another key's job) or unknown output index (code not_found).",
    409: "Conflicts with the job's state (code conflict).",
    410: "The job expired and its data was deleted (code gone).",
    413: "Body or an image is over the byte limit (code payload_too_large or image_too_large).",
    415: "Not multipart/form-data or JSON, or an image format we do not accept (code unsupported_media_type).",
    422: "An image is corrupt or has too many pixels (image_corrupt, image_too_many_pixels), an input refers to "
         "an earlier output that cannot be used (invalid_reference), the webhook_url "
         "may not be called (invalid_webhook_url), or the Idempotency-Key was used for a different request "
         "(idempotency_key_reused).",
    429: "The key's submissions per minute are spent (code rate_limited) or too many of its jobs are queued or "
         "running (code too_many_jobs_waiting); retry after Retry-After seconds.",
    500: "Unexpected failure (code internal_error); details name the request id.",
    503: "Redis or the queue is unreachable (code service_unavailable), or the image storage is "
         "(code storage_unavailable); retry after Retry-After seconds.",
}


# On every /v1 response to a caller with an API key that has a submissions-per-minute limit (api/keylimits.py).
RATE_LIMIT_HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "RateLimit-Policy")
RATE_LIMIT_HEADER_DOCS: dict[str, Any] = {
    "RateLimit-Limit": {"description": "Submissions (POST /v1/jobs) this key may make per 60 s. Sent on every /v1 "
                                       "response to a keyed caller whose key has a limit.",
                        "schema": {"type": "integer", "minimum": 1}},
    "RateLimit-Remaining": {"description": "Submissions left in the current 60 s window (only POST /v1/jobs "
                                           "consumes; every attempt counts).",
                            "schema": {"type": "integer", "minimum": 0}},
    "RateLimit-Reset": {"description": "Seconds until one more submission is available (0: the full quota is).",
                        "schema": {"type": "integer", "minimum": 0}},
    "RateLimit-Policy": {"description": "The policy, e.g. `120;w=60` (120 per 60 s moving window).",
                         "schema": {"type": "string"}},
}


def with_rate_limit_headers(paths: dict[str, Any]) -> dict[str, Any]:
    """Add the RateLimit headers to every response of every operation under /v1 (in place; returns `paths`)."""
    for path, ops in paths.items():
        if path != "/v1" and not path.startswith("/v1/"):
            continue
        for op in ops.values():
            for response in op.get("responses", {}).values():
                headers = response.setdefault("headers", {})
                headers.update({name: {"$ref": f"#/components/headers/{name}"} for name in RATE_LIMIT_HEADERS})
    return paths


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
