"""`make bench` scenario "overhead": what the pipeline adds to a job beyond the provider's own time.

The real stack as `make up` runs it (gunicorn web; a preprocess instance, prefork, -c 2; a generate instance,
gevent, -c 3; the Procfile's defaults) on provider `gemini`: the real google-genai SDK against the fake Gemini
server (workers/fake_gemini) answering at once (latency 0); no beat and no webhooks worker (nothing here is
scheduled or has a webhook). Jobs run one at a time (full 60, quick 15), then a
few at a small concurrency (4 client threads). A 256×256 image, so the figure is the queue's cost, not imaging's
(bench/preprocess_bench.py measures imaging); the baseline does the same preprocessing.

Per job:
  overhead = client wall time (POST /v1/jobs with `Prefer: wait=60` → the answer that carries the terminal job;
             a 202 is followed by GET with `Prefer: wait=60`, docs/api.md: the long poll wakes on the job's
             change notification, so there is no poll-interval quantisation)
           − provider time = Σ attempts[].duration_ms: the generate worker's own timer around each SDK call
             (request built and sent, the fake's answer received and parsed).
  Why not the fake server's recorded request time (workers/fake_gemini/recorder.py)? It stops before the answer
  is written and sent, so the SDK's own encode/decode and the transfer would be misread as overhead; the
  worker-timed call includes them. The fake's figure is still read and shown in the notes (its p50 next to the
  worker-timed p50). (This scenario found the fake writing headers and body in two sends with Nagle on, ~40 ms
  per call waiting for a delayed ACK; the fake now sets TCP_NODELAY.)
  The server's view is reported too: timings.total_ms − Σ attempts[].duration_ms (created → finished).
Baseline: the same work in one process, no queue: prepare_image + one GeminiProvider.edit (the same SDK client
the worker uses) against the same fake, with the same definition (wall − the time of the edit call).

    python -m bench.overhead_bench [--jobs 60]
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from bench.figures import Figure, figure, pct
from bench.limiter import _shielded, small_png
from shared.jobs.model import TERMINAL as TERMINAL_STATUSES
from shared.jobs.model import JobStatus
from shared.models import DEFAULT_MODEL
from tests.support.stack import RedisServer, Stack, make_stack
from workers.fake_gemini import FakeGeminiConfig, FakeGeminiServer
from workers.preprocess import prepare_image
from workers.providers.base import EditRequest, InputImage
from workers.providers.gemini import GeminiProvider

TERMINAL = {s.value for s in TERMINAL_STATUSES}
API_KEY = "bench-not-a-real-key"
PREPROCESS_PROCESSES = 2  # the Procfile's NANOEDIT_PREPROCESS_CONCURRENCY default
GENERATE_SLOTS = 3  # the Procfile's NANOEDIT_GEMINI_CONCURRENCY default
CONCURRENT_CLIENTS = 4


@contextlib.contextmanager
def gemini_stack(fake: FakeGeminiServer, tmp: Path, **env: str) -> Iterator[Stack]:
    """A private Redis and the stack (web, preprocess, generate) on the gemini provider pointed at `fake`, with
    the per-key intake limits off (a bench submits faster than one client may); stopped on exit."""
    server = RedisServer()
    stack = make_stack(server.url(0), tmp, GEMINI_API_KEY=API_KEY, NANOEDIT_PROVIDER="gemini",
                       NANOEDIT_GEMINI_BASE_URL=fake.base_url, NANOEDIT_KEY_SUBMISSIONS_PER_MIN="0",
                       NANOEDIT_KEY_MAX_WAITING_JOBS="0", NANOEDIT_LOG_LEVEL="INFO", **env)
    try:
        stack.start_worker("preprocess", PREPROCESS_PROCESSES)
        stack.start_worker("generate", GENERATE_SLOTS)
        stack.start_api()
        stack.wait_api()
        stack.wait_live()
        yield stack
    finally:
        with _shielded():
            stack.stop()
            server.stop()


def run_job(url: str, session: requests.Session, png: bytes, tag: str) -> tuple[float, dict[str, Any]]:
    """One job, submit → terminal with `Prefer: wait` long polls: (client wall ms, the terminal job object).
    `tag` goes into the instruction: it makes every request distinct (with no-cache, the result cache never
    answers) and finds the job's requests in the fake's log."""
    t = time.perf_counter()
    resp = session.post(f"{url}/v1/jobs", headers={"Prefer": "wait=60", "Cache-Control": "no-cache"},
                        data={"instruction": f"grayscale ({tag})"},
                        files=[("image", ("bench.png", png, "image/png"))], timeout=90)
    resp.raise_for_status()
    job: dict[str, Any] = resp.json()
    while job["status"] not in TERMINAL:
        resp = session.get(f"{url}/v1/jobs/{job['id']}", headers={"Prefer": "wait=60"}, timeout=90)
        resp.raise_for_status()
        job = resp.json()
    return (time.perf_counter() - t) * 1000, job


def provider_ms_by_tag(records: Iterable[Mapping[str, Any]], tags: Iterable[str]) -> dict[str, float]:
    """Σ duration_ms of the fake's generateContent records whose prompt carries "(tag)", per tag (0 when none).
    The fake keeps the prompt it was sent; the tag is in parentheses so "job 1" never matches "job 12"."""
    calls = [r for r in records if str(r.get("path", "")).endswith(":generateContent")]
    out: dict[str, float] = {}
    for tag in tags:
        needle = f"({tag})"
        out[tag] = sum(float(r.get("duration_ms") or 0.0) for r in calls if needle in str(r.get("prompt", "")))
    return out


def attempts_ms(job: Mapping[str, Any]) -> float:
    """Σ attempts[].duration_ms: the provider time of one job as its generate worker timed each call."""
    return sum(float(a.get("duration_ms") or 0) for a in job.get("attempts") or ())


def server_overhead_ms(job: Mapping[str, Any]) -> float:
    """The server's view of one job: timings.total_ms − Σ attempts[].duration_ms (NaN without timings)."""
    total = (job.get("timings") or {}).get("total_ms")
    return float("nan") if total is None else float(total) - attempts_ms(job)


def stage_split(job: Mapping[str, Any]) -> dict[str, float]:
    """Where the server's overhead of one job went, from its timings: created → preprocess started,
    preprocessing, and the generate phase (prepared → last output) without the provider calls."""
    t = job.get("timings") or {}
    return {"before preprocess": float(t.get("queued_ms") or 0), "preprocess": float(t.get("preprocess_ms") or 0),
            "generate without provider": float(t.get("generate_ms") or 0) - attempts_ms(job)}


@dataclass(frozen=True, slots=True)
class Measured:
    jobs: int
    concurrent_jobs: int
    overhead_ms: list[float]  # sequential jobs: client wall − Σ attempts[].duration_ms
    wall_ms: list[float]  # the same jobs' client wall time
    server_overhead_ms: list[float]  # the same jobs: total_ms − Σ attempts[].duration_ms
    concurrent_overhead_ms: list[float]  # jobs from CONCURRENT_CLIENTS threads, client wall − attempts
    baseline_overhead_ms: list[float]  # in-process prepare + edit: wall − the edit call's time
    baseline_wall_ms: list[float]
    provider_ms: list[float]  # sequential jobs: Σ attempts[].duration_ms
    fake_ms: list[float]  # the same jobs: the fake's own recorded request time
    stages_p50_ms: dict[str, float]  # the same jobs: p50 of where the server's overhead went (stage_split)


def in_process(fake: FakeGeminiServer, png: bytes, n: int) -> tuple[list[float], list[float]]:
    """The baseline: prepare_image + one SDK call in this process, no queue; (wall ms, overhead ms) per call,
    overhead = wall − the time of the edit call (as the worker times it)."""
    provider = GeminiProvider(API_KEY, DEFAULT_MODEL, timeout_s=60.0, base_url=fake.base_url)
    walls: list[float] = []
    overheads: list[float] = []
    try:
        for i in range(-1, n):  # -1: warm-up (SDK import paths, the connection)
            t = time.perf_counter()
            img = prepare_image(png, max_bytes=20 << 20, max_pixels=64_000_000, max_long_edge=2048)
            called = time.perf_counter()
            provider.edit(EditRequest("edit", f"grayscale (in-process {i})", (InputImage(img.data, img.mime_type),)))
            done = time.perf_counter()
            if i >= 0:
                walls.append((done - t) * 1000)
                overheads.append((called - t) * 1000)
    finally:
        provider.close()
    return walls, overheads


def measure(jobs: int, concurrent_jobs: int) -> Measured:
    png = small_png()
    tmp = Path(tempfile.mkdtemp(prefix="nanoedit-bench-overhead-"))
    fake = FakeGeminiServer(FakeGeminiConfig(latency_ms_mean=0.0))  # answers at once, never fails
    try:
        fake.start()
        base_wall, base_over = in_process(fake, png, jobs)
        with gemini_stack(fake, tmp) as stack, requests.Session() as session:
            run_job(stack.url, session, png, "warm-up")  # imports and connections in every process
            seq = {f"job {i:04d}": run_job(stack.url, session, png, f"job {i:04d}") for i in range(jobs)}

            def one(i: int) -> tuple[str, float, dict[str, Any]]:
                with requests.Session() as s:
                    wall, job = run_job(stack.url, s, png, f"concurrent {i:04d}")
                    return f"concurrent {i:04d}", wall, job

            with ThreadPoolExecutor(CONCURRENT_CLIENTS) as pool:
                conc = {tag: (wall, job) for tag, wall, job in pool.map(one, range(concurrent_jobs))}
            records = fake.requests()
    finally:
        with _shielded():
            fake.stop()
            shutil.rmtree(tmp, ignore_errors=True)
    for tag, (_, job) in {**seq, **conc}.items():
        if job["status"] != JobStatus.SUCCEEDED:
            raise RuntimeError(f"{tag} ({job['id']}) ended {job['status']}: {job.get('error')}")
    fake_ms = provider_ms_by_tag(records, seq)
    return Measured(
        jobs=jobs, concurrent_jobs=concurrent_jobs,
        overhead_ms=[wall - attempts_ms(job) for wall, job in seq.values()],
        wall_ms=[wall for wall, _ in seq.values()],
        server_overhead_ms=[server_overhead_ms(job) for _, job in seq.values()],
        concurrent_overhead_ms=[wall - attempts_ms(job) for wall, job in conc.values()],
        baseline_overhead_ms=base_over, baseline_wall_ms=base_wall,
        provider_ms=[attempts_ms(job) for _, job in seq.values()], fake_ms=list(fake_ms.values()),
        stages_p50_ms={k: pct([stage_split(job)[k] for _, job in seq.values()], 0.5)
                       for k in stage_split({})})


class OverheadScenario:
    name = "overhead"
    description = ("pipeline overhead (job latency − provider time) with a zero-latency fake Gemini, real SDK, "
                   "vs the same call in one process")
    in_quick_run = True

    def skip_reason(self) -> str:
        return ""

    def run(self, quick: bool) -> list[Figure]:
        m = measure(jobs=15, concurrent_jobs=8) if quick else measure(jobs=60, concurrent_jobs=40)
        b50, b99 = pct(m.baseline_overhead_ms, 0.5), pct(m.baseline_overhead_ms, 0.99)
        how = ("provider time = Σ attempts[].duration_ms, the worker's timer around each SDK call (p50 "
               f"{pct(m.provider_ms, 0.5):.1f} ms; the fake's own recorded time p50 {pct(m.fake_ms, 0.5):.1f} ms, "
               "the rest is the SDK's work and the transfer); client wall via Prefer: wait long polls "
               "(no poll interval); 256×256 PNG")
        common = {"baseline_name": "in-process prepare + SDK call (wall − call time)"}
        return [
            figure("overhead", "overhead p50 (job wall - provider)", "ms", pct(m.overhead_ms, 0.5), b50, "lower",
                   target="≤ 15 ms", notes=f"{m.jobs} jobs one at a time; {how}", **common),
            figure("overhead", "overhead p99 (job wall - provider)", "ms", pct(m.overhead_ms, 0.99), b99, "lower",
                   target="≤ 60 ms", notes=f"{m.jobs} jobs one at a time (p99 of {m.jobs} ≈ the slowest); {how}",
                   **common),
            figure("overhead", "server overhead p50 (total - attempts)", "ms", pct(m.server_overhead_ms, 0.5), b50,
                   "lower", notes="timings.total_ms − Σ attempts[].duration_ms: created → finished on the server "
                                  "(no HTTP to the client), minus the SDK calls the worker timed; p50 by stage: "
                                  + ", ".join(f"{k} {v:.0f} ms" for k, v in m.stages_p50_ms.items()), **common),
            figure("overhead", f"overhead p50 @{CONCURRENT_CLIENTS} clients", "ms",
                   pct(m.concurrent_overhead_ms, 0.5), b50, "lower",
                   notes=f"{m.concurrent_jobs} jobs from {CONCURRENT_CLIENTS} client threads (3 generate slots, "
                         f"2 preprocess processes); {how}", **common),
            figure("overhead", "job wall p50 (submit → terminal)", "ms", pct(m.wall_ms, 0.5),
                   pct(m.baseline_wall_ms, 0.5), "lower", baseline_name="in-process prepare + SDK call (wall)",
                   notes=f"{m.jobs} jobs one at a time, the fake answering at once"),
        ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=60, help="jobs one at a time (default 60)")
    ap.add_argument("--concurrent-jobs", type=int, default=40, help=f"jobs from {CONCURRENT_CLIENTS} threads")
    args = ap.parse_args(argv)
    m = measure(args.jobs, args.concurrent_jobs)
    rows = [("overhead, sequential", m.overhead_ms), ("server overhead, sequential", m.server_overhead_ms),
            (f"overhead @{CONCURRENT_CLIENTS} clients", m.concurrent_overhead_ms),
            ("baseline overhead (in-process)", m.baseline_overhead_ms), ("job wall, sequential", m.wall_ms),
            ("baseline wall (in-process)", m.baseline_wall_ms)]
    print(f"nanoedit overhead bench — fake Gemini at 0 latency; provider time (attempts) p50 "
          f"{pct(m.provider_ms, 0.5):.1f} ms, the fake's recorded time p50 {pct(m.fake_ms, 0.5):.1f} ms")
    for label, values in rows:
        print(f"  {label:<34} p50 {pct(values, 0.5):8.1f} ms   p99 {pct(values, 0.99):8.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
