"""JobStore: the one owner of the durable job record in Redis and of every key about jobs.

Owns: the record hash, per-output results, attempts, the webhook outbox (`shared.jobs.outbox`, reached as
`store.webhooks`: the terminal write creates the delivery in the same script), the waiting sets (queue position in
O(log n)), the expiry and deadline indexes, the per-owner index and active set (jobs not yet terminal), the recent
finishes used for ETA, the delivery counters of the poison guard, idempotency keys and the result cache. Nothing
outside `shared.jobs` reads or writes these keys or holds the Redis handle used here (tests/test_ownership.py
enforces it): each write has a named method below. Every status change goes through one Lua compare-and-set
(`_UPDATE_IF`; the terminal write uses the outbox's copy of it), so a terminal job never changes again and exactly
one caller wins the terminal write (it alone runs the side effects hung off it).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import redis

from shared.clock import Clock
from shared.errors import job_error
from shared.jobs.events import JobEvents, publish_change_lua
from shared.jobs.expected import ExpectedGenerate, expected_member, expected_members
from shared.jobs.keys import JobKeys
from shared.jobs.model import (
    ACTIVE,
    TERMINAL,
    TRANSITIONS,
    Attempt,
    Job,
    JobError,
    JobStage,
    JobStatus,
    OutputResult,
    PreparedInput,
)
from shared.jobs.outbox import WebhookOutbox
from shared.jobs.reads import READ_SCRIPT, StatusReads
from shared.jobs.requests import RequestMemory
from shared.jobs.upkeep import Upkeep
from shared.jobs.waiting import WAITING_QUEUES

log = logging.getLogger("nanoedit.jobs")

# KEYS[1] = job hash. ARGV[1] = comma-separated statuses the job must be in (callers list them all).
# ARGV[2..5] = the change event (job id, channel ('' = none), new status ('' = unchanged), new stage: EventArgs).
# ARGV[6..] = field/value pairs to set. Returns {1, old} on success, {0, old} when
# the job is in another status, {-1, ""} when it does not exist.
_UPDATE_IF = """
local cur = redis.call('HGET', KEYS[1], 'status')
if not cur then return {-1, ''} end
if not string.find(',' .. ARGV[1] .. ',', ',' .. cur .. ',', 1, true) then return {0, cur} end
if #ARGV > 5 then redis.call('HSET', KEYS[1], unpack(ARGV, 6)) end
""" + publish_change_lua("ARGV[2]", "ARGV[3]", "ARGV[4]", "ARGV[5]") + """
return {1, cur}
"""

# KEYS[1] = outputs hash, KEYS[2] = job hash, KEYS[3] = the expected-generate ledger. ARGV[1] = index,
# ARGV[2] = result JSON, ARGV[3] = the output's ledger member.
# Records one output's result (first write wins, a redelivery cannot overwrite a stored success) and returns
# the number of resolved outputs, so exactly one caller sees the count reach num_images. The output no longer
# waits for a generate message, so its ledger entry goes in the same step (shared/jobs/expected.py).
_RECORD_OUTPUT = """
redis.call('ZREM', KEYS[3], ARGV[3])
if redis.call('EXISTS', KEYS[2]) == 0 then return -1 end
redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
return redis.call('HLEN', KEYS[1])
"""

TerminalHook = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class CasResult:
    ok: bool
    previous: JobStatus | None  # None when the job does not exist


@dataclass(frozen=True, slots=True)
class Created:
    """What `JobStore.create` read back in its transaction."""

    position: int | None  # 1-based place in the waiting line it was created in
    rate_per_s: float | None  # the kept finish rate (None: not kept right now)
    admit_reply: object = None  # the reply of the admission queued by `admit` (a result or an exception)


class JobStore(StatusReads, RequestMemory, ExpectedGenerate, Upkeep):
    """All Redis reads and writes of job records. Pass the same clock the caller uses.

    Queue positions and the ETA are in `shared.jobs.waiting` (WaitingLines), the one-round-trip status read in
    `shared.jobs.reads` (StatusReads, over WaitingLines), idempotency keys and result-cache lookups in
    `shared.jobs.requests` (RequestMemory), the ledger of expected generate messages in `shared.jobs.expected`
    (ExpectedGenerate): the same store, split by concept.
    """


    def __init__(self, r: redis.Redis, prefix: str, clock: Clock, on_terminal: TerminalHook | None = None) -> None:
        self._r = r
        self._keys = JobKeys(prefix)
        self.clock = clock
        self.on_terminal = on_terminal  # called once per job, by the winner of the terminal write
        self._update_if_script = r.register_script(_UPDATE_IF)
        self._record_output = r.register_script(_RECORD_OUTPUT)
        self._read_script = r.register_script(READ_SCRIPT)  # the status read (shared/jobs/reads.py)
        self.webhooks = WebhookOutbox(r, self._keys, clock)
        self.events = JobEvents(r, self._keys, clock)  # change notifications (waiting clients)

    # -- creation and reads -------------------------------------------------------------------------
    def create(self, job: Job, *, waiting_queue: str = "preprocess",
               admit: Callable[[redis.client.Pipeline], None] | None = None) -> Created:
        """Write the record and its indexes in one transaction, and read back the job's place in line and the
        kept finish rate in the same round trip. `admit` may queue the job's admission on the same transaction
        (the enqueuer's `admit_preprocess`); its reply is `Created.admit_reply` (None when it queued nothing).
        Without `admit`, call this before enqueueing anything."""
        created_ms = job.created_at * 1000
        k = self._keys
        pipe = self._r.pipeline(transaction=True)
        pipe.hset(k.job(job.id), mapping=cast("dict[Any, Any]", job.to_hash()))
        pipe.zadd(k.expiry, {job.id: job.expires_at})
        pipe.zadd(k.deadlines, {job.id: job.deadline_at})
        pipe.zadd(k.owner_jobs(job.owner), {job.id: created_ms})
        pipe.zadd(k.owner_active(job.owner), {job.id: created_ms})
        pipe.zadd(k.waiting(waiting_queue), {job.id: created_ms})
        before = len(pipe)
        if admit is not None:
            admit(pipe)
        admitted = len(pipe) > before
        pipe.zrank(k.waiting(waiting_queue), job.id)
        pipe.get(k.throughput)
        *writes, rank, rate = pipe.execute(raise_on_error=False)
        reply = writes.pop() if admitted else None
        for result in (*writes, rank, rate):  # the admission's own error is the admission's to handle
            if isinstance(result, Exception):
                raise result
        return Created(position=int(rank) + 1 if rank is not None else None,
                       rate_per_s=float(rate) if rate is not None else None, admit_reply=reply)

    def get(self, job_id: str) -> Job | None:
        """The job, or None if unknown. Raises Gone if it expired (deleted or past expires_at). One round trip
        (the status read, `shared/jobs/reads.py`; its place in line comes along and is dropped here)."""
        read = self.read(job_id, eta=False)
        return read.job if read is not None else None

    def owner_of(self, job_id: str) -> str | None:
        """The owner of a live or expired-but-not-yet-swept job; None if unknown or swept."""
        value = self._r.hget(self._keys.job(job_id), "owner")
        return str(value) if value is not None else None


    def cancel_requested(self, job_id: str) -> bool:
        return self._r.hget(self._keys.job(job_id), "cancel_requested") == "1"

    def generate_enqueued(self, job_id: str) -> bool:
        """True once every generate task of the job was sent (a redelivered preprocess must stop)."""
        return self._r.hget(self._keys.job(job_id), "generate_enqueued") == "1"

    def prepared_inputs(self, job_id: str) -> dict[int, PreparedInput]:
        """What preprocessing stored for each input, by input index."""
        raw = self._r.hget(self._keys.job(job_id), "prepared") or "[]"
        return {p.index: p for p in (PreparedInput.from_dict(d) for d in json.loads(str(raw)))}

    # -- state changes ------------------------------------------------------------------------------
    def _update_if(self, job_id: str, statuses: Iterable[str], fields: dict[str, Any]) -> CasResult:
        """Set `fields` only if the job's status is one of `statuses` (atomic)."""
        flat: list[str] = []
        for name, value in fields.items():
            flat += [name, _encode(value)]
        # The change event goes out from the same script (one round trip, and only when the write happened).
        event = self.events.event_args(job_id, fields) if ("status" in fields or "stage" in fields) \
            else self.events.no_event(job_id)
        if fields.get("status") in TERMINAL:  # the terminal write records the webhook owed in the same script
            code, prev = self.webhooks.finish_if(job_id, statuses, flat, event)
        else:
            code, prev = self._update_if_script(keys=[self._keys.job(job_id)],
                                                args=[",".join(statuses), *event, *flat])
        return CasResult(ok=int(code) == 1, previous=(JobStatus(str(prev)) if int(code) != -1 else None))

    def transition(self, job_id: str, to: JobStatus | str, fields: dict[str, Any] | None = None) -> CasResult:
        """Move to status `to` if the state machine allows it from the current status."""
        to = JobStatus(to)
        result = self._update_if(job_id, TRANSITIONS[to], {"status": to, **(fields or {})})
        if result.ok and to in TERMINAL:
            self._after_terminal(job_id)
        return result

    def set_stage(self, job_id: str, stage: JobStage | str) -> bool:
        """Record the stage of an active job (never touches a finished one)."""
        return self._update_if(job_id, ACTIVE, {"stage": JobStage(stage)}).ok

    def set_waiting(self, job_id: str, reason: str, until: float) -> bool:
        """Stage waiting_for_quota with why and until when (shown on the job while it waits)."""
        return self._update_if(job_id, ACTIVE, {"stage": JobStage.WAITING_FOR_QUOTA, "waiting_reason": reason,
                                                "waiting_until": until}).ok

    def start_preprocessing(self, job_id: str) -> CasResult:
        """queued → running, stage preprocessing (one starter wins)."""
        now = self.clock.now()
        return self.transition(job_id, JobStatus.RUNNING, {"started_at": now, "stage": JobStage.PREPROCESSING,
                                                            "preprocess_started_at": now})

    def mark_prepared(self, job_id: str, prepared: Sequence[PreparedInput]) -> bool:
        """Preprocessing is done: the prepared inputs are stored and generation starts."""
        return self._update_if(job_id, ACTIVE, {
            "stage": JobStage.GENERATING, "preprocess_done_at": self.clock.now(),
            "prepared": json.dumps([p.to_dict() for p in prepared])}).ok

    def mark_generate_enqueued(self, job_id: str) -> bool:
        """Every generate task of the job was sent; a redelivered preprocess task stops at this."""
        return self._update_if(job_id, (JobStatus.RUNNING, JobStatus.CANCELING), {"generate_enqueued": "1"}).ok

    def set_text(self, job_id: str, text: str) -> bool:
        """Text the provider returned beside an image (the last one wins)."""
        return self._update_if(job_id, (JobStatus.RUNNING, JobStatus.CANCELING), {"text": text}).ok

    def finish(self, job_id: str, status: JobStatus | str, *, error: JobError | None = None,
               text: str | None = None, generate_done_at: float | None = None) -> CasResult:
        """The one terminal write. Only the caller that gets ok=True may fire webhooks/metrics."""
        status = JobStatus(status)
        assert status in TERMINAL
        fields: dict[str, Any] = {"stage": JobStage.DONE, "finished_at": self.clock.now()}
        if generate_done_at is not None:
            fields["generate_done_at"] = generate_done_at
        if error is not None:
            fields["error"] = json.dumps(error.to_dict())
        if text:
            fields["text"] = text
        return self.transition(job_id, status, fields)

    def fail(self, job_id: str, code: str, details: str) -> bool:
        """End a job with an error from outside the normal flow (bad input, poison message, crash)."""
        return self.finish(job_id, JobStatus.FAILED, error=job_error(code, details)).ok

    def _after_terminal(self, job_id: str) -> None:
        now = self.clock.now()
        k = self._keys
        owner, num_images = self._r.hmget(k.job(job_id), ["owner", "num_images"])
        pipe = self._r.pipeline(transaction=False)
        if owner:
            pipe.zrem(k.owner_active(str(owner)), job_id)
        pipe.zrem(k.deadlines, job_id)
        pipe.zrem(k.generate_expected, *expected_members(job_id, int(num_images or 1)))
        for queue in WAITING_QUEUES:
            pipe.zrem(k.waiting(queue), job_id)
        pipe.zadd(k.recent_finishes, {job_id: now})
        pipe.zremrangebyscore(k.recent_finishes, "-inf", now - self.THROUGHPUT_WINDOW_S)
        pipe.zremrangebyrank(k.recent_finishes, 0, -self.THROUGHPUT_MAX_SAMPLES - 1)
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
        error = job_error("canceled", "canceled by the client before it started")
        fields = {"status": JobStatus.CANCELED, "stage": JobStage.DONE, "finished_at": self.clock.now(),
                  "cancel_requested": "1", "error": json.dumps(error.to_dict())}
        queued = self._update_if(job_id, [JobStatus.QUEUED], fields)
        if queued.ok:
            self._after_terminal(job_id)
            return queued
        if queued.previous is None or queued.previous in TERMINAL:
            return queued
        if queued.previous == JobStatus.CANCELING:
            return CasResult(ok=True, previous=JobStatus.CANCELING)
        return self.transition(job_id, JobStatus.CANCELING, {"cancel_requested": "1"})

    def cancel_now_if_idle(self, job_id: str, busy: Callable[[], bool]) -> bool:
        """Finish a `canceling` job at once when none of its outputs is at the provider.

        Order matters: the cancel flag is already set, and a worker checks it *after* taking its limiter lease,
        so if `busy()` (leases held for this job) is false now, no provider call for this job can start later.
        Only once generate tasks exist (before that, preprocessing sees the flag and ends the job itself).
        """
        h = self._r.hmget(self._keys.job(job_id), ["status", "generate_enqueued", "num_images"])
        if h[0] != JobStatus.CANCELING or h[1] != "1" or busy():
            return False
        canceled = json.dumps(OutputResult.canceled().to_dict())
        for index in range(int(h[2] or 1)):
            self._r.hsetnx(self._keys.outputs(job_id), str(index), canceled)
        return self.finish_canceled(job_id).ok

    def finish_canceled(self, job_id: str, *, generate_done_at: float | None = None) -> CasResult:
        """The terminal write of a job the client canceled after it started; says what was billed."""
        billed = int(self._r.hget(self._keys.job(job_id), "billed_calls") or 0)
        return self.finish(job_id, JobStatus.CANCELED, generate_done_at=generate_done_at, error=job_error(
            "canceled", f"canceled by the client; billed provider calls: {billed}"))

    # -- outputs and attempts -----------------------------------------------------------------------
    def record_output(self, job_id: str, index: int, result: OutputResult) -> int:
        """Store one output's result (first write wins); returns how many outputs are resolved (-1: job gone)."""
        k = self._keys
        return int(self._record_output(keys=[k.outputs(job_id), k.job(job_id), k.generate_expected],
                                       args=[index, json.dumps(result.to_dict()), expected_member(job_id, index)]))

    def fail_output(self, job_id: str, index: int, error: JobError) -> int:
        """Output `index` will not be produced; returns how many outputs are resolved (-1: job gone)."""
        return self.record_output(job_id, index, OutputResult.failed(error))

    def add_attempt(self, job_id: str, attempt: Attempt, *, billed: bool = False) -> bool:
        """Append one provider call to the job's attempts (and count it as billed) in one round trip; returns
        whether the client has asked to cancel meanwhile (what the caller checks next)."""
        k = self._keys
        pipe = self._r.pipeline(transaction=False)
        pipe.rpush(k.attempts(job_id), json.dumps(attempt.to_dict()))
        if billed:
            pipe.hincrby(k.job(job_id), "billed_calls", 1)
        pipe.hget(k.job(job_id), "cancel_requested")
        return pipe.execute()[-1] == "1"

    # -- result cache hits (the lookups are in RequestMemory) ---------------------------------------
    def finish_from_cache(self, job_id: str, cached: Job) -> bool:
        """A cache hit: `job_id` (queued, its output blobs already copied) ends `succeeded` with `cached`'s
        results, without a queue or a provider call."""
        for index, result in sorted(cached.outputs.items()):
            self.record_output(job_id, index, result)
        now = self.clock.now()
        self.transition(job_id, JobStatus.RUNNING, {"started_at": now, "preprocess_started_at": now,
                                                    "preprocess_done_at": now})
        return self.finish(job_id, JobStatus.SUCCEEDED, text=cached.text, generate_done_at=now).ok

    def forget_cache_hit(self, job_id: str) -> None:
        """The cached job vanished while we copied it: drop what was copied, the job runs normally."""
        self._r.delete(self._keys.outputs(job_id))
        self._update_if(job_id, [JobStatus.QUEUED], {"cached_from": ""})

    # -- listing ------------------------------------------------------------------------------------
    def list_ids(self, owner: str, *, before_ms: float | None, limit: int,
                 inclusive: bool = False) -> list[tuple[str, float]]:
        """Newest first, older than `before_ms` (or equal, with `inclusive`, for tie-safe cursors)."""
        top = "+inf" if before_ms is None else (repr(before_ms) if inclusive else f"({before_ms!r}")
        rows: list[Any] = list(self._r.zrevrangebyscore(self._keys.owner_jobs(owner), top, "-inf", start=0,
                                                        num=limit, withscores=True))
        return [(str(row[0]), float(row[1])) for row in rows]


def _encode(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)
