"""Per-key limits at the API edge: submissions per minute, jobs waiting at once, and the RateLimit headers.

- `POST /v1/jobs` consumes one submission of the caller's key (every attempt counts, refused ones included: a
  flood of bad requests costs intake work too) and is refused with 429 `rate_limited` when the key's window is
  full, or with 429 `too_many_jobs_waiting` when the key already has `max_waiting_jobs` accepted, unfinished
  jobs (checked only when a new job would be created: an idempotent replay still gets its job back).
- Every response on `/v1` to a caller with a valid key carries `RateLimit-Limit`, `RateLimit-Remaining`,
  `RateLimit-Reset` (seconds) and `RateLimit-Policy` (IETF RateLimit header fields draft) for the key's
  submissions-per-minute limit, errors included; only `POST /v1/jobs` consumes, other routes report.
- Auth off (development, anonymous callers): no per-key limits and no headers. A key whose limit is 0 has no
  limit and gets no headers.

The numbers come from `shared.keyquota` (limits library, moving window) and `JobStore.active_count`.
"""

from __future__ import annotations

import logging
import math

from flask import Flask, Response, g, request

from api.auth import caller_key
from api.services import Services, services
from shared.apikeys import ApiKey
from shared.errors import NanoeditError, spec_for
from shared.keyquota import KeyPolicy, RateState, SubmissionLimiter

log = logging.getLogger("nanoedit.api.limits")


def _key_and_policy(svc: Services) -> tuple[ApiKey, KeyPolicy] | None:
    key = caller_key(svc.settings, svc.keyring, request)
    return None if key is None else (key, KeyPolicy.for_key(key, svc.settings))


def check_submission_rate(svc: Services) -> None:
    """Count this submission against the caller's per-minute limit; 429 `rate_limited` when it is spent."""
    found = _key_and_policy(svc)
    if found is None or svc.quotas is None or not found[1].submissions_per_minute:
        return
    key, policy = found
    state = svc.quotas.hit(key.owner, policy.submissions_per_minute)
    g.rate_state = state
    if not state.allowed:
        raise NanoeditError(f"this key may submit {state.limit} jobs per {SubmissionLimiter.WINDOW_S} s; the "
                            f"next one is allowed in {state.retry_after_s} s", code="rate_limited",
                            retry_after_s=state.retry_after_s)


def check_waiting_jobs(svc: Services) -> None:
    """429 `too_many_jobs_waiting` when the caller already has its maximum of accepted, unfinished jobs."""
    found = _key_and_policy(svc)
    if found is None or not found[1].max_waiting_jobs:
        return
    key, policy = found
    active = svc.store.active_count(key.owner)
    if active >= policy.max_waiting_jobs:
        raise NanoeditError(f"queued or running jobs of this key: {active} (at most {policy.max_waiting_jobs} at "
                            "once)", code="too_many_jobs_waiting", retry_after_s=_one_job_s(svc))


def _one_job_s(svc: Services) -> int:
    """Roughly how long until one more job finishes, from the recent finish rate (1..60 s)."""
    rate = svc.store.throughput_per_s()
    if rate <= 0:
        return spec_for("too_many_jobs_waiting").retry_after_s or 5
    return max(1, min(60, math.ceil(1 / rate)))


def _state_for_caller(svc: Services) -> RateState | None:
    if not svc.settings.auth_enabled or svc.quotas is None:
        return None
    state: RateState | None = g.get("rate_state")
    if state is not None:
        return state
    found = _key_and_policy(svc)  # raises `unauthorized` for a caller without a valid key: no headers then
    if found is None or not found[1].submissions_per_minute:
        return None
    return svc.quotas.peek(found[0].owner, found[1].submissions_per_minute)


def install_rate_headers(app: Flask) -> None:
    """Add the RateLimit headers to every /v1 response to a keyed caller (best effort: never fails a response)."""

    @app.after_request
    def _rate_headers(resp: Response) -> Response:
        if request.path != "/v1" and not request.path.startswith("/v1/"):
            return resp
        try:
            state = _state_for_caller(services())
        except NanoeditError:  # no valid key: not a keyed caller
            return resp
        except Exception:  # Redis unreachable or similar: the response itself already says what happened
            log.warning("could not read the caller's rate limit state", exc_info=True)
            return resp
        if state is not None:
            resp.headers.update(state.headers())
        return resp
