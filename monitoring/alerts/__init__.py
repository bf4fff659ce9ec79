"""Alerting: rules (TOML) evaluated on every beat health report, Alertmanager-like lifecycle, channels.

Modules: `rules` (file format, loader, validation), `lifecycle` (one alert's state machine), `engine` (grouping,
cooldowns, silences, acks, the evaluation lock), `store` (Redis layout), `silences`, `model` (value types),
`channels` (Slack, signed webhook, email, log), `channels_paging` (PagerDuty, SMS), `notifier` (concurrent
delivery with retries), `paging` (escalation policies and quiet hours in the rules file) and `escalation` (the
`Pager` that applies them).
This package builds the engine from settings; it must not import `api` or `workers`.
"""

from __future__ import annotations

import redis

from monitoring.alerts.engine import AlertEngine
from monitoring.alerts.notifier import Notifier, build_notifier
from monitoring.alerts.paging import PagingPolicy, load_paging
from monitoring.alerts.rules import RulesError, RuleSet, load_rules
from shared.clock import Clock
from shared.settings import Settings

__all__ = ["AlertEngine", "Notifier", "RuleSet", "RulesError", "build_engine", "build_notifier", "check_config",
           "load_rules"]


def build_engine(settings: Settings, r: redis.Redis, clock: Clock, *, notifier: Notifier | None = None,
                 rules: RuleSet | None = None, paging: PagingPolicy | None = None) -> AlertEngine:
    """The engine for this deployment: rules and paging policy from NANOEDIT_ALERT_RULES (or the defaults),
    configured channels."""
    return AlertEngine(r, settings.redis_prefix, clock, rules or load_rules(settings.alert_rules),
                       notifier or build_notifier(settings, clock=clock),
                       paging=paging or load_paging(settings.alert_rules))


def check_config(settings: Settings) -> RuleSet:
    """Load the rules and build the channels once, so a bad rules file or channel setting fails start-up loudly
    (RulesError / ChannelConfigError, both `shared.errors.ConfigError`) instead of at the first evaluation."""
    rules = load_rules(settings.alert_rules)
    load_paging(settings.alert_rules)
    build_notifier(settings)
    return rules
