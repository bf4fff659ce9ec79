"""Spend rate: estimated provider cost per model in per-minute buckets, for the health report's cost per hour.

Owns the keys `{prefix}:spend:m:{minute}` (a hash model → estimated USD, kept `RETENTION_S`). Written by the
generate worker once per answered provider call that has a cost (`record`, best effort); read by the health
report (`last_hour`). Costs are estimates at the catalogue's prices (shared/models.toml), like every `cost_usd`.
The per-owner, per-day totals for `GET /v1/usage` stay in `shared.usage_ledger`.
"""

from __future__ import annotations

import redis

from shared.clock import Clock

RETENTION_S = 2 * 3600
HOUR_MINUTES = 60


class SpendRecorder:
    def __init__(self, r: redis.Redis, prefix: str, clock: Clock) -> None:
        self._r = r
        self._p = f"{prefix}:spend:m"
        self._clock = clock

    def _key(self, minute: int) -> str:
        return f"{self._p}:{minute}"

    def record(self, model: str, cost_usd: float | None) -> None:
        if not cost_usd or cost_usd <= 0:
            return
        key = self._key(int(self._clock.now() // 60))
        pipe = self._r.pipeline(transaction=False)
        pipe.hincrbyfloat(key, model or "-", cost_usd)
        pipe.expire(key, RETENTION_S)
        pipe.execute()

    def last_hour(self) -> dict[str, object]:
        """Estimated USD spent over the last 60 minute buckets (the current, partial one included), by model."""
        now_minute = int(self._clock.now() // 60)
        pipe = self._r.pipeline(transaction=False)
        for minute in range(now_minute - HOUR_MINUTES + 1, now_minute + 1):
            pipe.hgetall(self._key(minute))
        by_model: dict[str, float] = {}
        for bucket in pipe.execute():
            for model, usd in bucket.items():
                name = model.decode() if isinstance(model, bytes) else str(model)
                by_model[name] = by_model.get(name, 0.0) + float(usd)
        return {"total": round(sum(by_model.values()), 6),
                "by_model": {m: round(v, 6) for m, v in sorted(by_model.items())}}
