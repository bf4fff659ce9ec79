"""Scenario "http": nanoedit's accept path (`POST /v1/jobs`) and status polls (`GET /v1/jobs/{id}`) against the
naive Flask app of bench/naive_app.py, both under the same gunicorn settings, loaded by `wrk`.

nanoedit runs as in production (`api.wsgi:app` with deploy/gunicorn.conf.py) on a private redis-server with no
workers (accepted jobs just wait in their fair line), per-key limits off (NANOEDIT_KEY_SUBMISSIONS_PER_MIN=0,
NANOEDIT_KEY_MAX_WAITING_JOBS=0) and `Cache-Control: no-cache` on every upload so identical bodies are not
answered from the result cache. The naive app gets the worker class, process count and connections that
`Settings` gives nanoedit's web, so only the app differs. Upload: a deterministic ~240 KB noise PNG. Status polls
go round-robin over ids created through each app's own accept route.

Figures per connection count: requests/s (ratio = nanoedit ÷ naive) and p50/p99 latency (ratio = naive ÷
nanoedit), so > 1× means nanoedit is faster. Any non-2xx answer or socket error marks the figure INVALID.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import requests

from bench import wrk
from bench.figures import Figure, figure
from bench.images import noise_png
from shared.settings import Settings
from tests.support.stack import RedisServer, Stack, free_port, make_stack, wait_for

TARGETS = {("accept", 8): "≥ 2× naive throughput, p99 < 25 ms at 8 connections",
           ("status", 8): "≥ 1.5× naive throughput, p99 < 10 ms at 8 connections"}


@dataclass(frozen=True, slots=True)
class App:
    name: str
    url: str
    accept_path: str
    status_prefix: str


def multipart(png: bytes) -> tuple[bytes, str]:
    boundary = f"bench{uuid.UUID(int=42).hex}"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"instruction\"\r\n\r\ngrayscale\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"bench.png\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode() + png + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def start_naive(stack: Stack, server: RedisServer, data_dir: Path) -> str:
    """The naive app under gunicorn with nanoedit's web worker settings; its records in db 1, its broker db 2."""
    s = Settings.from_env(stack.env)
    port = free_port()
    args = ["gunicorn", "-k", s.web_worker_class, "-w", str(s.web_workers), "--worker-connections",
            str(s.web_worker_connections), "--threads", str(s.web_threads), "--timeout", "60",
            "-b", f"127.0.0.1:{port}", "bench.naive_app:app"]
    stack.spawn("naive", args, {"BENCH_NAIVE_REDIS_URL": server.url(1), "BENCH_NAIVE_BROKER_URL": server.url(2),
                                "BENCH_NAIVE_DATA_DIR": str(data_dir)})

    def up() -> bool:
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    wait_for(up, 60, "the naive app", 0.1)
    return f"http://127.0.0.1:{port}"


def measure(url: str, script: str, connections: int, duration_s: float) -> wrk.WrkResult:
    """One wrk run after flushing dirty pages: each accept run writes hundreds of MB of uploads, and their
    writeback would otherwise stall whichever run comes next (seconds-long tails that belong to neither app)."""
    os.sync()
    return wrk.run(url, script, connections, duration_s)


def seed_ids(app: App, body: bytes, ctype: str, n: int, path: Path) -> Path:
    with requests.Session() as s:
        ids = []
        for _ in range(n):
            resp = s.post(app.url + app.accept_path, data=body, timeout=30,
                          headers={"Content-Type": ctype, "Cache-Control": "no-cache"})
            if resp.status_code != 202:
                raise RuntimeError(f"{app.name} accept answered {resp.status_code}: {resp.text[:300]}")
            ids.append(str(resp.json()["id"]))
    path.write_text("\n".join(ids) + "\n")
    return path


def _figures(kind: str, conns: int, ours: wrk.WrkResult, naive: wrk.WrkResult) -> list[Figure]:
    bad = [f"{who}: {r.non2xx} non-2xx, {r.socket_errors} socket errors"
           for who, r in (("nanoedit", ours), ("naive", naive)) if not r.clean]
    notes = ("INVALID: " + "; ".join(bad) + "; ") if bad else ""
    notes += f"requests 2xx: nanoedit {ours.ok}, naive {naive.ok}"
    target = TARGETS.get((kind, conns), "")
    common = {"baseline_name": "naive Flask app", "notes": notes}
    return [
        figure("http", f"{kind} @{conns} conns", "req/s", ours.rps, naive.rps, "higher", target=target, **common),
        figure("http", f"{kind} p50 @{conns} conns", "ms", ours.p50_ms, naive.p50_ms, "lower", **common),
        figure("http", f"{kind} p99 @{conns} conns", "ms", ours.p99_ms, naive.p99_ms, "lower", target=target,
               **common),
    ]


class HttpScenario:
    name = "http"
    description = "accept path and status polls vs a naive Flask app, same gunicorn settings, wrk"
    in_quick_run = True

    def skip_reason(self) -> str:
        return "" if wrk.available() else "`wrk` is not installed (Debian: apt-get install -y wrk)"

    def run(self, quick: bool) -> list[Figure]:
        connections = [8] if quick else [1, 8, 32]
        duration = 3.0 if quick else 8.0
        tmp = Path(tempfile.mkdtemp(prefix="nanoedit-bench-http-"))
        body, ctype = multipart(noise_png(240_000))
        body_file = tmp / "body.bin"
        body_file.write_bytes(body)
        server = RedisServer()
        stack = make_stack(server.url(0), tmp / "nanoedit", NANOEDIT_KEY_SUBMISSIONS_PER_MIN="0",
                           NANOEDIT_KEY_MAX_WAITING_JOBS="0")
        figures: list[Figure] = []
        try:
            stack.start_api()
            naive = App("naive", start_naive(stack, server, tmp / "naive-data"), "/jobs", "/jobs/")
            stack.wait_api()
            ours = App("nanoedit", stack.url, "/v1/jobs", "/v1/jobs/")
            apps = (naive, ours)
            ids = {a.name: seed_ids(a, body, ctype, 50 if quick else 300, tmp / f"{a.name}.ids") for a in apps}
            post = {a.name: wrk.post_script(body_file, ctype, a.accept_path) for a in apps}
            get = {a.name: wrk.get_ids_script(ids[a.name], a.status_prefix) for a in apps}
            for a in apps:  # warm-up: imports, connection pools, first-request paths in every worker
                measure(a.url, post[a.name], 8, 1)
                measure(a.url, get[a.name], 8, 1)
            for kind, scripts in (("accept", post), ("status", get)):
                for c in connections:
                    got = {a.name: measure(a.url, scripts[a.name], c, duration) for a in apps}
                    print(f"  [http] {kind} @{c}: " + ", ".join(
                        f"{n} {r.rps:.0f} req/s p99 {r.p99_ms:.1f} ms ({r.non2xx} non-2xx)" for n, r in got.items()),
                        file=sys.stderr, flush=True)
                    figures += _figures(kind, c, got["nanoedit"], got["naive"])
        finally:
            stack.stop()
            server.stop()
            shutil.rmtree(tmp, ignore_errors=True)  # the uploads of every run: gigabytes on a full run
        return figures
