"""The status read: a job, its place in line and the ETA in one Redis round trip (`GET /v1/jobs/{id}`, polls).

Part of `JobStore` (a mixin over its private Redis handle and key layout). One script (`READ_SCRIPT`, one command
instead of a pipeline of eight: +10 % status polls per web worker under py-spy, `python -m bench.profile_paths
status`) returns the record, its outputs, attempts, webhook state, the job's rank in both waiting lines (ZRANK,
O(log n)) and the fleet's finish rate; for an unknown id, whether its expiry marker exists. The rate is precomputed
(`P:stats:throughput`, refreshed by the first reader after it lapses, every RATE_TTL_S), so a poll never scans the
recent finishes. The owner check runs on the record from the same reply: a job of another key reads as unknown
before its expiry is reported (no id probing).
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.commands.core import Script

from shared.errors import Gone
from shared.jobs.model import Job
from shared.jobs.waiting import WAITING_QUEUES, WaitingLines, eta_s

# KEYS: job hash, outputs hash, attempts list, expiry marker, webhook hash, kept finish rate, then the waiting
# lines. ARGV[1]: job id. Returns {0, expiry marker exists} for an unknown job, else {1, record, outputs,
# attempts, webhook (hashes as flat field/value lists), rate ('' when lapsed), rank in each line (-1: not in it)}.
READ_SCRIPT = """
local h = redis.call('HGETALL', KEYS[1])
if #h == 0 then return {0, redis.call('EXISTS', KEYS[4])} end
local out = {1, h, redis.call('HGETALL', KEYS[2]), redis.call('LRANGE', KEYS[3], 0, -1),
             redis.call('HGETALL', KEYS[5]), redis.call('GET', KEYS[6]) or ''}
for i = 7, #KEYS do out[#out + 1] = redis.call('ZRANK', KEYS[i], ARGV[1]) or -1 end
return out
"""


def _pairs(flat: list[str]) -> dict[str, str]:
    """A hash as HGETALL inside a script returns it (field, value, field, value, ...) as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


@dataclass(frozen=True, slots=True)
class JobRead:
    """A job as a status read sees it: the record, its 1-based place in line and the ETA (None when not waiting
    or unknown)."""

    job: Job
    queue_position: int | None
    estimated_wait_s: float | None


class StatusReads(WaitingLines):
    _read_script: Script  # READ_SCRIPT, registered by JobStore

    def read(self, job_id: str, owner: str | None = None, *, eta: bool = True) -> JobRead | None:
        """The job with its place in line, or None if unknown (or, with `owner`, not that owner's).

        Raises Gone if it expired (deleted or past expires_at) and is not someone else's. With `eta=False` the
        ETA is left out (None) rather than computed when the kept rate has lapsed.
        """
        k = self._keys
        reply = self._read_script(keys=[k.job(job_id), k.outputs(job_id), k.attempts(job_id), k.gone(job_id),
                                        k.webhook(job_id), k.throughput,
                                        *(k.waiting(queue) for queue in WAITING_QUEUES)], args=[job_id])
        if int(reply[0]) == 0:
            if int(reply[1]):
                raise Gone(f"job {job_id} expired and was deleted")
            return None
        _, flat, flat_outputs, attempts, flat_webhook, rate, *raw_ranks = reply
        h, outputs, webhook = _pairs(flat), _pairs(flat_outputs), _pairs(flat_webhook)
        ranks = [int(r) if int(r) >= 0 else None for r in raw_ranks]
        if owner is not None and h.get("owner") != owner:
            return None
        job = Job.from_hash(h, outputs, attempts, webhook)
        if job.expires_at <= self.clock.now():
            raise Gone(f"job {job_id} expired at {job.expires_at:.0f}")
        position = None if job.terminal else next((int(r) + 1 for r in ranks if r is not None), None)
        if position is None or not eta:  # eta=False: never a second round trip for a lapsed rate
            return JobRead(job, position, None)
        return JobRead(job, position, eta_s(position, float(rate) if rate else self.refresh_rate()))
