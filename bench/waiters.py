"""Waiting clients against one web instance: how many `Prefer: wait` clients it holds, what that costs in memory,
and how ordinary requests fare meanwhile (docs/operations.md, "Web worker model").

For each worker class (gevent, the default; gthread, the former one, for comparison) a fresh stack: the API
(NANOEDIT_WEB_WORKERS=2) and a generate worker, no preprocess worker, so a submitted job stays `queued` and every
`GET /v1/jobs/{id}` with `Prefer: wait=60` is held until the run releases it. Measured:

  held            clients whose request was still unanswered 2 s after all were sent (the rest were answered at
                  once: the per-process waiter limit, NANOEDIT_MAX_WAITERS, or under gthread its thread bound);
  ordinary p50/p95/max   latency of `GET /v1/jobs/{id}` (no preference) and `GET /healthz`, `--requests` each,
                  sequential, first with no waiters, then while the clients are held;
  web RSS         resident memory of the gunicorn master and its workers (/proc), idle and while holding.

Figures, not asserts (a shared machine is noisy). Then a preprocess worker starts and every held client must get
its finished job (200, Preference-Applied).

    .venv/bin/python -m bench.waiters [--waiters 1000] [--requests 200] [--classes gevent,gthread]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
import requests

from shared.jobs.model import JobStatus
from tests.conftest import FIXTURES
from tests.support.stack import RedisServer, Stack, make_stack
from tests.support.waiters import hold_waiters

MiB = 1024 * 1024


def _rss_tree(root: int) -> int:
    """Bytes resident in `root` and its direct children (gunicorn master + workers)."""
    pids = [root]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == root:
                pids.append(int(entry))
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def _latencies(url: str, n: int) -> list[float]:
    """Seconds per request; a request not answered within 10 s counts as inf (the run stops after 3 of them)."""
    out: list[float] = []
    with requests.Session() as s:
        for _ in range(n):
            t0 = time.perf_counter()
            try:
                resp = s.get(url, timeout=10)
            except requests.RequestException:
                out.append(float("inf"))
                if out.count(float("inf")) >= 3:
                    break
                continue
            out.append(time.perf_counter() - t0)
            assert resp.status_code == 200, resp.text
    return out


def _summary(xs: list[float]) -> str:
    failed = sum(1 for x in xs if x == float("inf"))
    if failed:
        return f"{failed} of {len(xs)} requests got no answer within 10 s"
    xs = sorted(xs)
    p95 = xs[min(len(xs) - 1, int(len(xs) * 0.95))]
    return f"p50 {statistics.median(xs) * 1000:6.1f} ms  p95 {p95 * 1000:6.1f} ms  max {xs[-1] * 1000:6.1f} ms"


def _submit(stack: Stack) -> str:
    files = [("image", ("chelsea.png", (FIXTURES / "chelsea.png").read_bytes(), "application/octet-stream"))]
    resp = requests.post(f"{stack.url}/v1/jobs", files=files, data={"instruction": "make it black and white"},
                         headers={"Cache-Control": "no-cache"}, timeout=30)
    resp.raise_for_status()
    return str(resp.json()["id"])


def _unanswered(socks: list[socket.socket]) -> list[socket.socket]:
    import select

    still = []
    for i in range(0, len(socks), 500):
        chunk = socks[i:i + 500]
        readable, _, _ = select.select(chunk, [], [], 0)
        still += [s for s in chunk if s not in readable]
    return still


def _read(s: socket.socket, deadline: float) -> tuple[int, str, str]:
    """(status, Preference-Applied, job status) of a held client's answer; (0, "", "") if none by `deadline`."""
    data = b""
    try:
        s.settimeout(max(0.1, deadline - time.monotonic()))
        while chunk := s.recv(65536):
            data += chunk
    except OSError:
        return 0, "", ""
    if not data:
        return 0, "", ""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    applied = next((line.split(":", 1)[1].strip() for line in lines if line.lower().startswith("preference-applied")),
                   "")
    return int(lines[0].split()[1]), applied, str(json.loads(body)["status"])


def run(worker_class: str, server: RedisServer, db: int, waiters: int, n_requests: int) -> dict[str, Any]:
    redis.Redis.from_url(server.url(db)).flushdb()
    stack = make_stack(server.url(db), Path(tempfile.mkdtemp(prefix=f"bench-waiters-{worker_class}-")),
                       NANOEDIT_WEB_WORKER_CLASS=worker_class)
    try:
        stack.start_worker("generate", 1)
        web = stack.start_api()
        stack.wait_api()
        stack.wait_live(("generate",))
        job_id = _submit(stack)
        _latencies(f"{stack.url}/v1/jobs/{job_id}", 20)  # warm up both workers
        base_job = _latencies(f"{stack.url}/v1/jobs/{job_id}", n_requests)
        base_health = _latencies(f"{stack.url}/healthz", n_requests)
        rss_idle = _rss_tree(web.popen.pid)
        socks = hold_waiters(stack.port, job_id, waiters)
        time.sleep(2.0)
        held = len(_unanswered(socks))
        rss_held = _rss_tree(web.popen.pid)
        loaded_job = _latencies(f"{stack.url}/v1/jobs/{job_id}", n_requests)
        loaded_health = _latencies(f"{stack.url}/healthz", n_requests)
        still = _unanswered(socks)
        pre = stack.start_worker("preprocess", 1)
        t0 = time.perf_counter()
        deadline = time.monotonic() + 90
        answers = [_read(s, deadline) for s in still]
        release_s = time.perf_counter() - t0
        pre.stop()
        for s in socks:
            s.close()
        ok = sum(1 for status, applied, st in answers
                 if status == 200 and applied == "wait=60" and st == JobStatus.SUCCEEDED)
        return {"class": worker_class, "waiters": waiters, "held": held, "still_held_after_requests": len(still),
                "released_ok": ok, "release_s": release_s,
                "job": (base_job, loaded_job), "health": (base_health, loaded_health),
                "rss_idle": rss_idle, "rss_held": rss_held}
    finally:
        stack.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.waiters", description=__doc__.split("\n\n")[0])
    parser.add_argument("--waiters", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--classes", default="gevent,gthread")
    args = parser.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, args.waiters + 1000)), hard))
    server = RedisServer()
    try:
        for db, worker_class in enumerate(args.classes.split(","), start=1):
            r = run(worker_class.strip(), server, db, args.waiters, args.requests)
            print(f"\n== {r['class']}: {r['waiters']} clients sent `GET /v1/jobs/{{id}}` + `Prefer: wait=60`")
            print(f"  held (unanswered after 2 s): {r['held']}   still held after the ordinary requests: "
                  f"{r['still_held_after_requests']}")
            print(f"  released when the job ended: {r['released_ok']} answered 200 + Preference-Applied "
                  f"+ succeeded, in {r['release_s']:.1f} s (includes the preprocess worker's start)")
            for name in ("job", "health"):
                base, loaded = r[name]
                label = "GET /v1/jobs/{id}" if name == "job" else "GET /healthz     "
                print(f"  {label} no waiters:   {_summary(base)}")
                print(f"  {label} while held:   {_summary(loaded)}")
            print(f"  web RSS (master + 2 workers): idle {r['rss_idle'] / MiB:.1f} MiB, holding "
                  f"{r['rss_held'] / MiB:.1f} MiB (+{(r['rss_held'] - r['rss_idle']) / MiB:.1f} MiB)")
            sys.stdout.flush()
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
