"""OpenAPI paths of the worker-pool operator routes (api/admin_pools.py). Split from `api.openapi` to keep each
module small; the document is assembled there."""

from __future__ import annotations

from typing import Any

from api.openapi_parts import _json, _nullable, _obj, _op, _ref, _responses
from monitoring.pools import INSPECT_TIMEOUT_S, MAX_DELTA, MIN_SLOTS
from shared.queueing import ALL_QUEUES
from shared.settings import Settings


def pools_paths(settings: Settings) -> dict[str, Any]:
    admin = ("Operator route: needs the admin token (`Authorization: Bearer <NANOEDIT_ADMIN_TOKEN>` or "
             "`X-Admin-Token`) when auth is on.")
    count = {"type": "integer", "minimum": 0}
    instance = _obj({
        "name": {"type": "string", "description": "Celery node name, e.g. generate-1234@host."},
        "host": {"type": "string"},
        "pid": _nullable("integer"),
        "queues": {"type": "array", "items": {"type": "string"}},
        "pool": {"type": "string", "description": "prefork, threads, solo, gevent or eventlet."},
        "resizable": {"type": "boolean", "description": "Whether this pool type can grow and shrink at run time."},
        "concurrency": count | {"description": "Slots now (prefork: processes running)."},
        "concurrency_at_start": count | {"description": "The -c the instance started with."},
        "started": _nullable("integer", description="Processes or threads running now."),
        "active": count, "reserved": count,
        "processed": count | {"description": "Tasks finished since the instance started."},
        "last_heartbeat_at": _nullable("string", format="date-time"),
        "heartbeat_age_s": _nullable("number"),
    }, description="One worker instance, as its remote control answered.")
    queue = _obj({"instances": {"type": "array", "items": instance}, "slots": count, "active": count,
                  "reserved": count, "live_heartbeats": count, "resizable": {"type": "boolean"}})
    view = _obj({
        "generated_at": {"type": "string", "format": "date-time"},
        "inspect_timeout_s": {"type": "number"},
        "queues": _obj({q: queue for q in ALL_QUEUES}),
        "fleet_cap": _obj({"queue": {"type": "string"}, "concurrency": count, "pool_slots": count,
                           "binds": {"type": "string", "enum": ["fleet_cap", "pool", "both"]},
                           "note": {"type": "string"}},
                          description="The generate pools' slots against the fleet limiter's concurrency."),
        "note": {"type": "string"},
    })
    change = _obj({"name": {"type": "string"}, "before": count, "requested": {"type": "integer"},
                   "after": count, "ok": {"type": "boolean"}, "reply": {"type": "string"}})
    result = _obj({"queue": {"type": "string"}, "delta": {"type": "integer"}, "applied": {"type": "integer"},
                   "slots_before": count, "slots_after": count, "instances": {"type": "array", "items": change},
                   "note": {"type": "string"}})
    body = {"type": "object", "additionalProperties": False, "required": ["queue", "delta"], "properties": {
        "queue": {"type": "string", "enum": list(ALL_QUEUES)},
        "delta": {"type": "integer", "minimum": -MAX_DELTA, "maximum": MAX_DELTA, "not": {"const": 0},
                  "description": "Slots to add (positive) or remove (negative), spread over the instances."}}}
    refused = {
        409: _json("No instance consuming the queue answered (code no_live_workers), its pool type cannot resize "
                   "(pool_not_resizable), or an instance would leave "
                   f"{MIN_SLOTS}..{settings.pool_max_processes} processes (pool_limit).", _ref("Error")),
        422: _json("Unknown queue (code unknown_queue) or delta out of range (invalid_scale).", _ref("Error")),
    }
    return {
        "/v1/admin/workers": {"get": _op(
            "getWorkers", "admin", "Worker pools per queue: instances, slots, active and reserved tasks",
            _responses({200: _json("Every queue's instances and totals, and the fleet cap beside the generate "
                                   "pools.", view)}, 401, 403, 503),
            description=f"Read with Celery's remote control; an instance that does not answer within "
                        f"{INSPECT_TIMEOUT_S:g} s is left out. " + admin)},
        "/v1/admin/workers/scale": {"post": _op(
            "scaleWorkers", "admin", "Grow or shrink a queue's worker pools at run time",
            _responses({200: _json("What each instance was asked to change and what it answered.", result),
                        **refused}, 400, 401, 403, 503),
            description=f"The delta is spread over the instances consuming the queue (fewest slots grow first, "
                        f"most shrink first); each keeps {MIN_SLOTS}..{settings.pool_max_processes} processes "
                        f"(NANOEDIT_POOL_MAX_PROCESSES). Not persisted: a "
                        f"restarted worker starts at its Procfile/env concurrency. " + admin,
            requestBody={"required": True, "content": {"application/json": {"schema": body}}})},
    }
