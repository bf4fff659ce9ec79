"""The two benches that predate the suite, as scenarios: "e2e" (bench/run.py: the real pipeline against the same
work done in one process) and "limiter" (bench/limiter.py: the fleet limiter against Celery's per-worker
rate_limit). Both modules still run on their own (`python -m bench.run`, `python -m bench.limiter`) with the
full report; here their measurements become `Figure`s."""

from __future__ import annotations

import statistics

from bench import limiter, run
from bench.figures import Figure, figure, pct
from shared.jobs.model import JobStatus


class PipelineScenario:
    name = "e2e"
    description = "jobs through the real stack (local provider) vs the same work in one process (bench/run.py)"
    in_quick_run = True

    def skip_reason(self) -> str:
        return ""

    def run(self, quick: bool) -> list[Figure]:
        m = run.measure(jobs=5, burst=20) if quick else run.measure(jobs=30, burst=120)
        b50 = statistics.median(m.baseline_ms)
        common = {"baseline_name": "in-process prepare + edit",
                  "notes": f"{m.jobs} sequential jobs; baseline p50 of the same work in one process"}
        return [
            figure("e2e", "job wall p50 (submit → terminal)", "ms", pct(m.wall_ms, 0.5), b50, "lower", **common),
            figure("e2e", "job wall p95 (submit → terminal)", "ms", pct(m.wall_ms, 0.95), b50, "lower", **common),
            figure("e2e", "server total_ms p50", "ms", pct(m.server_ms, 0.5), b50, "lower", **common),
            figure("e2e", f"burst of {m.burst}: jobs/s", "jobs/s", m.burst / m.burst_s, m.loop_jobs_per_s, "higher",
                   baseline_name=f"the same work in {m.loop_processes} processes, each in a loop",
                   target="≥ 0.8× of N processes in a loop",
                   notes="16 client threads; 2 preprocess + 3 generate worker processes on this machine"),
        ]


class LimiterScenario:
    name = "limiter"
    description = "fleet limiter vs Celery per-worker rate_limit against the fake Gemini (bench/limiter.py)"
    in_quick_run = False  # two full stacks and a paced backlog: ~50 s even when small (`--quick --only limiter`)

    def skip_reason(self) -> str:
        return ""

    def run(self, quick: bool) -> list[Figure]:
        # Quick: fewer jobs than rpm never overfill the fake's rolling minute, so B shows no 429s (a smoke run).
        argv = ["--jobs", "20", "--rpm", "240", "--latency-s", "0.5"] if quick else []  # full: the module's defaults
        args = limiter.parser().parse_args(argv)
        a, b = limiter.compare(args)
        common = {"baseline_name": "Celery rate_limit per worker instance",
                  "notes": f"{args.jobs} jobs at once, rpm {args.rpm}, latency {args.latency_s:g} s, cap {args.cap}; "
                           f"succeeded: ours {a.statuses[JobStatus.SUCCEEDED]}, baseline "
                           f"{b.statuses[JobStatus.SUCCEEDED]}; baseline calls/min {b.ok_per_min:.1f}"}
        return [
            # Against the quota itself, not the baseline: Celery's per-instance limits add up past the quota
            # (a "utilisation" over 100 % is a flood of 429s in waiting, not a better figure).
            figure("limiter", "successful calls/min vs quota", "calls/min", a.ok_per_min, float(args.rpm), "higher",
                   baseline_name="the provider quota (rpm)", target="≥ 99 % of the quota, 0 provider 429s",
                   notes=common["notes"]),
            figure("limiter", "provider 429s", "count", a.by_status.get("429", 0), b.by_status.get("429", 0), "lower",
                   target="0", **common),
            figure("limiter", "max in-flight at provider", "calls", a.max_in_flight, b.max_in_flight, "lower",
                   target=f"≤ cap ({args.cap})", **common),
            figure("limiter", "wall time, submit → last terminal", "s", a.wall_s, b.wall_s, "lower", **common),
            figure("limiter", "job latency p95", "s", pct(a.latencies_s, 0.95), pct(b.latencies_s, 0.95), "lower",
                   **common),
        ]
