"""OpenAPI of the operator routes added for on-call: the custom alert (`POST /v1/monitoring/alerts`, merged
into that path by api/openapi_ops.py), resolve by hand (api/alerts_manual.py) and the audit log (api/audit.py).
Split from `api.openapi` to keep each module small; the document is assembled there.
"""

from __future__ import annotations

from typing import Any

from api.alerts_manual import COMMENT_MAX
from api.audit import ACTOR_MAX
from api.openapi_parts import _json, _obj, _op, _responses
from monitoring.alerts.manual import (
    CUSTOM_MAX,
    MESSAGE_MAX,
    METADATA_KEY_MAX,
    METADATA_MAX_KEYS,
    METADATA_VALUE_MAX,
)
from monitoring.alerts.rules import SEVERITIES
from monitoring.audit import ACTIONS

ADMIN = ("Operator route: needs the admin token (`Authorization: Bearer <NANOEDIT_ADMIN_TOKEN>` or "
         "`X-Admin-Token`) when auth is on. `X-Operator: <name>` names who acts in the audit log.")
_TEXT = r"\S"
_NAME = "^[A-Za-z0-9_.-]{1,64}$"
_ALERT = _obj({"id": {"type": "string"}, "rule": {"type": "string"}, "group": {"type": "string"},
               "severity": {"type": "string", "enum": list(SEVERITIES)},
               "state": {"type": "string", "enum": ["inactive", "pending", "firing", "resolved"]},
               "resolved_by": {"type": "string"}},
              required=["id", "rule", "group", "severity", "state"], additionalProperties=True)
_OPERATOR = [{"name": "X-Operator", "in": "header", "required": False,
              "description": f"Who acts, for the audit log (first {ACTOR_MAX} characters; a value with control "
                             "characters is ignored); default: the body's by field, else admin.",
              "schema": {"type": "string"}}]


def _text(limit: int) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": limit, "pattern": _TEXT}


def create_alert_op() -> dict[str, Any]:
    body = {"type": "object", "additionalProperties": False, "required": ["severity", "message"], "properties": {
        "severity": {"type": "string", "enum": list(SEVERITIES)},
        "message": _text(MESSAGE_MAX) | {"description": "Shown verbatim as the alert's summary."},
        "group": {"type": "string", "pattern": _NAME, "description": "Incident group (default custom)."},
        "created_by": _text(ACTOR_MAX),
        "metadata": {"type": "object", "maxProperties": METADATA_MAX_KEYS,
                     "propertyNames": {"pattern": f"^[A-Za-z0-9_.-]{{1,{METADATA_KEY_MAX}}}$"},
                     "additionalProperties": {"type": "string", "maxLength": METADATA_VALUE_MAX},
                     "description": "Flat string map, delivered as the alert's labels."}}}
    return _op("createAlert", "monitoring", "Raise a custom alert (fires at once through the channels)",
               _responses({201: _json("The alert (firing, or pending its first evaluation).", _ALERT,
                                      "Location"),
                           409: _json(f"{CUSTOM_MAX} custom alerts are open already (code conflict).",
                                      {"$ref": "#/components/schemas/Error"})}, 400, 401, 403),
               description="Same lifecycle, grouping, escalation and channels as a rule alert; it stays firing "
                           "until resolved by hand. " + ADMIN, parameters=_OPERATOR,
               requestBody={"required": True, "content": {"application/json": {"schema": body}}})


def audit_paths() -> dict[str, Any]:
    resolve = {"type": "object", "additionalProperties": False, "required": ["resolved_by"],
               "properties": {"resolved_by": _text(ACTOR_MAX), "comment": _text(COMMENT_MAX)}}
    entry = _obj({"id": {"type": "string"}, "at": {"type": "string", "format": "date-time"},
                  "action": {"type": "string", "enum": list(ACTIONS)}, "actor": {"type": "string"},
                  "credential": {"type": "string", "enum": ["admin_token", "auth_off"]},
                  "target": {"type": "string"}, "before": {"type": ["object", "null"]},
                  "after": {"type": ["object", "null"]}, "details": {"type": "object"},
                  "request_id": {"type": "string"}})
    return {
        "/v1/monitoring/alerts/{alert_id}/resolve": {"post": _op(
            "resolveAlert", "monitoring", "Resolve a firing alert by hand",
            _responses({200: _json("The alert (resolved, or firing until the engine applies it).", _ALERT)},
                       400, 401, 403, 404, 409),
            description="The resolved message goes out to the channels. A rule alert resolved by hand stays "
                        "resolved until its condition has cleared once; a custom alert is gone. " + ADMIN,
            parameters=[{"name": "alert_id", "in": "path", "required": True, "schema": {"type": "string"}},
                        *_OPERATOR],
            requestBody={"required": True, "content": {"application/json": {"schema": resolve}}})},
        "/v1/monitoring/audit": {"get": _op(
            "listAudit", "monitoring", "The audit log of operator actions, newest first",
            _responses({200: _json("Entries newest first.", _obj({"entries": {"type": "array", "items": entry},
                                                                   "limit": {"type": "integer"}}))},
                       400, 401, 403),
            description="Acks, resolves, custom alerts, silence changes, limit changes, circuit forces and pool "
                        "scaling, with who, when and before/after. " + ADMIN,
            parameters=[{"name": "limit", "in": "query", "required": False,
                         "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}},
                        {"name": "since", "in": "query", "required": False,
                         "schema": {"type": "string", "format": "date-time", "pattern": "^20[0-9]{2}-"}}])},
    }
