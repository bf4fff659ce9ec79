"""OpenAPI parts of waiting and streaming (api/waiting.py, api/events.py): the `Prefer` request header on
submitJob and getJob, their `Preference-Applied` answers, and GET /v1/jobs/{job_id}/events. Applied to the
assembled paths by `api.openapi.openapi_document`."""

from __future__ import annotations

import copy
from typing import Any

from api.openapi_parts import _headers, _json, _op, _ref, _responses
from api.waiting import MAX_WAIT_S

PREFER = {
    "name": "Prefer", "in": "header", "required": False,
    "description": f"RFC 7240. `wait=N` (N: 1-6 digits, optionally quoted): hold the answer until the job has "
                   f"ended or N seconds have passed; N above {MAX_WAIT_S} counts as {MAX_WAIT_S}. Any other "
                   "preference, and a malformed `wait`, is ignored (never refused). When the preference is "
                   "applied the answer carries `Preference-Applied: wait=N`; when this web process already "
                   "holds its maximum of waiting clients it is not applied and the answer comes at once.",
    "schema": {"type": "string"}}
_APPLIED = {"description": "`wait=N` when the request's `Prefer: wait=N` was applied.",
            "schema": {"type": "string", "pattern": "^wait=[0-9]{1,2}$"}}


def _with_applied(response: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(response)
    out.setdefault("headers", {})["Preference-Applied"] = dict(_APPLIED)
    return out


def _events_path() -> dict[str, Any]:
    stream = {"description": "`text/event-stream`: `retry:`, then one `job` event (`id:`, `event: job`, `data:` "
                             "the Job object as JSON) for the current state and for every later status or stage "
                             "change, in order, a `: keep-alive` comment every 15 s; the stream ends after the "
                             "event of a terminal status, or after NANOEDIT_STREAM_MAX_S (300 s: reconnect).",
              "headers": _headers(),
              "content": {"text/event-stream": {"schema": {"type": "string"}}}}
    return {"/v1/jobs/{job_id}/events": {"get": _op(
        "streamJobEvents", "jobs", "Follow a job: its status changes as Server-Sent Events",
        _responses({200: stream}, 401, 404, 410, 500, 503),
        description="The same owner rule as GET /v1/jobs/{job_id} (another key's job is 404). A reconnect with "
                    "`Last-Event-ID` replays the current state and numbers the events on from that id. 503 "
                    "service_unavailable (Retry-After) when this web process already holds its maximum of "
                    "waiting clients.",
        parameters=[{"$ref": "#/components/parameters/JobId"},
                    {"name": "Last-Event-ID", "in": "header", "required": False,
                     "description": "The id of the last event received (1-12 digits; anything else counts as "
                                    "none).", "schema": {"type": "string"}}])}}


def with_waiting(paths: dict[str, Any]) -> dict[str, Any]:
    """Add `Prefer: wait` to submitJob and getJob and the events route (in place; returns `paths`)."""
    submit = paths["/v1/jobs"]["post"]
    submit["parameters"].append(PREFER)
    responses = submit["responses"]
    responses["200"] = _with_applied(responses["200"])
    responses["200"]["description"] += (" Or, with `Prefer: wait=N` applied: the job, which ended within N "
                                        "seconds (Preference-Applied).")
    responses["202"] = _with_applied(responses["202"])
    responses["202"]["description"] += " With `Prefer: wait=N` applied: the job had not ended after N seconds."
    get = paths["/v1/jobs/{job_id}"]["get"]
    get["parameters"].append(PREFER)
    get["responses"]["200"] = _with_applied(get["responses"]["200"])
    get["responses"]["200"]["description"] += " With `Prefer: wait=N` applied: the job has ended."
    get["responses"]["202"] = _with_applied(_json(
        "`Prefer: wait=N` was applied and N seconds passed before the job ended: the job as it is now.",
        _ref("Job")))
    paths.update(_events_path())
    return paths
