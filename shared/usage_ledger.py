"""Per-owner, per-day usage counters: provider calls, tokens and estimated cost, for GET /v1/usage.

Owns the keys `{prefix}:usage:{YYYY-MM-DD}:{owner}` (a hash of counters) and `{prefix}:usage:{YYYY-MM-DD}:owners`
(the owners with usage that day), kept `RETENTION_DAYS`. Written by the generate worker once per answered
provider call (`record`); read by the API (`totals`, `owners`). Days are UTC, from the injected clock. Job keys
stay in `shared.jobs`: this is billing-style accounting beside them, not part of the job record.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import redis

from shared.clock import Clock
from shared.jobs.options import Usage

RETENTION_DAYS = 400
_TOKEN_FIELDS = tuple(Usage.__dataclass_fields__)


@dataclass(frozen=True, slots=True)
class UsageTotals:
    calls: int = 0
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0

    def to_dict(self) -> dict[str, object]:
        return {"calls": self.calls, "usage": self.usage.to_dict(), "cost_usd": round(self.cost_usd, 6)}


def days_of(period: str, today: dt.date) -> list[dt.date]:
    """`day`: today; `month`: the 1st of this month through today (UTC)."""
    if period == "day":
        return [today]
    return [today.replace(day=d) for d in range(1, today.day + 1)]


class UsageLedger:
    def __init__(self, r: redis.Redis, prefix: str, clock: Clock) -> None:
        self._r = r
        self._prefix = prefix
        self._clock = clock

    def today(self) -> dt.date:
        return dt.datetime.fromtimestamp(self._clock.now(), dt.UTC).date()

    def _key(self, day: dt.date, owner: str) -> str:
        return f"{self._prefix}:usage:{day.isoformat()}:{owner}"

    def _owners_key(self, day: dt.date) -> str:
        return f"{self._prefix}:usage:{day.isoformat()}:owners"

    def record(self, owner: str, usage: Usage, cost_usd: float | None) -> None:
        day = self.today()
        key, owners = self._key(day, owner), self._owners_key(day)
        ttl = RETENTION_DAYS * 86400
        pipe = self._r.pipeline(transaction=False)
        pipe.hincrby(key, "calls", 1)
        for name in _TOKEN_FIELDS:
            value = getattr(usage, name)
            if value:
                pipe.hincrby(key, name, value)
        if cost_usd:
            pipe.hincrbyfloat(key, "cost_usd", cost_usd)
        pipe.sadd(owners, owner)
        pipe.expire(key, ttl)
        pipe.expire(owners, ttl)
        pipe.execute()

    def totals(self, owner: str, days: list[dt.date]) -> UsageTotals:
        pipe = self._r.pipeline(transaction=False)
        for day in days:
            pipe.hgetall(self._key(day, owner))
        total = UsageTotals()
        for h in pipe.execute():
            if not h:
                continue
            fields = {(k.decode() if isinstance(k, bytes) else k): v for k, v in h.items()}
            total = UsageTotals(calls=total.calls + int(fields.get("calls") or 0),
                                usage=total.usage + Usage.from_dict(fields),
                                cost_usd=total.cost_usd + float(fields.get("cost_usd") or 0))
        return total

    def owners(self, days: list[dt.date]) -> list[str]:
        pipe = self._r.pipeline(transaction=False)
        for day in days:
            pipe.smembers(self._owners_key(day))
        found: set[str] = set()
        for members in pipe.execute():
            found.update(m.decode() if isinstance(m, bytes) else str(m) for m in members)
        return sorted(found)
