"""Alert rules files: the built-in defaults (docs/alerts.md#rules) and loud, precise errors for bad files."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitoring.alerts import check_config
from monitoring.alerts.channels import ChannelConfigError
from monitoring.alerts.rules import DEFAULTS_SOURCE, RulesError, load_rules, parse_rules
from shared.settings import Settings

GOOD_RULE = """
[[rules]]
name = "errors"
severity = "high"
metric = "windows.5m.error_rate"
op = ">"
threshold = 0.1
summary = "error rate {value:.0%}"
"""


def test_default_rules_load_with_the_design_thresholds_and_cooldowns() -> None:
    rules = load_rules(None)

    assert rules.source == DEFAULTS_SOURCE
    by_name = {r.name: r for r in rules.rules}
    assert by_name["job_latency_p95"].conditions[0].threshold == 20 and by_name["job_latency_p95"].severity == "medium"
    assert by_name["job_error_rate"].conditions[0].threshold == 0.05
    assert by_name["job_error_rate_critical"].conditions[0].threshold == 0.10
    assert by_name["job_error_rate"].group == by_name["job_error_rate_critical"].group == "job_errors"
    assert by_name["job_timeout_rate"].severity == "high"
    assert by_name["no_live_worker"].severity == "critical" and by_name["no_live_worker"].per_queue
    assert by_name["queue_oldest_job_age"].on_null == "ok"
    assert by_name["circuit_open"].conditions[0].threshold == "closed"
    assert by_name["beat_heartbeat_missing"].on_null == "alert"
    burn = by_name["job_error_budget_burn"]
    assert [(c.metric, c.op, c.threshold) for c in burn.conditions] == [
        ("windows.1h.error_rate", ">", 0.144), ("windows.5m.error_rate", ">", 0.144)]
    assert [rules.cooldown(s) for s in ("critical", "high", "medium", "low")] == [300, 900, 3600, 14400]


def test_a_rules_file_on_disk_replaces_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text("[settings]\ngroup_interval_s = 30\n[settings.cooldowns_s]\nhigh = 60\n" + GOOD_RULE)

    rules = load_rules(str(path))

    assert [r.name for r in rules.rules] == ["errors"] and rules.rules[0].group == "errors"
    assert rules.cooldown("high") == 60 and rules.cooldown("critical") == 300 and rules.group_interval_s == 30
    assert rules.source == str(path)


@pytest.mark.parametrize(("text", "expected"), [
    ("[[rules]\nname=", "not valid TOML"),
    ("", "no [[rules]]"),
    ("[alerts]\nx = 1\n" + GOOD_RULE, "unknown top-level key(s) alerts"),
    (GOOD_RULE.replace('severity = "high"', 'severity = "warning"'), "rule #1 'errors': severity 'warning'"),
    (GOOD_RULE.replace('op = ">"', 'op = "gt"'), "rule #1 'errors': op 'gt'"),
    (GOOD_RULE + "fo_s = 30\n", "rule #1 'errors': unknown key(s) fo_s"),
    (GOOD_RULE.replace('summary = "error rate {value:.0%}"', 'summary = "rate {valeu}"'),
     "rule #1 'errors': summary template"),
    (GOOD_RULE.replace("windows.5m.error_rate", "window.5m.error_rate"), "path 'window.5m.error_rate'"),
    (GOOD_RULE.replace("windows.5m.error_rate", "windows.10m.error_rate"), "windows.<5m|1h>"),
    (GOOD_RULE.replace("threshold = 0.1", 'threshold = "high"'), "a text threshold ('high') works only"),
    (GOOD_RULE + "min_samples = 20\n", "min_samples needs `samples`"),
    (GOOD_RULE + 'queues = ["generate"]\n', "queues is set but no metric"),
    (GOOD_RULE + "for_s = -5\n", "for_s must be ≥ 0"),
    (GOOD_RULE + "burn_rate = { slo = 0.99, factor = 14.4 }\n", "exactly one condition"),
    (GOOD_RULE + GOOD_RULE, "duplicate rule name(s) errors"),
    ('[[rules]]\nname = "burn"\nseverity = "critical"\nsummary = "x"\n'
     'burn_rate = { slo = 1.5, factor = 14.4 }\n', "rule #1 'burn': burn_rate.slo must be below 1"),
    ("[settings.cooldowns_s]\nurgent = 5\n" + GOOD_RULE, "keys must be severities"),
])
def test_bad_rules_files_fail_loudly_naming_the_file_and_rule(text: str, expected: str) -> None:
    with pytest.raises(RulesError) as err:
        parse_rules(text, "/etc/nanoedit/rules.toml")

    assert "/etc/nanoedit/rules.toml" in str(err.value)
    assert expected in str(err.value)


def test_a_missing_rules_file_says_which_setting_to_fix(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="NANOEDIT_ALERT_RULES"):
        load_rules(str(tmp_path / "nope.toml"))


def test_all_conditions_and_per_queue_lists(tmp_path: Path) -> None:
    rules = parse_rules("""
[[rules]]
name = "stuck"
group = "queues"
severity = "low"
all = [{ metric = "queues.{queue}.depth", op = ">", threshold = 10 },
       { metric = "queues.{queue}.live_workers", op = "==", threshold = 0 }]
queues = ["generate"]
summary = "{queue}: depth {values[0]} with {values[1]} workers (> {thresholds[0]})"
""", "x.toml")

    rule = rules.rules[0]
    assert rule.per_queue and rule.queues == ("generate",) and len(rule.conditions) == 2


def test_start_up_check_rejects_a_bad_rules_file_and_bad_channel_settings(tmp_path: Path) -> None:
    bad = tmp_path / "rules.toml"
    bad.write_text(GOOD_RULE.replace('"high"', '"urgent"'))

    with pytest.raises(RulesError, match=r"rules\.toml: rule #1 'errors'"):
        check_config(Settings(alert_rules=str(bad)))
    with pytest.raises(ChannelConfigError, match="NANOEDIT_ALERT_WEBHOOK_SECRET"):
        check_config(Settings(alert_webhook_url="http://127.0.0.1:9/hook"))
    with pytest.raises(ChannelConfigError, match="NANOEDIT_ALERT_EMAIL_TO"):
        check_config(Settings(smtp_url="smtp://127.0.0.1:2525"))
    # incl. model_missing (workers/model_check.py), spend_rate (cost_usd_per_hour, monitoring/spend.py) and the
    # latency regression baseline rule (monitoring/baseline.py)
    names = {r.name for r in check_config(Settings()).rules}
    assert {"model_missing", "spend_rate", "job_latency_p95_regression"} <= names and len(names) >= 12
