"""The alert engine's Redis layout: one place that knows these keys (silences live in `silences.py`).

  {p}:alerts:state       hash  alert id → AlertState JSON
  {p}:alerts:groups      hash  group → {last_notified_at, last_message_id, last_kind}
  {p}:alerts:acks        hash  alert id → {episode, by, comment, at}; an ack applies to one firing episode only
  {p}:alerts:history     list  newest first, capped at HISTORY_MAX: pending, firing, resolved, cleared, notified
                               (with every delivery attempt), silenced, acked, dropped, resolve_requested
                               (custom alerts and resolves by hand have their own keys: manual.py)
  {p}:alerts:lock        string  held while one evaluation runs (redis-py's Lock: token + Lua release)
  {p}:alerts:last_eval   string  epoch seconds of the last completed evaluation (the dead-man's signal)
  {p}:alerts:held        list  alerts held by quiet hours (JSON rows), oldest first, until the morning digest

Acks are written by the API while the engine may be evaluating, so they live apart from the state hash, which
only the engine (under the lock) writes: neither can overwrite the other's update.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import redis
from redis.lock import Lock

from monitoring.alerts.model import AlertState
from shared.clock import Clock, rfc3339

HISTORY_MAX = 1000


class AlertStore:
    def __init__(self, r: redis.Redis, prefix: str, clock: Clock) -> None:
        self.r = r
        self.clock = clock
        base = f"{prefix}:alerts"
        self.state_key, self.groups_key, self.acks_key = f"{base}:state", f"{base}:groups", f"{base}:acks"
        self.history_key, self.lock_key, self.last_eval_key = f"{base}:history", f"{base}:lock", f"{base}:last_eval"
        self.held_key = f"{base}:held"

    # -- reads --------------------------------------------------------------------------------------------------
    def states(self) -> dict[str, AlertState]:
        raw: dict[str, str] = self.r.hgetall(self.state_key)  # type: ignore[assignment]
        return {k: AlertState.from_dict(json.loads(v)) for k, v in raw.items()}

    def get(self, alert_id: str) -> AlertState | None:
        raw = self.r.hget(self.state_key, alert_id)
        return AlertState.from_dict(json.loads(str(raw))) if raw else None

    def groups(self) -> dict[str, dict[str, Any]]:
        raw: dict[str, str] = self.r.hgetall(self.groups_key)  # type: ignore[assignment]
        return {k: json.loads(v) for k, v in raw.items()}

    def acks(self) -> dict[str, dict[str, Any]]:
        raw: dict[str, str] = self.r.hgetall(self.acks_key)  # type: ignore[assignment]
        return {k: json.loads(v) for k, v in raw.items()}

    def history(self, limit: int = 100, alert_id: str | None = None) -> list[dict[str, Any]]:
        rows = [json.loads(str(x)) for x in self.r.lrange(self.history_key, 0, HISTORY_MAX - 1)]
        if alert_id:
            rows = [e for e in rows if e.get("alert_id") == alert_id or alert_id in e.get("alerts", ())]
        return rows[:limit]

    def last_evaluated_at(self) -> float | None:
        raw = self.r.get(self.last_eval_key)
        return float(str(raw)) if raw else None

    def held(self) -> list[dict[str, Any]]:
        return [json.loads(str(x)) for x in self.r.lrange(self.held_key, 0, -1)]

    # -- writes -------------------------------------------------------------------------------------------------
    def hold(self, rows: Iterable[dict[str, Any]]) -> None:
        """Keep rows for the next digest (written under the evaluation lock, like the state hash)."""
        data = [json.dumps(row, default=str) for row in rows]
        if data:
            pipe = self.r.pipeline(transaction=True)
            pipe.rpush(self.held_key, *data)
            pipe.ltrim(self.held_key, -HISTORY_MAX, -1)  # a long weekend of hourly repeats stays bounded
            pipe.execute()

    def clear_held(self, count: int) -> None:
        """Drop the first `count` held rows once their digest went out (rows held meanwhile stay)."""
        self.r.ltrim(self.held_key, count, -1)

    def lock(self, ttl_s: float) -> Lock:
        return self.r.lock(self.lock_key, timeout=ttl_s, blocking=False)

    def event(self, name: str, st: AlertState | None = None, **extra: Any) -> dict[str, Any]:
        """A history entry stamped now; with `st`, it names the alert and its episode."""
        now = self.clock.now()
        ev: dict[str, Any] = {"event": name, "at": rfc3339(now), "ts": now}
        if st is not None:
            ev.update({"alert_id": st.id, "rule": st.rule, "group": st.group, "severity": st.severity,
                       "episode": st.episode, "value": st.value, "summary": st.summary})
            if st.resolved_by:  # resolved by hand (manual.py): the history says who
                ev["resolved_by"] = st.resolved_by
        ev.update(extra)
        return ev

    def append_history(self, events: Iterable[dict[str, Any]]) -> None:
        rows = [json.dumps(e, default=str) for e in events]
        if rows:
            pipe = self.r.pipeline(transaction=True)
            pipe.lpush(self.history_key, *rows)
            pipe.ltrim(self.history_key, 0, HISTORY_MAX - 1)
            pipe.execute()

    def ack(self, st: AlertState, by: str, comment: str) -> dict[str, Any]:
        ack = {"episode": st.episode, "by": by, "comment": comment, "at": rfc3339(self.clock.now())}
        self.r.hset(self.acks_key, st.id, json.dumps(ack))
        self.append_history([self.event("acked", st, by=by, comment=comment)])
        return ack

    def save(self, states: dict[str, AlertState], removed: Iterable[str], groups: dict[str, dict[str, Any]],
             events: list[dict[str, Any]], stale_acks: Iterable[str]) -> None:
        """Persist one evaluation in one transaction, so a crash never leaves half of it."""
        pipe = self.r.pipeline(transaction=True)
        if states:
            pipe.hset(self.state_key, mapping={k: json.dumps(v.to_dict(), default=str) for k, v in states.items()})
        gone = list(removed)
        if gone:
            pipe.hdel(self.state_key, *gone)
        if groups:
            pipe.hset(self.groups_key, mapping={k: json.dumps(v) for k, v in groups.items()})
        stale = list(stale_acks)
        if stale:
            pipe.hdel(self.acks_key, *stale)
        if events:
            pipe.lpush(self.history_key, *[json.dumps(e, default=str) for e in events])
            pipe.ltrim(self.history_key, 0, HISTORY_MAX - 1)
        pipe.set(self.last_eval_key, repr(self.clock.now()))
        pipe.execute()
