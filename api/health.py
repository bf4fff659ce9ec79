"""/healthz (the process answers) and /readyz (it can do useful work: Redis, live workers per queue, beat)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from api.services import services
from shared.errors import NanoeditError
from shared.queueing import QUEUES

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


def readiness() -> dict[str, Any]:
    svc = services()
    now = svc.clock.now()
    live_after = now - 3 * svc.settings.worker_heartbeat_s
    checks: dict[str, Any] = {}
    try:
        svc.redis.ping()
        checks["redis"] = {"ok": True}
    except Exception as exc:
        checks["redis"] = {"ok": False, "error": type(exc).__name__}
        return checks
    for q in QUEUES:
        live = svc.redis.zrangebyscore(svc.keys.workers(q), live_after, "+inf")
        checks[f"workers_{q}"] = {"ok": bool(live), "live": len(live)}
    raw = svc.redis.get(svc.keys.beat_heartbeat)
    age = round(now - float(raw), 1) if raw else None
    checks["beat"] = {"ok": age is not None and age <= max(60, 3 * svc.settings.worker_heartbeat_s),
                      "heartbeat_age_s": age}
    return checks


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    checks = readiness()
    detailed = request.args.get("detailed", "").lower() in ("1", "true", "yes")
    failing = [name for name, c in checks.items() if not c.get("ok")]
    if not failing:
        body: dict[str, Any] = {"status": "ready"}
        if detailed:
            body["checks"] = checks
        return jsonify(body), 200
    err = NanoeditError(f"failing checks: {', '.join(failing)}", code="service_unavailable",
                        message="The service is not ready.",
                        suggestion="Start the missing processes (see `make up` / the Procfile) and check Redis.")
    body = {**err.body(), "status": "not_ready", "failing": failing}
    if detailed:
        body["checks"] = checks
    resp = jsonify(body)
    resp.headers["Retry-After"] = "5"
    return resp, 503
