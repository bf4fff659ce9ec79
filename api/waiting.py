"""`Prefer: wait=N` (RFC 7240) on POST /v1/jobs and GET /v1/jobs/{id}: hold the answer until the job ends or N
seconds pass (docs/api.md, "Waiting and streaming").

The rule, exactly as the OpenAPI document states it: among the comma-separated preferences of every `Prefer`
header, the first `wait` with a value of 1-6 decimal digits (optionally quoted) is honoured, capped at
`MAX_WAIT_S`; a malformed `wait`, and every other preference, is ignored, never refused (RFC 7240 §2). A request
whose preference is honoured gets `Preference-Applied: wait=N`. When this process already holds
`Settings.max_waiters` waiting requests, the preference is not applied: the answer comes at once, without the
header. Waiting is a subscription to the job's change notifications (`shared/jobs/events.py`) plus a slow re-read,
so it costs no Redis connection of its own.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from flask import Request, Response, g, jsonify, request

from api.services import Services
from shared.jobs.events import POLL_S, Subscription
from shared.jobs.model import Job
from shared.settings import Settings

MAX_WAIT_S = 60
_WAIT = re.compile(r'^wait\s*=\s*(?:"([0-9]{1,6})"|([0-9]{1,6}))$', re.IGNORECASE)


def requested_wait(request: Request) -> int | None:
    """Seconds the client asked to wait (capped at MAX_WAIT_S), or None when no usable `wait` preference."""
    for header in request.headers.getlist("Prefer"):
        for preference in header.split(","):
            token = preference.split(";", 1)[0].strip()
            if not token.lower().startswith("wait"):
                continue
            match = _WAIT.match(token)
            if match is None:
                continue
            return min(int(match.group(1) or match.group(2)), MAX_WAIT_S)
    return None


def max_waiters(settings: Settings) -> int:
    """Waiting requests one web worker process may hold. Under gthread each one holds a thread, so at most all
    but one of them (ordinary requests keep a thread); gevent holds each on a greenlet."""
    if settings.web_worker_class == "gthread":
        return min(settings.max_waiters, max(0, settings.web_threads - 1))
    return settings.max_waiters


def wait_for_end(read: Callable[[], Job | None], subscribe: Callable[[], Subscription | None], job: Job, seconds: int,
                 monotonic: Callable[[], float]) -> tuple[Job, bool]:
    """(the job when it ended or `seconds` passed, whether the wait was applied). `subscribe` returns a
    `shared.jobs.events.Subscription` or None when this process holds its maximum of waiters."""
    if job.terminal or seconds <= 0:
        return job, True
    sub = subscribe()
    if sub is None:
        return job, False
    deadline = monotonic() + seconds
    with sub:
        fresh = read()  # subscribed first, then read: a change in between is not missed
        while fresh is not None and not fresh.terminal:
            left = deadline - monotonic()
            if left <= 0:
                break
            sub.wait(min(left, POLL_S))
            fresh = read()
    return (fresh or job), True


def applied_headers(seconds: int) -> dict[str, str]:
    return {"Preference-Applied": f"wait={seconds}", "Vary": "Prefer"}


def answer_with_wait(svc: Services, job: Job, view: Callable[[Job], dict[str, Any]],
                     headers: dict[str, str]) -> tuple[Response, int, dict[str, str]] | None:
    """The answer of a request carrying `Prefer: wait=N`, or None when it carries none (answer as usual).
    200 once the job has ended, 202 with the current job when N passed first; `Preference-Applied` either way.
    Over this process's waiter limit the preference is not applied: None, the usual answer at once."""
    seconds = requested_wait(request)
    if seconds is None:
        return None
    events = svc.store.events  # its max_waiters: set by create_app from max_waiters(settings)
    started = svc.clock.monotonic()
    job, applied = wait_for_end(lambda: svc.store.get(job.id), lambda: events.subscribe(job.id), job, seconds,
                                svc.clock.monotonic)
    g.waited_s = svc.clock.monotonic() - started  # left out of the HTTP latency histogram (api/__init__.py)
    if not applied:
        return None
    return jsonify(view(job)), (200 if job.terminal else 202), {**headers, **applied_headers(seconds)}
