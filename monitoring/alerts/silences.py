"""Silences: operator-created, time-boxed mutes of matching alerts, stored in Redis (`{prefix}:alerts:silences`, a
hash of id → JSON). A silenced alert still changes state; the engine just sends nothing for it.

Matchers are shell-style patterns (`fnmatch`, case-sensitive) on alert id, rule, group, severity and queue; all
given matchers must match. Expired silences are kept a day for the record, then purged by the engine.

Nothing invalid is stored (times finite and within 2000..2100, bounded patterns and comment), and reading
tolerates a bad record anyway: it is skipped with a warning (and purged), so listing never fails.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from dataclasses import asdict, dataclass, replace
from fnmatch import fnmatchcase
from typing import Any

import redis

from monitoring.alerts.model import AlertState
from shared.clock import Clock, rfc3339

MATCHER_KEYS = ("alert", "rule", "group", "severity", "queue")
KEEP_EXPIRED_S = 86400.0
MAX_DURATION_S = 90 * 86400.0
MIN_TIME_S = 946_684_800.0  # 2000-01-01T00:00:00Z: silence times outside 2000..2100 are refused, never stored
MAX_TIME_S = 4_102_444_800.0  # 2100-01-01T00:00:00Z
MAX_PATTERN_CHARS = 200
MAX_COMMENT_CHARS = 2000

log = logging.getLogger("nanoedit.alerts.silences")


class SilenceError(ValueError):
    """A silence request that cannot be stored (bad matchers or times)."""


@dataclass(frozen=True, slots=True)
class Silence:
    id: str
    matchers: dict[str, str]
    starts_at: float
    ends_at: float
    comment: str
    created_by: str
    created_at: float
    updated_at: float | None = None

    def state(self, now: float) -> str:
        if now < self.starts_at:
            return "pending"
        return "active" if now < self.ends_at else "expired"

    def matches(self, st: AlertState) -> bool:
        facts = {"alert": st.id, "rule": st.rule, "group": st.group, "severity": st.severity,
                 "queue": st.labels.get("queue", "")}
        return all(fnmatchcase(facts[k], pattern) for k, pattern in self.matchers.items())

    def public(self, now: float) -> dict[str, Any]:
        return {"id": self.id, "state": self.state(now), "matchers": dict(self.matchers),
                "starts_at": rfc3339(self.starts_at), "ends_at": rfc3339(self.ends_at), "comment": self.comment,
                "created_by": self.created_by, "created_at": rfc3339(self.created_at),
                "updated_at": rfc3339(self.updated_at)}


def _validate(s: Silence, now: float) -> Silence:
    if not s.matchers:
        raise SilenceError(f"a silence needs at least one matcher ({', '.join(MATCHER_KEYS)})")
    unknown = sorted(set(s.matchers) - set(MATCHER_KEYS))
    if unknown:
        raise SilenceError(f"unknown matcher(s) {', '.join(unknown)}; use {', '.join(MATCHER_KEYS)}")
    if not all(isinstance(v, str) and v.strip() and len(v) <= MAX_PATTERN_CHARS for v in s.matchers.values()):
        raise SilenceError(f"matcher values must be non-empty strings of at most {MAX_PATTERN_CHARS} characters "
                           "(shell-style patterns: job_*)")
    for name in ("starts_at", "ends_at"):
        value = getattr(s, name)
        if (isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)
                or not MIN_TIME_S <= value <= MAX_TIME_S):
            raise SilenceError(f"{name} must be a time between 2000 and 2100")
    if s.ends_at <= s.starts_at or s.ends_at <= now:
        raise SilenceError("ends_at must be after starts_at and in the future")
    if s.ends_at - s.starts_at > MAX_DURATION_S:
        raise SilenceError(f"a silence lasts at most {int(MAX_DURATION_S // 86400)} days")
    if not s.comment.strip():
        raise SilenceError("a comment is required: say why, so the next on-call knows")
    if len(s.comment) > MAX_COMMENT_CHARS:
        raise SilenceError(f"the comment is longer than {MAX_COMMENT_CHARS} characters")
    return s


def _load(raw: object) -> Silence | None:
    """A stored silence, or None (logged) when the record is unreadable: one bad record written by hand or by
    an older version must not make every silence route fail."""
    try:
        data = json.loads(str(raw))
        s = Silence(**data)
        times = (s.starts_at, s.ends_at, s.created_at) + ((s.updated_at,) if s.updated_at is not None else ())
        if not (isinstance(s.id, str) and isinstance(s.matchers, dict) and isinstance(s.comment, str)
                and all(isinstance(k, str) and isinstance(v, str) for k, v in s.matchers.items())
                and all(isinstance(t, int | float) and not isinstance(t, bool) and math.isfinite(t)
                        and MIN_TIME_S <= t <= MAX_TIME_S for t in times)):
            raise ValueError("bad field types or times")
        s.public(s.starts_at)  # renders, or raises here rather than in a route
        return s
    except (ValueError, TypeError, OverflowError, OSError) as exc:
        log.warning("skipping an unreadable silence record", extra={"error": type(exc).__name__})
        return None


class SilenceStore:
    def __init__(self, r: redis.Redis, prefix: str, clock: Clock) -> None:
        self.r = r
        self.clock = clock
        self.key = f"{prefix}:alerts:silences"

    def create(self, matchers: dict[str, str], ends_at: float, comment: str, created_by: str,
               starts_at: float | None = None) -> Silence:
        now = self.clock.now()
        s = _validate(Silence(id=uuid.uuid4().hex[:16], matchers={k: str(v).strip() for k, v in matchers.items()},
                              starts_at=now if starts_at is None else starts_at, ends_at=ends_at, comment=comment,
                              created_by=created_by or "unknown", created_at=now), now)
        self.r.hset(self.key, s.id, json.dumps(asdict(s)))
        return s

    def update(self, silence_id: str, **changes: Any) -> Silence | None:
        current = self.get(silence_id)
        if current is None:
            return None
        now = self.clock.now()
        s = _validate(replace(current, updated_at=now, **changes), now)
        self.r.hset(self.key, s.id, json.dumps(asdict(s)))
        return s

    def get(self, silence_id: str) -> Silence | None:
        raw = self.r.hget(self.key, silence_id)
        return _load(raw) if raw else None

    def all(self) -> list[Silence]:
        rows = [s for s in (_load(v) for v in self.r.hvals(self.key)) if s is not None]
        return sorted(rows, key=lambda s: s.created_at, reverse=True)

    def active(self) -> list[Silence]:
        now = self.clock.now()
        return [s for s in self.all() if s.state(now) == "active"]

    def delete(self, silence_id: str) -> bool:
        return bool(self.r.hdel(self.key, silence_id))

    def purge(self) -> int:
        cutoff = self.clock.now() - KEEP_EXPIRED_S
        old = [sid.decode() if isinstance(sid, bytes) else str(sid) for sid, raw in self.r.hgetall(self.key).items()
               if (s := _load(raw)) is None or s.ends_at < cutoff]  # unreadable records go too (logged)
        return int(self.r.hdel(self.key, *old)) if old else 0


def first_match(silences: list[Silence], st: AlertState) -> Silence | None:
    return next((s for s in silences if s.matches(st)), None)
