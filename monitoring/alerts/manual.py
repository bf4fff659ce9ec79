"""Alerts operators raise or resolve by hand: custom alerts (`POST /v1/monitoring/alerts`) and manual resolves
(`POST /v1/monitoring/alerts/{id}/resolve`). Owns two keys beside the engine's (store.py):

  {p}:alerts:custom    hash  custom alert id → CustomAlert JSON (deleted once the alert is resolved)
  {p}:alerts:resolves  hash  alert id → {episode, by, comment, at}: a resolve asked for, applied by the engine

The API only writes requests here; the engine applies them under its evaluation lock (`instances`, `hold`,
`settle`), so the state hash keeps one writer. Decisions:
- A custom alert is an instance of a rule with no condition (always true) and `for_s` 0: it fires at its first
  evaluation and goes through the same grouping, cooldowns, silences, acks and channels as a rule alert. Its
  message is shown verbatim (never a template), its metadata are the alert's labels.
- A resolve applies to the firing episode it names. A custom alert resolved by hand is gone (its definition is
  deleted). A rule alert resolved by hand stays resolved while its condition still holds: it fires again only
  after the condition has been false at least once (the marker is dropped then), as a new episode. Without
  this, a still-true condition would re-fire it at the next evaluation and the resolve would mean nothing.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from monitoring.alerts.lifecycle import FALSE, Instance, Verdict
from monitoring.alerts.model import FIRING, RESOLVED, AlertState
from monitoring.alerts.rules import Rule
from shared.clock import Clock, rfc3339

CUSTOM_PREFIX = "custom-"
CUSTOM_GROUP = "custom"
MESSAGE_MAX = 1000
METADATA_MAX_KEYS = 20
METADATA_KEY_MAX = 64
METADATA_VALUE_MAX = 256
CUSTOM_MAX = 500  # open custom alerts at once: each is evaluated on every beat


@dataclass(frozen=True, slots=True)
class CustomAlert:
    id: str
    severity: str
    message: str
    group: str
    created_by: str
    created_at: float
    metadata: dict[str, str] = field(default_factory=dict)

    def rule(self) -> Rule:
        # No conditions: judge() finds it true; render() cannot fill a template without a threshold and returns
        # the message as written, so braces in an operator's message are shown, never interpreted.
        return Rule(name=self.id, group=self.group, severity=self.severity, conditions=(), summary=self.message,
                    description=f"raised by {self.created_by} through the API at {rfc3339(self.created_at)}")


class ManualAlerts:
    def __init__(self, r: redis.Redis, prefix: str, clock: Clock) -> None:
        self.r = r
        self.clock = clock
        self.custom_key = f"{prefix}:alerts:custom"
        self.resolves_key = f"{prefix}:alerts:resolves"

    # -- the API's side -----------------------------------------------------------------------------------------
    def count(self) -> int:
        return int(self.r.hlen(self.custom_key))

    def create(self, *, severity: str, message: str, group: str, created_by: str,
               metadata: dict[str, str]) -> CustomAlert:
        alert = CustomAlert(id=f"{CUSTOM_PREFIX}{uuid.uuid4().hex[:12]}", severity=severity, message=message,
                            group=group, created_by=created_by, created_at=self.clock.now(), metadata=metadata)
        self.r.hset(self.custom_key, alert.id, json.dumps(asdict(alert)))
        return alert

    def request_resolve(self, st: AlertState, *, by: str, comment: str) -> dict[str, Any]:
        marker = {"episode": st.episode, "by": by, "comment": comment, "at": self.clock.now()}
        self.r.hset(self.resolves_key, st.id, json.dumps(marker))
        return marker

    # -- the engine's side (under its lock) ---------------------------------------------------------------------
    def customs(self) -> dict[str, CustomAlert]:
        raw: dict[str, str] = self.r.hgetall(self.custom_key)  # type: ignore[assignment]
        return {k: CustomAlert(**json.loads(v)) for k, v in raw.items()}

    def instances(self) -> list[Instance]:
        return [Instance(a.id, a.rule(), labels=dict(a.metadata)) for _, a in sorted(self.customs().items())]

    def resolves(self) -> dict[str, dict[str, Any]]:
        raw: dict[str, str] = self.r.hgetall(self.resolves_key)  # type: ignore[assignment]
        return {k: json.loads(v) for k, v in raw.items()}

    def hold(self, st: AlertState, verdict: Verdict, marker: dict[str, Any] | None, now: float,
             done: set[str]) -> list[str] | None:
        """The transitions a resolve by hand makes for `st` in this evaluation, or None to let the lifecycle
        step as usual. Adds to `done` the ids whose marker (and custom definition) can go."""
        if marker is None:
            return None
        if marker.get("episode") != st.episode or st.state not in (FIRING, RESOLVED):
            done.add(st.id)  # stale: that episode ended some other way
            return None
        if st.id.startswith(CUSTOM_PREFIX) or verdict.outcome == FALSE:
            done.add(st.id)  # a custom alert never clears by itself; a false condition ends the hold
        if st.state == RESOLVED:
            return []
        st.state, st.resolved_at, st.clear_since, st.active_since = RESOLVED, now, None, None
        st.resolved_by = str(marker.get("by") or "operator")
        return ["resolved"]

    def settle(self, done: set[str]) -> None:
        """Forget the resolves applied for good, and the custom alerts they resolved."""
        if done:
            pipe = self.r.pipeline(transaction=True)
            pipe.hdel(self.resolves_key, *done)
            custom = [i for i in done if i.startswith(CUSTOM_PREFIX)]
            if custom:
                pipe.hdel(self.custom_key, *custom)
            pipe.execute()
