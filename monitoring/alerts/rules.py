"""Alert rules: the frozen rule types and the TOML loader (stdlib `tomllib`) that validates a rules file.

Owns the rules file format (see `default_rules.toml` beside this module, which is also the built-in default) and
every check a rules file must pass. A bad file raises `RulesError` naming the file and the rule, so a typo fails
start-up loudly instead of silently never alerting. It must not touch Redis or evaluate reports (`lifecycle`).

Format, one `[[rules]]` table per rule:
  name, group, severity (critical|high|medium|low), summary, optional description — templates with {value}
  {threshold} {values[i]} {thresholds[i]} {queue} {name} {group} {severity} (format specs allowed: {value:.1%});
  exactly one condition form: `metric` + `op` + `threshold`; `all = [{metric, op, threshold}, ...]` (every one
  must hold); or `burn_rate = {slo, factor, windows = [long, short], metric = "error_rate"}` which expands to
  `windows.<w>.<metric> > (1 - slo) × factor` for each window; or `baseline = {metric, compare, worse_by | factor,
  direction, min_history, hours}`: the metric against its own history (monitoring/baseline.py), which expands to
  `baselines.<name>.change > worse_by` (change: how much worse than the baseline, as a fraction of it);
  `for_s` (the condition holds this long, by timestamps, before firing), `keep_firing_for_s` (it must be false
  this long before resolving), `samples` + `min_samples` (the count at that path must reach the minimum or the
  rule has insufficient data), `on_null` (a null metric means: insufficient | ok | alert), `queues` (per-queue
  rules: a `{queue}` in a path expands to these queues, default every queue in the report).
Optional `[settings]`: `group_interval_s`, and `[settings.cooldowns_s]` per severity.
"""

from __future__ import annotations

import math
import operator
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from shared.errors import ConfigError

SEVERITIES = ("low", "medium", "high", "critical")  # ascending: escalation means a higher index
DEFAULT_COOLDOWNS_S: Mapping[str, float] = {"critical": 300.0, "high": 900.0, "medium": 3600.0, "low": 14400.0}
DEFAULT_GROUP_INTERVAL_S = 300.0
ON_NULL = ("insufficient", "ok", "alert")
REPORT_ROOTS = ("windows", "queues", "circuit", "limiter", "beat", "models", "cost_usd_per_hour", "interval_s",
                "min_samples", "baselines", "system")
WINDOWS = ("5m", "1h")
DEFAULTS_SOURCE = "built-in default_rules.toml"

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq, "!=": operator.ne}
_RULE_KEYS = {"name", "group", "severity", "summary", "description", "metric", "op", "threshold", "all",
              "burn_rate", "baseline", "for_s", "keep_firing_for_s", "samples", "min_samples", "on_null", "queues"}


class RulesError(ConfigError):
    """The rules file is unreadable or invalid; the message names the file and the rule."""


def severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity)


@dataclass(frozen=True, slots=True)
class Condition:
    metric: str  # dotted path into the health report; may contain {queue}
    op: str
    threshold: float | str

    def holds(self, value: float | str) -> bool:
        if isinstance(self.threshold, str) or isinstance(value, str):
            return _OPS[self.op](str(value), str(self.threshold))
        return _OPS[self.op](float(value), self.threshold)


BASELINE_COMPARE = ("same_hour_last_7_days", "moving")
BASELINE_DIRECTIONS = ("higher", "lower")  # which way is worse


@dataclass(frozen=True, slots=True)
class BaselineSpec:
    """A baseline rule's comparison: `metric` now against the robust baseline of its own history."""

    metric: str  # dotted report path of the value compared (never per-queue)
    compare: str = "same_hour_last_7_days"  # or "moving": the last `hours` hours
    worse_by: float = 0.2  # fires when worse than the baseline by more than this fraction of it
    direction: str = "higher"
    min_history: int = 3  # days (same hour) or hours (moving) with a value, or the baseline is unknown
    hours: int = 24  # the moving window


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    group: str
    severity: str
    conditions: tuple[Condition, ...]
    summary: str
    description: str = ""
    for_s: float = 0.0
    keep_firing_for_s: float = 0.0
    samples: str = ""  # dotted path to a sample count; "" = no minimum
    min_samples: int = 0
    on_null: str = "insufficient"
    queues: tuple[str, ...] | None = None  # per-queue rules only; None = every queue in the report
    baseline: BaselineSpec | None = None  # baseline rules only

    @property
    def per_queue(self) -> bool:
        return any("{queue}" in p for p in (self.samples, *(c.metric for c in self.conditions)))


@dataclass(frozen=True, slots=True)
class RuleSet:
    rules: tuple[Rule, ...]
    source: str = DEFAULTS_SOURCE
    cooldowns_s: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_COOLDOWNS_S))
    group_interval_s: float = DEFAULT_GROUP_INTERVAL_S

    def cooldown(self, severity: str) -> float:
        return float(self.cooldowns_s[severity])

    def rule(self, name: str) -> Rule | None:
        return next((r for r in self.rules if r.name == name), None)

    def baseline_rules(self) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.baseline is not None)


def load_rules(path: str | Path | None = None) -> RuleSet:
    """The rules at `path` (NANOEDIT_ALERT_RULES), or the built-in defaults when it is empty."""
    if not path:
        text = resources.files("monitoring.alerts").joinpath("default_rules.toml").read_text("utf-8")
        return parse_rules(text, DEFAULTS_SOURCE)
    p = Path(path)
    try:
        text = p.read_text("utf-8")
    except OSError as exc:
        raise RulesError(f"{p}: cannot read the alert rules file ({exc.strerror or type(exc).__name__}); "
                         "fix NANOEDIT_ALERT_RULES or unset it for the built-in defaults") from None
    return parse_rules(text, str(p))


def parse_rules(text: str, source: str) -> RuleSet:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"{source}: not valid TOML: {exc}") from None
    unknown = sorted(set(doc) - {"settings", "rules"})
    if unknown:
        raise RulesError(f"{source}: unknown top-level key(s) {', '.join(unknown)}; expected [settings] and "
                         "[[rules]]")
    cooldowns, group_interval = _settings(doc.get("settings", {}), source)
    raw_rules = doc.get("rules")
    if not isinstance(raw_rules, list) or not raw_rules:
        raise RulesError(f"{source}: no [[rules]] tables")
    rules: list[Rule] = []
    for i, raw in enumerate(raw_rules, start=1):
        where = f"{source}: rule #{i}" + (f" {raw.get('name')!r}" if isinstance(raw, dict) and "name" in raw
                                          else "")
        try:
            rules.append(_rule(raw))
        except RulesError as exc:
            raise RulesError(f"{where}: {exc}") from None
    names = [r.name for r in rules]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise RulesError(f"{source}: duplicate rule name(s) {', '.join(dupes)}")
    return RuleSet(rules=tuple(rules), source=source, cooldowns_s=cooldowns, group_interval_s=group_interval)


def _settings(raw: Any, source: str) -> tuple[dict[str, float], float]:
    # escalation and quiet_hours are the paging policy's (monitoring/alerts/paging.py), validated there
    if not isinstance(raw, dict) or set(raw) - {"cooldowns_s", "group_interval_s", "escalation", "quiet_hours"}:
        raise RulesError(f"{source}: [settings] takes only cooldowns_s, group_interval_s, escalation and "
                         "quiet_hours")
    cooldowns = dict(DEFAULT_COOLDOWNS_S)
    given = raw.get("cooldowns_s", {})
    if not isinstance(given, dict) or set(given) - set(SEVERITIES):
        raise RulesError(f"{source}: [settings.cooldowns_s] keys must be severities: {', '.join(SEVERITIES)}")
    for sev, value in given.items():
        cooldowns[sev] = _number(value, f"settings.cooldowns_s.{sev}", minimum=1.0, source=source)
    group_interval = _number(raw.get("group_interval_s", DEFAULT_GROUP_INTERVAL_S), "settings.group_interval_s",
                             minimum=0.0, source=source)
    return cooldowns, group_interval


def _number(value: Any, name: str, minimum: float, source: str = "") -> float:
    prefix = f"{source}: " if source else ""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RulesError(f"{prefix}{name} must be a number, got {value!r}")
    if value < minimum:
        raise RulesError(f"{prefix}{name} must be ≥ {minimum:g}, got {value!r}")
    return float(value)


def _text(raw: dict[str, Any], key: str, required: bool = True) -> str:
    value = raw.get(key, "")
    if not isinstance(value, str) or (required and not value.strip()):
        raise RulesError(f"{key} must be a non-empty string" if required else f"{key} must be a string")
    return value.strip()


def _rule(raw: Any) -> Rule:
    if not isinstance(raw, dict):
        raise RulesError("each [[rules]] entry must be a table")
    unknown = sorted(set(raw) - _RULE_KEYS)
    if unknown:
        raise RulesError(f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_RULE_KEYS))}")
    name = _text(raw, "name")
    if not all(ch.isalnum() or ch in "_-." for ch in name):
        raise RulesError("name may use only letters, digits, '_', '-' and '.'")
    severity = _text(raw, "severity")
    if severity not in SEVERITIES:
        raise RulesError(f"severity {severity!r} is not one of {', '.join(SEVERITIES)}")
    on_null = str(raw.get("on_null", "insufficient"))
    if on_null not in ON_NULL:
        raise RulesError(f"on_null {on_null!r} is not one of {', '.join(ON_NULL)}")
    samples = _text(raw, "samples", required=False)
    min_samples = int(_number(raw.get("min_samples", 0), "min_samples", minimum=0))
    if min_samples and not samples:
        raise RulesError("min_samples needs `samples`, the report path of the sample count")
    if samples:
        _check_path(samples)
    queues = raw.get("queues")
    if queues is not None and (not isinstance(queues, list) or not queues
                               or not all(isinstance(q, str) and q for q in queues)):
        raise RulesError("queues must be a non-empty list of queue names")
    baseline = _baseline(raw, name) if "baseline" in raw else None
    rule = Rule(name=name, group=_text(raw, "group") if "group" in raw else name, severity=severity,
                conditions=_conditions(raw, name), summary=_text(raw, "summary"),
                description=_text(raw, "description", required=False),
                for_s=_number(raw.get("for_s", 0), "for_s", minimum=0),
                keep_firing_for_s=_number(raw.get("keep_firing_for_s", 0), "keep_firing_for_s", minimum=0),
                samples=samples, min_samples=min_samples, on_null=on_null,
                queues=tuple(queues) if queues is not None else None, baseline=baseline)
    if queues is not None and not rule.per_queue:
        raise RulesError("queues is set but no metric or samples path contains {queue}")
    _check_templates(rule)
    return rule


def _conditions(raw: dict[str, Any], name: str) -> tuple[Condition, ...]:
    forms = [k for k in ("metric", "all", "burn_rate", "baseline") if k in raw]
    if len(forms) != 1:
        raise RulesError("give exactly one condition: metric/op/threshold, all = [...], burn_rate = {...} or "
                         "baseline = {...}")
    if "baseline" in raw:
        if {"op", "threshold"} & set(raw):
            raise RulesError("baseline rules take no op/threshold: the threshold is worse_by (or factor)")
        spec = _baseline(raw, name)
        return (Condition(f"baselines.{name}.change", ">", spec.worse_by),)
    if "metric" in raw:
        return (_condition(raw, strict=False),)
    if "all" in raw:
        items = raw["all"]
        if not isinstance(items, list) or not items:
            raise RulesError("all must be a non-empty list of {metric, op, threshold} tables")
        return tuple(_condition(c, strict=True) for c in items)
    if {"op", "threshold"} & set(raw):
        raise RulesError("burn_rate rules take no op/threshold: the threshold is (1 - slo) × factor")
    br = raw["burn_rate"]
    if not isinstance(br, dict) or set(br) - {"slo", "factor", "windows", "metric"}:
        raise RulesError("burn_rate takes slo, factor, windows and optionally metric")
    slo = _number(br.get("slo"), "burn_rate.slo", minimum=0.0)
    if not slo < 1:
        raise RulesError("burn_rate.slo must be below 1 (e.g. 0.99 for 99 %)")
    factor = _number(br.get("factor"), "burn_rate.factor", minimum=1.0)
    windows = br.get("windows", ["1h", "5m"])
    if not isinstance(windows, list) or not windows or any(w not in WINDOWS for w in windows):
        raise RulesError(f"burn_rate.windows must list report windows ({', '.join(WINDOWS)})")
    metric = str(br.get("metric", "error_rate"))
    threshold = round((1 - slo) * factor, 10)
    return tuple(Condition(f"windows.{w}.{metric}", ">", threshold) for w in windows)


def _baseline(raw: dict[str, Any], name: str) -> BaselineSpec:
    b = raw["baseline"]
    allowed = {"metric", "compare", "worse_by", "factor", "direction", "min_history", "hours"}
    if not isinstance(b, dict) or set(b) - allowed:
        raise RulesError(f"baseline takes {', '.join(sorted(allowed))}")
    if "." in name:
        raise RulesError("a baseline rule's name may not contain '.' (it names its entry in the report's baselines)")
    metric = _text(b, "metric")
    _check_path(metric)
    if metric.startswith("baselines.") or "{queue}" in metric:
        raise RulesError(f"baseline.metric {metric!r} must be a plain report metric (not baselines.*, no {{queue}})")
    compare = str(b.get("compare", "same_hour_last_7_days"))
    if compare not in BASELINE_COMPARE:
        raise RulesError(f"baseline.compare {compare!r} is not one of {', '.join(BASELINE_COMPARE)}")
    direction = str(b.get("direction", "higher"))
    if direction not in BASELINE_DIRECTIONS:
        raise RulesError(f"baseline.direction {direction!r} is not one of {', '.join(BASELINE_DIRECTIONS)}")
    if "worse_by" in b and "factor" in b:
        raise RulesError("baseline takes worse_by (a fraction, 0.2 = 20 % worse) or factor (2 = twice as bad), "
                         "not both")
    if "factor" in b:
        factor = _number(b["factor"], "baseline.factor", minimum=1.0)
        if factor == 1.0:
            raise RulesError("baseline.factor must be above 1")
        # twice as bad: twice the baseline (higher is worse) or half of it (lower is worse)
        worse_by = factor - 1 if direction == "higher" else 1 - 1 / factor
    else:
        worse_by = _number(b.get("worse_by", 0.2), "baseline.worse_by", minimum=0.0)
        if worse_by == 0 or (direction == "lower" and worse_by >= 1):
            raise RulesError("baseline.worse_by must be above 0 (and below 1 when lower is worse)")
    min_history = int(_number(b.get("min_history", 3), "baseline.min_history", minimum=1))
    hours = int(_number(b.get("hours", 24), "baseline.hours", minimum=1))
    if compare == "same_hour_last_7_days" and min_history > 7:
        raise RulesError("baseline.min_history is at most 7 days for same_hour_last_7_days")
    if compare == "moving" and min_history > hours:
        raise RulesError("baseline.min_history cannot exceed baseline.hours")
    if hours > 7 * 24:
        raise RulesError("baseline.hours is at most 168 (the history kept is 8 days)")
    return BaselineSpec(metric=metric, compare=compare, worse_by=round(worse_by, 10), direction=direction,
                        min_history=min_history, hours=hours)


def _condition(raw: Any, strict: bool) -> Condition:
    if not isinstance(raw, dict) or (strict and set(raw) - {"metric", "op", "threshold"}):
        raise RulesError("each entry of `all` is a table {metric, op, threshold}")
    metric = _text(raw, "metric")
    _check_path(metric)
    op = str(raw.get("op", ""))
    if op not in _OPS:
        raise RulesError(f"op {op!r} is not one of {' '.join(_OPS)}")
    threshold = raw.get("threshold")
    if isinstance(threshold, str):
        if op not in ("==", "!="):
            raise RulesError(f"a text threshold ({threshold!r}) works only with == and !=")
        return Condition(metric, op, threshold)
    return Condition(metric, op, _number(threshold, "threshold", minimum=-math.inf))


def _check_path(path: str) -> None:
    parts = path.split(".")
    if any(not p for p in parts) or parts[0] not in REPORT_ROOTS:
        raise RulesError(f"path {path!r} must be dotted and start with one of {', '.join(REPORT_ROOTS)}")
    if parts[0] == "windows" and (len(parts) < 3 or parts[1] not in WINDOWS):
        raise RulesError(f"path {path!r}: windows.<{'|'.join(WINDOWS)}>.<metric>")
    if parts[0] == "queues" and len(parts) < 3:
        raise RulesError(f"path {path!r}: queues.<queue or {{queue}}>.<metric>")


class _Null:
    """Stands in for a null metric in templates: any format spec renders "n/a" instead of raising."""

    def __format__(self, spec: str) -> str:
        return "n/a"

    def __str__(self) -> str:
        return "n/a"


NULL = _Null()


def render(template: str, rule: Rule, values: list[Any], queue: str = "") -> str:
    """Fill a summary/description template; null values render as "n/a"."""
    vals = [NULL if v is None else v for v in values]
    thresholds = [c.threshold for c in rule.conditions]
    try:
        return template.format(value=vals[0] if vals else NULL, threshold=thresholds[0], values=vals,
                               thresholds=thresholds, queue=queue, name=rule.name, group=rule.group,
                               severity=rule.severity)
    except (KeyError, IndexError, ValueError, TypeError):
        return template  # a string value under a numeric format spec: show the template rather than fail


def _check_templates(rule: Rule) -> None:
    sample = [c.threshold for c in rule.conditions]
    for key in ("summary", "description"):
        template = getattr(rule, key)
        try:
            template.format(value=sample[0], threshold=sample[0], values=sample, thresholds=sample, queue="q",
                            name=rule.name, group=rule.group, severity=rule.severity)
        except (KeyError, IndexError, ValueError, TypeError, AttributeError) as exc:
            raise RulesError(f"{key} template {template!r} is invalid ({type(exc).__name__}: {exc}); "
                             "placeholders: {value} {threshold} {values[i]} {thresholds[i]} {queue} {name} "
                             "{group} {severity}") from None
