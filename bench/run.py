"""`make bench`: pipeline overhead and throughput of the real stack, against an in-process baseline.

Starts a private redis-server, gunicorn, a preprocess and a generate worker instance (local provider), then:
  1. baseline: the same work done in one process, no queue (prepare_image + LocalProvider.edit);
  2. latency: N jobs one at a time over HTTP (submit with `Prefer: wait` → terminal), wall and server total_ms;
  3. throughput: a burst of M jobs submitted at once, time until all are terminal.
Prints a table with the ratio of each figure to the baseline measured in the same run. Figures, not asserts:
machines here are shared and noisy, so nothing in the test suite times anything.

    python -m bench.run [--jobs 30] [--burst 120]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import requests

from shared.jobs.model import TERMINAL as TERMINAL_STATUSES
from shared.jobs.model import JobStatus
from tests.support.stack import RedisServer, make_stack
from workers.preprocess import prepare_image
from workers.providers.base import EditRequest, InputImage
from workers.providers.local import LocalProvider

PHOTO = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "chelsea.png"
TERMINAL = {s.value for s in TERMINAL_STATUSES}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def baseline(n: int) -> list[float]:
    data, provider, out = PHOTO.read_bytes(), LocalProvider(), []
    for _ in range(n):
        t = time.perf_counter()
        img = prepare_image(data, max_bytes=20 << 20, max_pixels=64_000_000, max_long_edge=2048)
        provider.edit(EditRequest("edit", "grayscale", (InputImage(img.data, img.mime_type),)))
        out.append((time.perf_counter() - t) * 1000)
    return out


def run_job(url: str, session: requests.Session) -> tuple[float, float]:
    """One job as a client is told to wait for it (docs/api.md, "Prefer: wait"): submit with `Prefer: wait=30`,
    which answers 200 with the ended job, or 202 if it runs longer; then long-poll `GET` the same way. Waiting in
    the server, not polling: a 10 ms polling loop would cost the 2-core machine more CPU than the jobs (it was
    1.6 CPU-s in the client and half the web's work for a burst of 120) and round latencies up to its period."""
    t = time.perf_counter()
    # no-cache: identical requests would otherwise be answered from the result cache (no pipeline at all)
    resp = session.post(f"{url}/v1/jobs", data={"instruction": "grayscale"}, timeout=40,
                        headers={"Cache-Control": "no-cache", "Prefer": "wait=30"},
                        files=[("image", ("a.png", PHOTO.read_bytes()))])
    resp.raise_for_status()
    job = resp.json()
    while job["status"] not in TERMINAL:
        job = session.get(f"{url}/v1/jobs/{job['id']}", headers={"Prefer": "wait=30"}, timeout=40).json()
    if job["status"] != JobStatus.SUCCEEDED:
        raise RuntimeError(f"job {job['id']} ended {job['status']}: {job['error']}")
    return (time.perf_counter() - t) * 1000, float(job["timings"]["total_ms"])


@dataclass(frozen=True, slots=True)
class Measured:
    jobs: int
    burst: int
    baseline_ms: list[float]  # in-process prepare + edit, one job at a time
    wall_ms: list[float]  # sequential jobs over HTTP: submit (Prefer: wait) → terminal
    server_ms: list[float]  # the same jobs' server-side timings.total_ms
    burst_s: float  # `burst` jobs submitted at once (16 client threads) → all terminal
    loop_jobs_per_s: float = 0.0  # the same work in N = cores processes, each in a loop (the burst's baseline)
    loop_processes: int = 1


def _loop_worker(n: int) -> int:
    baseline(n)
    return n


def parallel_loop(jobs: int, processes: int) -> float:
    """Jobs per second of `processes` processes each doing `jobs / processes` jobs (prepare + edit) in a loop:
    what the machine does with the same work and no service around it."""
    import multiprocessing

    per = max(1, jobs // processes)
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        pool.map(_loop_worker, [1] * processes)  # warm-up: imports in every process
        t = time.perf_counter()
        done = sum(pool.map(_loop_worker, [per] * processes))
        return done / (time.perf_counter() - t)


def measure(jobs: int, burst: int) -> Measured:
    """Start the stack, run the three measurements, stop it (also the `e2e` scenario of `make bench`)."""
    server = RedisServer()
    tmp = Path(tempfile.mkdtemp(prefix="nanoedit-bench-"))
    stack = make_stack(server.url(0), tmp)
    try:
        stack.start_worker("preprocess", 2)
        stack.start_worker("generate", 3)
        stack.start_api()
        stack.wait_api()
        stack.wait_live()
        base = baseline(jobs)
        session = requests.Session()
        run_job(stack.url, session)  # warm-up: imports and connections in every process
        wall, server_ms = zip(*(run_job(stack.url, session) for _ in range(jobs)), strict=True)
        t = time.perf_counter()
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda _: run_job(stack.url, requests.Session()), range(burst)))
        burst_s = time.perf_counter() - t
    finally:
        stack.stop()
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    cores = os.cpu_count() or 1
    return Measured(jobs, burst, base, list(wall), list(server_ms), burst_s,
                    loop_jobs_per_s=parallel_loop(burst, cores), loop_processes=cores)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=30)
    ap.add_argument("--burst", type=int, default=120)
    args = ap.parse_args(argv)
    m = measure(args.jobs, args.burst)
    wall, server_ms = m.wall_ms, m.server_ms
    b50 = statistics.median(m.baseline_ms)
    rows = [
        ("baseline in-process p50 (ms)", b50, 1.0),
        ("e2e wall p50 (ms)", pct(wall, 0.5), pct(wall, 0.5) / b50),
        ("e2e wall p95 (ms)", pct(wall, 0.95), pct(wall, 0.95) / b50),
        ("server total_ms p50", pct(server_ms, 0.5), pct(server_ms, 0.5) / b50),
        ("server total_ms p95", pct(server_ms, 0.95), pct(server_ms, 0.95) / b50),
        (f"burst of {args.burst}: jobs/s", args.burst / m.burst_s, (args.burst / m.burst_s) / (1000 / b50)),
    ]
    print(f"nanoedit bench — local provider, {args.jobs} sequential jobs, burst {args.burst}; "
          "ratio = figure / in-process baseline (throughput: / single-process baseline rate)")
    for name, value, ratio in rows:
        print(f"  {name:<32} {value:>9.1f}   ×{ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
