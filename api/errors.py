"""The single error handler: every failure from every route becomes the error body of docs/api.md#errors.

NanoeditError carries its own code/status/suggestion; werkzeug's HTTP errors (404 routing, 405, 413 body
limit, malformed requests) are mapped to our codes; anything else is a 500 `internal_error` whose details
name the request id, never the exception text or a stack trace.
"""

from __future__ import annotations

import logging

import redis
from flask import Flask, Response, g, jsonify
from werkzeug.exceptions import HTTPException

from shared.errors import NanoeditError

log = logging.getLogger("nanoedit.api")

_HTTP_CODES = {
    400: ("invalid_request", "The request is malformed."),
    401: ("unauthorized", None),
    403: ("forbidden", None),
    404: ("not_found", "No such route."),
    405: ("invalid_request", "This method is not allowed on this route."),
    406: ("invalid_request", "Cannot produce the requested content type."),
    409: ("conflict", None),
    410: ("gone", None),
    413: ("payload_too_large", None),
    415: ("unsupported_media_type", None),
    429: ("rate_limited", None),
}


def error_response(exc: NanoeditError) -> Response:
    resp = jsonify(exc.body())
    resp.status_code = exc.status
    if exc.retry_after_s and exc.status in (429, 503):
        resp.headers["Retry-After"] = str(int(exc.retry_after_s))
    return resp


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(NanoeditError)
    def _ours(exc: NanoeditError) -> Response:
        if exc.status >= 500:
            log.error("request failed", extra={"code": exc.code, "details": exc.details})
        return error_response(exc)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        status = exc.code or 500
        code, message = _HTTP_CODES.get(status, ("internal_error", None))
        suggestion = None
        details = exc.description or ""
        if status == 405:
            allowed = ", ".join(sorted(getattr(exc, "valid_methods", None) or []))
            suggestion = f"Use one of: {allowed}." if allowed else None
            details = f"allowed methods: {allowed}" if allowed else details
        if status == 404:
            details = "no route matches this URL"
        resp = error_response(NanoeditError(details, code=code, message=message, suggestion=suggestion,
                                            status=status))
        if status == 405 and getattr(exc, "valid_methods", None):
            resp.headers["Allow"] = ", ".join(getattr(exc, "valid_methods", None) or [])
        return resp

    @app.errorhandler(redis.ConnectionError)
    @app.errorhandler(redis.TimeoutError)
    def _redis_down(exc: Exception) -> Response:
        log.error("Redis unreachable", extra={"request_id": getattr(g, "request_id", ""),
                                              "error": type(exc).__name__})
        return error_response(NanoeditError("the job store (Redis) is unreachable", code="service_unavailable"))

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        request_id = getattr(g, "request_id", "")
        log.exception("unhandled error", extra={"request_id": request_id})
        return error_response(NanoeditError(f"request id {request_id}", code="internal_error"))
