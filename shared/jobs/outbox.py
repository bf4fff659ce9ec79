"""The webhook outbox: every job webhook that is owed, recorded by the terminal write itself.

Owns (through `shared.jobs.keys`): the delivery hash `P:job:{id}:webhook`, its attempt log
`P:job:{id}:webhook:log` and the due index `P:webhooks:due` (job id → when a dispatcher should next look at it).

- **Atomic with the terminal write.** `finish_if` is the job's status compare-and-set (the same rule as
  `JobStore._update_if`) that, in the same Lua script, creates the delivery (`pending`, `webhook_id`
  `msg_{id}_{status}`, due now) when the job has a `webhook_url`. A process killed right after the terminal write
  cannot lose the webhook: the entry is already in `P:webhooks:due`, and the beat dispatcher sends it.
- **One sender per attempt.** `claim` is atomic: the entry must be due and not leased; it takes a lease (a dead
  sender's entry becomes due again when the lease ends), numbers the attempt and starts the retry window.
  Redelivered or duplicated Celery messages find nothing to claim and return.
- **Schedule from the outbox.** `record` logs the attempt (capped list) and either ends the delivery
  (`delivered`, `failed`: out of the due index) or sets the next due time; retries never rely on long Celery
  countdowns. `take_due` hands due entries to the dispatcher and pushes them a little into the future, so a lost
  message is dispatched again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

import redis

from shared.clock import Clock
from shared.jobs.events import EventArgs, publish_change_lua
from shared.jobs.keys import JobKeys
from shared.jobs.model import WebhookAttempt, WebhookDelivery, WebhookState

# KEYS: job hash, webhook hash, due zset. ARGV: allowed statuses (csv), job id, now, pending, the change event
# (channel, status, stage: shared/jobs/events.py), then field/value pairs (the terminal fields, status
# included). The status CAS of JobStore._UPDATE_IF plus the outbox entry and the change event.
_FINISH_IF = """
local cur = redis.call('HGET', KEYS[1], 'status')
if not cur then return {-1, ''} end
if not string.find(',' .. ARGV[1] .. ',', ',' .. cur .. ',', 1, true) then return {0, cur} end
redis.call('HSET', KEYS[1], unpack(ARGV, 8))
""" + publish_change_lua("ARGV[2]", "ARGV[5]", "ARGV[6]", "ARGV[7]") + """
local url = redis.call('HGET', KEYS[1], 'webhook_url')
if url and url ~= '' then
  local status = redis.call('HGET', KEYS[1], 'status')
  local expires = tonumber(redis.call('HGET', KEYS[1], 'expires_at') or '0') or 0
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[2], 'state', ARGV[4], 'attempts', 0, 'webhook_id', 'msg_' .. ARGV[2] .. '_' .. status,
             'next_at', ARGV[3], 'leased_until', 0)
  redis.call('EXPIRE', KEYS[2], math.max(60, math.floor(expires - tonumber(ARGV[3]))))
  redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
end
return {1, cur}
"""

# KEYS: due zset, webhook hash. ARGV: job id, now, lease end. Returns {1, attempt n, first_at, webhook_id} or
# {0, why}.
_CLAIM = """
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return {0, 'not_owed'} end
local h = redis.call('HMGET', KEYS[2], 'next_at', 'leased_until', 'webhook_id')
if not h[3] then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return {0, 'not_owed'}
end
local now = tonumber(ARGV[2])
if (tonumber(h[1]) or 0) > now then return {0, 'not_due'} end
if (tonumber(h[2]) or 0) > now then return {0, 'in_flight'} end
local n = redis.call('HINCRBY', KEYS[2], 'attempts', 1)
redis.call('HSETNX', KEYS[2], 'first_at', ARGV[2])
redis.call('HSET', KEYS[2], 'leased_until', ARGV[3])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return {1, n, redis.call('HGET', KEYS[2], 'first_at'), h[3]}
"""

# KEYS: due zset, webhook hash, log list. ARGV: job id, attempt n, attempt JSON, log cap, new state, next due
# ('' = final), now, last_status, last_error, the `delivered` state. A success always ends the delivery; any other
# result changes the schedule only if no later attempt was claimed and it was not delivered meanwhile.
_RECORD = """
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
redis.call('RPUSH', KEYS[3], ARGV[3])
redis.call('LTRIM', KEYS[3], -tonumber(ARGV[4]), -1)
local ttl = redis.call('PTTL', KEYS[2])
if ttl > 0 then redis.call('PEXPIRE', KEYS[3], ttl) end
local delivered = ARGV[5] == ARGV[10]
local h = redis.call('HMGET', KEYS[2], 'attempts', 'state')
if not delivered and ((tonumber(h[1]) or 0) ~= tonumber(ARGV[2]) or h[2] == ARGV[10]) then return 0 end
redis.call('HSET', KEYS[2], 'state', ARGV[5], 'last_status', ARGV[8], 'last_error', ARGV[9], 'last_at', ARGV[7],
           'leased_until', 0, 'next_at', ARGV[6])
if ARGV[6] == '' then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], ARGV[6], ARGV[1])
end
return 1
"""

# KEYS: job hash, webhook hash, due zset. ARGV: job id, now, pending, ttl s. Due now (or when an attempt in flight
# ends); a new retry window starts with the next attempt. A delivery that was never created (a job finished before
# the outbox existed) is created with the same webhook id the terminal write would have given it.
_REDELIVER = """
if redis.call('EXISTS', KEYS[2]) == 0 then
  local status = redis.call('HGET', KEYS[1], 'status') or ''
  redis.call('HSET', KEYS[2], 'attempts', 0, 'webhook_id', 'msg_' .. ARGV[1] .. '_' .. status, 'leased_until', 0)
end
local at = math.max(tonumber(ARGV[2]), tonumber(redis.call('HGET', KEYS[2], 'leased_until')) or 0)
redis.call('HSET', KEYS[2], 'state', ARGV[3], 'next_at', tostring(at))
redis.call('HDEL', KEYS[2], 'first_at')
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('ZADD', KEYS[3], at, ARGV[1])
return tostring(at)
"""

# KEYS: due zset. ARGV: now, when to look again, limit. The due ids, each pushed to `when to look again`.
_TAKE_DUE = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], ARGV[2], id) end
return ids
"""


@dataclass(frozen=True, slots=True)
class WebhookClaim:
    """The right to make attempt `n` of a job's delivery, until `leased_until`."""

    job_id: str
    n: int
    first_attempt_at: float  # start of the retry window
    webhook_id: str
    leased_until: float


class WebhookOutbox:
    """Reads and writes of job webhook deliveries (constructed by `JobStore`, reached as `store.webhooks`)."""

    LOG_CAP = 200  # attempts kept per job (24 h of capped backoff is ~35)

    def __init__(self, r: redis.Redis, keys: JobKeys, clock: Clock) -> None:
        self._r = r
        self._keys = keys
        self.clock = clock
        self._finish_if = r.register_script(_FINISH_IF)
        self._claim = r.register_script(_CLAIM)
        self._record = r.register_script(_RECORD)
        self._redeliver = r.register_script(_REDELIVER)
        self._take_due = r.register_script(_TAKE_DUE)

    def finish_if(self, job_id: str, statuses: Iterable[str], flat_fields: list[str],
                  event: EventArgs) -> tuple[int, str]:
        """The terminal status CAS, creating the delivery and publishing the change in the same script. Returns
        (code, previous status) with the codes of `JobStore._UPDATE_IF`: 1 written, 0 other status, -1 no job."""
        k = self._keys
        code, prev = self._finish_if(keys=[k.job(job_id), k.webhook(job_id), k.webhooks_due],
                                     args=[",".join(statuses), job_id, repr(self.clock.now()),
                                           WebhookState.PENDING.value, *event[1:], *flat_fields])
        return int(code), str(prev)

    def claim(self, job_id: str, lease_s: float) -> WebhookClaim | None:
        """Take the next attempt if it is due and nobody is making one; None otherwise."""
        now = self.clock.now()
        until = now + lease_s
        result = self._claim(keys=[self._keys.webhooks_due, self._keys.webhook(job_id)],
                             args=[job_id, repr(now), repr(until)])
        if int(result[0]) != 1:
            return None
        return WebhookClaim(job_id=job_id, n=int(result[1]), first_attempt_at=float(result[2]),
                            webhook_id=str(result[3]), leased_until=until)

    def record(self, claim: WebhookClaim, attempt: WebhookAttempt, next_at: float | None) -> bool:
        """Log the attempt and move the delivery on: to `attempt.state`, due again at `next_at` (None: final).
        False when the schedule was not changed (a later attempt owns it, or the job is gone)."""
        k = self._keys
        return bool(self._record(
            keys=[k.webhooks_due, k.webhook(claim.job_id), k.webhook_log(claim.job_id)],
            args=[claim.job_id, claim.n, json.dumps(attempt.to_dict()), self.LOG_CAP, attempt.state.value,
                  "" if next_at is None else repr(next_at), repr(self.clock.now()),
                  "" if attempt.http_status is None else str(attempt.http_status), attempt.error,
                  WebhookState.DELIVERED.value]))

    def redeliver(self, job_id: str, keep_until: float) -> float:
        """Send the job's webhook again (a terminal job with a webhook_url; the caller checks), with the same
        webhook id. Returns when it is due."""
        ttl = max(60, int(keep_until - self.clock.now()))
        k = self._keys
        return float(self._redeliver(keys=[k.job(job_id), k.webhook(job_id), k.webhooks_due],
                                     args=[job_id, repr(self.clock.now()), WebhookState.PENDING.value, ttl]))

    def take_due(self, limit: int, look_again_s: float) -> list[str]:
        """Job ids whose delivery is due (for the dispatcher); each is looked at again after `look_again_s`
        unless an attempt reschedules it first (a lost message is so dispatched again)."""
        now = self.clock.now()
        ids = self._take_due(keys=[self._keys.webhooks_due], args=[repr(now), repr(now + look_again_s), limit])
        return [str(i) for i in ids]

    def forget(self, job_id: str) -> None:
        """Nothing is owed any more (the job has no webhook or is gone): drop it from the due index."""
        self._r.zrem(self._keys.webhooks_due, job_id)

    def delivery(self, job_id: str) -> WebhookDelivery | None:
        h = cast("dict[str, str]", self._r.hgetall(self._keys.webhook(job_id)))
        return WebhookDelivery.from_hash(h) if h else None

    def attempts(self, job_id: str) -> list[WebhookAttempt]:
        rows: list[Any] = list(self._r.lrange(self._keys.webhook_log(job_id), 0, -1))
        return [WebhookAttempt.from_dict(json.loads(row)) for row in rows]

    def owed(self) -> int:
        """Deliveries not yet delivered or given up (fleet-wide)."""
        return int(self._r.zcard(self._keys.webhooks_due))
