"""`make bench` (second part): the fleet limiter against Celery's per-worker `rate_limit`, same load, same fake.

The issue's benchmark: a fake Gemini provider that enforces RPM (real 429 + RetryInfo when over) with ~2 s
latency, a backlog of jobs submitted at once, 2 generate worker instances. Two runs on fresh Redis databases and
fresh fake counters:

  A. nanoedit's fleet limiter: NANOEDIT_GEMINI_RPM=rpm, NANOEDIT_GEMINI_CONCURRENCY=cap (fleet-wide, in Redis);
  B. baseline: fleet limiter off (RPM=0, concurrency 64) and Celery's `rate_limit` = rpm/m on the generate task
     of *each* worker instance (NANOEDIT_CELERY_RATE_LIMIT), which is what you get without a shared limiter.
     The 429 fleet cooldown and RetryInfo-honouring retries stay on in both runs: they are not the limiter.

Each generate instance runs enough processes (-c 4) that the limiter, not the pool, is the bottleneck; the cap
must allow full use of the quota (in flight ≈ rpm/60 × latency = 4 at 120 rpm and 2 s), hence cap 6.

Figures, measured at the fake (what the provider saw) over the steady-state window from the first provider
request to the last:
  successful calls/min = (200 answers − 1) ÷ (last − first request start) × 60 (exact for evenly spaced calls),
  utilisation = that ÷ rpm; 429s; max in-flight at the fake; plus wall time (first submit → last job
  terminal, from the job records), jobs succeeded and p50/p95 job latency (server `total_ms`). The issue asks for
  A: utilisation ≥ 99 %, 0 × 429, max in-flight ≤ cap. Figures, not asserts (shared, noisy machines).

    python -m bench.limiter [--jobs 300] [--rpm 120] [--latency-s 2] [--cap 6]

300 jobs at 120 rpm is ≥ 2.5 min per run (≈ 7 min in all); use --jobs 60 for a quick look, but note that
fewer jobs than --rpm can never overfill the fake's rolling minute, so B then shows no 429s.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shlex
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from types import FrameType
from typing import Any

import redis
import requests
from PIL import Image

from shared.jobs.model import TERMINAL as TERMINAL_STATUSES
from shared.jobs.model import JobStatus
from tests.support.stack import RedisServer, Stack, make_stack, wait_for
from workers.fake_gemini import FakeGeminiConfig, FakeGeminiServer

TERMINAL = {s.value for s in TERMINAL_STATUSES}
GENERATE_INSTANCES = 2
PROCESSES_PER_INSTANCE = 4


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def small_png() -> bytes:
    """A 256×256 gradient: the point here is quota, not imaging, and the machine has few cores."""
    im = Image.new("RGB", (256, 256))
    im.putdata([(x, y, (x + y) // 2) for y in range(256) for x in range(256)])
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


@dataclass
class RunResult:
    name: str
    jobs: int
    statuses: Counter[str] = field(default_factory=Counter)
    wall_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    requests: int = 0
    ok_calls: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    max_in_flight: int = 0
    window_s: float = 0.0
    ok_per_min: float = 0.0
    gaps_s: list[float] = field(default_factory=list)  # between consecutive provider request starts
    waits: Counter[str] = field(default_factory=Counter)  # quota-wait re-queues by reason (worker logs)
    retries: Counter[str] = field(default_factory=Counter)  # retries after a provider failure, by outcome
    errors: Counter[str] = field(default_factory=Counter)  # error codes of jobs that did not succeed


def submit_all(url: str, n: int, tag: str, png: bytes) -> tuple[float, list[str]]:
    """Submit n jobs at once (16 client threads); distinct instructions + no-cache so nothing is served cached."""
    def one(i: int) -> str:
        with requests.Session() as s:
            resp = s.post(f"{url}/v1/jobs", headers={"Cache-Control": "no-cache"},
                          data={"instruction": f"grayscale (bench {tag} job {i})"},
                          files=[("image", ("bench.png", png, "image/png"))], timeout=60)
            resp.raise_for_status()
            return str(resp.json()["id"])

    t0 = time.time()
    with ThreadPoolExecutor(16) as pool:
        ids = list(pool.map(one, range(n)))
    return t0, ids


def wait_terminal(url: str, ids: list[str], timeout_s: float, progress: str) -> dict[str, dict[str, Any]]:
    """Poll until every job is terminal. Walks the pending jobs oldest first and stops a sweep at the 5th one
    still running (jobs mostly finish in submission order), so the API sees ~1 GET per job plus a few per
    second rather than a flood that would compete for the same CPUs as the workers."""
    done: dict[str, dict[str, Any]] = {}
    pending = list(ids)
    deadline = time.monotonic() + timeout_s
    last_print = 0.0
    with requests.Session() as s:
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(pending)} jobs still not terminal after {timeout_s:.0f} s")
            running = 0
            still: list[str] = []
            for k, job_id in enumerate(pending):
                if running >= 5:
                    still.extend(pending[k:])
                    break
                job = s.get(f"{url}/v1/jobs/{job_id}", timeout=30).json()
                if job.get("status") in TERMINAL:
                    done[job_id] = job
                else:
                    running += 1
                    still.append(job_id)
            pending = still
            if time.monotonic() - last_print > 15:
                last_print = time.monotonic()
                print(f"  [{progress}] {len(done)}/{len(ids)} terminal", file=sys.stderr, flush=True)
            if pending:
                time.sleep(1.0)
    return done


def log_counts(stack: Stack) -> tuple[Counter[str], Counter[str]]:
    waits: Counter[str] = Counter()
    retries: Counter[str] = Counter()
    for name, proc in stack.procs.items():
        if not name.startswith("generate"):
            continue
        for line in proc.log().splitlines():
            if '"waiting for quota"' not in line and '"retrying output"' not in line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if rec.get("message") == "waiting for quota":
                waits[str(rec.get("reason"))] += 1
            elif rec.get("message") == "retrying output":
                retries[str(rec.get("outcome"))] += 1
    return waits, retries


def run(name: str, server: RedisServer, db: int, fake: FakeGeminiServer, args: argparse.Namespace,
        overrides: dict[str, str], celery_rate_limit: str, png: bytes, tmp: Path) -> RunResult:
    fake.reset()
    r = redis.Redis.from_url(server.url(db))
    r.flushdb()
    env = {
        "GEMINI_API_KEY": "bench",
        "NANOEDIT_PROVIDER": "auto",
        "NANOEDIT_GEMINI_BASE_URL": fake.base_url,
        "NANOEDIT_LOG_LEVEL": "INFO",
        "NANOEDIT_JOB_DEADLINE_S": "1800",  # the bench measures throughput; a deadline would only truncate B
        **overrides,
    }
    if celery_rate_limit:
        env["NANOEDIT_CELERY_RATE_LIMIT"] = celery_rate_limit
    stack = make_stack(server.url(db), tmp / name, **env)
    try:
        stack.start_worker("preprocess", 2)
        for i in range(1, GENERATE_INSTANCES + 1):
            stack.start_worker("generate", PROCESSES_PER_INSTANCE, name=f"generate{i}")
        stack.start_api()
        stack.wait_api()
        stack.wait_live()
        wait_for(lambda: r.zcard("nanoedit:workers:generate") >= GENERATE_INSTANCES, 60,
                 "both generate instances", 0.2)
        print(f"  [{name}] stack up; submitting {args.jobs} jobs", file=sys.stderr, flush=True)
        t0, ids = submit_all(stack.url, args.jobs, name, png)
        jobs = wait_terminal(stack.url, ids, timeout_s=3600, progress=name)
        waits, retries = log_counts(stack)
    finally:
        with _shielded():
            stack.stop()

    res = RunResult(name=name, jobs=args.jobs, waits=waits, retries=retries)
    ends = []
    for job in jobs.values():
        res.statuses[job["status"]] += 1
        if job["status"] != JobStatus.SUCCEEDED and job.get("error"):
            res.errors[str(job["error"].get("code"))] += 1
        if job.get("finished_at"):
            ends.append(epoch(job["finished_at"]))
        total_ms = (job.get("timings") or {}).get("total_ms")
        if total_ms is not None:
            res.latencies_s.append(total_ms / 1000)
    res.wall_s = max(ends) - t0 if ends else float("nan")

    stats = fake.stats()
    calls = sorted((rec for rec in fake.requests() if rec["path"].endswith(":generateContent")),
                   key=lambda rec: rec["at"])
    res.requests = int(stats["count"])
    res.by_status = {str(k): int(v) for k, v in stats["by_status"].items()}
    res.max_in_flight = int(stats["max_in_flight"])
    res.ok_calls = res.by_status.get("200", 0)
    if len(calls) >= 2:
        res.window_s = calls[-1]["at"] - calls[0]["at"]
        res.gaps_s = [b["at"] - a["at"] for a, b in pairwise(calls)]
    if res.window_s > 0 and res.ok_calls >= 2:
        res.ok_per_min = (res.ok_calls - 1) / res.window_s * 60
    r.close()
    return res


def fmt(value: float, digits: int = 1) -> str:
    return "—" if value != value else f"{value:,.{digits}f}"  # NaN → dash


def report(a: RunResult, b: RunResult, args: argparse.Namespace, command: str) -> None:
    def ratio(x: float, y: float) -> str:
        if x != x or y != y:
            return "—"
        if x == 0:
            return "—" if y == 0 else "∞"
        return f"×{y / x:.2f}"

    def util(r: RunResult) -> float:
        return 100 * r.ok_per_min / args.rpm

    rows: list[tuple[str, float, float, int]] = [
        ("jobs succeeded", a.statuses[JobStatus.SUCCEEDED], b.statuses[JobStatus.SUCCEEDED], 0),
        ("jobs not succeeded", a.jobs - a.statuses[JobStatus.SUCCEEDED], b.jobs - b.statuses[JobStatus.SUCCEEDED], 0),
        ("wall time, submit → last terminal (s)", a.wall_s, b.wall_s, 1),
        ("steady-state window at provider (s)", a.window_s, b.window_s, 1),
        ("successful calls / min", a.ok_per_min, b.ok_per_min, 1),
        (f"utilisation of {args.rpm} rpm quota (%)", util(a), util(b), 1),
        ("provider requests, all", a.requests, b.requests, 0),
        ("provider 429s", a.by_status.get("429", 0), b.by_status.get("429", 0), 0),
        ("provider other non-200", a.requests - a.ok_calls - a.by_status.get("429", 0),
         b.requests - b.ok_calls - b.by_status.get("429", 0), 0),
        (f"max in-flight at provider (cap {args.cap})", a.max_in_flight, b.max_in_flight, 0),
        ("job latency p50 (s)", pct(a.latencies_s, 0.5), pct(b.latencies_s, 0.5), 1),
        ("job latency p95 (s)", pct(a.latencies_s, 0.95), pct(b.latencies_s, 0.95), 1),
        ("retries after a provider failure", sum(a.retries.values()), sum(b.retries.values()), 0),
        ("quota-wait re-queues", sum(a.waits.values()), sum(b.waits.values()), 0),
        ("request start gap p50 (s)", pct(a.gaps_s, 0.5), pct(b.gaps_s, 0.5), 3),
        ("request start gap mean (s)", statistics.fmean(a.gaps_s) if a.gaps_s else float("nan"),
         statistics.fmean(b.gaps_s) if b.gaps_s else float("nan"), 3),
    ]
    print(f"nanoedit limiter bench — fake Gemini: rpm={args.rpm} enforced (429 + RetryInfo), latency mean "
          f"{args.latency_s:g} s / p99 {args.latency_s * 1.5:g} s; {args.jobs} jobs at once; "
          f"{GENERATE_INSTANCES} generate instances × -c {PROCESSES_PER_INSTANCE}")
    print(f"  A = fleet limiter (NANOEDIT_GEMINI_RPM={args.rpm}, NANOEDIT_GEMINI_CONCURRENCY={args.cap})")
    print(f"  B = Celery rate_limit {args.rpm}/m per instance (NANOEDIT_CELERY_RATE_LIMIT), fleet limiter off "
          "(RPM=0, CONCURRENCY=64)")
    print(f"  command: {command}")
    print(f"  {'figure':<42} {'A: fleet limiter':>17} {'B: celery rate_limit':>21} {'B/A':>8}")
    for label, va, vb, digits in rows:
        print(f"  {label:<42} {fmt(va, digits):>17} {fmt(vb, digits):>21} {ratio(va, vb):>8}")
    for r in (a, b):
        extra = []
        if r.waits:
            extra.append("quota waits by reason " + ", ".join(f"{k}={v}" for k, v in sorted(r.waits.items())))
        if r.retries:
            extra.append("retries by outcome " + ", ".join(f"{k}={v}" for k, v in sorted(r.retries.items())))
        if r.errors:
            extra.append("job errors " + ", ".join(f"{k}={v}" for k, v in sorted(r.errors.items())))
        extra.append("provider statuses " + ", ".join(f"{k}={v}" for k, v in sorted(r.by_status.items())))
        print(f"  {r.name}: " + "; ".join(extra))
    verdict = (util(a) >= 99, a.by_status.get("429", 0) == 0, a.max_in_flight <= args.cap)
    print(f"  issue targets for A: utilisation ≥ 99 % {'met' if verdict[0] else 'NOT met'}; "
          f"429s = 0 {'met' if verdict[1] else 'NOT met'}; max in-flight ≤ cap {'met' if verdict[2] else 'NOT met'}")


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def _shielded() -> Iterator[None]:
    """Ignore Ctrl-C / SIGTERM while cleaning up, so a second one cannot leave processes behind."""
    old = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=300, help="backlog submitted at once (default 300)")
    ap.add_argument("--rpm", type=int, default=120, help="provider quota, enforced by the fake (default 120)")
    ap.add_argument("--latency-s", type=float, default=2.0, help="mean provider latency (default 2)")
    ap.add_argument("--cap", type=int, default=6, help="fleet concurrency cap for run A (default 6)")
    return ap


def compare(args: argparse.Namespace) -> tuple[RunResult, RunResult]:
    """Runs A then B (also the `limiter` scenario of `make bench`); everything it started is stopped again."""
    needed = args.rpm / 60 * args.latency_s
    print(f"  in flight needed to fill the quota ≈ {needed:.1f}; fleet cap = {args.cap}", file=sys.stderr)
    if args.cap < needed:
        print("  warning: the cap is below what the quota needs; run A cannot reach full utilisation",
              file=sys.stderr)
    png = small_png()
    tmp = Path(tempfile.mkdtemp(prefix="nanoedit-bench-limiter-"))
    latency_ms = args.latency_s * 1000
    fake = FakeGeminiServer(FakeGeminiConfig(latency_ms_mean=latency_ms, latency_ms_p99=latency_ms * 1.5,
                                             rpm=args.rpm))
    server: RedisServer | None = None
    try:
        fake.start()
        server = RedisServer()
        a = run("A", server, 1, fake, args, {"NANOEDIT_GEMINI_RPM": str(args.rpm),
                                             "NANOEDIT_GEMINI_CONCURRENCY": str(args.cap)}, "", png, tmp)
        b = run("B", server, 2, fake, args, {"NANOEDIT_GEMINI_RPM": "0", "NANOEDIT_GEMINI_CONCURRENCY": "64"},
                f"{args.rpm}/m", png, tmp)
    finally:
        with _shielded():
            fake.stop()
            if server is not None:
                server.stop()
            shutil.rmtree(tmp, ignore_errors=True)
    return a, b


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    command = shlex.join([Path(sys.executable).name, "-m", "bench.limiter",
                          *(sys.argv[1:] if argv is None else argv)])
    signal.signal(signal.SIGTERM, _interrupt)  # clean up on kill as on Ctrl-C
    try:
        a, b = compare(args)
    except KeyboardInterrupt:
        print("interrupted; cleaning up", file=sys.stderr)
        return 130
    report(a, b, args, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
