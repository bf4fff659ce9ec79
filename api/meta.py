"""GET /v1 (API metadata and links, like the seed's GET endpoint) and GET /openapi.json."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from api.openapi import openapi_document
from api.services import services
from api.version import VERSION
from shared.errors import all_codes
from shared.jobs.model import OPERATIONS, STATUSES

bp = Blueprint("meta", __name__)


@bp.get("/v1")
def api_index() -> Response:
    svc = services()
    s = svc.settings
    return jsonify({
        "name": "nanoedit",
        "version": VERSION,
        "description": "Queue-backed image editing with Gemini image models: submit a job, poll it, download.",
        "provider": s.provider,
        "model": s.gemini_model if s.provider == "gemini" else "local",
        "auth": "api_key" if s.auth_enabled else "off",
        "operations": list(OPERATIONS),
        "statuses": list(STATUSES),
        "error_codes": all_codes(),
        "limits": {"max_images": s.max_images, "max_image_bytes": s.max_image_bytes,
                   "max_image_pixels": s.max_image_pixels, "max_request_bytes": s.max_request_bytes,
                   "num_images": [1, 4], "job_ttl_s": s.job_ttl_s, "job_deadline_s": s.job_deadline_s,
                   "max_instruction_chars": s.max_instruction_chars, "max_frames": s.max_frames,
                   "max_form_parts": s.max_form_parts, "max_form_field_bytes": s.max_form_field_bytes,
                   "max_json_bytes": s.max_json_bytes, "max_json_depth": s.max_json_depth,
                   "max_output_bytes": s.max_output_bytes, "max_output_pixels": s.max_output_pixels,
                   "max_output_long_edge": s.max_output_long_edge},
        "links": {"openapi": "/openapi.json", "jobs": "/v1/jobs", "health": "/healthz", "ready": "/readyz"},
    })


@bp.get("/openapi.json")
def openapi() -> Response:
    return jsonify(openapi_document(services().settings))
