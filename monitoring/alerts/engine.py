"""The `AlertEngine`: evaluates the rules on each health report and decides what to notify, Alertmanager-style.

Per evaluation, under a Redis lock (two beats, or a late duplicate task, never evaluate at once; the loser
returns no notifications): every alert instance steps its state machine (`lifecycle`), then each group — one
incident — makes at most ONE message holding all of its alerts that notify now:
- a newly firing alert goes out at once when its group has nothing firing-and-notified, or when it raises the
  group's severity (escalation skips every wait); otherwise it joins the group's next message, at the latest
  `group_interval_s` after the group's last one;
- a resolved alert goes out at once, once per episode, if its firing went out;
- while alerts stay firing, the group repeats after the cooldown of the highest severity among its
  unacknowledged firing alerts (critical 5 min, high 15 min, medium 1 h, low 4 h by default);
- a silenced alert changes state and history as usual but is left out of messages (its firing goes out if the
  silence ends while it still fires); an acknowledged alert stops repeating for that episode, not its resolved.
With a paging policy (`paging.PagingPolicy`, from the rules file; `build_engine` always passes one), the
`escalation.Pager` then routes each message to its severity's channels, holds non-critical ones during quiet
hours for the morning digest, escalates unacknowledged alerts and tells PagerDuty about acks. Without one, every
message goes to every channel (the engine's behaviour before paging existed).
State is persisted after delivery, so a crash mid-evaluation re-sends rather than loses (at least once). A
message counts as sent even when a channel failed: every attempt is in the history, and the next notification
(repeat or resolved) tries again; retrying a failed channel forever would spam the healthy ones.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from typing import Any

import redis
from redis.exceptions import LockError

from monitoring.alerts.escalation import Pager
from monitoring.alerts.lifecycle import ERROR, instances, judge, step
from monitoring.alerts.manual import ManualAlerts
from monitoring.alerts.model import FIRING, RESOLVED, AlertState, AlertView, Notification
from monitoring.alerts.notifier import Notifier
from monitoring.alerts.paging import PagingPolicy
from monitoring.alerts.rules import RuleSet, severity_rank
from monitoring.alerts.silences import Silence, SilenceStore, first_match
from monitoring.alerts.store import AlertStore
from shared.clock import Clock

log = logging.getLogger("nanoedit.alerts")
LOCK_TTL_S = 90.0  # ≥ the health-report task's hard time limit: a killed evaluation frees the lock by then


class AlertEngine:
    def __init__(self, r: redis.Redis, prefix: str, clock: Clock, rules: RuleSet, notifier: Notifier,
                 *, lock_ttl_s: float = LOCK_TTL_S, paging: PagingPolicy | None = None) -> None:
        self.clock = clock
        self.rules = rules
        self.notifier = notifier
        self.store = AlertStore(r, prefix, clock)
        self.silences = SilenceStore(r, prefix, clock)
        self.manual = ManualAlerts(r, prefix, clock)  # custom alerts and resolves by hand
        self.lock_ttl_s = max(lock_ttl_s, notifier.budget_s * 2)
        self.pager = Pager(paging, self.store) if paging is not None else None

    def evaluate(self, report: dict[str, Any]) -> list[Notification]:
        """Evaluate every rule on `report`; returns the notifications sent (with their delivery attempts)."""
        lock = self.store.lock(self.lock_ttl_s)
        if not lock.acquire(blocking=False):
            log.info("alert evaluation skipped: another evaluation holds the lock")
            return []
        try:
            return self._evaluate(report)
        finally:
            try:
                lock.release()
            except LockError:
                log.warning("the alert evaluation lock expired before the evaluation ended")

    def _evaluate(self, report: dict[str, Any]) -> list[Notification]:
        now = self.clock.now()
        previous = self.store.states()
        acks = self.store.acks()
        group_states = self.store.groups()
        silences = self.silences.active()
        events: list[dict[str, Any]] = []
        current: dict[str, AlertState] = {}
        transitions: dict[str, list[str]] = {}
        resolves, manual_done = self.manual.resolves(), set[str]()
        for inst in instances(self.rules, report) + self.manual.instances():
            st = previous.pop(inst.id, None) or AlertState(inst.id, inst.rule.name, inst.rule.group,
                                                           inst.rule.severity)
            had_error = st.data == ERROR
            verdict = judge(inst, report)
            held = self.manual.hold(st, verdict, resolves.get(inst.id), now, manual_done)
            transitions[inst.id] = (held if held is not None
                                    else step(st, inst, verdict, now, lambda: uuid.uuid4().hex[:12]))
            events += [self.store.event(t, st) for t in transitions[inst.id]]
            if "firing" in transitions[inst.id]:  # a new episode: its escalation starts again
                st.paged_at, st.escalation_level = None, 0
            if verdict.outcome == ERROR and not had_error:
                log.warning("alert rule cannot be evaluated", extra={"alert_id": inst.id, "reason": verdict.reason})
                events.append(self.store.event("rule_error", st, reason=verdict.reason))
            current[inst.id] = st
        for st in previous.values():  # the rule (or its queue) is gone from the rules file or the report
            if st.state == FIRING:
                events.append(self.store.event("dropped", st, reason="no such rule or queue any more"))
        by_group: dict[str, list[AlertState]] = defaultdict(list)
        for st in current.values():
            by_group[st.group].append(st)
        messages: list[Notification] = []
        for group, members in sorted(by_group.items()):
            message = self._plan(group, members, transitions, acks, silences, group_states, now, events)
            if message is not None:
                messages.append(message)
        if self.pager is not None:
            messages = self.pager.apply(messages, current, acks, lambda st: first_match(silences, st) is not None,
                                        group_states, now, events)
        sent = self.notifier.send_many(messages)
        for m in sent:
            events.append(self.store.event(
                "notified", None, message_id=m.id, kind=m.kind, group=m.group, severity=m.severity,
                escalated=m.escalated, alerts=[a.id for a in m.alerts], delivered=m.delivered,
                deliveries=[d.to_dict() for d in m.deliveries],
                **({"incident": m.incident} if m.incident else {}), **({"step": m.step} if m.step else {})))
        stale_acks = [k for k, a in acks.items()
                      if k not in current or current[k].state != FIRING or current[k].episode != a.get("episode")]
        self.store.save(current, previous.keys(), group_states, events, stale_acks)
        if self.pager is not None:
            self.pager.commit()
        self.manual.settle(manual_done | (resolves.keys() - current.keys()))  # applied, or alert gone
        self.silences.purge()
        return sent

    def _plan(self, group: str, members: list[AlertState], transitions: dict[str, list[str]],
              acks: dict[str, dict[str, Any]], silences: list[Silence], group_states: dict[str, dict[str, Any]],
              now: float, events: list[dict[str, Any]]) -> Notification | None:
        """Decide this group's message (if any) and mark what it carries as notified."""
        visible: list[AlertState] = []
        for st in members:
            silence = first_match(silences, st)
            if silence is None:
                visible.append(st)
                continue
            would_notify = (st.state == FIRING and not st.notified) or (
                "resolved" in transitions[st.id] and st.notified)
            if would_notify and not st.silence_noted:
                events.append(self.store.event("silenced", st, silence_id=silence.id))
                st.silence_noted = st.state == FIRING
        firing = [st for st in visible if st.state == FIRING and st.notified]
        new = [st for st in visible if st.state == FIRING and not st.notified]
        resolved = [st for st in visible if st.state == RESOLVED and "resolved" in transitions[st.id] and st.notified]

        def acked_by(st: AlertState) -> str | None:
            ack = acks.get(st.id)
            return str(ack.get("by")) if ack and ack.get("episode") == st.episode else None

        active_rank = max((severity_rank(st.severity) for st in firing), default=-1)
        new_rank = max((severity_rank(st.severity) for st in new), default=-1)
        last = group_states.get(group, {}).get("last_notified_at")
        since_last = float("inf") if last is None else now - float(last)
        escalated = active_rank >= 0 and new_rank > active_rank
        send_new = bool(new) and (active_rank < 0 or escalated or since_last >= self.rules.group_interval_s)
        unacked = [st for st in firing if acked_by(st) is None]
        top = max(unacked, key=lambda st: severity_rank(st.severity), default=None)
        repeat_due = top is not None and since_last >= self.rules.cooldown(top.severity)
        if not (send_new or resolved or repeat_due):
            return None
        alerts = ([AlertView.of(st, new=True) for st in new]
                  + [AlertView.of(st, acked_by=acked_by(st)) for st in firing]
                  + [AlertView.of(st) for st in resolved])
        alerts.sort(key=lambda a: (a.status != FIRING, -severity_rank(a.severity), a.id))
        kind = "firing" if new else ("resolved" if resolved else "repeat")
        severity = max((st.severity for st in new + firing + resolved), key=severity_rank)
        message = Notification(id=f"msg_{uuid.uuid4().hex}", kind=kind, group=group, severity=severity,
                               created_at=now, alerts=tuple(alerts), escalated=escalated)
        for st in new:
            st.notified = True
        for st in new + firing + resolved:
            st.last_notified_at = now
        group_states[group] = {**group_states.get(group, {}),  # keeps the Pager's incident keys
                               "last_notified_at": now, "last_message_id": message.id, "last_kind": kind}
        return message

    def test(self) -> Notification:
        """Send a test notification to every configured channel (operators: "does my channel work?")."""
        now = self.clock.now()
        message = Notification(id=f"msg_test_{uuid.uuid4().hex}", kind="test", group="test", severity="low",
                               created_at=now, alerts=())
        sent = self.notifier.send(message)
        self.store.append_history([self.store.event(
            "notified", None, message_id=sent.id, kind="test", group="test", severity="low", escalated=False,
            alerts=[], delivered=sent.delivered, deliveries=[d.to_dict() for d in sent.deliveries])])
        return sent
