"""The fleet limiter end to end (issue #3): 2 generate instances × 4 worker processes, real redis-server, the real
google-genai SDK → the fake Gemini server on loopback.

- Concurrency: the fake never sees more calls in flight than the fleet cap (and sees more than one, so the fleet
  really was concurrent).
- RPM, set at run time through `FleetLimiter.set_config` (Redis): the fake's request log never has more requests
  in a 5 s window than the rate allows, and the fake (enforcing the same rpm) never had to answer 429.
- Cancel while `waiting_for_quota`: the canceled job never reaches the provider (fake's request log) and is not
  billed.
- Killed holders: a SIGKILLed instance's leases free themselves after the (short) lease time, and the survivor
  keeps serving.

No test sleeps for backoff: NANOEDIT_RETRY_BASE_S is 0.05 s; waits poll for the state they need.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import pytest
import redis
import requests
from PIL import Image

from shared.limiter import FleetLimiter
from shared.queueing import make_celery
from shared.settings import Settings
from tests.conftest import FIXTURES
from tests.e2e.test_pipeline import TERMINAL, wait_done
from tests.support.stack import RedisServer, Stack, gemini_env, start_stack, wait_for
from workers.fake_gemini import FakeGeminiConfig, FakeGeminiServer

pytestmark = pytest.mark.e2e

API_KEY = "nanoedit-test-key-limiter-0c1d2e3f"
LIMITER_DB, KILL_DB = 8, 9
CAP = 3


def start_gemini_stack(redis_url: str, data_dir: Any, fake: FakeGeminiServer, **env: str) -> Stack:
    return start_stack(redis_url, data_dir, preprocess=2, generate=(4, 4),
                       **gemini_env(fake.base_url, API_KEY, NANOEDIT_GEMINI_CONCURRENCY=str(CAP), **env))


def limiter_of(stack: Stack) -> FleetLimiter:
    """The same FleetLimiter (keys, env defaults) the workers use, from the test process."""
    settings = Settings.from_env(stack.env)
    return FleetLimiter(redis.Redis.from_url(stack.env["NANOEDIT_REDIS_URL"], decode_responses=True),
                        settings.redis_prefix, settings.limit_config())


def tiny_png(seed: int) -> bytes:
    im = Image.new("RGB", (64, 48), ((seed * 37) % 256, (seed * 91) % 256, (seed * 53) % 256))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def submit(stack: Stack, instruction: str, image: bytes, name: str = "a.png") -> str:
    resp = requests.post(f"{stack.url}/v1/jobs", timeout=60, data={"instruction": instruction},
                         files=[("image", (name, image))], headers={"Cache-Control": "no-cache"})
    assert resp.status_code == 202, resp.text
    assert resp.json()["provider"] == "gemini"
    return str(resp.json()["id"])


def submit_many(stack: Stack, n: int, tag: str) -> list[str]:
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(lambda i: submit(stack, f"invert it ({tag} {i})", tiny_png(i)), range(n)))


def wait_all(stack: Stack, ids: list[str], timeout_s: float = 120) -> list[dict[str, Any]]:
    def done() -> list[dict[str, Any]] | None:
        jobs = [requests.get(f"{stack.url}/v1/jobs/{i}", timeout=30).json() for i in ids]
        return jobs if all(j["status"] in TERMINAL for j in jobs) else None

    try:
        return list(wait_for(done, timeout_s, f"{len(ids)} jobs to finish", interval_s=0.5))
    except TimeoutError:
        print(stack.logs())
        raise


class LeaseSampler:
    """Samples the limiter's live leases in the background: the largest in_flight seen, and every holder."""

    def __init__(self, limiter: FleetLimiter, interval_s: float = 0.02) -> None:
        self.limiter, self.interval_s = limiter, interval_s
        self.max_in_flight = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.max_in_flight = max(self.max_in_flight, self.limiter.in_flight())
            self.samples += 1
            self._stop.wait(self.interval_s)

    def __enter__(self) -> LeaseSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def parse_at(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def max_in_window(times: list[float], window_s: float) -> int:
    """Largest number of timestamps inside any half-open window [t, t + window_s)."""
    times = sorted(times)
    best, j = 0, 0
    for i, start in enumerate(times):
        j = max(j, i)
        while j < len(times) and times[j] < start + window_s:
            j += 1
        best = max(best, j - i)
    return best


# --- the shared stack: concurrency, rpm, cancel -------------------------------------------------------------

@pytest.fixture(scope="module")
def limiter_stack(redis_server: RedisServer, fake: FakeGeminiServer,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = start_gemini_stack(redis_server.url(LIMITER_DB), tmp_path_factory.mktemp("limiter"), fake,
                           NANOEDIT_GEMINI_TIMEOUT_S="10", NANOEDIT_MAX_RETRIES="2")
    yield s
    s.stop()


@pytest.fixture
def limiter(limiter_stack: Stack, fake: FakeGeminiServer) -> Iterator[FleetLimiter]:
    lim = limiter_of(limiter_stack)
    lim.reset_config()
    fake.configure(scenario="ok", latency_ms_mean=0.0, latency_ms_p99=0.0, rpm=0, error_rate=0.0,
                   timeout_rate=0.0)
    fake.reset()
    yield lim
    lim.reset_config()
    fake.configure(scenario="ok", latency_ms_mean=0.0, latency_ms_p99=0.0, rpm=0)


def test_fleet_cap_holds_across_8_processes_on_2_instances(limiter_stack: Stack, fake: FakeGeminiServer,
                                                           limiter: FleetLimiter) -> None:
    # Given 8 generate processes (2 instances × 4), a fleet cap of 3 and calls that take 400 ms
    fake.configure(latency_ms_mean=400.0, latency_ms_p99=400.0)
    assert limiter.get_config().concurrency == CAP
    # When 36 jobs are submitted at once
    with LeaseSampler(limiter) as sampler:
        ids = submit_many(limiter_stack, 36, "cap")
        jobs = wait_all(limiter_stack, ids)
    stats = fake.stats()
    instances = {name: sum(1 for line in limiter_stack.procs[name].log().splitlines()
                           if "nanoedit.generate[" in line and "received" in line) for name in ("gen1", "gen2")}
    print(f"\n[cap] fake max_in_flight={stats['max_in_flight']} count={stats['count']} "
          f"by_status={stats['by_status']}; limiter max in_flight sampled={sampler.max_in_flight} "
          f"({sampler.samples} samples); generate tasks received per instance={instances}")
    # Then all succeed, the provider never saw more than 3 calls at once, and it did see concurrency
    assert all(j["status"] == "succeeded" for j in jobs), [j for j in jobs if j["status"] != "succeeded"]
    assert stats["count"] == 36 and stats["by_status"] == {"200": 36}
    assert 2 <= stats["max_in_flight"] <= CAP
    assert sampler.max_in_flight <= CAP
    assert all(n > 0 for n in instances.values()), instances  # both instances took part


def test_rpm_set_at_run_time_holds_fleet_wide(limiter_stack: Stack, fake: FakeGeminiServer,
                                              limiter: FleetLimiter) -> None:
    # Given the running fleet told, through Redis at run time, to send at most 240 requests/min (one per 0.25 s)
    rpm, window_s, n = 240, 5.0, 40
    limiter.set_config(rpm=rpm)
    assert limiter_of(limiter_stack).get_config().rpm == rpm  # what every worker reads
    # and the fake enforcing the same rpm itself (any excess would come back as a 429)
    fake.configure(latency_ms_mean=100.0, latency_ms_p99=100.0, rpm=rpm)
    # When 40 jobs are submitted at once (and the test process stays quiet meanwhile: the fake runs in it, and
    # busy polling here would delay the fake's own arrival timestamps)
    ids = submit_many(limiter_stack, n, "rpm")
    wait_for(lambda: fake.stats()["count"] >= n and fake.stats()["in_flight"] == 0, 60, "40 provider calls",
             interval_s=0.5)
    jobs = wait_all(limiter_stack, ids)
    # Then every sliding 5 s window of the fake's request log holds at most 5 / 0.25 + 1 = 21 requests
    seen = fake.requests()
    times = sorted(r["at"] for r in seen)
    worst = max_in_window(times, window_s)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    starts = [parse_at(a["at"]) for j in jobs for a in j["attempts"]]
    print(f"\n[rpm] {len(seen)} requests over {times[-1] - times[0]:.2f}s "
          f"(≥ {(n - 1) * 60 / rpm:.2f}s allowed); max per {window_s:g}s window={worst}; "
          f"min gap={min(gaps):.3f}s; fake by_status={fake.stats()['by_status']}; worker-side (attempt start) "
          f"max per window={max_in_window(starts, window_s)}")
    assert all(j["status"] == "succeeded" for j in jobs), [j for j in jobs if j["status"] != "succeeded"]
    assert len(seen) == n
    assert worst <= window_s * rpm / 60 + 1
    assert "429" not in fake.stats()["by_status"]
    assert not any(a["outcome"] == "rate_limited" for j in jobs for a in j["attempts"])
    assert fake.stats()["max_in_flight"] <= CAP


def test_cancel_while_waiting_for_quota_makes_no_provider_call(limiter_stack: Stack, fake: FakeGeminiServer,
                                                              limiter: FleetLimiter) -> None:
    s = limiter_stack
    r = limiter.r
    # Given a fleet cap of 1 (set at run time) and job A holding it with a 4 s call
    limiter.set_config(concurrency=1)
    fake.configure(scenario="slow", slow_ms=4000.0)
    a = submit(s, "invert A", (FIXTURES / "chelsea.png").read_bytes(), "chelsea.png")
    wait_for(lambda: limiter.holders(f"{a}:") and fake.stats()["in_flight"] == 1, 30, "A at the provider")
    # and job B, with a different image, waiting for quota behind it
    b = submit(s, "invert B", (FIXTURES / "coffee.png").read_bytes(), "coffee.png")

    def b_waiting() -> bool:
        job = requests.get(f"{s.url}/v1/jobs/{b}", timeout=10).json()
        assert job["status"] not in TERMINAL, job
        return bool(job["stage"] == "waiting_for_quota")

    wait_for(b_waiting, 30, "B waiting_for_quota", interval_s=0.05)
    b_prepared = hashlib.sha256((s.data_dir / "blobs" / "jobs" / b / "prepared" / "0").read_bytes()).hexdigest()
    a_prepared = hashlib.sha256((s.data_dir / "blobs" / "jobs" / a / "prepared" / "0").read_bytes()).hexdigest()
    assert a_prepared != b_prepared

    # When B is canceled
    resp = requests.delete(f"{s.url}/v1/jobs/{b}", timeout=10)
    assert resp.status_code == 202, resp.text
    at_once = resp.json()["status"]
    assert at_once in ("canceled", "canceling")

    # Then B ends canceled, A finishes, and after every generate message is done the fake never saw B's image
    job_b = wait_done(s, b, timeout_s=30)
    job_a = wait_done(s, a, timeout_s=60)

    def drained() -> bool:
        queued = sum(int(r.llen(k)) for k in r.scan_iter("generate*") if r.type(k) == "list")
        return queued == 0 and int(r.hlen("unacked")) == 0

    wait_for(drained, 30, "the generate queue to drain", interval_s=0.1)
    seen = fake.requests()
    print(f"\n[cancel] DELETE answered {at_once!r}; B={job_b['status']} billed={job_b['billed_provider_calls']} "
          f"attempts={job_b['attempts']}; A={job_a['status']}; fake saw {len(seen)} request(s)")
    assert job_b["status"] == "canceled" and job_b["error"]["code"] == "canceled", job_b
    assert job_b["billed_provider_calls"] == 0 and job_b["attempts"] == []
    assert job_a["status"] == "succeeded", job_a
    images = [i["sha256"] for req in seen for i in req["images"]]
    assert a_prepared in images  # the log does record what was sent...
    assert b_prepared not in images  # ...and B's image never went out
    assert limiter.in_flight() == 0


# --- killed holders -----------------------------------------------------------------------------------------

LEASE_S, KILL_TIMEOUT_S = 3.0, 2.0


@pytest.fixture(scope="module")
def kill_fake() -> Iterator[FakeGeminiServer]:
    server = FakeGeminiServer(FakeGeminiConfig(scenario="hang", hang_s=60)).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def kill_stack(redis_server: RedisServer, kill_fake: FakeGeminiServer,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # A 3 s lease outlives the 2 s provider timeout (the limiter's rule: no renewal needed), many cheap retries
    # (countdowns capped at 1 s) keep every job cycling through the limiter, and the circuit never opens.
    s = start_gemini_stack(redis_server.url(KILL_DB), tmp_path_factory.mktemp("kill"), kill_fake,
                           NANOEDIT_GEMINI_LEASE_S=str(LEASE_S), NANOEDIT_GEMINI_TIMEOUT_S=str(KILL_TIMEOUT_S),
                           NANOEDIT_MAX_RETRIES="100", NANOEDIT_MAX_COUNTDOWN_S="1",
                           NANOEDIT_CIRCUIT_FAILURES="1000", NANOEDIT_CIRCUIT_MIN_CALLS="1000")
    yield s
    s.stop()


def _absolute_leases(limiter: FleetLimiter) -> dict[str, float]:
    state = limiter.state()
    return {lease["holder"]: state["redis_time"] + lease["expires_in_s"] for lease in state["leases"]}


def test_sigkilled_holders_free_their_leases_and_the_survivor_serves(kill_stack: Stack,
                                                                     kill_fake: FakeGeminiServer) -> None:
    s = kill_stack
    limiter = limiter_of(s)
    celery = make_celery(Settings.from_env(s.env))
    nodes = wait_for(lambda: (n := celery.control.inspect(timeout=2).ping() or {})
                     and sum(1 for name in n if name.startswith(("gen1@", "gen2@"))) == 2 and n, 30,
                     "both generate instances answering ping")
    gen1 = next(name for name in nodes if name.startswith("gen1@"))

    # Given 10 jobs whose provider calls hang until the 2 s timeout, keeping all 3 fleet slots busy
    ids = submit_many(s, 10, "kill")
    wait_for(lambda: limiter.in_flight() == CAP, 30, "the fleet cap to be full")

    # When instance gen1 is SIGKILLed while it holds leases that still have ≥ 1.7 s to live (so its calls are
    # mid-flight: a call ends ≤ 2 s after its lease was taken, lease 3 s): found by asking gen1 which tasks it is
    # running, between two lease snapshots that show the same lease (same expiry) for that job.
    dead: set[str] = set()
    deadline = time.monotonic() + 60
    while not dead:
        assert time.monotonic() < deadline, "never caught gen1 holding a fresh lease"
        before = _absolute_leases(limiter)
        active = celery.control.inspect(destination=[gen1], timeout=2, limit=1).active() or {}
        after = _absolute_leases(limiter)
        now = limiter.state()["redis_time"]
        running = {f"{t['id'].split('.generate.')[0]}:{t['id'].split('.generate.')[1].split('.')[0]}"
                   for t in active.get(gen1, [])}
        dead = {h for h in running if h in before and h in after and abs(before[h] - after[h]) < 0.01
                and after[h] - now >= 1.7}
        if dead:
            s.procs["gen1"].kill_group()
        else:
            time.sleep(0.05)
    killed_at = time.monotonic()
    s.procs["gen1"].popen.wait(10)
    expiries = {h: after[h] for h in dead}

    # Then the dead holders' leases are still counted right after the kill (nobody released them)...
    still = dead & set(limiter.holders())
    assert still, (dead, limiter.state())
    # ...and disappear on their own within the lease time, while in_flight never exceeds the cap
    max_seen = 0

    def freed() -> bool:
        nonlocal max_seen
        holders = set(limiter.holders())
        max_seen = max(max_seen, len(holders))
        return not holders & dead

    wait_for(freed, LEASE_S + 5, "the killed holders' leases to expire", interval_s=0.02)
    freed_after = time.monotonic() - killed_at
    # From now on every lease is held by the surviving instance (gen1 is dead; its jobs' messages stay unacked
    # until the visibility timeout, so nothing else can hold their holder names).
    survivor_holders = set(limiter.holders())
    assert not survivor_holders & dead
    print(f"\n[kill] killed gen1 holding {sorted(dead)} (in_flight at kill {len(after)}); "
          f"their leases freed {freed_after:.2f}s after the kill (lease {LEASE_S:g}s, remaining at kill "
          f"{[round(e - now, 2) for e in expiries.values()]}); max in_flight meanwhile={max_seen}; "
          f"survivor holds {len(survivor_holders)} now")
    assert freed_after <= LEASE_S + 5
    assert freed_after >= max(expiries.values()) - now - 0.3  # freed by expiry, not by someone releasing them
    assert max_seen <= CAP

    # And after the upstream recovers, the survivor serves new jobs under the same cap, and no lease is left over
    kill_fake.configure(scenario="ok", latency_ms_mean=200.0, latency_ms_p99=200.0)
    # (The fake notices a timed-out client only on its next 50 ms poll, so a hung call can still count in its
    # in_flight just after the worker gave up and released the lease: let those drain before measuring.)
    wait_for(lambda: all(r["status"] is not None for r in kill_fake.requests() if r["scenario"] == "hang"), 30,
             "the hung calls to end")
    kill_fake.reset()
    fresh = submit_many(s, 6, "after-kill")
    jobs = wait_all(s, fresh, timeout_s=90)
    assert all(j["status"] == "succeeded" for j in jobs), jobs
    assert kill_fake.stats()["max_in_flight"] <= CAP
    survivors = [i for i in ids if not any(h.startswith(f"{i}:") for h in dead)]
    wait_for(lambda: limiter.in_flight() == 0, 60, "every lease to be released")
    statuses = [requests.get(f"{s.url}/v1/jobs/{i}", timeout=10).json()["status"] for i in survivors]
    print(f"[kill] after recovery: {len(fresh)} new jobs succeeded; earlier jobs not held by gen1 at the kill: "
          f"{statuses.count('succeeded')}/{len(survivors)} succeeded (others' messages were reserved by gen1)")
