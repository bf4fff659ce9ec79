"""Provider calls held in flight per GB of generate-worker memory: the prefork pool vs the gevent pool.

For each pool type, on a fresh Redis database: a fake Gemini whose every answer takes `--latency-s`, the fleet
cap and the generate instance's pool both at N, N one-output jobs submitted at once. Once the fake reports N
calls in flight, the generate instance's memory is read: the proportional set size (PSS, /proc/PID/smaps_rollup)
of its main process and every child, so pages a prefork pool shares after fork are counted once, not N times.
Figure: calls in flight per GB = N ÷ PSS; baseline: the same with `-P prefork` (what the Procfile ran before).

    python -m bench.inflight [--calls 24] [--latency-s 20]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import redis
import requests

from bench.figures import Figure, figure
from tests.support.procs import children
from tests.support.stack import RedisServer, make_stack, wait_for
from workers.fake_gemini import FakeGeminiConfig, FakeGeminiServer

PHOTO = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "chelsea.png"


@dataclass(frozen=True, slots=True)
class InFlight:
    pool: str
    calls: int
    pss_mb: float

    @property
    def calls_per_gb(self) -> float:
        return self.calls / (self.pss_mb / 1024)

    @property
    def mb_per_call(self) -> float:
        return self.pss_mb / self.calls


def pss_kb(pid: int) -> int:
    """Proportional set size of one process (shared pages divided among the processes that map them)."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def tree_pss_mb(pid: int) -> float:
    return sum(pss_kb(p) for p in (pid, *children(pid))) / 1024


def measure(pool: str, calls: int, latency_s: float, server: RedisServer, db: int, fake: FakeGeminiServer,
            tmp: Path) -> InFlight:
    fake.reset()
    fake.configure(latency_ms_mean=latency_s * 1000)
    redis.Redis.from_url(server.url(db)).flushdb()
    stack = make_stack(server.url(db), tmp / pool, GEMINI_API_KEY="bench", NANOEDIT_PROVIDER="auto",
                       NANOEDIT_GEMINI_BASE_URL=fake.base_url, NANOEDIT_GEMINI_CONCURRENCY=str(calls),
                       NANOEDIT_GEMINI_TIMEOUT_S=str(latency_s * 3), NANOEDIT_FAIR_QUEUE_DEPTH=str(calls),
                       NANOEDIT_KEY_SUBMISSIONS_PER_MIN="0", NANOEDIT_KEY_MAX_WAITING_JOBS="0")
    try:
        stack.start_worker("preprocess", 2)
        gen = stack.spawn("generate", ["celery", "-A", "workers.celery_app", "worker", "-Q", "generate", "-n",
                                       "generate@%h", "-c", str(calls), "-P", pool, "--without-mingle",
                                       "--without-gossip", "--loglevel", "WARNING"])
        stack.start_api()
        stack.wait_api()
        stack.wait_live(timeout_s=180)
        session = requests.Session()
        for i in range(calls):
            session.post(f"{stack.url}/v1/jobs", data={"instruction": f"grayscale {i}"},
                         files=[("image", ("a.png", PHOTO.read_bytes()))], timeout=30).raise_for_status()
        wait_for(lambda: fake.stats()["in_flight"] >= calls, latency_s * 0.8, f"{calls} calls in flight", 0.2)
        return InFlight(pool=pool, calls=calls, pss_mb=tree_pss_mb(gen.popen.pid))
    finally:
        stack.stop()


def run(calls: int, latency_s: float) -> tuple[InFlight, InFlight]:
    """(prefork baseline, gevent) measured in this run."""
    server = RedisServer()
    fake = FakeGeminiServer(FakeGeminiConfig()).start()
    tmp = Path(tempfile.mkdtemp(prefix="nanoedit-inflight-"))
    try:
        return (measure("prefork", calls, latency_s, server, 0, fake, tmp),
                measure("gevent", calls, latency_s, server, 1, fake, tmp))
    finally:
        fake.stop()
        server.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=24)
    ap.add_argument("--latency-s", type=float, default=20.0)
    args = ap.parse_args(argv)
    base, ours = run(args.calls, args.latency_s)
    print(f"{args.calls} provider calls in flight, each held {args.latency_s:g} s by the fake")
    for r in (base, ours):
        print(f"  {r.pool:<8} PSS {r.pss_mb:8.1f} MB   {r.mb_per_call:6.1f} MB/call   {r.calls_per_gb:8.1f} calls/GB")
    print(f"  ratio gevent / prefork (calls per GB): ×{ours.calls_per_gb / base.calls_per_gb:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())


class InFlightScenario:
    """Scenario "inflight" of `make bench`: calls held per GB of generate-worker memory, gevent vs prefork."""

    name = "inflight"
    description = "provider calls in flight per GB of generate-worker memory: gevent pool vs prefork (same run)"
    in_quick_run = True

    def skip_reason(self) -> str:
        return "" if Path("/proc/self/smaps_rollup").exists() else "needs Linux /proc/PID/smaps_rollup (PSS)"

    def run(self, quick: bool) -> list[Figure]:
        calls, latency_s = (8, 15.0) if quick else (24, 25.0)
        base, ours = run(calls, latency_s)
        common = {"baseline_name": "prefork pool (one process per call)",
                  "notes": f"{calls} calls held {latency_s:g} s by the fake; PSS of the instance's process tree"}
        return [
            figure("inflight", f"calls in flight per GB @{calls}", "calls/GB", ours.calls_per_gb,
                   base.calls_per_gb, "higher", target="≤ 10 MB worker memory per in-flight call", **common),
            figure("inflight", f"worker memory per call @{calls}", "MB", ours.mb_per_call, base.mb_per_call,
                   "lower", target="≤ 10 MB worker memory per in-flight call", **common),
        ]
