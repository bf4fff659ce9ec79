"""Chart series for the dashboard: the stored health reports reduced to a few numbers per point.

Owns the ranges the charts offer (`RANGES`: the last hour at report resolution, the last day at 5-minute points)
and which report fields a point carries: job latency p50/p95/p99, throughput, error rate (all over the report's
5-minute window) and the depth of each worker queue at the report. It reads reports only through
`HealthReporter.sampled` (the report's keys belong to monitoring/report.py) and keeps no state of its own.

Sampling, not averaging: each point is the newest report in its step. For the day range (5-minute steps) the
report's own 5-minute window makes consecutive points cover consecutive 5 minutes, so nothing between them is
lost except the instantaneous queue depth, which is shown as sampled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from monitoring.report import HealthReporter
from shared.clock import rfc3339

WINDOW = "5m"  # the report window every point reads
MIN_STEP_S = 10  # bounds the hour range at 360 points however often beat reports


@dataclass(frozen=True, slots=True)
class ChartRange:
    name: str
    since_s: int
    step_s: int | None  # None: one point per report interval

    def step(self, interval_s: int) -> int:
        return self.step_s if self.step_s is not None else max(MIN_STEP_S, interval_s)


RANGES: dict[str, ChartRange] = {
    "1h": ChartRange("1h", 3600, None),
    "24h": ChartRange("24h", 86400, 300),
}


@dataclass(frozen=True, slots=True)
class SeriesPoint:
    ts: float
    p50: float | None
    p95: float | None
    p99: float | None
    samples: int
    throughput_per_min: float | None
    error_rate: float | None
    queue_depth: dict[str, int]

    def as_json(self) -> dict[str, Any]:
        return {"ts": self.ts, "p50": self.p50, "p95": self.p95, "p99": self.p99, "samples": self.samples,
                "throughput_per_min": self.throughput_per_min, "error_rate": self.error_rate,
                "queue_depth": dict(self.queue_depth)}


@dataclass(frozen=True, slots=True)
class Series:
    range: ChartRange
    step_s: int
    generated_at_ts: float
    points: tuple[SeriesPoint, ...]

    def as_json(self) -> dict[str, Any]:
        queues = sorted({q for p in self.points for q in p.queue_depth})
        return {"range": self.range.name, "since_s": self.range.since_s, "step_s": self.step_s, "window": WINDOW,
                "generated_at": rfc3339(self.generated_at_ts), "generated_at_ts": self.generated_at_ts,
                "queues": queues,
                "points": [p.as_json() for p in self.points]}


def _num(x: object) -> float | None:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) else None


def point(report: dict[str, Any]) -> SeriesPoint:
    """One report as a chart point; a field the report lacks (an older report shape) is None."""
    window = (report.get("windows") or {}).get(WINDOW) or {}
    latency = window.get("job_latency_s") or {}
    depths = {name: int(q.get("depth") or 0) for name, q in (report.get("queues") or {}).items()
              if isinstance(q, dict)}
    return SeriesPoint(ts=float(report["generated_at_ts"]), p50=_num(latency.get("p50")),
                       p95=_num(latency.get("p95")), p99=_num(latency.get("p99")),
                       samples=int(latency.get("samples") or 0),
                       throughput_per_min=_num(window.get("throughput_per_min")),
                       error_rate=_num(window.get("error_rate")), queue_depth=depths)


def chart_series(reporter: HealthReporter, chart_range: ChartRange) -> Series:
    step = chart_range.step(reporter.interval_s)
    reports = reporter.sampled(since_s=chart_range.since_s, step_s=step)
    return Series(range=chart_range, step_s=step, generated_at_ts=reporter.clock.now(),
                  points=tuple(point(r) for r in reports if "generated_at_ts" in r))
