"""Alert value types: the per-alert state record, the notification (one message for one group) and one delivery
attempt. JSON round-trips live here so Redis, the API and the channels all see one shape.

Owns shapes only: no Redis, no rule evaluation, no sending.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from shared.clock import rfc3339

INACTIVE, PENDING, FIRING, RESOLVED = "inactive", "pending", "firing", "resolved"
KINDS = ("firing", "repeat", "resolved", "test", "escalation", "acknowledged", "digest")


@dataclass(slots=True)
class AlertState:
    """One alert instance (a rule, or a rule × queue) as the engine last left it. Mutable: it is the engine's
    working record during one evaluation, persisted as JSON afterwards."""

    id: str
    rule: str
    group: str
    severity: str
    labels: dict[str, str] = field(default_factory=dict)
    state: str = INACTIVE
    active_since: float | None = None  # condition first seen true (start of pending)
    fired_at: float | None = None
    resolved_at: float | None = None
    clear_since: float | None = None  # firing, condition false since (keep_firing_for_s)
    episode: str = ""  # one id per firing episode
    notified: bool = False  # this episode's firing message went out
    silence_noted: bool = False  # this episode's suppression is in the history already
    last_notified_at: float | None = None
    paged_at: float | None = None  # this episode first reached a person (not held by quiet hours)
    escalation_level: int = 0  # escalation steps taken this episode (paging.py)
    value: Any = None
    values: list[Any] = field(default_factory=list)
    summary: str = ""
    description: str = ""
    data: str = "ok"  # ok | insufficient | error (a path missing from the report)
    error: str = ""
    evaluated_at: float | None = None
    resolved_by: str = ""  # who resolved this episode by hand (monitoring/alerts/manual.py); "" = its condition

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> AlertState:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})

    def public(self, *, acked: dict[str, Any] | None = None, silenced_by: str | None = None) -> dict[str, Any]:
        """The API view: times as RFC 3339 plus the ack and silence that apply to this episode."""
        out = {k: v for k, v in self.to_dict().items()
               if k not in ("silence_noted", "active_since", "fired_at", "resolved_at", "clear_since",
                            "last_notified_at", "evaluated_at", "paged_at")}
        out.update({"pending_since": rfc3339(self.active_since), "fired_at": rfc3339(self.fired_at),
                    "resolved_at": rfc3339(self.resolved_at), "last_notified_at": rfc3339(self.last_notified_at),
                    "evaluated_at": rfc3339(self.evaluated_at), "acknowledged": acked, "silenced_by": silenced_by})
        return out


@dataclass(frozen=True, slots=True)
class AlertView:
    """One alert as it appears inside a notification."""

    id: str
    rule: str
    severity: str
    status: str  # firing | resolved
    new: bool  # first message of this episode
    summary: str
    description: str
    value: Any
    labels: dict[str, str]
    episode: str
    fired_at: float | None
    resolved_at: float | None = None
    acked_by: str | None = None

    @classmethod
    def of(cls, st: AlertState, *, new: bool = False, acked_by: str | None = None) -> AlertView:
        return cls(id=st.id, rule=st.rule, severity=st.severity,
                   status=RESOLVED if st.state == RESOLVED else FIRING, new=new, summary=st.summary,
                   description=st.description, value=st.value, labels=dict(st.labels), episode=st.episode,
                   fired_at=st.fired_at, resolved_at=st.resolved_at, acked_by=acked_by)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["fired_at"], out["resolved_at"] = rfc3339(self.fired_at), rfc3339(self.resolved_at)
        return out


@dataclass(frozen=True, slots=True)
class DeliveryAttempt:
    channel: str
    attempt: int
    ok: bool
    status: int | None  # HTTP status (or SMTP reply code) when there was an answer
    error: str  # "" when ok
    duration_ms: int
    at: float  # wall clock of the attempt's start

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "at": rfc3339(self.at)}


@dataclass(frozen=True, slots=True)
class Notification:
    """One message: every alert of one group that notifies in one evaluation."""

    id: str  # also the Standard Webhooks `webhook-id`: stable across retries of this message
    kind: str  # firing | repeat | resolved | test
    group: str
    severity: str  # the highest among its alerts
    created_at: float
    alerts: tuple[AlertView, ...]
    escalated: bool = False
    deliveries: tuple[DeliveryAttempt, ...] = ()
    # Routing (escalation.Pager): the routed channels this message goes to (None: every channel), per-channel
    # recipient overrides, the incident key (PagerDuty dedup_key) and the escalation step's label.
    channels: tuple[str, ...] | None = None
    recipients: tuple[tuple[str, tuple[str, ...]], ...] = ()
    incident: str = ""
    step: str = ""

    def recipients_for(self, channel: str) -> tuple[str, ...]:
        return next((r for c, r in self.recipients if c == channel), ())

    @property
    def title(self) -> str:
        firing = [a for a in self.alerts if a.status == FIRING]
        head = ((firing or list(self.alerts))[0].summary if self.alerts
                else "a test notification from nanoedit: this channel works")
        more = f" (+{len(self.alerts) - 1} more)" if len(self.alerts) > 1 else ""
        label = "ESCALATED" if self.escalated else self.kind.upper()
        if self.kind == "digest":
            return f"[{self.severity.upper()}] DIGEST: {len(self.alerts)} alert(s) held during quiet hours"
        if self.kind == "escalation":
            label = f"ESCALATION to {self.step}"
        return f"[{self.severity.upper()}] {label} {self.group}: {head}{more}"

    @property
    def delivered(self) -> list[str]:
        return sorted({d.channel for d in self.deliveries if d.ok})

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "group": self.group, "severity": self.severity,
                "escalated": self.escalated, "title": self.title, "created_at": rfc3339(self.created_at),
                "incident": self.incident, "step": self.step,
                "alerts": [a.to_dict() for a in self.alerts],
                "deliveries": [d.to_dict() for d in self.deliveries]}
