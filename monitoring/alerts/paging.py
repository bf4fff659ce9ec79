"""Paging policy: who is told first, who is told next, and when non-critical alerts wait for the morning.

Owns the `[settings.escalation.<severity>]` and `[settings.quiet_hours]` tables of the rules file (the rest of the
file is `rules.py`'s), their validation, the built-in defaults and the quiet-hours calendar. Pure values: no Redis,
no sending (the engine's `escalation.Pager` applies them).

A target is `"channel"` or `"channel:recipient[,recipient...]"`: `email:em@example.com` mails that address instead
of NANOEDIT_ALERT_EMAIL_TO, `sms:+15550100` texts that number, `pagerduty:<routing key>` pages another service,
`slack:@eng-manager` (any text) is a mention put at the top of the Slack message. Only the routed channels
(`ROUTED_CHANNELS`) are chosen by a policy; the log and the signed webhook receive every message.
Quiet hours use `zoneinfo`, so business hours follow the local clock across daylight-saving changes.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, time
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from monitoring.alerts.rules import DEFAULTS_SOURCE, SEVERITIES, RulesError, severity_rank

ROUTED_CHANNELS = ("pagerduty", "sms", "slack", "email")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, slots=True)
class Target:
    channel: str
    recipients: tuple[str, ...] = ()

    def __str__(self) -> str:
        return self.channel + (":" + ",".join(self.recipients) if self.recipients else "")


@dataclass(frozen=True, slots=True)
class Step:
    after_s: float  # since the alert was first sent to a person, unacknowledged
    label: str  # who this step reaches, e.g. "engineering manager"
    targets: tuple[Target, ...]


@dataclass(frozen=True, slots=True)
class SeverityPolicy:
    response_s: float  # the expected response time (documentation and the message text)
    first: tuple[Target, ...]
    steps: tuple[Step, ...] = ()


@dataclass(frozen=True, slots=True)
class QuietHours:
    timezone: str
    days: tuple[int, ...]  # business days, Monday = 0
    start: time
    end: time
    hold_below: str  # alerts of a lower severity wait for the next business day

    def holds(self, severity: str) -> bool:
        return severity_rank(severity) < severity_rank(self.hold_below)

    def is_business(self, ts: float) -> bool:
        local = datetime.fromtimestamp(ts, tz=ZoneInfo(self.timezone))
        return local.weekday() in self.days and self.start <= local.time().replace(tzinfo=None) < self.end


def _t(channel: str, *recipients: str) -> Target:
    return Target(channel, tuple(recipients))


_Row = tuple[str, float, tuple[Target, ...], float, str, tuple[Target, ...]]


def _policies(*rows: _Row) -> dict[str, SeverityPolicy]:
    return {sev: SeverityPolicy(resp, first, (Step(after, label, targets),))
            for sev, resp, first, after, label, targets in rows}


_ALL = (_t("pagerduty"), _t("sms"), _t("slack"), _t("email"))
DEFAULT_POLICIES: Mapping[str, SeverityPolicy] = _policies(
    ("critical", 900, (_t("pagerduty"), _t("sms"), _t("slack")), 900, "engineering manager", _ALL),
    ("high", 3600, (_t("pagerduty"), _t("slack"), _t("email")), 3600, "team lead", _ALL),
    ("medium", 14400, (_t("slack"), _t("email")), 14400, "team lead", (_t("slack"), _t("email"))),
    ("low", 86400, (_t("email"),), 86400, "team lead", (_t("email"),)),
)


@dataclass(frozen=True, slots=True)
class PagingPolicy:
    policies: Mapping[str, SeverityPolicy] = field(default_factory=lambda: dict(DEFAULT_POLICIES))
    quiet: QuietHours | None = None

    def for_severity(self, severity: str) -> SeverityPolicy:
        return self.policies[severity]


def load_paging(path: str | Path | None = None) -> PagingPolicy:
    """The paging policy of the rules file at `path` (NANOEDIT_ALERT_RULES), or of the built-in defaults."""
    if not path:
        text, source = (resources.files("monitoring.alerts").joinpath("default_rules.toml").read_text("utf-8"),
                        DEFAULTS_SOURCE)
    else:
        source = str(path)
        try:
            text = Path(path).read_text("utf-8")
        except OSError as exc:
            raise RulesError(f"{source}: cannot read the alert rules file ({exc.strerror or type(exc).__name__})"
                             ) from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"{source}: not valid TOML: {exc}") from None
    settings = doc.get("settings", {})
    return parse_paging(settings if isinstance(settings, dict) else {}, source)


def parse_paging(settings: dict[str, Any], source: str) -> PagingPolicy:
    """`[settings.escalation]` and `[settings.quiet_hours]`; severities not given keep their defaults."""
    policies = dict(DEFAULT_POLICIES)
    raw = settings.get("escalation", {})
    if not isinstance(raw, dict) or set(raw) - set(SEVERITIES):
        raise RulesError(f"{source}: [settings.escalation] keys must be severities: {', '.join(SEVERITIES)}")
    for sev, table in raw.items():
        policies[sev] = _severity_policy(table, f"{source}: settings.escalation.{sev}")
    quiet = settings.get("quiet_hours")
    return PagingPolicy(policies, None if quiet is None else _quiet(quiet, f"{source}: settings.quiet_hours"))


def _minutes(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise RulesError(f"{where} must be a number of minutes ≥ 0, got {value!r}")
    return float(value) * 60.0


def _targets(value: Any, where: str) -> tuple[Target, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise RulesError(f"{where} must be a non-empty list of \"channel\" or \"channel:recipient\" strings")
    out: list[Target] = []
    for item in value:
        channel, _, rest = item.strip().partition(":")
        if channel not in ROUTED_CHANNELS:
            raise RulesError(f"{where}: unknown channel {channel!r} in {item!r}; one of {', '.join(ROUTED_CHANNELS)}")
        out.append(Target(channel, tuple(r.strip() for r in rest.split(",") if r.strip())))
    return tuple(out)


def _severity_policy(table: Any, where: str) -> SeverityPolicy:
    if not isinstance(table, dict) or set(table) - {"response_min", "first", "steps"}:
        raise RulesError(f"{where} takes response_min, first and steps")
    steps: list[Step] = []
    raw_steps = table.get("steps", [])
    if not isinstance(raw_steps, list):
        raise RulesError(f"{where}.steps must be a list of {{after_min, to, label}} tables")
    for i, raw in enumerate(raw_steps, start=1):
        at = f"{where}.steps[{i}]"
        if not isinstance(raw, dict) or set(raw) - {"after_min", "to", "label"} or "after_min" not in raw:
            raise RulesError(f"{at} must be a table {{after_min, to, label}}")
        label = raw.get("label", f"step {i}")
        if not isinstance(label, str):
            raise RulesError(f"{at}.label must be a string")
        steps.append(Step(_minutes(raw["after_min"], f"{at}.after_min"), label, _targets(raw.get("to"), f"{at}.to")))
    if [s.after_s for s in steps] != sorted(s.after_s for s in steps):
        raise RulesError(f"{where}.steps must be in increasing after_min order")
    return SeverityPolicy(_minutes(table.get("response_min", 0), f"{where}.response_min"),
                          _targets(table.get("first"), f"{where}.first"), tuple(steps))


def _clock_time(value: Any, where: str) -> time:
    try:
        hh, mm = str(value).split(":")
        return time(int(hh), int(mm))
    except ValueError:
        raise RulesError(f"{where} must be \"HH:MM\", got {value!r}") from None


def _quiet(raw: Any, where: str) -> QuietHours:
    keys = {"timezone", "days", "start", "end", "hold_below"}
    if not isinstance(raw, dict) or set(raw) - keys:
        raise RulesError(f"{where} takes {', '.join(sorted(keys))}")
    tz = raw.get("timezone", "UTC")
    try:
        ZoneInfo(str(tz))
    except (ZoneInfoNotFoundError, ValueError):
        raise RulesError(f"{where}.timezone {tz!r} is not an IANA time zone (e.g. \"Europe/Paris\")") from None
    days = raw.get("days", list(DAYS[:5]))
    if not isinstance(days, list) or not days or any(d not in DAYS for d in days):
        raise RulesError(f"{where}.days must list days among {', '.join(DAYS)}")
    start, end = _clock_time(raw.get("start", "09:00"), f"{where}.start"), _clock_time(raw.get("end", "18:00"),
                                                                                        f"{where}.end")
    if not start < end:
        raise RulesError(f"{where}: start must be before end")
    hold_below = raw.get("hold_below", "critical")
    if hold_below not in SEVERITIES:
        raise RulesError(f"{where}.hold_below {hold_below!r} is not one of {', '.join(SEVERITIES)}")
    return QuietHours(str(tz), tuple(sorted({DAYS.index(d) for d in days})), start, end, hold_below)
