"""Provider faults end to end (issue #3): real redis-server, real Celery worker processes, the real google-genai SDK
→ the fake Gemini server on loopback.

1. Every scenario the fake offers maps to the right job status, error code, HTTP status and suggestion, with the
   retries the error table promises visible in `job.attempts` (and in the fake's request log).
2. With the fake at 17.5 % transient errors and 10 % timeouts, ≥ 199 of 200 concurrent jobs succeed and the job
   records show the retries that made it so.

Nothing here sleeps for real backoff: NANOEDIT_RETRY_BASE_S is 0.05 s, timeouts are ~1 s. The one long wait is
the fake's `rate_limited` RetryInfo (7 s), which the service must honour, so that module stack keeps
NANOEDIT_MAX_RETRIES at 2.
"""

from __future__ import annotations

import collections
import io
import itertools
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import pytest
import redis
import requests
from PIL import Image

from shared.errors import spec_for
from shared.limiter import FleetLimiter
from shared.settings import Settings
from tests.conftest import FIXTURES
from tests.e2e.test_pipeline import TERMINAL, wait_done
from tests.support.stack import RedisServer, Stack, gemini_env, start_stack, wait_for
from workers.fake_gemini import FakeGeminiConfig, FakeGeminiServer, scenario_names
from workers.fake_gemini.recorder import key_fingerprint

pytestmark = pytest.mark.e2e

API_KEY = "nanoedit-test-key-7f3c9a1e5b2d4f60"  # distinctive, so a leak anywhere is easy to find
MATRIX_DB, FAULTS_DB = 6, 7
MATRIX_RETRIES = 2  # transient scenarios make 1 + 2 attempts; rate_limited then costs 2 × 7 s of RetryInfo


def start_gemini_stack(redis_url: str, data_dir: Any, fake: FakeGeminiServer, *, generate: tuple[int, ...],
                       preprocess: int = 1, **env: str) -> Stack:
    return start_stack(redis_url, data_dir, preprocess=preprocess, generate=generate,
                       **gemini_env(fake.base_url, API_KEY, **env))


def submit(stack: Stack, instruction: str, image: bytes, name: str = "a.png") -> str:
    resp = requests.post(f"{stack.url}/v1/jobs", timeout=60, data={"instruction": instruction},
                         files=[("image", (name, image))], headers={"Cache-Control": "no-cache"})
    assert resp.status_code == 202, resp.text
    assert resp.json()["provider"] == "gemini"
    return str(resp.json()["id"])


def parse_at(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# --- 1. scenario matrix -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def matrix_stack(redis_server: RedisServer, fake: FakeGeminiServer,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # The circuit breaker is relaxed so the failing scenarios (3 transient failures each) never open it and park
    # the next scenario's job; each test still runs alone, one job at a time.
    s = start_gemini_stack(redis_server.url(MATRIX_DB), tmp_path_factory.mktemp("faults-matrix"), fake,
                           generate=(2,), NANOEDIT_GEMINI_TIMEOUT_S="1", NANOEDIT_MAX_RETRIES=str(MATRIX_RETRIES),
                           NANOEDIT_CIRCUIT_FAILURES="1000", NANOEDIT_CIRCUIT_MIN_CALLS="1000",
                           NANOEDIT_RATE_LIMIT_COOLDOWN_S="1")
    yield s
    s.stop()


@pytest.fixture
def clean(matrix_stack: Stack, fake: FakeGeminiServer) -> Iterator[redis.Redis]:
    """Fresh fake log and no fleet cooldown left over from a 429 scenario (quota_day sets one of an hour)."""
    r = redis.Redis.from_url(matrix_stack.env["NANOEDIT_REDIS_URL"], decode_responses=True)
    r.delete("nanoedit:limiter:cooldown", *r.scan_iter("nanoedit:limiter:hold:*"))
    fake.configure(scenario="ok", slow_ms=300.0, hang_s=1.5, error_rate=0.0, timeout_rate=0.0,
                   latency_ms_mean=0.0, latency_ms_p99=0.0, rpm=0)
    fake.reset()
    yield r
    fake.configure(scenario="ok")
    r.delete("nanoedit:limiter:cooldown", *r.scan_iter("nanoedit:limiter:hold:*"))


R = MATRIX_RETRIES + 1
# scenario → (job status, job.error.code, HTTP status of that code, attempt outcomes in order)
EXPECTED: dict[str, tuple[str, str | None, int | None, list[str]]] = {
    "ok": ("succeeded", None, None, ["succeeded"]),
    "slow": ("succeeded", None, None, ["succeeded"]),
    "thinking": ("succeeded", None, None, ["succeeded"]),
    "hang": ("failed", "upstream_timeout", 504, ["timeout"] * R),
    "rate_limited": ("failed", "upstream_rate_limited", 429, ["rate_limited"] * R),
    "overloaded": ("failed", "upstream_unavailable", 503, ["unavailable"] * R),
    "internal": ("failed", "upstream_unavailable", 503, ["unavailable"] * R),
    "bad_gateway": ("failed", "upstream_unavailable", 503, ["unavailable"] * R),
    "empty": ("failed", "no_image_generated", 422, ["empty", "empty"]),  # Retry.ONCE
    "text_only": ("failed", "no_image_generated", 422, ["no_image"]),
    "no_image": ("failed", "no_image_generated", 422, ["no_image"]),
    "prompt_blocked": ("failed", "content_blocked", 422, ["blocked"]),
    "image_safety": ("failed", "content_blocked", 422, ["blocked"]),
    "safety": ("failed", "content_blocked", 422, ["blocked"]),
    "invalid_key": ("failed", "upstream_auth_error", 502, ["auth_error"]),
    "model_not_found": ("failed", "model_unavailable", 502, ["model_unavailable"]),
    "quota_day": ("failed", "upstream_rate_limited", 429, ["quota_exhausted_day"]),
    "spend_cap": ("failed", "upstream_rate_limited", 429, ["spend_cap"] * R),
}


def test_the_matrix_covers_every_scenario_of_the_fake() -> None:
    assert sorted(EXPECTED) == scenario_names()


@pytest.mark.parametrize("scenario", sorted(EXPECTED))
def test_scenario_maps_to_status_code_http_status_and_suggestion(
        matrix_stack: Stack, fake: FakeGeminiServer, clean: redis.Redis, scenario: str) -> None:
    status, code, http_status, outcomes = EXPECTED[scenario]
    # Given the fake answering every call with this scenario
    fake.configure(scenario=scenario)
    # When one job runs through the whole stack
    resp_id = submit(matrix_stack, f"edit it ({scenario})", (FIXTURES / "chelsea.png").read_bytes())
    job = wait_done(matrix_stack, resp_id, timeout_s=90)
    raw = requests.get(f"{matrix_stack.url}/v1/jobs/{resp_id}", timeout=10).text

    # Then status, error code, its HTTP status and a suggestion are what the error table says
    assert job["status"] == status, (job, matrix_stack.logs())
    if code is None:
        assert job["error"] is None
        assert len(job["outputs"]) == 1 and job["billed_provider_calls"] == 1
    else:
        error = job["error"]
        assert error["code"] == code, job
        assert error["status_code"] == http_status == spec_for(code).status, job
        assert error["suggestion"].strip() and error["message"].strip()
        assert job["outputs"] == []
    # and the attempts show the retries: n = 1..k with their outcomes (exactly one for a final answer)
    attempts = job["attempts"]
    assert [a["outcome"] for a in attempts] == outcomes, attempts
    assert [a["n"] for a in attempts] == list(range(1, len(outcomes) + 1)), attempts
    assert all(a["output"] == 0 for a in attempts)
    if code is not None:
        assert all(a["error_code"] == code for a in attempts), attempts
    # and the fake saw exactly one request per attempt, each with our key (by fingerprint) and this scenario
    seen = fake.requests()
    assert len(seen) == len(attempts), seen
    assert {r["scenario"] for r in seen} == {scenario}
    assert all(r["api_key_sha256"] == key_fingerprint(API_KEY) for r in seen)
    # and the API key is nowhere in the job JSON
    assert API_KEY not in raw

    if scenario == "thinking":  # the interim `thought` image (64×64) is not the output: the edited input is
        prepared = json.loads(clean.hget(f"nanoedit:job:{resp_id}", "prepared") or "[]")
        assert (job["outputs"][0]["width"], job["outputs"][0]["height"]) == (prepared[0]["width"],
                                                                           prepared[0]["height"])
    if scenario == "rate_limited":  # RetryInfo.retryDelay (7 s) honoured between attempts
        starts = [parse_at(a["at"]) for a in attempts]
        assert all(b - a >= 6.9 for a, b in itertools.pairwise(starts)), attempts


def test_api_key_never_in_any_process_log(matrix_stack: Stack) -> None:
    # Runs after the matrix: every failure path (auth errors included) has been logged by now.
    for proc in matrix_stack.procs.values():
        assert API_KEY not in proc.log(), proc.name


# --- 2. 200 jobs against a flaky upstream -------------------------------------------------------------------

N_JOBS = 200
ERROR_RATE, TIMEOUT_RATE = 0.175, 0.10
FAULT_RETRIES = 6
FAULTS_CAP = 8
# Each attempt fails (500/503 or a hang past the timeout) independently with p = 0.175 + 0.10 = 0.275, so an
# output fails only if all 1 + 6 attempts fail: q = 0.275**7 ≈ 1.19e-4. Over 200 jobs, P(2 or more fail) ≈
# C(200, 2)·q² ≈ 2.8e-4, i.e. "≥ 199 of 200 succeed" holds except about once in 3,500 runs (and all 200 succeed
# with probability (1 − q)**200 ≈ 0.976). The circuit breaker never burns retries (a refused call waits).
P_ATTEMPT_FAILS = ERROR_RATE + TIMEOUT_RATE
P_OUTPUT_FAILS = P_ATTEMPT_FAILS ** (FAULT_RETRIES + 1)


def tiny_png(seed: int) -> bytes:
    """A small distinct image: keeps the 2-CPU budget on the pipeline, not on Pillow."""
    im = Image.new("RGB", (64, 48), ((seed * 37) % 256, (seed * 91) % 256, (seed * 53) % 256))
    im.putpixel((seed % 64, (seed // 64) % 48), (255, 255, 255))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def faults_fake() -> Iterator[FakeGeminiServer]:
    server = FakeGeminiServer(FakeGeminiConfig(
        error_rate=ERROR_RATE, timeout_rate=TIMEOUT_RATE, hang_s=1.5, latency_ms_mean=40, latency_ms_p99=150,
        seed=20240503)).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def faults_stack(redis_server: RedisServer, faults_fake: FakeGeminiServer,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # 2 generate instances × 4 processes under a fleet cap of 8: a hung call holds a process ~1 s, so the cap
    # is set to what the processes can use. Circuit relaxed (12 in a row, 1 s open) so an unlucky streak of
    # failures does not park the fleet for the default 30 s.
    s = start_gemini_stack(redis_server.url(FAULTS_DB), tmp_path_factory.mktemp("faults-200"), faults_fake,
                           generate=(4, 4), preprocess=2, NANOEDIT_GEMINI_TIMEOUT_S="1",
                           NANOEDIT_GEMINI_CONCURRENCY=str(FAULTS_CAP), NANOEDIT_MAX_RETRIES=str(FAULT_RETRIES),
                           NANOEDIT_CIRCUIT_FAILURES="12", NANOEDIT_CIRCUIT_OPEN_S="1")
    yield s
    s.stop()


def test_200_jobs_survive_transient_errors_and_timeouts(faults_stack: Stack, faults_fake: FakeGeminiServer) -> None:
    s = faults_stack
    started = time.monotonic()
    # Given 200 jobs submitted concurrently over HTTP to a provider failing 27.5 % of calls
    with ThreadPoolExecutor(max_workers=16) as pool:
        ids = list(pool.map(lambda i: submit(s, f"invert it, job {i}", tiny_png(i)), range(N_JOBS)))
    assert len(set(ids)) == N_JOBS

    # When they all run to a terminal state
    def all_terminal() -> list[dict[str, Any]] | None:
        with ThreadPoolExecutor(max_workers=8) as pool:
            jobs = list(pool.map(lambda i: requests.get(f"{s.url}/v1/jobs/{i}", timeout=30).json(), ids))
        return jobs if all(j["status"] in TERMINAL for j in jobs) else None

    settings = Settings.from_env(s.env)
    limiter = FleetLimiter(redis.Redis.from_url(settings.redis_url, decode_responses=True), settings.redis_prefix,
                           settings.limit_config())
    max_leases, last_check = 0, 0.0

    def sample_then_check() -> list[dict[str, Any]] | None:
        """Sample the fleet's leases every 50 ms; read the 200 jobs at most once a second, when the fake idles."""
        nonlocal max_leases, last_check
        max_leases = max(max_leases, limiter.in_flight())
        if time.monotonic() - last_check < 1.0 or not fake_idle():
            return None
        last_check = time.monotonic()
        return all_terminal()

    def fake_idle() -> bool:
        stats = faults_fake.stats()
        return bool(stats["in_flight"] == 0 and stats["count"] >= N_JOBS)

    try:
        jobs = wait_for(sample_then_check, 240, "200 jobs to finish", interval_s=0.05)
    except TimeoutError:
        print(s.logs())
        raise
    elapsed = time.monotonic() - started

    # Then the tally (printed for the record) shows ≥ 199 succeeded and the retries that got them there
    statuses = collections.Counter(j["status"] for j in jobs)
    per_job = collections.Counter(len(j["attempts"]) for j in jobs)
    outcomes = collections.Counter(a["outcome"] for j in jobs for a in j["attempts"])
    total_attempts = sum(len(j["attempts"]) for j in jobs)
    r = redis.Redis.from_url(s.env["NANOEDIT_REDIS_URL"], decode_responses=True)
    circuit_opens = sum(1 for h in r.lrange("nanoedit:circuit:history", 0, -1) if json.loads(h)["to"] == "open")
    print(f"\n[faults] {N_JOBS} jobs in {elapsed:.1f}s; statuses={dict(statuses)}; attempts total={total_attempts} "
          f"per job={dict(sorted(per_job.items()))}; outcomes={dict(outcomes)}; "
          f"fake={faults_fake.stats()}; limiter leases max sampled={max_leases}; circuit opens={circuit_opens}; "
          f"P(output fails)={P_OUTPUT_FAILS:.2e}")

    assert all(j["status"] in TERMINAL for j in jobs)
    # (The fake's own max_in_flight can read above the cap here: it notices a timed-out client only on its next
    # 50 ms poll, after the worker has already released the lease. The leases themselves never exceed it.)
    assert max_leases <= FAULTS_CAP
    assert statuses["succeeded"] >= N_JOBS - 1, [j for j in jobs if j["status"] != "succeeded"]
    for j in jobs:
        if j["status"] != "succeeded":  # the allowed one: only a transient error after every retry
            assert j["error"]["code"] in ("upstream_timeout", "upstream_unavailable"), j
            assert len(j["attempts"]) == FAULT_RETRIES + 1, j
    assert total_attempts > N_JOBS
    assert total_attempts == sum(1 for _ in faults_fake.requests())  # every provider call is in some record
    for j in jobs:
        ns = [a["n"] for a in j["attempts"]]
        assert ns == list(range(1, len(ns) + 1)), j["attempts"]
        assert all(a["outcome"] in ("succeeded", "timeout", "unavailable") for a in j["attempts"]), j["attempts"]

    def recovered_from(outcome: str) -> int:
        return sum(1 for j in jobs if j["status"] == "succeeded" and outcome in
                   [a["outcome"] for a in j["attempts"][:-1]] and j["attempts"][-1]["outcome"] == "succeeded")

    assert recovered_from("timeout") > 0 and recovered_from("unavailable") > 0
    assert API_KEY not in json.dumps(jobs)
