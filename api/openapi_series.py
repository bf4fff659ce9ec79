"""OpenAPI path of GET /v1/monitoring/series (the dashboard's chart points). Split from `api.openapi_ops` to keep
each module small; the document is assembled in `api.openapi`.
"""

from __future__ import annotations

from typing import Any

from api.openapi_parts import _json, _obj, _op, _responses
from monitoring.series import RANGES


def series_paths() -> dict[str, Any]:
    number = {"type": ["number", "null"]}
    point = _obj({"ts": {"type": "number", "description": "Unix time of the report."},
                  "p50": number, "p95": number, "p99": number,
                  "samples": {"type": "integer", "minimum": 0},
                  "throughput_per_min": number, "error_rate": number,
                  "queue_depth": {"type": "object", "additionalProperties": {"type": "integer"}}})
    series = _obj({"range": {"type": "string", "enum": list(RANGES)},
                   "since_s": {"type": "integer"}, "step_s": {"type": "integer"},
                   "window": {"type": "string"}, "generated_at": {"type": "string", "format": "date-time"},
                   "generated_at_ts": {"type": "number", "description": "Unix time the series was read: its end."},
                   "queues": {"type": "array", "items": {"type": "string"}},
                   "points": {"type": "array", "items": point}})
    return {"/v1/monitoring/series": {"get": _op(
        "getSeries", "monitoring", "Chart points from the stored health reports (last hour or day)",
        _responses({200: _json("Oldest first; latency in seconds and rates over the report's 5-minute window; "
                               "p50/p95/p99 are null below the minimum sample count.", series)}, 400, 401, 403),
        description="One point per report interval over the last hour, or per 5 minutes over the last day "
                    "(the newest report in each step). Operator route: needs the admin token when auth is on.",
        parameters=[{"name": "range", "in": "query", "required": False,
                     "schema": {"type": "string", "enum": list(RANGES), "default": "1h"}}])}}
