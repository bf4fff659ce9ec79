"""Fair queues: round-robin between owners (API keys) in front of a Celery queue, in Redis.

One FIFO per stage let a key with a backlog of thousands delay every other key's job by that backlog. Here each
owner has its own line per stage, and a ring holds the owners whose line is not empty. Work reaches the Celery
queue only through `take`, which pops one item per owner in ring order and only while fewer than `ready`
messages wait in the Celery queue (messages a worker has not reserved yet; NANOEDIT_FAIR_QUEUE_DEPTH). So a
newcomer's job waits behind at most the tasks already running, `ready` messages and one item of each other owner
with a backlog (docs/architecture.md, "Fair scheduling between keys").

Nothing is lost between the line and Celery: `take` moves each item into a `taken` sorted set (scored with
Redis's clock) in the same atomic step; the caller sends it, then `ack`s it. A send that fails is given back at
the head of its line at once (`give_back`); a caller that dies between `take` and `ack` leaves its items in
`taken`, and the first `take` after `stale_after_s` (60 s: twice the broker's socket timeout, so a slow send is
not mistaken for a dead one) puts them back at the head of their lines. Two pumps never take the same item (each
`take` is one Lua script), and the budget counts what is taken but not yet sent, so concurrent pumps cannot
overfill the Celery queue either.

Keys (prefix `P`, queue `q`): `P:fair:{q}:ring` (list of owners), `P:fair:{q}:line:{owner}` (list of items),
`P:fair:{q}:taken` (zset "owner|item" → taken at, ms). The take script reads the line keys it builds from the
prefix and `LLEN`s the Celery queue's list (kombu's Redis transport: the queue name, unprefixed): fine on a single
Redis or a replica set, which is what kombu supports; it would need hash tags on Redis Cluster.

Written here rather than taken from a library: Celery has no fair scheduling between message groups, and the usual
workaround (one Celery queue per tenant) needs workers to subscribe to every new key's queue; this is four small
Lua scripts over lists.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import redis

# Give back entries at the head of their lines (in order) and re-ring owners whose line was empty.
# Shared by `give_back` and the stale sweep at the top of `take`.
_RESTORE = """
local function restore(ring, taken, line_prefix, entries)
  for i = #entries, 1, -1 do
    local e = entries[i]
    local sep = string.find(e, '|', 1, true)
    if sep then
      local owner = string.sub(e, 1, sep - 1)
      if redis.call('ZREM', taken, e) == 1 then
        if redis.call('LPUSH', line_prefix .. owner, string.sub(e, sep + 1)) == 1 then
          redis.call('RPUSH', ring, owner)
        end
      end
    end
  end
end
"""

# KEYS[1] = ring, KEYS[2] = the owner's line. ARGV[1] = owner, ARGV[2..] = items.
_PUSH = """
local n = redis.call('RPUSH', KEYS[2], unpack(ARGV, 2))
if n == #ARGV - 1 then redis.call('RPUSH', KEYS[1], ARGV[1]) end
return n
"""

# The push of a job's first admission, sent inside the job record's own transaction (`push_in`): KEYS[1] = ring,
# KEYS[2] = the owner's line, KEYS[3] = taken, KEYS[4] = the Celery queue's list. ARGV[1] = owner, ARGV[2] =
# ready, ARGV[3..] = items. Returns 1 when the Celery queue has room (a pump now would move work), else 0.
_PUSH_ROOM = """
local n = redis.call('RPUSH', KEYS[2], unpack(ARGV, 3))
if n == #ARGV - 2 then redis.call('RPUSH', KEYS[1], ARGV[1]) end
if tonumber(ARGV[2]) - redis.call('LLEN', KEYS[4]) - redis.call('ZCARD', KEYS[3]) > 0 then return 1 end
return 0
"""

# KEYS[1] = ring, KEYS[2] = taken, KEYS[3] = the Celery queue's list.
# ARGV[1] = line key prefix, ARGV[2] = ready (messages to keep in the Celery queue), ARGV[3] = stale after (ms).
# Returns the taken entries ("owner|item"), one per owner per turn of the ring.
_TAKE = _RESTORE + """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[3]), 'LIMIT', 0, 1000)
if #stale > 0 then restore(KEYS[1], KEYS[2], ARGV[1], stale) end
local budget = tonumber(ARGV[2]) - redis.call('LLEN', KEYS[3]) - redis.call('ZCARD', KEYS[2])
local out = {}
while budget > 0 do
  local owner = redis.call('LPOP', KEYS[1])
  if not owner then break end
  local line = ARGV[1] .. owner
  local item = redis.call('LPOP', line)
  if item then
    if redis.call('LLEN', line) > 0 then redis.call('RPUSH', KEYS[1], owner) end
    local e = owner .. '|' .. item
    redis.call('ZADD', KEYS[2], now, e)
    out[#out + 1] = e
    budget = budget - 1
  end
end
return out
"""

# KEYS[1] = ring, KEYS[2] = taken. ARGV[1] = line key prefix, ARGV[2..] = entries to give back.
_GIVE_BACK = _RESTORE + """
restore(KEYS[1], KEYS[2], ARGV[1], {unpack(ARGV, 2)})
return 0
"""

# KEYS[1] = ring, KEYS[2] = taken. ARGV[1] = line key prefix. Items waiting in lines + taken, owners in the ring.
_BACKLOG = """
local owners = redis.call('LRANGE', KEYS[1], 0, -1)
local n = redis.call('ZCARD', KEYS[2])
for _, owner in ipairs(owners) do n = n + redis.call('LLEN', ARGV[1] .. owner) end
return {n, #owners}
"""

# KEYS[1] = ring, KEYS[2] = taken. ARGV[1] = line key prefix, ARGV[2] = limit. Every item waiting in a line or
# taken and not yet acknowledged, read atomically; false (nil) when there are more than `limit`.
_PENDING = """
local out = {}
for _, e in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  out[#out + 1] = string.sub(e, (string.find(e, '|', 1, true) or 0) + 1)
end
for _, owner in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  if #out + redis.call('LLEN', ARGV[1] .. owner) > tonumber(ARGV[2]) then return false end
  for _, item in ipairs(redis.call('LRANGE', ARGV[1] .. owner, 0, -1)) do out[#out + 1] = item end
end
if #out > tonumber(ARGV[2]) then return false end
return out
"""


@dataclass(frozen=True, slots=True)
class Taken:
    """One item `take` moved out of `owner`'s line; send it, then `ack` it."""

    owner: str
    item: str

    @property
    def entry(self) -> str:
        return f"{self.owner}|{self.item}"

    @classmethod
    def parse(cls, entry: str) -> Taken:
        owner, _, item = entry.partition("|")
        return cls(owner, item)


@dataclass(frozen=True, slots=True)
class Backlog:
    items: int  # waiting in lines, plus taken and not yet acknowledged
    owners: int  # owners with a non-empty line


class FairQueue:
    """Per-owner lines and a round-robin ring per queue (module docstring). Owners must not contain '|'."""

    def __init__(self, r: redis.Redis, prefix: str, *, stale_after_s: float = 60.0) -> None:
        self._r = r
        self._p = f"{prefix}:fair"
        self.stale_after_s = stale_after_s
        self._push = r.register_script(_PUSH)
        self._push_room = r.register_script(_PUSH_ROOM)
        self._take = r.register_script(_TAKE)
        self._give_back = r.register_script(_GIVE_BACK)
        self._backlog = r.register_script(_BACKLOG)
        self._pending = r.register_script(_PENDING)

    def _ring(self, queue: str) -> str:
        return f"{self._p}:{queue}:ring"

    def _taken(self, queue: str) -> str:
        return f"{self._p}:{queue}:taken"

    def _line_prefix(self, queue: str) -> str:
        return f"{self._p}:{queue}:line:"

    def push(self, queue: str, owner: str, *items: str) -> None:
        """Append `items` to `owner`'s line (FIFO within an owner); the owner joins the ring if it was idle."""
        if not owner or "|" in owner:
            raise ValueError(f"owner {owner!r} must be non-empty and must not contain '|'")
        if not items or not all(items):
            raise ValueError("push needs at least one non-empty item")
        self._push(keys=[self._ring(queue), self._line_prefix(queue) + owner], args=[owner, *items])

    def push_in(self, pipe: redis.client.Pipeline, queue: str, owner: str, *items: str, ready: int,
                broker_key: str | None = None) -> None:
        """`push`, as one command queued on `pipe` (the caller's transaction, e.g. the job record's), answering 1
        when the Celery queue has room for a pump. Sent by hash (EVALSHA) without the pipeline's script check, so
        the transaction stays one round trip: after a Redis restart the reply is a NOSCRIPT error instead, and
        the caller pushes again with `push` (which loads the script)."""
        if not owner or "|" in owner:
            raise ValueError(f"owner {owner!r} must be non-empty and must not contain '|'")
        if not items or not all(items):
            raise ValueError("push needs at least one non-empty item")
        pipe.evalsha(self._push_room.sha, 4, self._ring(queue), self._line_prefix(queue) + owner,
                     self._taken(queue), broker_key or queue, owner, ready, *items)

    def load_scripts(self) -> None:
        """Load the script `push_in` sends by hash (once per process; a restarted Redis is handled by the caller)."""
        self._r.script_load(_PUSH_ROOM)

    def take(self, queue: str, *, ready: int, broker_key: str | None = None) -> list[Taken]:
        """Take up to `ready` − (messages in the Celery list `broker_key`, default `queue`) − (taken, not yet
        acked) items, round-robin between owners. Also puts back entries taken more than `stale_after_s` ago."""
        entries = self._take(keys=[self._ring(queue), self._taken(queue), broker_key or queue],
                             args=[self._line_prefix(queue), ready, int(self.stale_after_s * 1000)])
        return [Taken.parse(str(e)) for e in entries]

    def ack(self, queue: str, taken: Sequence[Taken]) -> None:
        """These items reached the Celery queue."""
        if taken:
            self._r.zrem(self._taken(queue), *(t.entry for t in taken))

    def give_back(self, queue: str, taken: Sequence[Taken]) -> None:
        """These items did not reach the Celery queue: back to the head of their lines, in order."""
        if taken:
            self._give_back(keys=[self._ring(queue), self._taken(queue)],
                            args=[self._line_prefix(queue), *(t.entry for t in taken)])

    def backlog(self, queue: str) -> Backlog:
        items, owners = self._backlog(keys=[self._ring(queue), self._taken(queue)], args=[self._line_prefix(queue)])
        return Backlog(items=int(items), owners=int(owners))

    def pending(self, queue: str, limit: int) -> frozenset[str] | None:
        """The items not yet sent to `queue` (in a line, or taken and not yet acknowledged), or None when there
        are more than `limit` (the lost-message reconciler then waits for a shorter backlog)."""
        items = self._pending(keys=[self._ring(queue), self._taken(queue)], args=[self._line_prefix(queue), limit])
        return None if items is None else frozenset(str(i) for i in items)
