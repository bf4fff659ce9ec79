"""FleetLimiter: the one provider quota every generate worker, on every machine, shares through Redis.

Owns admission to the provider: a lease-based concurrency cap (a killed holder's slot frees itself after
`lease_s`), requests/min and images/min caps (GCRA, zero burst tolerance), a fleet-wide cooldown after a provider
429, and the runtime overrides of those limits. Every admission decision is one Lua script that reads Redis's own
clock (`TIME`), so workers on machines with skewed clocks still agree; the caller's clock is used only to pace its
own polling (`acquire_blocking`). It must not call the provider, sleep inside Redis, or know about jobs.

Why hand-written: `limits` (5.8) offers single-key fixed/moving/sliding-window rate limits stamped with the
caller's clock, but no lease-based concurrency semaphore, no atomic multi-dimension check-then-charge and no fleet
cooldown. (Celery's `rate_limit` is per worker instance, so it cannot hold a fleet-wide quota either.)

Key layout (all under f"{prefix}:limiter"; times are epoch seconds of Redis `TIME`, stored with %.17g):
    {prefix}:limiter:leases       ZSET  holder -> lease expiry; expired members are dropped by the next acquire
    {prefix}:limiter:config       HASH  runtime overrides: concurrency, rpm, images_per_min, lease_s
                                        (absent field = the env default the caller passes in)
    {prefix}:limiter:tat:requests STRING theoretical arrival time of the next request (GCRA), PX-expiring
    {prefix}:limiter:tat:images   STRING theoretical arrival time of the next image (GCRA), PX-expiring
    {prefix}:limiter:cooldown     STRING end of the fleet cooldown, PX-expiring
    {prefix}:limiter:hold:{model} STRING end of one model's hold (its per-day quota is spent), PX-expiring;
                                        only calls to that model wait (docs/providers.md#429-kinds)
    {prefix}:limiter:model:{model}:leases / :tat:requests / :tat:images
                                        a model's own caps (catalogue `[models.<id>.limits]`), checked in the
                                        same script as the fleet's; only for models that have such limits
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis

from shared.clock import Clock
from shared.limiter_lua import ACQUIRE as _ACQUIRE
from shared.limiter_lua import COOLDOWN as _COOLDOWN
from shared.limiter_lua import RENEW as _RENEW
from shared.limiter_lua import STATE as _STATE

log = logging.getLogger("nanoedit.limiter")

GRANTED = "granted"
REASONS = (GRANTED, "concurrency", "rpm", "images_per_min", "cooldown", "model_hold", "model_concurrency",
           "model_rpm", "model_images_per_min")
_POLLED = ("concurrency", "model_concurrency")  # refusals that end when a lease is released: poll, don't sleep

# field -> (minimum, integral). Python (`_parse_override`) and Lua (`num` below) apply the same rule to a stored
# override, so a hand-edited bad value falls back to the default in both places instead of disagreeing.
_FIELDS: dict[str, tuple[float, bool]] = {
    "concurrency": (1, True),
    "rpm": (0, True),
    "images_per_min": (0, True),
    "lease_s": (0.001, False),
}

@dataclass(frozen=True, slots=True)
class LimitConfig:
    """Effective fleet limits. `lease_s` should exceed the provider timeout unless the holder renews."""

    concurrency: int
    rpm: int = 0  # 0 = no cap
    images_per_min: int = 0  # 0 = no cap
    lease_s: float = 120.0

    def __post_init__(self) -> None:
        for name, (minimum, integral) in _FIELDS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"limiter {name}={value!r} is not a finite number")
            if integral and value != int(value):
                raise ValueError(f"limiter {name}={value!r} is not an integer")
            if value < minimum:
                raise ValueError(f"limiter {name}={value!r} is below the minimum {minimum}")
            object.__setattr__(self, name, int(value) if integral else float(value))


@dataclass(frozen=True, slots=True)
class ModelLimits:
    """One model's own caps, enforced besides the fleet-wide ones (0 = no cap); from the catalogue's
    `[models.<id>.limits]` (shared/models.toml)."""

    concurrency: int = 0
    rpm: int = 0
    images_per_min: int = 0

    def __post_init__(self) -> None:
        for name in ("concurrency", "rpm", "images_per_min"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"model limit {name}={value!r} must be a whole number >= 0")

    @property
    def any(self) -> bool:
        return bool(self.concurrency or self.rpm or self.images_per_min)


@dataclass(frozen=True, slots=True)
class Acquire:
    granted: bool
    wait_s: float  # how long until a retry could succeed; 0 when granted
    reason: str  # one of REASONS


@dataclass(frozen=True, slots=True)
class _Snapshot:
    now: float
    cooldown_end: float
    tat_requests: float
    tat_images: float
    leases: dict[str, float]  # live holder -> expiry (Redis time)


class FleetLimiter:
    """Fleet-wide provider admission. `defaults` come from the environment; Redis overrides win."""

    def __init__(self, r: redis.Redis, prefix: str, defaults: LimitConfig, *,
                 concurrency_poll_s: float = 1.0, model_limits: Mapping[str, ModelLimits] | None = None) -> None:
        self.r = r
        self.defaults = defaults
        self.model_limits = {m: lim for m, lim in (model_limits or {}).items() if lim.any}
        self.concurrency_poll_s = concurrency_poll_s
        base = f"{prefix}:limiter"
        self.leases_key = f"{base}:leases"
        self.config_key = f"{base}:config"
        self.tat_requests_key = f"{base}:tat:requests"
        self.tat_images_key = f"{base}:tat:images"
        self.cooldown_key = f"{base}:cooldown"
        self.hold_prefix = f"{base}:hold:"
        self.model_prefix = f"{base}:model:"  # {model}:leases, {model}:tat:requests, {model}:tat:images
        self._acquire = r.register_script(_ACQUIRE)
        self._renew = r.register_script(_RENEW)
        self._cooldown = r.register_script(_COOLDOWN)
        self._state = r.register_script(_STATE)

    def _default_args(self) -> list[str]:
        d = self.defaults
        return [str(d.concurrency), str(d.rpm), str(d.images_per_min), repr(float(d.lease_s))]

    # -- configuration ------------------------------------------------------------------------------
    def overrides(self) -> dict[str, int | float]:
        """The valid runtime overrides stored in Redis (what differs from the env defaults)."""
        stored: dict[Any, Any] = self.r.hgetall(self.config_key)
        out: dict[str, int | float] = {}
        for name, raw in stored.items():
            value = _parse_override(_text(name), _text(raw))
            if value is not None:
                out[_text(name)] = value
        return out

    def get_config(self) -> LimitConfig:
        return _config({**dataclasses.asdict(self.defaults), **self.overrides()})

    def set_config(self, **changes: float | None) -> LimitConfig:
        """Validate and store overrides (None drops one back to its default); fleet-wide at once."""
        unknown = set(changes) - set(_FIELDS)
        if unknown:
            raise ValueError(f"unknown limiter setting(s): {', '.join(sorted(unknown))}")
        to_set = {k: v for k, v in changes.items() if v is not None}
        to_drop = [k for k, v in changes.items() if v is None]
        values: dict[str, Any] = {**dataclasses.asdict(self.defaults), **self.overrides(), **to_set}
        for name in to_drop:
            values[name] = getattr(self.defaults, name)
        merged = _config(values)  # validates before anything is stored
        pipe = self.r.pipeline(transaction=True)
        if to_set:
            pipe.hset(self.config_key, mapping={k: _encode(name=k, value=v) for k, v in to_set.items()})
        if to_drop:
            pipe.hdel(self.config_key, *to_drop)
        pipe.execute()
        log.info("limiter config changed", extra={"changes": changes})
        return merged

    def reset_config(self) -> None:
        """Drop every override: the env defaults apply again."""
        self.r.delete(self.config_key)

    # -- admission ----------------------------------------------------------------------------------
    def _hold_key(self, model: str) -> str:
        return self.hold_prefix + (model or "-")

    def _model_keys(self, model: str) -> list[str]:
        base = self.model_prefix + (model or "-")
        return [f"{base}:leases", f"{base}:tat:requests", f"{base}:tat:images"]

    def try_acquire(self, holder: str, images: int = 1, *, model: str = "") -> Acquire:
        """One atomic admission attempt; on grant, `holder` owns a lease until release or expiry. A call to a
        `model` under a hold is refused with reason "model_hold" (other models are unaffected)."""
        if images < 1:
            raise ValueError(f"images={images} must be >= 1")
        lim = self.model_limits.get(model, ModelLimits())
        granted, reason, wait = self._acquire(
            keys=[self.leases_key, self.config_key, self.tat_requests_key, self.tat_images_key, self.cooldown_key,
                  self._hold_key(model), *self._model_keys(model)],
            args=[*self._default_args(), holder, images, repr(float(self.concurrency_poll_s)),
                  lim.concurrency, lim.rpm, lim.images_per_min])
        return Acquire(granted=int(granted) == 1, wait_s=float(_text(wait)), reason=_text(reason))

    def acquire_blocking(self, holder: str, images: int = 1, *, max_wait_s: float,
                         clock: Clock, rng: random.Random | None = None, model: str = "") -> Acquire:
        """Poll `try_acquire` for up to `max_wait_s`; returns the last answer (granted or not).

        For short waits only: a refusal whose wait outlasts the remaining budget (rpm, images, cooldown) returns
        at once, so the caller can re-queue with countdown=wait_s instead of holding a worker slot.

        A concurrency refusal (a slot frees at an unknown moment) sleeps up to 10 % longer, at random, so a fleet
        of pollers does not stampede on the same instant. A rate wait sleeps exactly: it ends at a known instant
        (the GCRA's next admission), the script admits one of the callers that arrive then, and every millisecond
        slept past it is quota nobody uses (the jitter cost 1.6 % of a 120 rpm quota: `make bench`, "limiter").
        """
        rng = rng or random.Random()
        deadline = clock.now() + max_wait_s
        while True:
            result = self.try_acquire(holder, images, model=model)
            if result.granted:
                return result
            remaining = deadline - clock.now()
            if remaining <= 0 or (result.reason not in _POLLED and result.wait_s > remaining):
                return result
            jitter = 0.1 * rng.random() * result.wait_s if result.reason in _POLLED else 0.0
            clock.sleep(min(result.wait_s + jitter, remaining))

    def release(self, holder: str, *, model: str = "") -> None:
        self.r.zrem(self.leases_key, holder)
        if model in self.model_limits:
            self.r.zrem(self._model_keys(model)[0], holder)

    def renew(self, holder: str, *, model: str = "") -> bool:
        """Extend `holder`'s lease by lease_s from now; False if it had already expired (slot may be reused)."""
        if model in self.model_limits:
            self._renew(keys=[self._model_keys(model)[0], self.config_key], args=[*self._default_args(), holder])
        return int(self._renew(keys=[self.leases_key, self.config_key],
                               args=[*self._default_args(), holder])) == 1

    def in_flight(self) -> int:
        return len(self._snapshot().leases)

    def holders(self, prefix: str = "") -> list[str]:
        """Holders with a live lease whose name starts with `prefix` (e.g. a job's outputs: "JOBID:")."""
        return [h for h in self._snapshot().leases if h.startswith(prefix)]

    # -- provider pushback --------------------------------------------------------------------------
    def cooldown(self, seconds: float) -> None:
        """Pause all admissions fleet-wide for `seconds` (never shortens a longer cooldown already running)."""
        if not math.isfinite(seconds) or seconds <= 0:
            return
        self._cooldown(keys=[self.cooldown_key], args=[repr(float(seconds))])

    def cooldown_remaining_s(self) -> float:
        snap = self._snapshot()
        return max(0.0, snap.cooldown_end - snap.now)

    def _model_in_flight(self, model: str, now: float) -> int:
        return int(self.r.zcount(self._model_keys(model)[0], f"({now!r}", "+inf"))

    def hold_model(self, model: str, seconds: float) -> float:
        """Refuse calls to `model` for `seconds` (never shortens a longer hold); returns the hold remaining."""
        if not math.isfinite(seconds) or seconds <= 0:
            return 0.0
        return float(_text(self._cooldown(keys=[self._hold_key(model)], args=[repr(float(seconds))])))

    def hold_remaining_s(self, model: str) -> float:
        """Seconds until calls to `model` are admitted again as far as its hold goes (0: not held)."""
        return self.holds().get(model or "-", 0.0)

    def holds(self) -> dict[str, float]:
        """Every model under a hold → seconds remaining (Redis time)."""
        keys = sorted(_text(k) for k in self.r.scan_iter(match=self.hold_prefix + "*", count=100))
        if not keys:
            return {}
        now = self._snapshot().now
        out: dict[str, float] = {}
        for key, raw in zip(keys, self.r.mget(keys), strict=True):
            remaining = _float(_text(raw)) - now if raw is not None else 0.0
            if remaining > 0:
                out[key[len(self.hold_prefix):]] = round(remaining, 3)
        return out

    # -- reporting ----------------------------------------------------------------------------------
    def _snapshot(self) -> _Snapshot:
        raw: list[Any] = self._state(keys=[self.leases_key, self.cooldown_key, self.tat_requests_key,
                                           self.tat_images_key])
        values = [_text(v) for v in raw]
        leases = {values[i]: float(values[i + 1]) for i in range(4, len(values) - 1, 2)}
        return _Snapshot(now=float(values[0]), cooldown_end=_float(values[1]), tat_requests=_float(values[2]),
                         tat_images=_float(values[3]), leases=leases)

    def state(self) -> dict[str, Any]:
        """For reports and admin routes: effective limits, leases, cooldown and next admission times."""
        config = self.get_config()
        snap = self._snapshot()
        cooldown_s = max(0.0, snap.cooldown_end - snap.now)
        request_s = max(0.0, snap.tat_requests - snap.now) if config.rpm else 0.0
        image_s = max(0.0, snap.tat_images - snap.now) if config.images_per_min else 0.0
        in_flight = len(snap.leases)
        return {
            "config": dataclasses.asdict(config),
            "overrides": self.overrides(),
            "redis_time": snap.now,
            "in_flight": in_flight,
            "free_slots": max(0, config.concurrency - in_flight),
            "leases": [{"holder": h, "expires_in_s": round(exp - snap.now, 3)}
                       for h, exp in sorted(snap.leases.items(), key=lambda kv: kv[1])],
            "cooldown_remaining_s": round(cooldown_s, 3),
            # Models whose per-day quota is spent → seconds until their reset (docs/providers.md#429-kinds).
            "model_holds": self.holds(),
            # Per-model caps (catalogue `[models.<id>.limits]`) and each such model's calls in flight.
            "model_limits": {m: {**dataclasses.asdict(lim), "in_flight": self._model_in_flight(m, snap.now)}
                             for m, lim in sorted(self.model_limits.items())},
            "next_request_in_s": round(request_s, 3),
            "next_image_in_s": round(image_s, 3),
            # When a request could next be admitted if a slot is free (epoch seconds, Redis time).
            "next_admission_at": snap.now + max(cooldown_s, request_s, image_s),
        }


def _config(values: dict[str, Any]) -> LimitConfig:
    return LimitConfig(**values)


def _parse_override(name: str, raw: str) -> int | float | None:
    """A stored override, or None when unknown or invalid (then the default applies, as in the Lua `num`)."""
    if name not in _FIELDS:
        return None
    minimum, integral = _FIELDS[name]
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < minimum:
        log.warning("ignoring invalid limiter override", extra={"field": name, "value": raw})
        return None
    return math.floor(value) if integral else value


def _encode(*, name: str, value: float) -> str:
    return str(int(value)) if _FIELDS[name][1] else repr(float(value))


def _text(value: Any) -> str:
    """Script replies and hash fields as str whether or not the client decodes responses."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _float(raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        return 0.0
