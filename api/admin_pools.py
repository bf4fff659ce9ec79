"""Operator routes for the worker pools: `GET /v1/admin/workers` (every queue's instances, slots and busy work,
with the fleet cap beside the generate pool) and `POST /v1/admin/workers/scale` (grow or shrink a queue's pools at
run time). The rules live in monitoring/pools.py; this module parses, authorizes and renders.

Both need the admin token when auth is on, like every /v1/admin route (api/admin.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import kombu.exceptions
import redis
from flask import Blueprint, Response, current_app, jsonify, request

from api.audit import audit
from api.auth import require_admin
from api.bodies import OPERATOR_JSON_BYTES, read_json_object
from api.services import services
from monitoring.pools import CeleryControl, FleetPools, PoolControl
from shared.errors import ClientInputError, NanoeditError
from shared.queueing import make_celery

bp = Blueprint("admin_pools", __name__)

SCALE_FIELDS = ("queue", "delta")
CONTROL_KEY = "nanoedit.pool_control"  # app.extensions: the PoolControl (tests put a ScriptedControl there)


def _control() -> PoolControl:
    """The app's remote control, made on first use (one Celery app per web process, only if pools are asked)."""
    control: PoolControl | None = current_app.extensions.get(CONTROL_KEY)
    if control is None:
        control = CeleryControl(make_celery(services().settings))
        current_app.extensions[CONTROL_KEY] = control
    return control


def _pools() -> FleetPools:
    svc = services()
    return FleetPools(_control(), svc.liveness(), svc.clock, max_processes=svc.settings.pool_max_processes)


def _guarded(call: Callable[[], Any]) -> Any:
    """Run a remote-control call; a broker that cannot be reached is a 503, not a 500."""
    try:
        return call()
    except (redis.RedisError, kombu.exceptions.OperationalError, OSError):
        raise NanoeditError("the broker did not answer the remote-control broadcast",
                            code="service_unavailable") from None


@bp.get("/v1/admin/workers")
def get_workers() -> Response:
    svc = services()
    require_admin(svc.settings, request)
    cap = svc.limiter.get_config().concurrency
    return jsonify(_guarded(lambda: _pools().view(cap)).to_json())


@bp.post("/v1/admin/workers/scale")
def scale_workers() -> Response:
    svc = services()
    require_admin(svc.settings, request)
    body = read_json_object(request, max_bytes=OPERATOR_JSON_BYTES, max_depth=svc.settings.max_json_depth)
    unknown = sorted(set(body) - set(SCALE_FIELDS))
    if unknown or "queue" not in body or "delta" not in body:
        raise ClientInputError(f"send exactly the fields {' and '.join(SCALE_FIELDS)}"
                               + (f"; unknown: {', '.join(unknown)[:100]}" if unknown else ""),
                               code="invalid_request", suggestion='e.g. {"queue": "generate", "delta": 2}; a '
                                                                  "negative delta shrinks.")
    cap = svc.limiter.get_config().concurrency
    result = _guarded(lambda: _pools().scale(body["queue"], body["delta"], cap))
    out = result.to_json()
    audit("workers.scale", target=result.queue, before={"slots": out["slots_before"]},
          after={"slots": out["slots_after"]}, details={"delta": result.delta, "applied": result.applied})
    return jsonify(out)
