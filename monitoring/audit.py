"""The audit log of operator actions: who did what to the running service, when, and what it changed.

Owns `{prefix}:audit:log`, a sorted set scored by the injected clock's epoch seconds (member: one entry's JSON,
which starts with its id `aud_<sequence>` from `{prefix}:audit:seq`, so entries of the same second keep their
order), capped at `AUDIT_MAX` entries (oldest trimmed on every write). A sorted set rather than a Redis stream because
`since` must follow the service's `Clock` (a stream id follows the Redis server's clock, and a fake clock or
skewed web hosts would make `XADD` refuse ids that go backwards).

Entries are written by the operator routes (api/alerts.py, api/admin.py, api/admin_pools.py) after the action
succeeded; a refused request is not an action. An audit write that fails is logged, never turned into a failure
of the action that already happened. This module must not import `api` or `workers`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from shared.clock import Clock, rfc3339

log = logging.getLogger("nanoedit.audit")
AUDIT_MAX = 10_000
ACTIONS = ("alert.ack", "alert.resolve", "alert.create", "silence.create", "silence.update", "silence.delete",
           "limits.update", "limits.reset", "circuit.force", "workers.scale")


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One operator action. `before`/`after` hold the changed state where the action has one (limits, circuit,
    silence, pool size); `target` names what was acted on (an alert id, a silence id, a queue)."""

    id: str
    at: float
    action: str
    actor: str  # the X-Operator header or the body's by/created_by/resolved_by, else "admin"
    credential: str  # admin_token | auth_off: the admin token cannot name a person, so this says what was shown
    target: str = ""
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    details: dict[str, Any] = field(default_factory=dict)
    request_id: str = ""

    def public(self) -> dict[str, Any]:
        return {**asdict(self), "at": rfc3339(self.at)}


class AuditLog:
    def __init__(self, r: redis.Redis, prefix: str, clock: Clock, *, max_entries: int = AUDIT_MAX) -> None:
        self.r = r
        self.clock = clock
        self.key = f"{prefix}:audit:log"
        self.seq_key = f"{prefix}:audit:seq"
        self.max_entries = max_entries

    def record(self, action: str, *, actor: str, credential: str, target: str = "",
               before: dict[str, Any] | None = None, after: dict[str, Any] | None = None,
               details: dict[str, Any] | None = None, request_id: str = "") -> AuditEntry | None:
        """Append one entry; returns it, or None when Redis refused (logged: the action itself already ran)."""
        if action not in ACTIONS:
            raise ValueError(f"unknown audit action {action!r}")
        try:
            seq = int(self.r.incr(self.seq_key))
        except redis.RedisError:
            log.error("audit entry not written", extra={"action": action, "target": target}, exc_info=True)
            return None
        entry = AuditEntry(id=f"aud_{seq:012d}", at=self.clock.now(), action=action, actor=actor,
                           credential=credential, target=target, before=before, after=after,
                           details=dict(details or {}), request_id=request_id)
        try:
            pipe = self.r.pipeline(transaction=True)
            pipe.zadd(self.key, {json.dumps(asdict(entry), default=str): entry.at})
            pipe.zremrangebyrank(self.key, 0, -(self.max_entries + 1))
            pipe.execute()
        except redis.RedisError:
            log.error("audit entry not written", extra={"action": action, "target": target}, exc_info=True)
            return None
        log.info("operator action", extra={"action": action, "actor": actor, "target": target})
        return entry

    def entries(self, limit: int = 100, since: float | None = None) -> list[AuditEntry]:
        """Newest first, at most `limit`, only those at or after `since` (epoch seconds) when given."""
        rows = self.r.zrevrangebyscore(self.key, "+inf", "-inf" if since is None else since, start=0, num=limit)
        return [AuditEntry(**json.loads(str(row))) for row in rows]
