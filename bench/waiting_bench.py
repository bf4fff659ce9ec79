"""Scenario "waiting": what a backlog of waiting jobs costs — Redis bytes per waiting job, and status-poll latency
(`GET /v1/jobs/{id}` over the real web process, `wrk`) with 100,000 jobs waiting (quick: 10,000) against the same
poll with 100 waiting.

Jobs are created the way api/jobs.py `_create` does after validation, without HTTP (100,000 uploads would take
far longer than the bench may): a `Job` record like an accepted 1-image upload, `JobStore.create`, then the
enqueuer's `preprocess` (the owner's fair line, then a pump that keeps NANOEDIT_FAIR_QUEUE_DEPTH messages in the
Celery queue), all through `build_runtime` as the web process wires them. The input blob is not written: it lives
in the blob store (files or S3), not Redis. No worker runs, so every job stays queued. Bytes per job = the change
in `INFO memory` used_memory ÷ jobs created.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import redis

from bench import wrk
from bench.figures import Figure, figure
from monitoring.runtime import Runtime, build_runtime
from shared.apikeys import ANONYMOUS
from shared.jobs.model import InputMeta, Job, JobStage, JobStatus
from shared.settings import Settings
from tests.support.stack import RedisServer, make_stack


def new_job(rt: Runtime, i: int) -> Job:
    s, now = rt.settings, rt.clock.now()
    job_id = uuid.uuid4().hex
    sha = hashlib.sha256(f"bench-input-{i}".encode()).hexdigest()
    return Job(id=job_id, owner=ANONYMOUS, status=JobStatus.QUEUED, stage=JobStage.QUEUED, operation="edit",
               num_images=1, instruction="make the sky a warm sunset orange", image_description="",
               created_at=now, expires_at=now + s.job_ttl_s, deadline_at=now + s.job_deadline_s,
               inputs=[InputMeta(index=0, mime_type="image/png", bytes=240_000, width=283, height=283, sha256=sha)],
               provider=s.provider, model="local" if s.provider != "gemini" else s.gemini_model,
               request_hash=hashlib.sha256(f"bench-request-{i}".encode()).hexdigest())


def create_jobs(rt: Runtime, n: int, start: int) -> list[str]:
    def one(i: int) -> str:
        job = new_job(rt, i)
        rt.store.create(job)
        rt.enqueuer.preprocess(job.id, owner=job.owner)
        return job.id

    with ThreadPoolExecutor(4) as pool:  # overlaps the round trips; the records are the same either way
        return list(pool.map(one, range(start, start + n)))


def used_memory(r: redis.Redis) -> int:
    return int(r.info("memory")["used_memory"])


def poll(url: str, ids: list[str], ids_file: Path, duration_s: float) -> wrk.WrkResult:
    ids_file.write_text("\n".join(ids) + "\n")
    os.sync()  # pending writeback (an earlier scenario's uploads) would stall this run, not measure it
    wrk.run(url, wrk.get_ids_script(ids_file, "/v1/jobs/"), 8, 1)  # warm-up
    return wrk.run(url, wrk.get_ids_script(ids_file, "/v1/jobs/"), 8, duration_s)


class WaitingScenario:
    name = "waiting"
    description = "Redis bytes per waiting job; status p50/p99 with 100,000 (quick: 10,000) waiting vs 100"
    in_quick_run = True

    def skip_reason(self) -> str:
        return ""

    def run(self, quick: bool) -> list[Figure]:
        n = 10_000 if quick else 100_000
        duration = 3.0 if quick else 8.0
        tmp = Path(tempfile.mkdtemp(prefix="nanoedit-bench-waiting-"))
        server = RedisServer()
        stack = make_stack(server.url(0), tmp, NANOEDIT_KEY_SUBMISSIONS_PER_MIN="0", NANOEDIT_KEY_MAX_WAITING_JOBS="0")
        r = redis.Redis.from_url(server.url(0))
        figures: list[Figure] = []
        try:
            use_wrk = wrk.available()
            if use_wrk:
                stack.start_api()
                stack.wait_api()
            else:
                print("  [waiting] `wrk` not installed: status latency skipped", file=sys.stderr)
            rt = build_runtime(Settings.from_env(stack.env))
            few = create_jobs(rt, 100, 0)
            small = poll(stack.url, few, tmp / "few.ids", duration) if use_wrk else None
            mem0 = used_memory(r)
            t = time.monotonic()
            many = create_jobs(rt, n, 100)
            took = time.monotonic() - t
            per_job = (used_memory(r) - mem0) / n
            print(f"  [waiting] {n} jobs created in {took:.0f} s: {per_job:.0f} bytes each", file=sys.stderr,
                  flush=True)
            figures.append(figure("waiting", "Redis bytes per waiting job", "B", per_job, None, "lower",
                                  target="≤ 2 KB per waiting job",
                                  notes=f"INFO used_memory delta over {n} jobs (record, indexes, fair line)"))
            if small is not None:
                sample = random.Random(3).sample(many, min(len(many), 5000))
                big = poll(stack.url, sample, tmp / "many.ids", duration)
                bad = [f"{lbl}: {x.non2xx} non-2xx, {x.socket_errors} socket errors"
                       for lbl, x in (("100", small), (str(n), big)) if not x.clean]
                notes = ("INVALID: " + "; ".join(bad) + "; ") if bad else ""
                notes += f"8 connections; 2xx: {big.ok} at {n}, {small.ok} at 100"
                common = {"baseline_name": "100 jobs waiting", "notes": notes}
                figures += [
                    figure("waiting", f"status p50 @{n:,} waiting", "ms", big.p50_ms, small.p50_ms, "lower", **common),
                    figure("waiting", f"status p99 @{n:,} waiting", "ms", big.p99_ms, small.p99_ms, "lower",
                           target="p99 < 5 ms at 100,000 waiting", **common),
                    figure("waiting", f"status req/s @{n:,} waiting", "req/s", big.rps, small.rps, "higher", **common),
                ]
        finally:
            r.close()
            stack.stop()
            server.stop()
            shutil.rmtree(tmp, ignore_errors=True)
        return figures
