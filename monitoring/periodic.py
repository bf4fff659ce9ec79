"""Weekly and monthly reviews: one period's figures added up from its daily summaries, with trends against the
period before.

Owns the period arithmetic (`Period`: weekly = ISO week, Monday to Sunday UTC, id `YYYY-Www`; monthly = calendar
month, id `YYYY-MM`) and the review's content (`ReviewBuilder.build`). Nothing here reads minute buckets: every
figure comes from the daily summaries of monitoring/report.py (kept 70 days, written by beat just after each UTC
midnight while that day's buckets still exist), so a review's totals are exactly the sums of its days. Today's
figures are the running summary (`complete: false` for the current period). A day with no stored summary (beat
was down for more than a day, or before the summaries were kept) is listed in `days_missing`, never invented.

Percentiles are not summed: each daily summary carries its latency histogram buckets (DDSketch log buckets,
monitoring/sketch.py), and the period's p50/p95/p99 are read from the merged buckets, within the same 1 %
relative accuracy as any report window. The rates come from the same `summarize` as every report window, applied
to the summed counters, so the error rate of a review counts the service's failures only like the hourly one.
Delivery on schedule is monitoring/review_delivery.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from monitoring.outcomes import WindowStats
from monitoring.report import HealthReporter, summarize
from monitoring.sketch import Histogram
from shared.clock import Clock, rfc3339

WEEKLY, MONTHLY = "weekly", "monthly"
PERIOD_KINDS = (WEEKLY, MONTHLY)
# The job SLO of the default burn-rate rule (monitoring/alerts/default_rules.toml): 99 % of judged jobs succeed.
JOB_SLO = 0.99
TOP_ERROR_CODES = 5
BUSIEST_HOURS = 3
# Figures compared with the previous period: (name in `trends`, path in the totals).
TREND_FIGURES = (("jobs_finished", ("jobs_finished",)), ("throughput_per_min", ("throughput_per_min",)),
                 ("error_rate", ("error_rate",)), ("timeout_rate", ("timeout_rate",)),
                 ("p50_latency_s", ("job_latency_s", "p50")), ("p95_latency_s", ("job_latency_s", "p95")),
                 ("p99_latency_s", ("job_latency_s", "p99")), ("cost_usd", ("cost_usd",)))
_WEEK_ID = re.compile(r"(\d{4})-W(\d{2})")
_MONTH_ID = re.compile(r"(\d{4})-(\d{2})")


class PeriodError(ValueError):
    """A period id that does not name a week (YYYY-Www) or a month (YYYY-MM)."""


@dataclass(frozen=True, slots=True)
class Period:
    kind: str  # weekly | monthly
    first: date
    last: date  # inclusive

    @property
    def id(self) -> str:
        if self.kind == WEEKLY:
            year, week, _ = self.first.isocalendar()
            return f"{year}-W{week:02d}"
        return f"{self.first.year}-{self.first.month:02d}"

    @property
    def days(self) -> list[date]:
        return [self.first + timedelta(days=n) for n in range((self.last - self.first).days + 1)]

    @property
    def ends_at(self) -> float:
        """Epoch seconds of the midnight (UTC) that closes the period."""
        return datetime.combine(self.last + timedelta(days=1), datetime.min.time(), tzinfo=UTC).timestamp()

    def previous(self) -> Period:
        return period_containing(self.kind, self.first - timedelta(days=1))

    @classmethod
    def parse(cls, kind: str, period_id: str) -> Period:
        """The period named `period_id`; PeriodError when it names none (e.g. 2025-W53, 2026-13)."""
        pattern = _WEEK_ID if kind == WEEKLY else _MONTH_ID
        found = pattern.fullmatch(period_id)
        if kind not in PERIOD_KINDS or found is None:
            raise PeriodError(f"not a {kind} period id: {period_id[:20]!r}")
        year, n = int(found[1]), int(found[2])
        try:
            first = date.fromisocalendar(year, n, 1) if kind == WEEKLY else date(year, n, 1)
        except ValueError:
            raise PeriodError(f"no such {kind} period: {period_id[:20]!r}") from None
        return period_containing(kind, first)


def period_containing(kind: str, day: date) -> Period:
    if kind == WEEKLY:
        first = day - timedelta(days=day.weekday())
        return Period(kind, first, first + timedelta(days=6))
    first = day.replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    return Period(kind, first, following - timedelta(days=1))


def _day_stats(summary: dict[str, Any]) -> WindowStats:
    """One daily summary back as the counters and histograms it was summarized from."""
    raw = summary.get("raw")
    if raw is None:  # a summary written before the raw figures were kept: what its public fields still say
        counts = {"jobs_finished": int(summary.get("jobs_finished", 0)),
                  **{f"status:{k}": int(v) for k, v in summary.get("by_status", {}).items()},
                  **{f"error:{k}": int(v) for k, v in summary.get("errors_by_code", {}).items()}}
        return WindowStats(minutes=int(summary.get("minutes", 1440)), counts=counts)
    return WindowStats(minutes=int(summary.get("minutes", 1440)),
                       counts={k: int(v) for k, v in raw.get("counts", {}).items()},
                       job_latency=Histogram({k: int(v) for k, v in raw.get("job_latency", {}).items()}),
                       provider_latency=Histogram({k: int(v) for k, v in raw.get("provider_latency", {}).items()}))


def _merge(stats: list[WindowStats]) -> WindowStats:
    counts: dict[str, int] = {}
    for s in stats:
        for name, n in s.counts.items():
            counts[name] = counts.get(name, 0) + n
    return WindowStats(minutes=max(1, sum(s.minutes for s in stats)), counts=counts,
                       job_latency=Histogram.merge(s.job_latency.counts for s in stats),
                       provider_latency=Histogram.merge(s.provider_latency.counts for s in stats))


def _figure(totals: dict[str, Any], path: tuple[str, ...]) -> float | None:
    value: Any = totals
    for part in path:
        value = value.get(part) if isinstance(value, dict) else None
    return float(value) if isinstance(value, int | float) else None


def _trend(current: float | None, previous: float | None) -> dict[str, float | None]:
    change = None if current is None or previous is None else round(current - previous, 6)
    pct = round(change / previous * 100, 1) if change is not None and previous else None
    return {"current": current, "previous": previous, "change": change, "change_pct": pct}


@dataclass(slots=True)
class ReviewBuilder:
    """Builds a review from the daily summaries that `reporter` stores (and today's running one)."""

    reporter: HealthReporter
    clock: Clock
    slo: float = JOB_SLO

    def today(self) -> date:
        return datetime.fromtimestamp(self.clock.now(), tz=UTC).date()

    def current(self, kind: str) -> Period:
        return period_containing(kind, self.today())

    def _days(self, period: Period) -> tuple[list[dict[str, Any]], list[str]]:
        """The period's daily summaries up to today, and the past days that have none."""
        today = self.today()
        found: list[dict[str, Any]] = []
        missing: list[str] = []
        for day in period.days:
            if day > today:
                break
            name = day.isoformat()
            # Today runs; yesterday's is written by beat just after midnight (computed here if not yet).
            summary = (self.reporter.daily(name) if day >= today - timedelta(days=1)
                       else self.reporter.stored_daily(name))
            if summary is None:
                missing.append(name)
            else:
                found.append(summary)
        return found, missing

    def _totals(self, days: list[dict[str, Any]]) -> dict[str, Any]:
        totals = summarize(_merge([_day_stats(d) for d in days]), self.reporter.min_samples)
        by_hour = [sum(int((d.get("jobs_by_hour_utc") or [0] * 24)[h]) for d in days) for h in range(24)]
        totals["jobs_by_hour_utc"] = by_hour
        totals["cost_usd"] = round(sum(float(d.get("cost_usd") or 0.0) for d in days), 6)
        return totals

    def build(self, period: Period) -> dict[str, Any]:
        days, missing = self._days(period)
        totals = self._totals(days)
        prev_period = period.previous()
        prev_days, prev_missing = self._days(prev_period)
        previous = self._totals(prev_days)
        return {
            "period": period.kind,
            "period_id": period.id,
            "first_day": period.first.isoformat(),
            "last_day": period.last.isoformat(),
            "generated_at": rfc3339(self.clock.now()),
            "complete": self.clock.now() >= period.ends_at,
            "days_covered": len(days),
            "days_missing": missing,
            "totals": totals,
            "previous": {"period_id": prev_period.id, "days_covered": len(prev_days), "days_missing": prev_missing,
                         "totals": previous},
            "trends": {name: _trend(_figure(totals, path), _figure(previous, path)) for name, path in TREND_FIGURES},
            "slo": self._slo(totals, days),
            "top_error_codes": self._top_codes(totals),
            "busiest_hours_utc": self._busiest(totals["jobs_by_hour_utc"]),
            "days": [{k: d.get(k) for k in ("day", "complete", "jobs_finished", "error_rate", "timeout_rate",
                                            "cost_usd")} for d in days],
        }

    def _slo(self, totals: dict[str, Any], days: list[dict[str, Any]]) -> dict[str, Any]:
        """Attainment of the job SLO: the good share of judged jobs, and how many days met it on their own."""
        budget = 1 - self.slo
        rate = totals.get("error_rate")
        judged = [d["error_rate"] for d in days if d.get("error_rate") is not None]
        meeting = sum(1 for r in judged if r <= budget)
        return {"target": self.slo,
                "good_ratio": None if rate is None else round(1 - rate, 4),
                "met": None if rate is None else rate <= budget,
                "error_budget_used": None if rate is None else round(rate / budget, 3),
                "days_judged": len(judged), "days_meeting": meeting,
                "days_meeting_ratio": round(meeting / len(judged), 4) if judged else None}

    @staticmethod
    def _top_codes(totals: dict[str, Any]) -> list[dict[str, Any]]:
        codes = totals.get("errors_by_code", {})
        total = sum(codes.values())
        ranked = sorted(codes.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_ERROR_CODES]
        return [{"code": code, "count": n, "share": round(n / total, 4)} for code, n in ranked]

    @staticmethod
    def _busiest(by_hour: list[int]) -> list[dict[str, int]]:
        ranked = sorted(range(24), key=lambda h: (-by_hour[h], h))[:BUSIEST_HOURS]
        return [{"hour": h, "jobs_finished": by_hour[h]} for h in ranked if by_hour[h] > 0]


def render_text(review: dict[str, Any]) -> str:
    """The review as plain text (email body, Slack message): headline figures, trends, SLO, top codes."""
    totals, slo = review["totals"], review["slo"]
    lines = [f"nanoedit {review['period']} review {review['period_id']} ({review['first_day']} to "
             f"{review['last_day']}){'' if review['complete'] else ' (so far)'}", ""]
    for name, t in review["trends"].items():
        pct = "" if t["change_pct"] is None else f" ({t['change_pct']:+.1f} %)"
        lines.append(f"{name}: {_fmt(t['current'])} (previous {_fmt(t['previous'])}){pct}")
    good = "n/a" if slo["good_ratio"] is None else f"{slo['good_ratio'] * 100:.2f} %"
    lines += ["", f"SLO {slo['target'] * 100:g} % good jobs: {good}; days meeting it: "
                  f"{slo['days_meeting']}/{slo['days_judged']}"]
    if review["top_error_codes"]:
        lines.append("top error codes: " + ", ".join(f"{c['code']} {c['count']}" for c in review["top_error_codes"]))
    if review["busiest_hours_utc"]:
        lines.append("busiest hours (UTC): " + ", ".join(f"{h['hour']:02d}:00 ({h['jobs_finished']} jobs)"
                                                         for h in review["busiest_hours_utc"]))
    lines.append(f"jobs: {totals['jobs_finished']}, estimated cost: {totals['cost_usd']:.2f} USD")
    if review["days_missing"]:
        lines.append("days without a summary: " + ", ".join(review["days_missing"]))
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:g}"
