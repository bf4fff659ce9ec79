"""Per-key intake limits: submissions per minute and jobs waiting at once (docs/api.md, "Limits per key").

Submissions per minute use the `limits` library's moving window on Redis (`MovingWindowRateLimiter` over
`RedisStorage`, handed the process's own Redis connection pool, so it shares the client's address, database and
timeouts): exactly N submissions in any 60 s, atomic across every web process, and when the quota is spent the
time until the oldest submission leaves the window is exactly the `Retry-After`. Not flask-limiter: its
decorator model counts every request of a decorated route and renders its own 429, while here one route consumes,
every other /v1 route only reports the state in `RateLimit-*` headers, the limit differs per key, and the 429
must be our error body.

The library timestamps window entries with the wall clock (`time.time()`) inside its storage, so the arithmetic
against those timestamps (`reset_s`) reads the same clock here; an injected `Clock` could not be passed to it.

Jobs waiting at once are counted by `JobStore.active_count` (the owner's accepted, not yet terminal jobs).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import redis
from limits import RateLimitItemPerMinute
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter

from shared.apikeys import ApiKey
from shared.settings import Settings


@dataclass(frozen=True, slots=True)
class KeyPolicy:
    """The limits that apply to one key: its own (keys file) where set, else the deployment defaults. 0 = none."""

    submissions_per_minute: int
    max_waiting_jobs: int

    @classmethod
    def for_key(cls, key: ApiKey, settings: Settings) -> KeyPolicy:
        per_min, waiting = key.limits.submissions_per_minute, key.limits.max_waiting_jobs
        return cls(submissions_per_minute=settings.key_submissions_per_min if per_min is None else per_min,
                   max_waiting_jobs=settings.key_max_waiting_jobs if waiting is None else waiting)


@dataclass(frozen=True, slots=True)
class RateState:
    """Where a key stands against its submissions-per-minute limit (the IETF RateLimit header fields)."""

    limit: int
    remaining: int
    reset_s: int  # seconds until another submission is allowed again (0: the full quota is available)
    allowed: bool = True  # False: this submission was refused

    @property
    def retry_after_s(self) -> int:
        return max(1, self.reset_s)

    def headers(self) -> dict[str, str]:
        return {"RateLimit-Limit": str(self.limit), "RateLimit-Remaining": str(self.remaining),
                "RateLimit-Reset": str(self.reset_s),
                "RateLimit-Policy": f"{self.limit};w={SubmissionLimiter.WINDOW_S}"}


class SubmissionLimiter:
    """Submissions per minute per owner, shared by every web process through Redis (`P:ratelimit:*`)."""

    WINDOW_S = 60

    def __init__(self, r: redis.Redis, prefix: str) -> None:
        storage = RedisStorage("redis://", connection_pool=r.connection_pool, key_prefix=f"{prefix}:ratelimit")
        self._limiter = MovingWindowRateLimiter(storage)

    def hit(self, owner: str, per_minute: int) -> RateState:
        """Count one submission of `owner` if the window has room; the state after it (allowed=False if not)."""
        item = RateLimitItemPerMinute(per_minute)
        allowed = self._limiter.hit(item, owner)
        return self._state(item, owner, allowed)

    def peek(self, owner: str, per_minute: int) -> RateState:
        """The state without counting anything."""
        item = RateLimitItemPerMinute(per_minute)
        return self._state(item, owner, True)

    def _state(self, item: RateLimitItemPerMinute, owner: str, allowed: bool) -> RateState:
        stats = self._limiter.get_window_stats(item, owner)
        remaining = max(0, int(stats.remaining))
        reset = 0 if remaining >= item.amount else max(0, math.ceil(stats.reset_time - time.time()))
        return RateState(limit=item.amount, remaining=remaining, reset_s=reset, allowed=allowed)
