"""/healthz (the process answers) and /readyz (it can do useful work: Redis, live workers per queue, beat).

`/readyz?scope=web` judges only what this web process needs to accept and answer requests (Redis): the probe for
a load balancer or a Kubernetes Service, so a worker outage leaves the web serving (jobs queue and wait) instead
of taking every web instance out of rotation. The default scope, `service`, judges the whole service.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from api.services import services
from shared.errors import ClientInputError, NanoeditError
from shared.model_availability import readiness_check as model_readiness_check
from shared.queueing import QUEUES

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


SCOPES = ("service", "web")


def readiness(scope: str = "service") -> dict[str, Any]:
    svc = services()
    liveness = svc.liveness()
    checks: dict[str, Any] = {}
    try:
        svc.redis.ping()
        checks["redis"] = {"ok": True}
    except Exception as exc:
        checks["redis"] = {"ok": False, "error": type(exc).__name__}
        return checks
    if scope == "web":  # what accepting and answering needs; the pools and beat are the service's business
        return checks
    for q, live in liveness.live_counts(QUEUES).items():
        checks[f"workers_{q}"] = {"ok": live > 0, "live": live}
    age = liveness.beat_age_s()
    checks["beat"] = {"ok": liveness.beat_alive(age), "heartbeat_age_s": round(age, 1) if age is not None else None}
    if svc.settings.provider == "gemini":  # informational: always ok (a missing model is an alert, not unready)
        checks["models"] = model_readiness_check(svc.redis, svc.settings.redis_prefix)
    return checks


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    detailed = _flag(request.args.getlist("detailed"))
    checks = readiness(_scope(request.args.getlist("scope")))
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


_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


def _scope(values: list[str]) -> str:
    """`scope`: absent = service; service or web; anything else (or repeated) is a 400."""
    if not values:
        return "service"
    if len(values) == 1 and values[0] in SCOPES:
        return values[0]
    raise ClientInputError(f"scope={values[0][:20]!r}", code="invalid_request",
                           suggestion="Use ?scope=service (the whole service, the default) or ?scope=web (only what "
                                      "this web process needs: Redis).")


def _flag(values: list[str]) -> bool:
    """A boolean query flag: absent = false; true/1/yes or false/0/no; anything else (or repeated) is a 400."""
    if not values:
        return False
    if len(values) == 1 and values[0].lower() in _TRUE + _FALSE:
        return values[0].lower() in _TRUE
    raise ClientInputError(f"detailed={values[0][:20]!r}", code="invalid_request",
                           suggestion="Use ?detailed=true or ?detailed=false.")
