"""The `Pager`: applies the paging policy (`paging.py`) to one evaluation's messages. Called by the engine under
its lock, after grouping/cooldowns/silences/acks have decided what notifies; it never sends (the notifier does).

Per evaluation, with the injected clock's `now`:
- incidents: a group's first firing message opens an incident key (`{group}-{episode}`), kept in the group's state
  while anything in the group fires and closed by the resolved message that leaves nothing firing; PagerDuty uses
  it as the dedup_key, so trigger → acknowledge → resolve land on one PagerDuty incident;
- routing: each message goes to its severity's `first` targets; the escalation clock of an alert starts when its
  firing first reaches a person (`AlertState.paged_at`);
- quiet hours: outside business hours a message below `hold_below` is held (`store.hold`, history `held`) instead
  of sent; the first evaluation inside business hours sends ONE digest of everything held, each alert with its
  state now (a resolved one says RESOLVED), and starts the escalation clock of those still firing;
- escalation: a firing, notified, unacknowledged, unsilenced alert whose next step's `after` has passed since it
  was paged escalates to that step's targets (one message per group and step; history `escalated` per alert);
  an ack stops it, a new episode starts again at step 0;
- acknowledgement: once every firing alert of a paged incident is acknowledged here, one `acknowledged` message
  goes to PagerDuty (and the unrouted channels), once per incident.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, replace
from typing import Any

from monitoring.alerts.model import FIRING, AlertState, AlertView, Notification
from monitoring.alerts.paging import PagingPolicy, Target
from monitoring.alerts.rules import severity_rank
from monitoring.alerts.store import AlertStore

Event = Callable[..., dict[str, Any]]


def routed(message: Notification, targets: Iterable[Target]) -> Notification:
    channels: list[str] = []
    recipients: dict[str, list[str]] = defaultdict(list)
    for t in targets:
        if t.channel not in channels:
            channels.append(t.channel)
        recipients[t.channel] += [r for r in t.recipients if r not in recipients[t.channel]]
    return replace(message, channels=tuple(channels),
                   recipients=tuple((c, tuple(r)) for c, r in recipients.items() if r))


def _top(severities: Iterable[str]) -> str:
    return max(severities, key=severity_rank)


class Pager:
    def __init__(self, policy: PagingPolicy, store: AlertStore) -> None:
        self.policy = policy
        self.store = store
        self._digested = 0  # held rows to drop once this evaluation is saved

    def apply(self, messages: Sequence[Notification], current: dict[str, AlertState],
              acks: dict[str, dict[str, Any]], silenced: Callable[[AlertState], bool],
              group_states: dict[str, dict[str, Any]], now: float, events: list[dict[str, Any]]) -> list[Notification]:
        quiet = self.policy.quiet
        business = quiet is None or quiet.is_business(now)

        def acked(st: AlertState) -> bool:
            ack = acks.get(st.id)
            return bool(ack) and ack.get("episode") == st.episode  # type: ignore[union-attr]

        out: list[Notification] = []
        for m in messages:
            gs = group_states.setdefault(m.group, {})
            if m.kind == "firing" and not gs.get("incident"):
                episode = next((a.episode for a in m.alerts if a.new), m.id)
                gs["incident"] = f"{m.group}-{episode}"
            m = replace(m, incident=str(gs.get("incident", "")))
            if m.kind == "resolved" and not any(st.group == m.group and st.state == FIRING
                                                for st in current.values()):
                for k in ("incident", "acked_incident", "paged_pagerduty"):
                    gs.pop(k, None)
            if quiet is not None and not business and quiet.holds(m.severity):
                self.store.hold({**asdict(a), "held_at": now} for a in m.alerts)
                events.append(self.store.event("held", None, message_id=m.id, kind=m.kind, group=m.group,
                                               severity=m.severity, alerts=[a.id for a in m.alerts]))
                continue
            m = routed(m, self.policy.for_severity(m.severity).first)
            self._paged(m, current, gs, now)
            out.append(m)
        out += self._escalations(current, acked, silenced, group_states, now, events, business)
        out += self._acknowledgements(current, acks, acked, group_states, now)
        if business:
            digest = self._digest(current, now)
            if digest is not None:
                out.append(digest)
        return out

    def commit(self) -> None:
        """After the evaluation is saved: the digest's rows are delivered (at least once)."""
        if self._digested:
            self.store.clear_held(self._digested)
            self._digested = 0

    @staticmethod
    def _paged(m: Notification, current: dict[str, AlertState], gs: dict[str, Any], now: float) -> None:
        for a in m.alerts:
            st = current.get(a.id)
            if st is not None and st.state == FIRING and st.paged_at is None:
                st.paged_at = now
        if m.channels and "pagerduty" in m.channels and m.incident:
            gs["paged_pagerduty"] = m.incident

    def _escalations(self, current: dict[str, AlertState], acked: Callable[[AlertState], bool],
                     silenced: Callable[[AlertState], bool], group_states: dict[str, dict[str, Any]], now: float,
                     events: list[dict[str, Any]], business: bool) -> list[Notification]:
        quiet = self.policy.quiet
        due: dict[tuple[str, str, int], list[AlertState]] = defaultdict(list)
        for st in sorted(current.values(), key=lambda s: s.id):
            if st.state != FIRING or not st.notified or st.paged_at is None or acked(st) or silenced(st):
                continue
            if quiet is not None and not business and quiet.holds(st.severity):
                continue
            steps = self.policy.for_severity(st.severity).steps
            if st.escalation_level < len(steps) and now - st.paged_at >= steps[st.escalation_level].after_s:
                due[(st.group, st.severity, st.escalation_level)].append(st)
        out: list[Notification] = []
        for (group, severity, level), members in sorted(due.items()):
            step = self.policy.for_severity(severity).steps[level]
            gs = group_states.setdefault(group, {})
            message = routed(Notification(
                id=f"msg_{uuid.uuid4().hex}", kind="escalation", group=group, severity=severity, created_at=now,
                alerts=tuple(AlertView.of(st) for st in members), incident=str(gs.get("incident", "")),
                step=step.label), step.targets)
            self._paged(message, current, gs, now)
            for st in members:
                st.escalation_level = level + 1
                events.append(self.store.event("escalated", st, to=step.label, level=level + 1,
                                               targets=[str(t) for t in step.targets], message_id=message.id,
                                               unacknowledged_for_s=round(now - (st.paged_at or now), 1)))
            out.append(message)
        return out

    def _acknowledgements(self, current: dict[str, AlertState], acks: dict[str, dict[str, Any]],
                          acked: Callable[[AlertState], bool], group_states: dict[str, dict[str, Any]],
                          now: float) -> list[Notification]:
        out: list[Notification] = []
        for group, gs in sorted(group_states.items()):
            incident = gs.get("incident")
            if not incident or gs.get("paged_pagerduty") != incident or gs.get("acked_incident") == incident:
                continue
            firing = [st for st in current.values() if st.group == group and st.state == FIRING]
            if not firing or not all(acked(st) for st in firing):
                continue
            gs["acked_incident"] = incident
            out.append(Notification(
                id=f"msg_{uuid.uuid4().hex}", kind="acknowledged", group=group,
                severity=_top(st.severity for st in firing), created_at=now,
                alerts=tuple(AlertView.of(st, acked_by=str(acks[st.id].get("by"))) for st in firing),
                channels=("pagerduty",), incident=str(incident)))
        return out

    def _digest(self, current: dict[str, AlertState], now: float) -> Notification | None:
        rows = self.store.held()
        if not rows:
            return None
        latest: dict[str, AlertView] = {}
        for row in rows:
            row.pop("held_at", None)
            st = current.get(str(row.get("id")))
            if st is not None and st.episode == row.get("episode"):
                latest[st.id] = AlertView.of(st)
                if st.state == FIRING and st.paged_at is None:
                    st.paged_at = now  # the escalation clock starts when a person first sees it
            else:  # a later episode or a dropped rule: show it as it was held
                latest[str(row.get("id"))] = AlertView(**{**row, "new": False})
        self._digested = len(rows)
        alerts = sorted(latest.values(), key=lambda a: (a.status != FIRING, -severity_rank(a.severity), a.id))
        severity = _top(a.severity for a in alerts)
        targets = [t for sev in sorted({a.severity for a in alerts}) for t in self.policy.for_severity(sev).first]
        return routed(Notification(id=f"msg_{uuid.uuid4().hex}", kind="digest", group="digest", severity=severity,
                                   created_at=now, alerts=tuple(alerts)), targets)
