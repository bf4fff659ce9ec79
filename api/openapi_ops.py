"""OpenAPI paths of the operator routes: admin limits and circuit, /metrics, the monitoring report, alerts and
silences. Split from `api.openapi` to keep each module small; the document is assembled there.
"""

from __future__ import annotations

from typing import Any

from api.admin import MAX_LIMIT_VALUE
from api.openapi_audit import create_alert_op
from api.openapi_parts import _headers, _json, _obj, _op, _responses
from monitoring.alerts.silences import MATCHER_KEYS, MAX_COMMENT_CHARS, MAX_DURATION_S, MAX_PATTERN_CHARS


def _admin_paths() -> dict[str, Any]:
    admin = ("Operator route: needs the admin token (`Authorization: Bearer <NANOEDIT_ADMIN_TOKEN>` or "
             "`X-Admin-Token`) when auth is on.")
    state = {"type": "object", "additionalProperties": True}
    limits_body = {"type": "object", "additionalProperties": False, "minProperties": 1, "properties": {
        name: {"type": [kind, "null"], "minimum": minimum, "maximum": MAX_LIMIT_VALUE,
               "description": "null restores the env default"}
        for name, (kind, minimum) in {"concurrency": ("integer", 1), "rpm": ("integer", 0),
                                      "images_per_min": ("integer", 0), "lease_s": ("number", 0.001)}.items()}}
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
            "get": _op("getReport", "monitoring",
                       "Beat health report: latest, history, a daily summary, or a weekly or monthly review",
                       _responses({200: _json("The report (p50/p95/p99 are null below the minimum sample count).",
                                              state)}, 400, 401, 403, 404),
                       description=admin, parameters=[
                           {"name": "period", "in": "query", "required": False,
                            "schema": {"type": "string",
                                       "enum": ["latest", "daily", "history", "weekly", "monthly"]}},
                           {"name": "period_id", "in": "query", "required": False,
                            "description": "With period=weekly: an ISO week YYYY-Www; with period=monthly: "
                                           "YYYY-MM (default: the current one so far, `complete: false`).",
                            "schema": {"type": "string",
                                       "pattern": "^[0-9]{4}-(W(0[1-9]|[1-4][0-9]|5[0-3])|0[1-9]|1[0-2])$"}},
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
    matchers = {"type": "object", "additionalProperties": False, "minProperties": 1,
                "properties": {k: {"type": "string", "minLength": 1, "maxLength": MAX_PATTERN_CHARS,
                                   "pattern": r"\S"} for k in MATCHER_KEYS},
                "description": "Shell-style patterns (job_*); at least one of: " + ", ".join(MATCHER_KEYS) + "."}
    # Silence times must lie in 2000..2099 and ends_at after now: the year is in the pattern, "after now" is
    # the one rule a schema cannot say (400 with a suggestion).
    silence_time = {"type": "string", "format": "date-time", "pattern": "^20[0-9]{2}-"}
    silence = _obj({"id": {"type": "string"}, "state": {"type": "string", "enum": ["pending", "active", "expired"]},
                    "matchers": matchers, "starts_at": time, "ends_at": time, "comment": {"type": "string"},
                    "created_by": {"type": "string"}, "created_at": time, "updated_at": time},
                   required=["id", "state", "matchers", "starts_at", "ends_at", "comment"],
                   additionalProperties=True)
    silence_fields = {
        "matchers": matchers,
        "comment": {"type": "string", "minLength": 1, "maxLength": MAX_COMMENT_CHARS, "pattern": r"\S"},
        "starts_at": silence_time, "ends_at": silence_time,
        "duration_s": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_DURATION_S,
                       "description": "Instead of ends_at."}}
    silence_body = {"type": "object", "additionalProperties": False,
                    "properties": {**silence_fields, "created_by": {"type": "string"}},
                    "required": ["matchers", "comment"],
                    "oneOf": [{"required": ["ends_at"], "not": {"required": ["duration_s"]}},
                              {"required": ["duration_s"], "not": {"required": ["ends_at"]}}]}
    silence_patch = {"type": "object", "additionalProperties": False, "minProperties": 1,
                     "properties": silence_fields, "not": {"required": ["ends_at", "duration_s"]}}
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
                 "schema": {"type": "string"}}]),
            "post": create_alert_op()},
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
                        requestBody=body(silence_body)),
        },
        "/v1/monitoring/silences/{silence_id}": {
            "get": _op("getSilence", "monitoring", "One silence", silence_ok, description=admin,
                       parameters=silence_id),
            "patch": _op("updateSilence", "monitoring", "Extend, shorten or edit a silence", silence_ok,
                         description=admin, parameters=silence_id, requestBody=body(silence_patch)),
            "delete": _op("deleteSilence", "monitoring", "Delete a silence (alerts notify again)", silence_ok,
                          description=admin, parameters=silence_id),
        },
    }
