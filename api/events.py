"""GET /v1/jobs/{id}/events: a job's status and stage changes as Server-Sent Events (docs/api.md, "Waiting and
streaming").

The stream opens with `retry:` and the job's current state, sends one `job` event per status or stage change (in
order; `id:` counts up, continuing from `Last-Event-ID` on a reconnect, which replays the current state), a comment
every `HEARTBEAT_S` seconds, and ends after the terminal event or after `Settings.stream_max_s`. Every event's data
is the job object of GET /v1/jobs/{id}; `status` and `stage` are those of the change it reports (a change that was
overtaken while being read is still reported, with the other fields as read). Same owner check as GET (404 for
another key's job). Over this process's waiter limit: 503 service_unavailable with Retry-After.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, request, stream_with_context

from api.jobs import _owned_job, _view
from api.services import Services, services
from shared.errors import Gone, NanoeditError
from shared.jobs.events import POLL_S, Subscription
from shared.jobs.model import TERMINAL, Job, JobStage, JobStatus

bp = Blueprint("events", __name__)

HEARTBEAT_S = 15.0
RETRY_MS = 3000
_RANK = {JobStatus.QUEUED: 0, JobStatus.RUNNING: 1, JobStatus.CANCELING: 2, **{s: 3 for s in TERMINAL}}


def last_event_id(raw: str | None) -> int:
    return int(raw) if raw and re.fullmatch(r"[0-9]{1,12}", raw.strip()) else 0


@bp.get("/v1/jobs/<job_id>/events")
def job_events(job_id: str) -> Response:
    svc = services()
    job = _owned_job(svc, job_id)  # 404 / 410 before the stream starts, exactly like GET /v1/jobs/{id}
    sub = svc.store.events.subscribe(job.id)  # None: this process holds max_waiters(settings) already
    if sub is None:
        raise NanoeditError("this web process holds its maximum of waiting clients", code="service_unavailable")
    first_id = last_event_id(request.headers.get("Last-Event-ID"))
    resp = Response(stream_with_context(_stream(svc, sub, job, first_id)), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    resp.call_on_close(sub.close)  # also when the stream never starts (HEAD, a client gone at once)
    return resp


def _event(n: int, data: dict[str, Any]) -> str:
    return f"id: {n}\nevent: job\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _stream(svc: Services, sub: Subscription, job: Job, n: int) -> Iterator[str]:
    mono = svc.clock.monotonic
    with sub:
        yield f"retry: {RETRY_MS}\n\n"
        fresh = _read(svc, job.id)
        if fresh is None:
            return
        n += 1
        yield _event(n, _view(svc, fresh))
        last = (fresh.status, fresh.stage)
        end = mono() + svc.settings.stream_max_s
        beat = mono() + HEARTBEAT_S
        poll = mono() + POLL_S
        while not fresh.terminal:
            now = mono()
            if now >= end:
                return
            changes = sub.wait(max(0.0, min(end, beat, poll) - now))
            now = mono()
            if changes or now >= poll:
                poll = now + POLL_S
                read = _read(svc, job.id)
                if read is None:
                    return
                fresh = read
                view = _view(svc, fresh)
                sent = n
                for change in changes:
                    try:
                        status = JobStatus(change.status)
                        state = (status, JobStage(change.stage) if change.stage else last[1])
                    except ValueError:
                        continue
                    if state == last or _RANK[status] < _RANK[last[0]] or state == (fresh.status, fresh.stage):
                        continue  # unchanged, stale, or the state just read (sent below)
                    n += 1
                    yield _event(n, {**view, "status": state[0].value, "stage": state[1].value})
                    last = state
                if (fresh.status, fresh.stage) != last:
                    n += 1
                    yield _event(n, view)
                    last = (fresh.status, fresh.stage)
                if n != sent:
                    beat = now + HEARTBEAT_S
            if now >= beat and not fresh.terminal:
                yield ": keep-alive\n\n"
                beat = now + HEARTBEAT_S


def _read(svc: Services, job_id: str) -> Job | None:
    try:
        return svc.store.get(job_id)
    except (Gone, NanoeditError):
        return None
