"""One alert's life: expanding rules into alert instances, judging an instance against a health report, and the
state machine inactive → pending → firing → resolved, timed only by the timestamps it is given.

Pure functions over `AlertState`: no Redis, no clock of its own, no notifications (grouping, cooldowns, silences
and acks are the engine's). Decisions:
- `for_s` counts from the first evaluation that saw the condition true, by timestamps, not by evaluations.
- Insufficient data (fewer than `min_samples`, a null metric with on_null = "insufficient", or a path missing
  from the report) never starts or advances an alert: a pending alert drops back to inactive, and a firing alert
  stays firing: it resolves only on evidence that the condition is false, not because traffic stopped.
- A firing alert resolves once the condition has been false for `keep_firing_for_s` (0: at once).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from monitoring.alerts.model import FIRING, INACTIVE, PENDING, RESOLVED, AlertState
from monitoring.alerts.rules import Rule, RuleSet, render

TRUE, FALSE, INSUFFICIENT, ERROR = "true", "false", "insufficient", "error"


@dataclass(frozen=True, slots=True)
class Instance:
    """A rule, or one queue's copy of a per-queue rule."""

    id: str
    rule: Rule
    queue: str = ""
    labels: dict[str, str] = field(default_factory=dict)

    def path(self, template: str) -> str:
        return template.replace("{queue}", self.queue)


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: str  # true | false | insufficient | error
    values: list[Any]
    reason: str = ""


class MissingPath(LookupError):
    pass


def instances(ruleset: RuleSet, report: dict[str, Any]) -> list[Instance]:
    out: list[Instance] = []
    for rule in ruleset.rules:
        if not rule.per_queue:
            out.append(Instance(rule.name, rule))
            continue
        queues = rule.queues if rule.queues is not None else tuple(sorted(report.get("queues") or {}))
        out.extend(Instance(f"{rule.name}:{q}", rule, q, {"queue": q}) for q in queues)
    return out


def lookup(report: dict[str, Any], path: str) -> Any:
    node: Any = report
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            raise MissingPath(path)
        node = node[part]
    return node


def judge(inst: Instance, report: dict[str, Any]) -> Verdict:
    rule = inst.rule
    try:
        values = [lookup(report, inst.path(c.metric)) for c in rule.conditions]
        if rule.samples:
            count = lookup(report, inst.path(rule.samples))
            if not isinstance(count, int | float) or count < rule.min_samples:
                return Verdict(INSUFFICIENT, values, f"{count} samples < min_samples {rule.min_samples}")
    except MissingPath as exc:
        return Verdict(ERROR, [], f"{exc} is not in the health report")
    results: list[bool] = []
    for cond, value in zip(rule.conditions, values, strict=True):
        if value is None:
            if rule.on_null == "insufficient":
                return Verdict(INSUFFICIENT, values, f"{inst.path(cond.metric)} is null")
            results.append(rule.on_null == "alert")
            continue
        try:
            results.append(cond.holds(value))
        except (TypeError, ValueError):
            return Verdict(ERROR, values, f"{inst.path(cond.metric)} = {value!r} cannot be compared with "
                                          f"{cond.threshold!r}")
    return Verdict(TRUE if all(results) else FALSE, values)


def step(st: AlertState, inst: Instance, verdict: Verdict, now: float,
         new_episode: Callable[[], str]) -> list[str]:
    """Advance `st` for one evaluation at `now`; returns the transitions that happened (history events)."""
    rule = inst.rule
    st.rule, st.group, st.severity, st.labels = rule.name, rule.group, rule.severity, dict(inst.labels)
    st.evaluated_at = now
    st.values = verdict.values
    st.value = verdict.values[0] if verdict.values else None
    st.data = verdict.outcome if verdict.outcome in (INSUFFICIENT, ERROR) else "ok"
    st.error = verdict.reason if verdict.outcome == ERROR else ""
    if verdict.outcome in (INSUFFICIENT, ERROR):
        if st.state == PENDING:
            st.state, st.active_since = INACTIVE, None
            return ["cleared"]
        return []
    if verdict.outcome == TRUE:
        st.summary = render(rule.summary, rule, verdict.values, inst.queue)
        st.description = render(rule.description, rule, verdict.values, inst.queue)
        st.clear_since = None
        events: list[str] = []
        if st.state in (INACTIVE, RESOLVED):
            st.state, st.active_since = PENDING, now
            events.append("pending")
        if st.state == PENDING and now - (st.active_since or now) >= rule.for_s:
            st.state, st.fired_at, st.resolved_at = FIRING, now, None
            st.episode = new_episode()
            st.notified = st.silence_noted = False
            st.resolved_by = ""
            st.last_notified_at = None
            events.append("firing")
        return events
    if st.state == PENDING:
        st.state, st.active_since = INACTIVE, None
        return ["cleared"]
    if st.state == FIRING:
        st.clear_since = now if st.clear_since is None else st.clear_since
        if now - st.clear_since >= rule.keep_firing_for_s:
            st.state, st.resolved_at, st.clear_since, st.active_since = RESOLVED, now, None, None
            return ["resolved"]
    return []
