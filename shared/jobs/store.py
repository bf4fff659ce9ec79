"""JobStore: the durable job record in Redis and every state change of it.

Owns: the record hash, per-output results, attempts, the waiting sets (queue position in O(log n)), the expiry
and deadline indexes, the per-owner index and the finished-per-minute counters used for ETA. All status
changes go through one Lua compare-and-set (`_UPDATE_IF`), so a terminal job never changes again and exactly
one caller wins the terminal write (it alone runs the side effects hung off it).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

import redis

from shared.blobs import BlobStore, job_prefix
from shared.clock import Clock
from shared.errors import Gone, job_error
from shared.jobs.model import ACTIVE, CANCELED, CANCELING, QUEUED, TERMINAL, TRANSITIONS, Job
from shared.redis_conn import Keys

log = logging.getLogger("nanoedit.jobs")

# KEYS[1] = job hash. ARGV[1] = comma-separated statuses the job must be in (callers list them all).
# ARGV[2..] = field/value pairs to set. Returns {1, old} on success, {0, old} when
# the job is in another status, {-1, ""} when it does not exist.
_UPDATE_IF = """
local cur = redis.call('HGET', KEYS[1], 'status')
if not cur then return {-1, ''} end
if not string.find(',' .. ARGV[1] .. ',', ',' .. cur .. ',', 1, true) then return {0, cur} end
if #ARGV > 1 then redis.call('HSET', KEYS[1], unpack(ARGV, 2)) end
return {1, cur}
"""

# KEYS[1] = outputs hash, KEYS[2] = job hash. ARGV[1] = index, ARGV[2] = result JSON.
# Records one output's result (first write wins, a redelivery cannot overwrite a stored success) and returns
# the number of resolved outputs, so exactly one caller sees the count reach num_images.
_RECORD_OUTPUT = """
if redis.call('EXISTS', KEYS[2]) == 0 then return -1 end
redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
return redis.call('HLEN', KEYS[1])
"""


@dataclass(frozen=True, slots=True)
class CasResult:
    ok: bool
    previous: str | None  # None when the job does not exist


class JobStore:
    """All Redis reads and writes of job records. Pass the same clock the caller uses."""

    GONE_TTL_S = 7 * 24 * 3600
    THROUGHPUT_WINDOW_S = 300
    THROUGHPUT_MAX_SAMPLES = 2000

    def __init__(self, r: redis.Redis, keys: Keys, clock: Clock,
                 on_terminal: Callable[[str], None] | None = None) -> None:
        self.r = r
        self.on_terminal = on_terminal  # called once per job, by the winner of the terminal write
        self.keys = keys
        self.clock = clock
        self._update_if = r.register_script(_UPDATE_IF)
        self._record_output = r.register_script(_RECORD_OUTPUT)

    # -- creation and reads -------------------------------------------------------------------------
    def create(self, job: Job, *, waiting_queue: str = "preprocess") -> None:
        """Write the record and its indexes in one transaction; call before enqueueing anything."""
        created_ms = job.created_at * 1000
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(self.keys.job(job.id), mapping=cast("dict[Any, Any]", job.to_hash()))
        pipe.zadd(self.keys.expiry, {job.id: job.expires_at})
        pipe.zadd(self.keys.deadlines, {job.id: job.deadline_at})
        pipe.zadd(self.keys.owner_jobs(job.owner), {job.id: created_ms})
        pipe.zadd(self.keys.waiting(waiting_queue), {job.id: created_ms})
        pipe.execute()

    def get(self, job_id: str) -> Job | None:
        """The job, or None if unknown. Raises Gone if it expired (deleted or past expires_at)."""
        pipe = self.r.pipeline(transaction=False)
        pipe.hgetall(self.keys.job(job_id))
        pipe.hgetall(self.keys.job_outputs(job_id))
        pipe.lrange(self.keys.job_attempts(job_id), 0, -1)
        pipe.exists(self.keys.gone(job_id))
        pipe.hgetall(self.keys.job_webhook(job_id))
        h, outputs, attempts, gone, webhook = pipe.execute()
        if not h:
            if gone:
                raise Gone(f"job {job_id} expired and was deleted")
            return None
        job = Job.from_hash(h, outputs, attempts)
        job.webhook_delivery = dict(webhook)
        if job.expires_at <= self.clock.now():
            raise Gone(f"job {job_id} expired at {job.expires_at:.0f}")
        return job

    def owner_of(self, job_id: str) -> str | None:
        """The owner of a live or expired-but-not-yet-swept job; None if unknown or swept."""
        value = self.r.hget(self.keys.job(job_id), "owner")
        return str(value) if value is not None else None

    def status_of(self, job_id: str) -> str | None:
        value = self.r.hget(self.keys.job(job_id), "status")
        return str(value) if value is not None else None

    def cancel_requested(self, job_id: str) -> bool:
        return self.r.hget(self.keys.job(job_id), "cancel_requested") == "1"

    # -- state changes ------------------------------------------------------------------------------
    def update_if(self, job_id: str, statuses: Iterable[str], fields: dict[str, Any]) -> CasResult:
        """Set `fields` only if the job's status is one of `statuses` (atomic)."""
        flat: list[str] = []
        for k, v in fields.items():
            flat += [k, _encode(v)]
        code, prev = self._update_if(keys=[self.keys.job(job_id)], args=[",".join(statuses), *flat])
        return CasResult(ok=int(code) == 1, previous=(str(prev) if int(code) != -1 else None))

    def transition(self, job_id: str, to: str, fields: dict[str, Any] | None = None) -> CasResult:
        """Move to status `to` if allowed from the current status (design §4 states)."""
        allowed = TRANSITIONS[to]
        result = self.update_if(job_id, allowed, {"status": to, **(fields or {})})
        if result.ok and to in TERMINAL:
            self._after_terminal(job_id)
        return result

    def set_stage(self, job_id: str, stage: str, extra: dict[str, Any] | None = None) -> bool:
        return self.update_if(job_id, ACTIVE, {"stage": stage, **(extra or {})}).ok

    def finish(self, job_id: str, status: str, *, error: dict[str, Any] | None = None,
               text: str | None = None, extra: dict[str, Any] | None = None) -> CasResult:
        """The one terminal write. Only the caller that gets ok=True may fire webhooks/metrics."""
        assert status in TERMINAL
        now = self.clock.now()
        fields: dict[str, Any] = {"stage": "done", "finished_at": now, **(extra or {})}
        if error is not None:
            fields["error"] = json.dumps(error)
        if text:
            fields["text"] = text
        return self.transition(job_id, status, fields)

    def _after_terminal(self, job_id: str) -> None:
        now = self.clock.now()
        pipe = self.r.pipeline(transaction=False)
        pipe.zrem(self.keys.deadlines, job_id)
        pipe.zrem(self.keys.waiting("preprocess"), job_id)
        pipe.zrem(self.keys.waiting("generate"), job_id)
        recent = self.keys.recent_finishes
        pipe.zadd(recent, {job_id: now})
        pipe.zremrangebyscore(recent, "-inf", now - self.THROUGHPUT_WINDOW_S)
        pipe.zremrangebyrank(recent, 0, -self.THROUGHPUT_MAX_SAMPLES - 1)
        pipe.execute()
        if self.on_terminal is not None:
            try:
                self.on_terminal(job_id)
            except Exception:  # a hook must never undo or block the terminal write
                log.exception("on_terminal hook failed", extra={"job_id": job_id})

    def request_cancel(self, job_id: str) -> CasResult:
        """Cancel: a queued job is canceled at once; a running one becomes canceling (workers see the flag).

        Returns ok=True with previous=the status it was in; ok=False when the job is terminal or unknown.
        """
        fields = {"status": CANCELED, "stage": "done", "finished_at": self.clock.now(),
                  "cancel_requested": "1", "error": json.dumps(job_error(
                      "canceled", "canceled by the client before it started"))}
        queued = self.update_if(job_id, [QUEUED], fields)
        if queued.ok:
            self._after_terminal(job_id)
            return queued
        if queued.previous is None or queued.previous in TERMINAL:
            return queued
        if queued.previous == CANCELING:
            return CasResult(ok=True, previous=CANCELING)
        return self.transition(job_id, CANCELING, {"cancel_requested": "1"})

    def cancel_now_if_idle(self, job_id: str, busy: Callable[[], bool]) -> bool:
        """Finish a `canceling` job at once when none of its outputs is at the provider.

        Order matters: the cancel flag is already set, and a worker checks it *after* taking its limiter lease,
        so if `busy()` (leases held for this job) is false now, no provider call for this job can start later.
        Only once generate tasks exist (before that, preprocessing sees the flag and ends the job itself).
        """
        h = self.r.hmget(self.keys.job(job_id), ["status", "generate_enqueued", "num_images", "billed_calls"])
        if h[0] != CANCELING or h[1] != "1" or busy():
            return False
        for index in range(int(h[2] or 1)):
            self.r.hsetnx(self.keys.job_outputs(job_id), str(index), json.dumps({"status": "canceled"}))
        billed = int(self.r.hget(self.keys.job(job_id), "billed_calls") or 0)
        return self.finish(job_id, CANCELED, error=job_error(
            "canceled", f"canceled by the client; billed provider calls: {billed}")).ok

    def record_output(self, job_id: str, index: int, result: dict[str, Any]) -> int:
        """Store one output's result; returns how many outputs are resolved (-1: job gone)."""
        return int(self._record_output(keys=[self.keys.job_outputs(job_id), self.keys.job(job_id)],
                                       args=[index, json.dumps(result)]))

    def add_attempt(self, job_id: str, attempt: dict[str, Any]) -> None:
        self.r.rpush(self.keys.job_attempts(job_id), json.dumps(attempt))

    def add_billed_call(self, job_id: str) -> None:
        self.r.hincrby(self.keys.job(job_id), "billed_calls", 1)

    # -- idempotency and result cache ---------------------------------------------------------------
    def claim_idempotency(self, owner: str, key: str, job_id: str, fingerprint: str,
                          ttl_s: int) -> tuple[str, str] | None:
        """Claim `key` for a new job. Returns None when claimed, else (existing job id, its fingerprint)."""
        k = self.keys.idempotency(owner, hashlib.sha256(key.encode()).hexdigest())
        if self.r.set(k, f"{job_id}:{fingerprint}", nx=True, ex=ttl_s):
            return None
        existing = str(self.r.get(k) or ":")
        job, _, fp = existing.partition(":")
        return job, fp

    def release_idempotency(self, owner: str, key: str) -> None:
        self.r.delete(self.keys.idempotency(owner, hashlib.sha256(key.encode()).hexdigest()))

    def remember_result(self, request_hash: str, job_id: str, ttl_s: int) -> None:
        if request_hash and ttl_s > 0:
            self.r.set(self.keys.result_cache(request_hash), job_id, ex=ttl_s)

    def cached_result(self, request_hash: str) -> Job | None:
        """A succeeded, unexpired job with the same request hash, if the cache still points at one."""
        job_id = self.r.get(self.keys.result_cache(request_hash))
        if not job_id:
            return None
        try:
            job = self.get(str(job_id))
        except Gone:
            return None
        return job if job is not None and job.status == "succeeded" else None

    # -- queue position and ETA ---------------------------------------------------------------------
    def mark_waiting(self, queue: str, job_id: str, score_ms: float) -> None:
        self.r.zadd(self.keys.waiting(queue), {job_id: score_ms})

    def unmark_waiting(self, queue: str, job_id: str) -> None:
        self.r.zrem(self.keys.waiting(queue), job_id)

    def queue_position(self, job_id: str) -> int | None:
        """1-based position among jobs waiting in the same queue (O(log n) ZRANK), None when not waiting."""
        pipe = self.r.pipeline(transaction=False)
        pipe.zrank(self.keys.waiting("preprocess"), job_id)
        pipe.zrank(self.keys.waiting("generate"), job_id)
        pre, gen = pipe.execute()
        if pre is not None:
            return int(pre) + 1
        if gen is not None:
            return int(gen) + 1
        return None

    def throughput_per_s(self) -> float:
        """Jobs finished per second, measured over the span the recent finishes actually cover (at most 5 min),
        so a service that just started or was idle is not judged by minutes in which it had nothing to do."""
        now = self.clock.now()
        rows: list[Any] = list(self.r.zrangebyscore(self.keys.recent_finishes, now - self.THROUGHPUT_WINDOW_S,
                                                    "+inf", withscores=True))
        if not rows:
            return 0.0
        oldest = float(rows[0][1])
        span = max(now - oldest, 1.0)
        # n finishes spread over `span`: (n) / span; a single finish alone says little, so damp it.
        return len(rows) / span if len(rows) > 1 else 1.0 / max(span, 10.0)

    def estimated_wait_s(self, position: int | None) -> float | None:
        if position is None:
            return None
        rate = self.throughput_per_s()
        if rate <= 0:
            return None
        return round(math.ceil(position) / rate, 1)

    # -- listing ------------------------------------------------------------------------------------
    def list_ids(self, owner: str, *, before_ms: float | None, limit: int,
                 inclusive: bool = False) -> list[tuple[str, float]]:
        """Newest first, older than `before_ms` (or equal, with `inclusive`, for tie-safe cursors)."""
        top = "+inf" if before_ms is None else (repr(before_ms) if inclusive else f"({before_ms!r}")
        rows: list[Any] = list(self.r.zrevrangebyscore(self.keys.owner_jobs(owner), top, "-inf", start=0,
                                                       num=limit, withscores=True))
        return [(str(row[0]), float(row[1])) for row in rows]

    # -- maintenance (beat) -------------------------------------------------------------------------
    def overdue(self, limit: int = 500) -> list[str]:
        return [str(m) for m in self.r.zrangebyscore(self.keys.deadlines, "-inf", self.clock.now(),
                                                       start=0, num=limit)]

    def expire_due(self, blobs: BlobStore, limit: int = 500) -> int:
        """Delete records and blobs past expires_at; leave a tombstone so GET answers 410."""
        ids = [str(m) for m in self.r.zrangebyscore(self.keys.expiry, "-inf", self.clock.now(),
                                                      start=0, num=limit)]
        for job_id in ids:
            owner = self.r.hget(self.keys.job(job_id), "owner")
            blobs.delete_prefix(job_prefix(job_id))
            pipe = self.r.pipeline(transaction=True)
            pipe.delete(self.keys.job(job_id), self.keys.job_outputs(job_id), self.keys.job_attempts(job_id),
                        self.keys.job_webhook(job_id))
            pipe.set(self.keys.gone(job_id), "1", ex=self.GONE_TTL_S)
            pipe.zrem(self.keys.expiry, job_id)
            pipe.zrem(self.keys.deadlines, job_id)
            pipe.zrem(self.keys.waiting("preprocess"), job_id)
            pipe.zrem(self.keys.waiting("generate"), job_id)
            if owner:
                pipe.zrem(self.keys.owner_jobs(str(owner)), job_id)
            pipe.execute()
        return len(ids)

    def count_delivery(self, task_id: str, ttl_s: int) -> int:
        """How many times this task id has started (poison guard)."""
        key = self.keys.deliveries(task_id)
        pipe = self.r.pipeline(transaction=True)
        pipe.incr(key)
        pipe.expire(key, ttl_s)
        return int(pipe.execute()[0])


def _encode(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)
