"""Operator routes under /v1/admin: the fleet limiter's limits (changed at run time, fleet-wide, stored in
Redis over the env defaults) and the provider circuit breaker (inspect, force open/closed).

All of them need the admin token when auth is on (NANOEDIT_API_KEYS or NANOEDIT_ADMIN_TOKEN set).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from api.audit import audit
from api.auth import require_admin
from api.bodies import OPERATOR_JSON_BYTES, read_json_object
from api.services import Services, services
from shared.errors import ClientInputError

bp = Blueprint("admin", __name__)

LIMIT_FIELDS = ("concurrency", "rpm", "images_per_min", "lease_s")
MAX_LIMIT_VALUE = 1e9  # beyond any real limit; keeps huge numbers away from float conversion and Redis


def _limits_body() -> dict[str, Any]:
    svc = services()
    state = svc.limiter.state()
    state["defaults"] = {f: getattr(svc.settings.limit_config(), f) for f in LIMIT_FIELDS}
    return state


def _config(svc: Services) -> dict[str, Any]:
    """The limits in force (for the audit log's before/after)."""
    return {f: getattr(svc.limiter.get_config(), f) for f in LIMIT_FIELDS}


@bp.get("/v1/admin/limits")
def get_limits() -> Response:
    require_admin(services().settings, request)
    return jsonify(_limits_body())


@bp.patch("/v1/admin/limits")
def patch_limits() -> Response:
    svc = services()
    require_admin(svc.settings, request)
    body = read_json_object(request, max_bytes=OPERATOR_JSON_BYTES, max_depth=svc.settings.max_json_depth,
                            empty_ok=True)
    if not body:
        raise ClientInputError("send a JSON object of limits to change", code="invalid_request",
                               suggestion='e.g. {"rpm": 120, "concurrency": 4}; null restores the default.')
    unknown = sorted(set(body) - set(LIMIT_FIELDS))
    if unknown:
        raise ClientInputError(f"unknown limit(s): {', '.join(unknown)}", code="invalid_request",
                               suggestion=f"Change any of: {', '.join(LIMIT_FIELDS)}.")
    for name, value in body.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                  or not -MAX_LIMIT_VALUE <= value <= MAX_LIMIT_VALUE):  # 400-digit ints too
            raise ClientInputError(f"{name} must be a number up to {MAX_LIMIT_VALUE:.0e}, or null",
                                   code="invalid_request", suggestion="Send numbers; null restores the env default.")
    before = _config(svc)
    try:
        svc.limiter.set_config(**body)
    except ValueError as exc:
        raise ClientInputError(str(exc)[:200], code="invalid_request",
                               suggestion="concurrency ≥ 1, rpm ≥ 0, images_per_min ≥ 0, lease_s > 0.") from None
    audit("limits.update", target="limits", before=before, after=_config(svc), details={"sent": body})
    return jsonify(_limits_body())


@bp.delete("/v1/admin/limits")
def reset_limits() -> Response:
    svc = services()
    require_admin(svc.settings, request)
    before = _config(svc)
    svc.limiter.reset_config()
    audit("limits.reset", target="limits", before=before, after=_config(svc))
    return jsonify(_limits_body())


@bp.get("/v1/admin/circuit")
def get_circuit() -> Response:
    svc = services()
    require_admin(svc.settings, request)
    return jsonify({**svc.breaker.state(), "history": svc.breaker.history(20)})


@bp.post("/v1/admin/circuit")
def force_circuit() -> Response:
    svc = services()
    require_admin(svc.settings, request)
    body = read_json_object(request, max_bytes=OPERATOR_JSON_BYTES, max_depth=svc.settings.max_json_depth,
                            empty_ok=True)
    state = body.get("state")
    if state not in ("open", "closed"):
        raise ClientInputError("state must be 'open' or 'closed'", code="invalid_request",
                               suggestion='Send {"state": "open"} to stop provider calls, {"state": "closed"} '
                                          "to resume.")
    before = svc.breaker.state().get("state")
    svc.breaker.force(str(state), reason=f"forced {state} by an operator via the API")
    audit("circuit.force", target="circuit", before={"state": before}, after={"state": str(state)})
    return jsonify({**svc.breaker.state(), "history": svc.breaker.history(20)})
