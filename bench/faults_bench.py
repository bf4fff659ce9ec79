"""`make bench` scenario "faults": fault absorption of nanoedit's retry policy vs the seed's, same faults.

The fault profile is the seed's "before" one: the fake Gemini server (workers/fake_gemini) answers 17.5 % of
generateContent requests with a transient 500/503 and hangs on 10 % (hang_s 30, far past the client timeout),
with a fixed seed, rpm 0 (no 429s mixed in) and no latency. Both sides use the real google-genai SDK
(GeminiProvider) with NANOEDIT_GEMINI_TIMEOUT_S = 1.5 s, so a hang ends as a client-side timeout after 1.5 s
(production's 60 s would hold a generate slot a minute per hang, ~11 minutes for a run's ~33 hangs on 3 slots,
with the same outcomes).

  nanoedit: the real stack (web, preprocess, generate as the Procfile runs them) with the production retry
    policy: NANOEDIT_MAX_RETRIES and NANOEDIT_RETRY_BASE_S at their defaults (4 retries = up to 5 calls,
    backoff with full jitter from 1 s, through the queue), circuit breaker and fleet limiter at their defaults.
    Per-key intake limits are off (one bench client submits faster than a key may) and every instruction is
    distinct with Cache-Control: no-cache, so the result cache never answers. M jobs (full 200, quick 40) from
    CLIENTS threads, each submitting and long-polling (`Prefer: wait`) to the terminal status.
  baseline (the seed): the same M jobs in this process from CLIENTS threads: prepare_image, then the SDK call
    with the seed's policy, 2 attempts with a fixed 1 s delay between them, retrying on any provider error.

Figures: success rate = succeeded ÷ submitted; provider calls per job (shown per 100 jobs) = generateContent
requests the FAKE received ÷ jobs (counted at the fake, not from our records; cross-checked against
Σ len(attempts[]), any mismatch is in the notes); p95 job time (client wall). The fake's RNG is re-seeded before
each side, so both draw the same sequence of outcomes (which job gets which draw depends on arrival order under
concurrency). The notes list the circuit breaker's transitions during our run (read through
`CircuitBreaker.history`): each opening stops every provider call for at least NANOEDIT_CIRCUIT_OPEN_S; jobs
then wait (no retry burned), so it shows in the slowest job and the run time, not in the success rate. At this
failure rate 5 transient failures in a row (the old default threshold) occurred about once per 900 calls and
opened the circuit in every full run; 10 in a row (the default since) about once per 400,000.

    python -m bench.faults_bench [--jobs 200]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from bench.figures import Figure, figure, pct
from bench.limiter import _shielded, log_counts, small_png
from bench.overhead_bench import API_KEY, gemini_stack, run_job
from shared.circuit import CircuitBreaker
from shared.clock import SystemClock
from shared.jobs.model import JobStatus
from shared.models import DEFAULT_MODEL
from shared.redis_conn import redis_client
from shared.settings import Settings
from workers.fake_gemini import FakeGeminiConfig, FakeGeminiServer
from workers.preprocess import prepare_image
from workers.providers.base import EditRequest, InputImage, ProviderError
from workers.providers.gemini import GeminiProvider

ERROR_RATE = 0.175  # the seed's "before" profile: transient 500 / 503 ...
TIMEOUT_RATE = 0.10  # ... and hangs the client gives up on
TIMEOUT_S = 1.5  # NANOEDIT_GEMINI_TIMEOUT_S on both sides
SEED = 20_240_511
CLIENTS = 6
SEED_ATTEMPTS = 2
SEED_DELAY_S = 1.0


@dataclass
class Side:
    """One side's outcome: per job, whether it succeeded, its wall time and (ours) its recorded attempts."""

    jobs: int
    succeeded: int = 0
    fake_calls: int = 0  # generateContent requests the fake received
    recorded_calls: int = 0  # Σ len(attempts[]) (ours) / calls the loop made (seed)
    wall_s: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)  # error codes of jobs that did not succeed
    fake_statuses: dict[str, int] = field(default_factory=dict)
    retries: Counter[str] = field(default_factory=Counter)  # ours: "retrying output" log lines by outcome
    waits: Counter[str] = field(default_factory=Counter)  # ours: re-queues without a call (circuit_open, quota)
    circuit: list[str] = field(default_factory=list)  # ours: the circuit's transitions, oldest first
    run_s: float = 0.0

    @property
    def success_pct(self) -> float:
        return 100 * self.succeeded / self.jobs if self.jobs else float("nan")

    @property
    def calls_per_job(self) -> float:
        return self.fake_calls / self.jobs if self.jobs else float("nan")


def seed_policy(call: Callable[[], object], *, attempts: int = SEED_ATTEMPTS, delay_s: float = SEED_DELAY_S,
                sleep: Callable[[float], None] = time.sleep) -> tuple[bool, int]:
    """The seed's retry loop: up to `attempts` calls, `delay_s` apart, retrying on any provider error.
    Returns (succeeded, calls made)."""
    for n in range(1, attempts + 1):
        try:
            call()
            return True, n
        except ProviderError:
            if n == attempts:
                return False, n
            sleep(delay_s)
    return False, 0  # attempts < 1: nothing called


def generate_calls(records: Iterable[Mapping[str, Any]]) -> int:
    """The generateContent requests in the fake's log (the model check's list call is not one)."""
    return sum(1 for r in records if str(r.get("path", "")).endswith(":generateContent"))


def circuit_transitions(settings: Settings, start: float) -> list[str]:
    """The stack's circuit history (shared/circuit.py), oldest first, as "from→to at +N s: reason" (N: seconds
    after `start`, an epoch time)."""
    r = redis_client(settings)
    try:
        rows = CircuitBreaker(r, settings.redis_prefix, settings.circuit_config(), SystemClock()).history()
    finally:
        r.close()
    rows.reverse()
    return [f"{h['from']}→{h['to']} at +{float(h['at']) - start:.0f} s: {h['reason']}" for h in rows]


def fault_config(seed: int) -> dict[str, Any]:
    return {"error_rate": ERROR_RATE, "timeout_rate": TIMEOUT_RATE, "hang_s": 30.0, "rpm": 0,
            "latency_ms_mean": 0.0, "seed": seed}


def run_ours(fake: FakeGeminiServer, jobs: int, png: bytes, tmp: Path) -> Side:
    side = Side(jobs)
    with gemini_stack(fake, tmp, NANOEDIT_GEMINI_TIMEOUT_S=str(TIMEOUT_S)) as stack:
        with requests.Session() as session:
            run_job(stack.url, session, png, "warm-up")  # faults off: imports and connections
        fake.configure(**fault_config(SEED))  # the seed reseeds the fake's RNG
        fake.reset()

        def one(i: int) -> tuple[float, dict[str, Any]]:
            with requests.Session() as s:
                wall_ms, job = run_job(stack.url, s, png, f"faults job {i:04d}")
                return wall_ms / 1000, job

        t, started = time.monotonic(), time.time()
        with ThreadPoolExecutor(CLIENTS) as pool:
            done = list(pool.map(one, range(jobs)))
        side.run_s = time.monotonic() - t
        records = fake.requests()
        side.fake_statuses = {str(k): int(v) for k, v in fake.stats()["by_status"].items()}
        side.waits, side.retries = log_counts(stack)
        side.circuit = circuit_transitions(Settings.from_env(stack.env), started)
    side.fake_calls = generate_calls(records)
    for wall_s, job in done:
        side.wall_s.append(wall_s)
        side.recorded_calls += len(job.get("attempts") or ())
        if job["status"] == JobStatus.SUCCEEDED:
            side.succeeded += 1
        else:
            side.errors[str((job.get("error") or {}).get("code") or job["status"])] += 1
    return side


def run_seed(fake: FakeGeminiServer, jobs: int, png: bytes) -> Side:
    side = Side(jobs)
    provider = GeminiProvider(API_KEY, DEFAULT_MODEL, timeout_s=TIMEOUT_S, base_url=fake.base_url)
    fake.configure(**fault_config(SEED))
    fake.reset()

    def one(i: int) -> tuple[bool, int, float]:
        t = time.perf_counter()
        img = prepare_image(png, max_bytes=20 << 20, max_pixels=64_000_000, max_long_edge=2048)
        request = EditRequest("edit", f"grayscale (seed job {i:04d})", (InputImage(img.data, img.mime_type),))
        ok, calls = seed_policy(lambda: provider.edit(request))
        return ok, calls, time.perf_counter() - t

    t = time.monotonic()
    try:
        with ThreadPoolExecutor(CLIENTS) as pool:
            done = list(pool.map(one, range(jobs)))
    finally:
        provider.close()
    side.run_s = time.monotonic() - t
    side.fake_calls = generate_calls(fake.requests())
    side.fake_statuses = {str(k): int(v) for k, v in fake.stats()["by_status"].items()}
    for ok, calls, wall_s in done:
        side.succeeded += ok
        side.recorded_calls += calls
        side.wall_s.append(wall_s)
        if not ok:
            side.errors["failed after 2 attempts"] += 1
    return side


def measure(jobs: int) -> tuple[Side, Side]:
    """(nanoedit, seed): the same fault profile, seed, timeout, client concurrency and number of jobs."""
    png = small_png()
    tmp = Path(tempfile.mkdtemp(prefix="nanoedit-bench-faults-"))
    fake = FakeGeminiServer(FakeGeminiConfig())
    try:
        fake.start()
        ours = run_ours(fake, jobs, png, tmp)
        seed = run_seed(fake, jobs, png)
    finally:
        with _shielded():
            fake.stop()
            shutil.rmtree(tmp, ignore_errors=True)
    return ours, seed


def describe(side: Side) -> str:
    parts = [f"{side.succeeded}/{side.jobs} succeeded in {side.run_s:.0f} s (slowest job "
             f"{max(side.wall_s, default=float('nan')):.1f} s)",
             "fake answered " + ", ".join(f"{k}×{v}" for k, v in sorted(side.fake_statuses.items()))]
    if side.errors:
        parts.append("failed: " + ", ".join(f"{k}×{v}" for k, v in sorted(side.errors.items())))
    if side.retries:
        parts.append("retries " + ", ".join(f"{k}×{v}" for k, v in sorted(side.retries.items())))
    if side.waits:
        parts.append("waits " + ", ".join(f"{k}×{v}" for k, v in sorted(side.waits.items())))
    if side.circuit:
        parts.append(f"circuit transitions ({len(side.circuit)}): " + " | ".join(side.circuit))
    if side.recorded_calls != side.fake_calls:
        parts.append(f"MISMATCH: {side.recorded_calls} calls recorded vs {side.fake_calls} at the fake")
    return "; ".join(parts)


class FaultsScenario:
    name = "faults"
    description = ("success rate and provider calls per job under 17.5 % errors + 10 % timeouts: our retry "
                   "policy on the real stack vs the seed's (2 attempts, 1 s apart)")
    in_quick_run = False  # a stack plus two runs of 40 jobs with 1.5 s timeouts: ~30 s (`--quick --only faults`)

    def skip_reason(self) -> str:
        return ""

    def run(self, quick: bool) -> list[Figure]:
        ours, seed = measure(40 if quick else 200)
        profile = (f"{ours.jobs} jobs from {CLIENTS} client threads each side; fake: {ERROR_RATE:.1%} 500/503, "
                   f"{TIMEOUT_RATE:.0%} hangs, seed {SEED}, rpm 0; SDK timeout {TIMEOUT_S:g} s both sides; ours at "
                   "production retry defaults")
        common = {"baseline_name": "seed policy: 2 attempts, 1 s fixed delay (in-process)"}
        return [
            figure("faults", "success rate", "%", ours.success_pct, seed.success_pct, "higher",
                   target="≥ 99.5 %", notes=f"{profile}. ours: {describe(ours)}. seed: {describe(seed)}", **common),
            # Per 100 jobs: the table prints one decimal, and 1.475 must not read as 1.5 (or 1.449 as 1.4).
            figure("faults", "provider calls / 100 jobs (at fake)", "calls", 100 * ours.calls_per_job,
                   100 * seed.calls_per_job, "lower", target="≤ 145 (1.45 per job)",
                   notes=f"generateContent requests the fake received ÷ jobs: ours {ours.calls_per_job:.3f}, seed "
                         f"{seed.calls_per_job:.3f} per job; recorded: ours "
                         f"{ours.recorded_calls}, seed {seed.recorded_calls}, at the fake: ours "
                         f"{ours.fake_calls}, seed {seed.fake_calls}", **common),
            figure("faults", "job time p95 (client wall)", "s", pct(ours.wall_s, 0.95), pct(seed.wall_s, 0.95),
                   "lower", notes=f"{profile}; ours includes queueing behind 3 generate slots and the backoff "
                                  "countdowns", **common),
        ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=200)
    args = ap.parse_args(argv)
    ours, seed = measure(args.jobs)
    for name, side in (("nanoedit", ours), ("seed", seed)):
        print(f"  {name:<9} success {side.success_pct:6.2f} %  calls/job {side.calls_per_job:5.3f}  "
              f"p95 {pct(side.wall_s, 0.95):6.2f} s  — {describe(side)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
